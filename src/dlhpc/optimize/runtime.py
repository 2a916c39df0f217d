"""Running a model variant: eager PyTorch or an ONNX Runtime session, batch by batch.

    session = ort_session(Path("RUN/optimized/onnx/model.onnx"), threads=2)
    logits = predict_session(session, samples)          # (N, C) float32 ndarray
    logits = predict_eager(model, samples).numpy()      # the same from PyTorch

ONNX Runtime is imported here only, lazily: ``import dlhpc.optimize`` works without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dlhpc.errors import ConfigError
from dlhpc.optimize.samples import Samples, feeds

BATCH = 256


def import_onnxruntime() -> Any:
    try:
        import onnxruntime as ort  # type: ignore[import-untyped,unused-ignore]
    except ImportError:  # pragma: no cover - a dependency of dlhpc
        raise ConfigError(
            "ONNX export and int8 need onnxruntime: pip install onnxruntime"
        ) from None
    return ort


def ort_session(model: Path | bytes, threads: int) -> Any:
    """A CPU session with ``threads`` intra-op threads that do not spin when idle.

    Spinning is off because the report times ONNX Runtime interleaved with PyTorch on the same
    cores: a pool that spin-waits after each call steals the cores PyTorch runs on next.
    """
    ort = import_onnxruntime()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3  # errors only: no warnings about unused initializers
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


@torch.inference_mode()
def predict_eager(model: nn.Module, samples: Samples, batch: int = BATCH) -> torch.Tensor:
    """Logits (N, C) of every record, in order."""
    model.eval()
    parts = [
        model(*samples.inputs(i, min(i + batch, len(samples)))) for i in _starts(samples, batch)
    ]
    return torch.cat(parts).float() if parts else torch.zeros(0)


def predict_session(session: Any, samples: Samples, batch: int = BATCH) -> np.ndarray:
    """Logits (N, C) of every record from an ONNX Runtime session, in order."""
    stop = len(samples)
    parts = [
        session.run(None, feeds(samples, i, min(i + batch, stop)))[0]
        for i in _starts(samples, batch)
    ]
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


def accuracy(logits: np.ndarray, y: torch.Tensor) -> float | None:
    """Share of records whose argmax is the label; None without labels (y = -1)."""
    labels = y.numpy()
    if labels.size == 0 or (labels < 0).any():
        return None
    return float((logits.argmax(1) == labels).mean())


def _starts(samples: Samples, batch: int) -> range:
    return range(0, len(samples), batch)
