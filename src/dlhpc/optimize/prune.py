"""Magnitude pruning, in place: zero the smallest weights, or whole output channels.

    stats = apply_magnitude_pruning(model, amount=0.5)                   # unstructured
    stats = apply_magnitude_pruning(model, amount=0.25, structured=True) # per output channel
    stats.params, stats.nonzeros, stats.sparsity

- unstructured: in every weight matrix / kernel (parameters with 2+ dimensions: Linear,
  Conv, embeddings, LSTM and attention projections) the ``amount`` share of entries with the
  smallest |w| become 0 — exactly ``round(amount × numel)`` per tensor.
- structured: in every Conv and Linear except the classifier head (the last Linear: zeroing a
  row there would delete a class), the ``amount`` share of output channels with the smallest
  L2 norm become 0, weights and bias, so the channel's output is a constant 0.

The weights stay dense (safetensors stores zeros like any value): pruning alone makes the model
neither smaller on disk nor faster on dense kernels; it is the first step before sparse
kernels, channel removal or compression.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from dlhpc.errors import ConfigError


@dataclass(frozen=True)
class PruneStats:
    amount: float
    structured: bool
    tensors: tuple[str, ...]  # the parameters pruned
    pruned_params: int  # entries in those tensors
    zeroed: int  # entries set to 0 by pruning (structured: including biases)
    channels_zeroed: int  # structured only
    params: int  # of the whole model
    nonzeros: int  # of the whole model, after pruning

    @property
    def sparsity(self) -> float:
        """Zeros among the pruned tensors' entries."""
        return self.zeroed / self.pruned_params if self.pruned_params else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tensors": list(self.tensors), "sparsity": self.sparsity}


def check_amount(amount: float) -> None:
    if not 0.0 < amount < 1.0:
        raise ConfigError(
            f"--prune AMOUNT is the share of weights to remove, in (0, 1); got {amount}"
        )


def count_nonzeros(model: nn.Module) -> tuple[int, int]:
    """(parameters, non-zero parameters) of ``model``."""
    params = sum(p.numel() for p in model.parameters())
    nonzeros = sum(int(torch.count_nonzero(p)) for p in model.parameters())
    return params, nonzeros


@torch.no_grad()
def _prune_entries(w: torch.Tensor, amount: float) -> int:
    k = round(amount * w.numel())
    if k == 0:
        return 0
    flat = w.view(-1)
    order = flat.abs().argsort()  # stable enough: ties broken by position
    flat[order[:k]] = 0
    return k


@torch.no_grad()
def _prune_channels(layer: nn.Conv2d | nn.Conv1d | nn.Linear, amount: float) -> tuple[int, int]:
    w = layer.weight
    k = round(amount * w.shape[0])
    if k == 0:
        return 0, 0
    norms = w.flatten(1).norm(dim=1)
    dead = norms.argsort()[:k]
    w[dead] = 0
    zeroed = k * w[0].numel()
    if layer.bias is not None:
        layer.bias[dead] = 0
        zeroed += k
    return k, zeroed


def _unstructured(model: nn.Module, amount: float) -> tuple[list[str], int, int, int]:
    names, total, zeroed = [], 0, 0
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            names.append(name)
            total += p.numel()
            zeroed += _prune_entries(p.data, amount)
    return names, total, zeroed, 0


def _structured(model: nn.Module, amount: float) -> tuple[list[str], int, int, int]:
    layers = [
        (n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Linear)
    ]
    heads = [n for n, m in layers if isinstance(m, nn.Linear)][-1:]
    names, total, zeroed, channels = [], 0, 0, 0
    for name, layer in layers:
        if name in heads:
            continue
        assert isinstance(layer, nn.Conv1d | nn.Conv2d | nn.Linear)
        names.append(f"{name}.weight")
        total += layer.weight.numel() + (layer.bias.numel() if layer.bias is not None else 0)
        k, z = _prune_channels(layer, amount)
        channels, zeroed = channels + k, zeroed + z
    return names, total, zeroed, channels


def apply_magnitude_pruning(
    model: nn.Module, amount: float, structured: bool = False
) -> PruneStats:
    """Prune ``model`` in place (see the module docstring) and count what is left."""
    check_amount(amount)
    names, total, zeroed, channels = (_structured if structured else _unstructured)(model, amount)
    if not names:
        raise ConfigError(f"{type(model).__name__} has no layers to prune")
    params, nonzeros = count_nonzeros(model)
    return PruneStats(amount, structured, tuple(names), total, zeroed, channels, params, nonzeros)
