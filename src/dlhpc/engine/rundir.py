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
from torch import nn

from dlhpc.engine.checkpoint import CHECKPOINT
from dlhpc.engine.config import RunConfig
from dlhpc.errors import ConfigError
from dlhpc.fsio import atomic_write_json, read_json
from dlhpc.models import ModelSpec
from dlhpc.models.artifact import load_model, read_spec, write_weights

__all__ = ["LoadedRun", "load_config", "load_run", "load_spec", "write_weights"]

SUMMARY_KEYS = (
    "model", "params", "world_size", "epochs", "train_samples", "test_samples",
    "train_seconds", "samples_per_second", "test_accuracy",
)  # fmt: skip


def default_run_dir(model: str, root: Path = Path("runs")) -> Path:
    return root / f"{model}-{time.strftime('%Y%m%d-%H%M%S')}"


def prepare_new_run(run_dir: Path, restarted: bool = False) -> None:
    """Refuse to overwrite a run (unless restarted before its first checkpoint); create it."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir}: exists and is not a directory")
    exists = (run_dir / "config.json").exists() or (run_dir / CHECKPOINT).exists()
    if exists and not (restarted and not (run_dir / CHECKPOINT).exists()):
        raise ConfigError(
            f"--out {run_dir}: already holds a run; continue it with --resume {run_dir} "
            "or choose another --out"
        )
    run_dir.mkdir(parents=True, exist_ok=True)


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
    return read_spec(run_dir)


def load_run(run_dir: Path, device: torch.device | None = None) -> LoadedRun:
    """Rebuild the trained model of ``run_dir`` in eval mode (weights from safetensors only)."""
    model, spec = load_model(run_dir, device or torch.device("cpu"))
    return LoadedRun(run_dir, load_config(run_dir), spec, model)
