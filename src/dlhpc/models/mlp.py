"""A fully-connected classifier: Linear-act-…-Linear on flattened input.

Layer ``i`` is ``layers[2*i]`` (a Linear); the reference twin ``dlhpc.reference.mlp.MLP`` holds
the same weights transposed (``(in, out)``), and the tests check equal logits.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from dlhpc.errors import ConfigError
from dlhpc.models.layers import activation


class MLP(nn.Module):
    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        num_classes: int,
        act: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ConfigError(f"a classifier needs at least 2 classes, got {num_classes}")
        sizes = [in_features, *hidden, num_classes]
        mods: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            mods.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                mods.append(activation(act))
                if dropout > 0:
                    mods.append(nn.Dropout(dropout))
        self.layers = nn.Sequential(*mods)

    @property
    def linears(self) -> list[nn.Linear]:
        return [m for m in self.layers if isinstance(m, nn.Linear)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(torch.flatten(x, 1))  # (N, features) → (N, classes)
