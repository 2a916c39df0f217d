"""Small building blocks shared by the models."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class InputNorm(nn.Module):
    """Raw pixels (N, C, H, W), uint8 0–255 or float, → standardized float32.

    Standardizing inside the model means a deployment feeds raw pixels and needs no
    preprocessing code; the statistics travel with the weights as buffers.
    """

    mean: torch.Tensor
    inv_std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        # (x/255 - mean) / std  ==  x * (1/(255 std)) - mean/std : one fused multiply-add.
        self.register_buffer("inv_std", 1.0 / (255.0 * s))
        self.register_buffer("mean", m / s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.inv_std.dtype) * self.inv_std - self.mean


def activation(name: str) -> nn.Module:
    return {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}[name]()
