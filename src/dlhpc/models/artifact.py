"""A model's own files: ``model.json`` (the spec) and ``model.safetensors`` (the weights).

The only I/O in ``models/``: every layer that deploys a trained model (engine, optimize, serve)
reads it back through here, from safetensors only — never pickle::

    model, spec = load_model(Path("runs/cnn-…"))
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from dlhpc.errors import ConfigError
from dlhpc.models.registry import build_model
from dlhpc.models.spec import ModelSpec

SPEC_FILE = "model.json"
WEIGHTS_FILE = "model.safetensors"


def read_spec(model_dir: Path) -> ModelSpec:
    path = model_dir / SPEC_FILE
    if not path.is_file():
        raise ConfigError(f"{model_dir}: not a dlhpc run or model ({SPEC_FILE} is missing)")
    try:
        return ModelSpec.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None


def write_weights(path: Path, model: nn.Module) -> None:
    """Weights to safetensors, atomically (temp file in the same directory, then rename)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"format": "pt"})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_weights(path: Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of a safetensors weights file; an unreadable one is a ConfigError naming it."""
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError) as e:
        raise ConfigError(f"{path}: unreadable weights ({e})") from None


def load_model(model_dir: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, ModelSpec]:
    """Rebuild the model of ``model_dir`` in eval mode, weights from safetensors only."""
    if not model_dir.is_dir():
        raise ConfigError(f"{model_dir}: no such run directory")
    spec = read_spec(model_dir)
    weights = model_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise ConfigError(f"{model_dir}: has no {WEIGHTS_FILE} (training did not finish?)")
    state = read_weights(weights, device)
    model = build_model(spec)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise ConfigError(f"{weights}: weights do not fit {SPEC_FILE} ({first})") from None
    return model.to(device).eval(), spec
