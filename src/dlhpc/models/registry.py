"""``build_model(spec)``: one name → one builder. New architectures register here."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from dlhpc.errors import ConfigError
from dlhpc.models.cnn import TutorialCNN
from dlhpc.models.layers import InputNorm
from dlhpc.models.mlp import MLP
from dlhpc.models.spec import ImageInput, ModelConfig, ModelSpec, TextInput
from dlhpc.models.text import BagClassifier, LSTMClassifier, TransformerClassifier


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


def _bag(cfg: ModelConfig, inp: TextInput, n: int) -> nn.Module:
    return BagClassifier(inp.vocab_size, n, cfg.embed_dim, cfg.units, cfg.bigrams, cfg.sparse)


def _lstm(cfg: ModelConfig, inp: TextInput, n: int) -> nn.Module:
    return LSTMClassifier(inp.vocab_size, n, cfg.embed_dim, cfg.units, cfg.units, cfg.max_length)


def _transformer(cfg: ModelConfig, inp: TextInput, n: int) -> nn.Module:
    return TransformerClassifier(
        inp.vocab_size, n, d_model=cfg.embed_dim, heads=cfg.heads, layers=cfg.layers,
        ff=2 * cfg.embed_dim, dropout=cfg.dropout, max_len=cfg.max_length,
    )  # fmt: skip


IMAGE_BUILDERS: dict[str, Callable[[ModelConfig, ImageInput, int], nn.Module]] = {
    "cnn": _cnn,
    "mlp": _mlp,
}
TEXT_BUILDERS: dict[str, Callable[[ModelConfig, TextInput, int], nn.Module]] = {
    "bag": _bag,
    "lstm": _lstm,
    "transformer": _transformer,
}


def image_model_names() -> list[str]:
    return sorted(IMAGE_BUILDERS)


def text_model_names() -> list[str]:
    return sorted(TEXT_BUILDERS)


def model_names() -> list[str]:
    return sorted([*IMAGE_BUILDERS, *TEXT_BUILDERS])


def build_model(spec: ModelSpec) -> nn.Module:
    """A fresh, randomly initialised model for ``spec`` (seed torch first for repeatability)."""
    name, inp = spec.config.name, spec.input
    if name not in IMAGE_BUILDERS and name not in TEXT_BUILDERS:
        raise ConfigError(f"unknown model {name!r}; choose from {', '.join(model_names())}")
    if isinstance(inp, TextInput):
        if name not in TEXT_BUILDERS:
            raise ConfigError(f"{name} is an image model; the data is text (use bag, lstm, …)")
        return TEXT_BUILDERS[name](spec.config, inp, spec.num_classes)
    if name not in IMAGE_BUILDERS:
        raise ConfigError(f"{name} is a text model; the data is images (use cnn or mlp)")
    body = IMAGE_BUILDERS[name](spec.config, inp, spec.num_classes)
    return ImageClassifier(InputNorm(inp.mean, inp.std), body)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
