"""The run directory of the contract (design.md §1): create it, write its files, load it back.

RUN/config.json  RUN/model.json  RUN/model.safetensors  RUN/checkpoint/  RUN/metrics.jsonl
RUN/tb/          RUN/summary.json  RUN/report.md + *.png
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from dlhpc.engine.checkpoint import CHECKPOINT
from dlhpc.engine.config import RunConfig
from dlhpc.errors import ConfigError
from dlhpc.fsio import atomic_write, atomic_write_json, read_json
from dlhpc.models import ModelSpec, build_model

SUMMARY_KEYS = (
    "model", "params", "world_size", "epochs", "train_samples", "test_samples",
    "train_seconds", "samples_per_second", "test_accuracy",
)  # fmt: skip


def default_run_dir(model: str, root: Path = Path("runs")) -> Path:
    return root / f"{model}-{time.strftime('%Y%m%d-%H%M%S')}"


def prepare_new_run(run_dir: Path) -> None:
    """Refuse to overwrite a run; create the directory."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir}: exists and is not a directory")
    if (run_dir / "config.json").exists() or (run_dir / CHECKPOINT).exists():
        raise ConfigError(
            f"--out {run_dir}: already holds a run; continue it with --resume {run_dir} "
            "or choose another --out"
        )
    run_dir.mkdir(parents=True, exist_ok=True)


def write_weights(path: Path, model: nn.Module) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))


def write_run_start(run_dir: Path, cfg: RunConfig, spec: ModelSpec) -> None:
    atomic_write_json(run_dir / "config.json", cfg.to_dict())
    atomic_write_json(run_dir / "model.json", spec.to_dict())


@dataclass(frozen=True)
class LoadedRun:
    run_dir: Path
    config: RunConfig
    spec: ModelSpec
    model: nn.Module


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"{path.parent}: not a dlhpc run ({path.name} is missing)")
    try:
        return read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None


def load_config(run_dir: Path) -> RunConfig:
    return RunConfig.from_dict(_read_json(run_dir / "config.json"))


def load_spec(run_dir: Path) -> ModelSpec:
    return ModelSpec.from_dict(_read_json(run_dir / "model.json"))


def load_run(run_dir: Path, device: torch.device | None = None) -> LoadedRun:
    """Rebuild the trained model of ``run_dir`` in eval mode (weights from safetensors only)."""
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run directory")
    cfg, spec = load_config(run_dir), load_spec(run_dir)
    weights = run_dir / "model.safetensors"
    if not weights.is_file():
        raise ConfigError(f"{run_dir}: has no model.safetensors (training did not finish?)")
    try:
        state = load_file(str(weights), device=str(device or "cpu"))
    except (SafetensorError, OSError) as e:
        raise ConfigError(f"{weights}: unreadable weights ({e})") from None
    model = build_model(spec)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise ConfigError(f"{weights}: weights do not fit model.json ({first})") from None
    return LoadedRun(run_dir, cfg, spec, model.to(device or "cpu").eval())
