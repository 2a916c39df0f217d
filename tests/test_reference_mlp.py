"""dlhpc.reference.mlp: backprop vs finite differences and torch.autograd; equal to its twin."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlhpc.models.mlp import MLP as TorchMLP
from dlhpc.reference.gradcheck import numerical_grad, rel_error
from dlhpc.reference.mlp import ACTIVATIONS, MLP

TORCH_ACT = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}


def _net_and_batch(activation: str, seed: int = 0) -> tuple[MLP, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    net = MLP([5, 8, 6, 4], activation=activation, seed=seed)
    for b in net.biases:  # nonzero biases: the zero init would hide bias-gradient bugs
        b[:] = 0.1 * rng.normal(size=b.shape)
    return net, rng.normal(size=(7, 5)), rng.integers(0, 4, 7)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradients_match_finite_differences(activation: str) -> None:
    net, X, y = _net_and_batch(activation)
    _, dW, db = net.loss_and_grads(X, y)
    for p, g in zip(net.params, [*dW, *db], strict=True):
        num = numerical_grad(lambda _: net.loss_and_grads(X, y)[0], p)
        assert rel_error(num, g) < 1e-6, (activation, p.shape)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_loss_and_gradients_equal_torch_autograd(activation: str) -> None:
    net, X, y = _net_and_batch(activation, seed=1)
    loss, dW, db = net.loss_and_grads(X, y)
    Ws = [torch.tensor(W, requires_grad=True) for W in net.weights]
    bs = [torch.tensor(b, requires_grad=True) for b in net.biases]
    a = torch.tensor(X)
    for i, (W, b) in enumerate(zip(Ws, bs, strict=True)):
        a = a @ W + b
        if i < len(Ws) - 1:
            a = TORCH_ACT[activation](a)
    np.testing.assert_allclose(net.forward(X), a.detach().numpy(), rtol=0, atol=1e-12)
    loss_t = F.cross_entropy(a, torch.tensor(y))
    loss_t.backward()
    assert loss == pytest.approx(loss_t.item(), abs=1e-12)
    for ours, theirs in zip([*dW, *db], [*Ws, *bs], strict=True):
        assert theirs.grad is not None
        np.testing.assert_allclose(ours, theirs.grad.numpy(), rtol=0, atol=1e-9)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_twin_torch_model_gives_equal_logits_and_grads(activation: str) -> None:
    ref = MLP([12, 10, 7, 3], activation=activation, seed=2)
    rng = np.random.default_rng(2)
    for b in ref.biases:
        b[:] = rng.normal(size=b.shape)
    model = TorchMLP(12, [10, 7], 3, act=activation).double()
    with torch.no_grad():
        for lin, W, b in zip(model.linears, ref.weights, ref.biases, strict=True):
            lin.weight.copy_(torch.from_numpy(W.T))  # reference stores (in, out)
            lin.bias.copy_(torch.from_numpy(b))
    X, y = rng.normal(size=(9, 12)), rng.integers(0, 3, 9)
    logits = model(torch.from_numpy(X))
    np.testing.assert_allclose(ref.forward(X), logits.detach().numpy(), rtol=0, atol=1e-10)
    F.cross_entropy(logits, torch.from_numpy(y)).backward()
    _, dW, db = ref.loss_and_grads(X, y)
    for lin, gW, gb in zip(model.linears, dW, db, strict=True):
        assert lin.weight.grad is not None and lin.bias.grad is not None
        np.testing.assert_allclose(gW.T, lin.weight.grad.numpy(), rtol=0, atol=1e-10)
        np.testing.assert_allclose(gb, lin.bias.grad.numpy(), rtol=0, atol=1e-10)


def test_init_is_he_for_relu_and_glorot_otherwise() -> None:
    relu = MLP([400, 300, 10], "relu", seed=0)
    tanh = MLP([400, 300, 10], "tanh", seed=0)
    assert relu.weights[0].shape == (400, 300) and relu.biases[0].shape == (300,)
    assert relu.weights[0].std() == pytest.approx(np.sqrt(2 / 400), rel=0.02)
    assert tanh.weights[0].std() == pytest.approx(np.sqrt(2 / 700), rel=0.02)
    assert np.abs(tanh.weights[0]).max() <= np.sqrt(6 / 700)
    assert all(np.all(b == 0) for b in relu.biases)
    np.testing.assert_array_equal(
        MLP([4, 3, 2], seed=5).weights[0], MLP([4, 3, 2], seed=5).weights[0]
    )
    assert MLP([4, 3, 2], dtype=np.float32).forward(np.ones((2, 4))).dtype == np.float32


def test_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="activation"):
        MLP([3, 2], activation="gelu")
    with pytest.raises(ValueError, match="sizes"):
        MLP([3])
    with pytest.raises(ValueError, match="optimizer"):
        MLP([3, 2]).fit(np.ones((4, 3)), np.zeros(4, dtype=int), optimizer="lbfgs")


def _blobs(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved rings: not linearly separable, so the hidden layer has to work."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 400)
    r = 1.0 + 1.5 * y + 0.2 * rng.normal(size=400)
    angle = rng.uniform(0, 2 * np.pi, 400)
    return np.column_stack([r * np.cos(angle), r * np.sin(angle)]), y


@pytest.mark.parametrize(("optimizer", "lr", "momentum"), [("sgd", 0.05, 0.9), ("adam", 0.01, 0.0)])
def test_fit_learns_a_nonlinear_boundary(optimizer: str, lr: float, momentum: float) -> None:
    X, y = _blobs(0)
    X_val, y_val = _blobs(1)
    net = MLP([2, 16, 2], "tanh", seed=0)
    assert net.accuracy(X_val, y_val) < 0.8  # untrained
    hist = net.fit(X, y, 30, 32, lr, optimizer, momentum, seed=0, X_val=X_val, y_val=y_val)
    assert set(hist) == {"loss", "val_loss", "val_accuracy"}
    assert len(hist["loss"]) == 30
    assert hist["loss"][-1] < 0.3 * hist["loss"][0]
    assert hist["val_accuracy"][-1] == net.accuracy(X_val, y_val) >= 0.97
