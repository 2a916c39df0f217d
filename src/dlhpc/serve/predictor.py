"""Predictors: a batch of raw pixels in, class probabilities out. The seam between backends.

    p = load_predictor(Path("runs/cnn-…"), backend="eager", threads=2)
    probs = p.predict(np.zeros((4, 1, 28, 28), np.uint8))   # (4, 10) float32, rows sum to 1

Shapes: x_NCHW uint8 raw pixels 0–255 at the model's input size; probabilities (N, classes).
The models standardize pixels themselves (``InputNorm``, or inside the ONNX graph), so no
preprocessing happens here. Models load only from our own safetensors / ONNX files, never pickle.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from dlhpc.errors import ConfigError
from dlhpc.models.artifact import load_model, read_spec
from dlhpc.models.spec import ImageInput, ModelSpec

ONNX_FILE = Path("optimized") / "onnx" / "model.onnx"


class Predictor(Protocol):
    """What the batcher and the HTTP app need from a model. ``predict`` must be thread-safe."""

    @property
    def backend(self) -> str: ...

    @property
    def input(self) -> ImageInput: ...

    @property
    def labels(self) -> tuple[str, ...]: ...

    def predict(self, x_NCHW: np.ndarray) -> np.ndarray:
        """uint8 (N, C, H, W) → float32 probabilities (N, classes)."""
        ...


def image_input(spec: ModelSpec, where: Path | str) -> ImageInput:
    """The spec's image input; text models come to the server later, through this seam."""
    if not isinstance(spec.input, ImageInput):
        kind = getattr(spec.input, "kind", type(spec.input).__name__)
        raise ConfigError(f"{where}: serving {kind} models is not supported yet (images only)")
    return spec.input


def _softmax(logits_NK: np.ndarray) -> np.ndarray:
    z = logits_NK.astype(np.float32, copy=False)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


class EagerPredictor:
    """The run's PyTorch model on CPU, under ``torch.inference_mode``."""

    backend = "eager"

    def __init__(self, model: torch.nn.Module, spec: ModelSpec) -> None:
        self.model = model.eval()
        self.spec = spec
        self._input = image_input(spec, spec.config.name)

    @classmethod
    def from_run(cls, run_dir: Path, threads: int | None = None) -> EagerPredictor:
        if threads is not None:
            torch.set_num_threads(threads)  # process-wide: all instances share the pool
        model, spec = load_model(run_dir, "cpu")
        return cls(model, spec)

    @property
    def input(self) -> ImageInput:
        return self._input

    @property
    def labels(self) -> tuple[str, ...]:
        return self.spec.labels

    def predict(self, x_NCHW: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x_NCHW)
        if not x.flags.writeable:  # torch wants to own writable memory
            x = x.copy()
        with torch.inference_mode():
            logits = self.model(torch.from_numpy(x))
            probs = torch.softmax(logits.float(), dim=1)
        return probs.numpy()


class OnnxPredictor:
    """``RUN/optimized/onnx/model.onnx`` on ONNX Runtime (CPU); labels from ``RUN/model.json``.

    The graph takes raw pixels (N, C, H, W), uint8 or float, and returns logits — or
    probabilities when its first output is named ``probabilities``.
    """

    backend = "onnx"

    def __init__(self, session: Any, spec: ModelSpec) -> None:
        self.session = session
        self.spec = spec
        self._input = image_input(spec, spec.config.name)
        inp = session.get_inputs()[0]
        self._input_name: str = inp.name
        self._dtype = np.uint8 if inp.type == "tensor(uint8)" else np.float32
        out = session.get_outputs()[0]
        self._output_name: str = out.name
        self._is_probs = out.name == "probabilities"
        rank = len(inp.shape) if inp.shape is not None else 4
        if rank != 4:
            raise ConfigError(f"ONNX model takes a rank-{rank} input; expected (N, C, H, W)")

    @classmethod
    def from_run(cls, run_dir: Path, threads: int | None = None) -> OnnxPredictor:
        spec = read_spec(run_dir)
        path = run_dir / ONNX_FILE
        if not path.is_file():
            raise ConfigError(
                f"{run_dir}: no ONNX model at {ONNX_FILE}; "
                f"export it first with dlhpc optimize {run_dir} --export onnx"
            )
        try:
            import onnxruntime as ort  # type: ignore[import-untyped]
        except ImportError:
            raise ConfigError(
                "the onnx backend needs onnxruntime: pip install onnxruntime"
            ) from None
        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own untyped errors on bad files
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ConfigError(f"{path}: not a loadable ONNX model ({first})") from None
        return cls(session, spec)

    @property
    def input(self) -> ImageInput:
        return self._input

    @property
    def labels(self) -> tuple[str, ...]:
        return self.spec.labels

    def predict(self, x_NCHW: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x_NCHW, dtype=self._dtype)
        (out,) = self.session.run([self._output_name], {self._input_name: x})
        out = np.asarray(out, dtype=np.float32)
        return out if self._is_probs else _softmax(out)


def load_predictor(run_dir: Path, backend: str = "eager", threads: int | None = None) -> Predictor:
    """The run's model on ``backend``, warmed up with one forward pass."""
    loaders: dict[str, Callable[[Path, int | None], Predictor]] = {
        "eager": EagerPredictor.from_run,
        "onnx": OnnxPredictor.from_run,
    }
    if backend not in loaders:
        raise ConfigError(f"unknown backend {backend!r}; choose from {sorted(loaders)}")
    predictor: Predictor = loaders[backend](run_dir, threads)
    c, h, w = predictor.input.shape
    probs = predictor.predict(np.zeros((1, c, h, w), np.uint8))  # first call builds kernels
    if probs.shape != (1, len(predictor.labels)):
        raise ConfigError(
            f"{run_dir}: the {backend} model returns {probs.shape[1:]} scores "
            f"for {len(predictor.labels)} labels"
        )
    return predictor
