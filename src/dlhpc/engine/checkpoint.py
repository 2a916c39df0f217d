"""Resumable state in one safetensors file, written atomically (``checkpoint/state.safetensors``).

Tensors (model weights, optimizer moments, RNG state) are safetensors tensors; everything else
(epoch, step, schedule, optimizer hyper-parameters) is JSON in the file's metadata. No pickle:
loading a checkpoint cannot run code.

Nothing in it depends on the world size, so a checkpoint written by N ranks resumes under M: the
weights and optimizer moments are the same on every rank (DDP keeps replicas equal), the data
position is a global step into an order every rank computes, and the epoch's running loss and
correct counts are global sums. The RNG state is rank 0's and every rank restores it, as every
rank starts from the same seed; data order and augmentation never draw from it (they are keyed
by global step and row), only dropout does. The writer's world size is recorded (metadata
``world_size``) so that a resume can say when it changes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from dlhpc.errors import ConfigError
from dlhpc.fsio import atomic_write

CHECKPOINT = Path("checkpoint") / "state.safetensors"


def _flatten_optimizer(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            key = f"optim.{pid}.{k}"
            if isinstance(v, torch.Tensor):
                tensors[key] = v.detach().cpu().contiguous()
            else:
                scalars[key] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    items: list[tuple[str, Any]] = [*tensors.items(), *meta["scalars"].items()]
    for key, v in items:
        _, pid, k = key.split(".", 2)
        state.setdefault(int(pid), {})[k] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    run_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer: dict[str, Any],
    world_size: int = 1,
) -> Path:
    """Write everything needed to continue exactly where training is now (by any world size)."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
    tensors.update(opt_tensors)
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    meta = {
        "trainer": json.dumps(trainer),
        "optimizer": json.dumps(opt_meta),
        "world_size": str(world_size),
    }
    return atomic_write(run_dir / CHECKPOINT, lambda tmp: save_file(tensors, tmp, metadata=meta))


def check_checkpoint(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The trainer and optimizer records of ``run_dir``'s checkpoint, from its header (which
    safetensors checks against the file's length: a truncated file fails here). Resuming calls
    this before it writes anything, so a run that cannot be resumed is left as it was."""
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise ConfigError(f"{run_dir}: no checkpoint to resume from ({CHECKPOINT} is missing)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        trainer: dict[str, Any] = json.loads(meta["trainer"])
        opt_meta: dict[str, Any] = json.loads(meta["optimizer"])
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: unreadable checkpoint ({e})") from None
    return trainer, opt_meta


def load_checkpoint(
    run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Restore model, optimizer and RNG in place; return the trainer state (epoch, step, …)."""
    trainer, opt_meta = check_checkpoint(run_dir)
    path = run_dir / CHECKPOINT
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise ConfigError(f"{path}: unreadable checkpoint ({e})") from None
    weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    model.load_state_dict(weights)
    device = next(model.parameters()).device
    opt_tensors = {k: v.to(device) for k, v in tensors.items() if k.startswith("optim.")}
    # Adam's "step" counter stays on the CPU as PyTorch keeps it.
    for k in opt_tensors:
        if k.endswith(".step"):
            opt_tensors[k] = opt_tensors[k].cpu()
    optimizer.load_state_dict(_unflatten_optimizer(opt_tensors, opt_meta))
    _match_layouts(optimizer)
    torch.set_rng_state(tensors["rng.cpu"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return trainer


def _match_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Give each optimizer moment its parameter's memory layout. The file holds them contiguous;
    fused Adam walks a channels_last parameter and its moments element by element in storage
    order, so a contiguous moment would update the wrong elements (resume would diverge)."""
    for param, st in optimizer.state.items():
        for k, v in st.items():
            same_shape = isinstance(v, torch.Tensor) and v.shape == param.shape
            if same_shape and v.stride() != param.stride():
                st[k] = torch.empty_like(param, dtype=v.dtype).copy_(v)


def checkpoint_world_size(run_dir: Path) -> int | None:
    """How many ranks wrote the checkpoint of ``run_dir`` (None: no checkpoint, or one from
    before this was recorded). Reads the file's header only."""
    try:
        with safe_open(str(run_dir / CHECKPOINT), framework="pt") as f:
            value = (f.metadata() or {}).get("world_size")
    except (SafetensorError, OSError):
        return None
    return int(value) if value is not None and value.isdigit() else None
