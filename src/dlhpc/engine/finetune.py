"""Start from a pretrained run: ``dlhpc train MODEL --init-from RUN [--freeze backbone]``.

Every parameter whose name and shape match the pretrained run's is copied; the rest (a new
output layer for a different number of classes, say) keeps its fresh initialization. Frozen
parameters get ``requires_grad=False`` and so never reach the optimizer.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dlhpc.errors import ConfigError
from dlhpc.models.artifact import WEIGHTS_FILE, read_spec, read_weights

FREEZE_CHOICES = ("none", "backbone")


def apply_init(model: nn.Module, model_name: str, run: Path) -> tuple[list[str], list[str]]:
    """Copy matching weights from ``run`` into ``model``; return (loaded, kept fresh) names."""
    spec = read_spec(run)
    if spec.config.name != model_name:
        raise ConfigError(f"--init-from {run}: a {spec.config.name} run; this is {model_name}")
    weights = read_weights(run / WEIGHTS_FILE) if (run / WEIGHTS_FILE).is_file() else None
    if weights is None:
        raise ConfigError(f"--init-from {run}: has no {WEIGHTS_FILE} (training did not finish?)")
    loaded, fresh = [], []
    state = model.state_dict()
    with torch.no_grad():
        for name, tensor in state.items():
            src = weights.get(name)
            if src is not None and src.shape == tensor.shape:
                tensor.copy_(src)
                loaded.append(name)
            else:
                fresh.append(name)
    if not any(n.endswith("weight") for n in loaded):
        raise ConfigError(f"--init-from {run}: no weights fit this model")
    return loaded, fresh


def head_names(model: nn.Module) -> set[str]:
    """Parameter names of the output layer: the last ``nn.Linear`` of the model."""
    last = ""
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    return (
        {f"{last}.{p}" for p, _ in model.get_submodule(last).named_parameters()} if last else set()
    )


def apply_freeze(model: nn.Module, what: str) -> int:
    """Freeze parameters; return how many parameters still train."""
    if what not in FREEZE_CHOICES:
        raise ConfigError(f"--freeze must be one of {FREEZE_CHOICES}, got {what!r}")
    if what == "backbone":
        keep = head_names(model)
        for name, p in model.named_parameters():
            p.requires_grad_(name in keep)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
