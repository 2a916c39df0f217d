"""The tutorial's CNN and the MLP: shapes, parameter counts, refusals, input normalization."""

from __future__ import annotations

import pytest
import torch

from dlhpc.errors import ConfigError
from dlhpc.models import ImageInput, ModelConfig, ModelSpec, build_model, count_parameters
from dlhpc.models.cnn import MIN_CNN_SIDE, TutorialCNN, cnn_feature_side
from dlhpc.models.layers import InputNorm
from dlhpc.models.mlp import MLP


def spec(name: str = "cnn", c: int = 1, h: int = 28, w: int = 28, k: int = 10) -> ModelSpec:
    inp = ImageInput(c, h, w, (0.5,) * c, (0.25,) * c)
    return ModelSpec(ModelConfig(name), inp, tuple(str(i) for i in range(k)))


def test_cnn_has_the_keras_models_93322_parameters() -> None:
    # Keras: Conv2D(32) 320 + Conv2D(64) 18,496 + Conv2D(64) 36,928 + Dense(64) 36,928
    #        + Dense(10) 650 = 93,322
    assert count_parameters(build_model(spec())) == 93_322
    net = TutorialCNN(1, 28, 28, 10)
    sizes = [p.numel() for p in net.parameters()]
    assert sizes == [288, 32, 18432, 64, 36864, 64, 36864, 64, 640, 10]


def test_cnn_forward_shape_and_feature_map() -> None:
    model = build_model(spec())
    x = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    assert model(x).shape == (5, 10)
    assert cnn_feature_side(28) == 3


def test_cnn_is_the_tutorials_conv_relu_pool_order_in_values_and_gradients() -> None:
    # The model pools before its ReLU (cheaper); the tutorial's Keras layers apply the ReLU
    # first. Both orders must give the same logits and the same gradients, ties included.
    torch.manual_seed(0)
    net = TutorialCNN(1, 28, 28, 10).to(memory_format=torch.channels_last)
    x = torch.randn(16, 1, 28, 28)
    x[:, :, :4] = 0.0  # flat regions: pooling windows with tied maxima

    def keras_order(x_NCHW: torch.Tensor) -> torch.Tensor:
        pool, relu = torch.nn.functional.max_pool2d, torch.relu
        h = pool(relu(net.conv1(x_NCHW)), 2)
        h = pool(relu(net.conv2(h)), 2)
        h = relu(net.conv3(h))
        return net.fc2(relu(net.fc1(torch.flatten(h, 1))))

    grads = []
    for forward in (net, keras_order):
        net.zero_grad()
        out = forward(x)
        out.square().sum().backward()
        grads.append((out.detach(), [p.grad.clone() for p in net.parameters()]))
    (out_a, g_a), (out_b, g_b) = grads
    assert torch.equal(out_a, out_b)
    for a, b in zip(g_a, g_b, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("c", "h", "w", "k"), [(3, 32, 32, 7), (1, 64, 40, 2), (3, 18, 18, 3)])
def test_cnn_adapts_to_other_sizes_and_channels(c: int, h: int, w: int, k: int) -> None:
    model = build_model(spec("cnn", c, h, w, k))
    assert model(torch.zeros(2, c, h, w, dtype=torch.uint8)).shape == (2, k)


@pytest.mark.parametrize("side", [MIN_CNN_SIDE - 1, 8, 1])
def test_cnn_refuses_images_too_small(side: int) -> None:
    with pytest.raises(ConfigError, match=f"at least {MIN_CNN_SIDE}"):
        build_model(spec("cnn", 1, side, 28))


def test_mlp_hidden_sizes_are_configurable() -> None:
    s = ModelSpec(ModelConfig("mlp", hidden=(32, 16, 8)), spec().input, spec().labels)
    model = build_model(s)
    body = model.body
    assert isinstance(body, MLP)
    assert [(m.in_features, m.out_features) for m in body.linears] == [
        (784, 32), (32, 16), (16, 8), (8, 10)
    ]  # fmt: skip
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_unknown_model_and_bad_config_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown model"):
        build_model(spec("resnet"))
    with pytest.raises(ConfigError, match="hidden"):
        ModelConfig("mlp", hidden=(0,))
    with pytest.raises(ConfigError, match="activation"):
        ModelConfig("mlp", activation="gelu2")
    with pytest.raises(ConfigError, match="2 classes"):
        build_model(spec(k=1))


def test_input_norm_standardizes_raw_pixels() -> None:
    norm = InputNorm((0.5, 0.2), (0.25, 0.1))
    x = torch.randint(0, 256, (4, 2, 3, 3), dtype=torch.uint8)
    expect = (x.double() / 255 - torch.tensor([0.5, 0.2]).view(1, 2, 1, 1)) / torch.tensor(
        [0.25, 0.1]
    ).view(1, 2, 1, 1)
    torch.testing.assert_close(norm(x).double(), expect, atol=1e-5, rtol=1e-5)
    # uint8 and float pixels give the same result
    torch.testing.assert_close(norm(x), norm(x.float()))


def test_model_spec_round_trips_through_a_dict() -> None:
    s = spec("mlp", 3, 20, 24, 4)
    back = ModelSpec.from_dict(s.to_dict())
    assert back == s
    with pytest.raises(ConfigError, match="malformed"):
        ModelSpec.from_dict({"config": {}})
