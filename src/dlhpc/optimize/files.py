"""Variant directories under ``RUN/optimized/``: staged whole, then moved into place.

    RUN/optimized/onnx/            model.onnx  model.json  [tokenizer.json]   fp32 ONNX
    RUN/optimized/int8-dynamic/    model.onnx  model.json  [tokenizer.json]
    RUN/optimized/int8-static/     model.onnx  model.json
    RUN/optimized/pruned-50/       model.safetensors  model.json  [tokenizer.json]
    RUN/optimized/report.md  report.json

Each variant is a complete model directory: ``model.json`` (the run's spec, labels included,
plus a ``variant`` entry) and the tokenizer of a text run, so a deployment copies one folder.
A pruned variant loads with ``dlhpc.models.artifact.load_model`` like any run.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from torch import nn

from dlhpc.errors import ConfigError
from dlhpc.fsio import atomic_write_json
from dlhpc.models import ModelSpec, TextInput
from dlhpc.models.artifact import SPEC_FILE, WEIGHTS_FILE, write_weights

OPTIMIZED = "optimized"
ONNX_FILE = "model.onnx"


def new_staging(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".staging-", dir=out))


def write_spec(variant_dir: Path, spec: ModelSpec, run_dir: Path, variant: dict[str, Any]) -> None:
    """``model.json`` (with a ``variant`` entry) and, for text, the run's tokenizer."""
    variant_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(variant_dir / SPEC_FILE, {**spec.to_dict(), "variant": variant})
    if isinstance(spec.input, TextInput):
        tok = run_dir / spec.input.tokenizer
        if not tok.is_file():
            raise ConfigError(f"{run_dir}: the text run has no {spec.input.tokenizer}")
        shutil.copy2(tok, variant_dir / spec.input.tokenizer)


def write_torch_variant(
    variant_dir: Path, model: nn.Module, spec: ModelSpec, run_dir: Path, variant: dict[str, Any]
) -> Path:
    write_spec(
        variant_dir, spec, run_dir, {**variant, "format": "safetensors", "file": WEIGHTS_FILE}
    )
    write_weights(variant_dir / WEIGHTS_FILE, model)
    return variant_dir / WEIGHTS_FILE


def onnx_variant_info(name: str, input_names: tuple[str, ...]) -> dict[str, Any]:
    return {
        "name": name,
        "format": "onnx",
        "file": ONNX_FILE,
        "inputs": list(input_names),
        "output": "logits",
    }


def commit(staging: Path, out: Path, names: list[str]) -> list[Path]:
    """Move each staged variant directory to ``out/<name>``, replacing an older one."""
    placed = []
    for name in names:
        new, final = staging / name, out / name
        if final.exists():
            old = staging / f".old-{name}"
            final.rename(old)
            shutil.rmtree(old)
        new.rename(final)
        placed.append(final)
    return placed
