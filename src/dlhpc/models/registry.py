"""``build_model(spec)``: one name → one builder. New architectures register here."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from dlhpc.errors import ConfigError
from dlhpc.models.cnn import TutorialCNN
from dlhpc.models.layers import InputNorm
from dlhpc.models.mlp import MLP
from dlhpc.models.spec import ImageInput, ModelConfig, ModelSpec


class ImageClassifier(nn.Module):
    """Raw pixels → logits: ``InputNorm`` then the network body."""

    def __init__(self, norm: InputNorm, body: nn.Module) -> None:
        super().__init__()
        self.norm = norm
        self.body = body

    def forward(self, x_NCHW: torch.Tensor) -> torch.Tensor:
        return self.body(self.norm(x_NCHW))


def _cnn(cfg: ModelConfig, inp: ImageInput, n: int) -> nn.Module:
    return TutorialCNN(inp.channels, inp.height, inp.width, n)


def _mlp(cfg: ModelConfig, inp: ImageInput, n: int) -> nn.Module:
    return MLP(inp.channels * inp.height * inp.width, cfg.hidden, n, cfg.activation, cfg.dropout)


BUILDERS: dict[str, Callable[[ModelConfig, ImageInput, int], nn.Module]] = {
    "cnn": _cnn,
    "mlp": _mlp,
}


def image_model_names() -> list[str]:
    return sorted(BUILDERS)


def build_model(spec: ModelSpec) -> nn.Module:
    """A fresh, randomly initialised model for ``spec`` (seed torch first for repeatability)."""
    builder = BUILDERS.get(spec.config.name)
    if builder is None:
        raise ConfigError(
            f"unknown model {spec.config.name!r}; choose from {', '.join(image_model_names())}"
        )
    body = builder(spec.config, spec.input, spec.num_classes)
    return ImageClassifier(InputNorm(spec.input.mean, spec.input.std), body)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
