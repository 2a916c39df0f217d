"""Predictors: a batch of raw inputs in, class probabilities out. The seam between backends.

    p = load_predictor(Path("runs/cnn-…"), backend="eager", threads=2)
    p = load_predictor(Path("runs/cnn-…"), "onnx", variant="int8-static")  # dlhpc optimize's
    probs = p.predict(np.zeros((4, 1, 28, 28), np.uint8))   # (4, 10) float32, rows sum to 1
    p = load_predictor(Path("runs/bag-…"))                   # a text model
    probs = p.predict(p.join([["a text"], ["two", "more"]]))  # (3, classes)

A predictor pairs an *encoder* (one per input kind: how request items join into one batch and
how a batch becomes the model's arguments) with a *backend* (eager PyTorch or ONNX Runtime,
which runs those arguments). The batcher only joins items and calls ``predict`` in a worker
thread, so text is tokenized there, a whole batch at once (``encode_batch_fast``: Rust, parallel).

Items and batches, by input kind (``len(item)`` is its sample count):

    image   uint8 ndarray (N, C, H, W), raw pixels 0–255 at the model's input size
    text    list[str] of N texts; the model sees CSR ids_T int64 (T,), offsets_B1 int64 (N+1,)

The models standardize pixels themselves (``InputNorm``, or inside the ONNX graph), so no
preprocessing happens here. Models load only from our own safetensors / ONNX files, never pickle:
the run's own (``RUN/model.safetensors``; ``RUN/optimized/onnx/model.onnx`` for ONNX Runtime), or
a variant that ``dlhpc optimize`` wrote to ``RUN/optimized/<variant>/`` — ``int8-static`` and
``int8-dynamic`` are ONNX graphs, ``pruned-*`` PyTorch weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from dlhpc.errors import ConfigError
from dlhpc.models.artifact import SPEC_FILE, load_model, read_spec
from dlhpc.models.spec import ImageInput, ModelSpec, TextInput

OPTIMIZED = Path("optimized")
ONNX_FILE = OPTIMIZED / "onnx" / "model.onnx"
_FILES = {"eager": "model.safetensors", "onnx": "model.onnx"}  # what each backend runs

ModelInput = ImageInput | TextInput


class Predictor(Protocol):
    """What the batcher and the HTTP app need from a model. ``predict`` must be thread-safe."""

    @property
    def backend(self) -> str: ...

    @property
    def input(self) -> ModelInput: ...

    @property
    def labels(self) -> tuple[str, ...]: ...

    def join(self, items: Sequence[Any]) -> Any:
        """Several requests' items → one batch (their samples, in order)."""
        ...

    def predict(self, batch: Any) -> np.ndarray:
        """A batch (see the module docstring) → float32 probabilities (N, classes)."""
        ...


class Encoder(Protocol):
    """One input kind: joining items, and a batch → the model's arguments (in the worker)."""

    ranks: tuple[int, ...]  # of the model's arguments, for checking an ONNX graph

    def join(self, items: Sequence[Any]) -> Any: ...

    def encode(self, batch: Any) -> tuple[np.ndarray, ...]: ...

    def blank(self) -> Any:
        """A one-sample batch for the warm-up pass."""
        ...


class ImageEncoder:
    """uint8 (N, C, H, W) pixels: joined by concatenation, passed through as they are."""

    ranks: tuple[int, ...] = (4,)

    def __init__(self, inp: ImageInput) -> None:
        self.input = inp

    def join(self, items: Sequence[np.ndarray]) -> np.ndarray:
        return items[0] if len(items) == 1 else np.concatenate(items)

    def encode(self, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        x = np.ascontiguousarray(batch)
        return (x if x.flags.writeable else x.copy(),)  # torch wants writable memory

    def blank(self) -> np.ndarray:
        return np.zeros((1, *self.input.shape), np.uint8)


class TextEncoder:
    """Texts, tokenized with the run's own ``tokenizer.json``, the whole batch in one call."""

    ranks: tuple[int, ...] = (1, 1)

    def __init__(self, inp: TextInput, tokenizer: Any) -> None:
        self.input = inp
        self.tokenizer = tokenizer  # tokenizers.Tokenizer: encoding is thread-safe

    @classmethod
    def from_run(cls, run_dir: Path, inp: TextInput) -> TextEncoder:
        from tokenizers import Tokenizer

        path = run_dir / inp.tokenizer
        if not path.is_file():
            raise ConfigError(f"{run_dir}: the text model's {inp.tokenizer} is missing")
        try:
            return cls(inp, Tokenizer.from_file(str(path)))
        except Exception as e:  # tokenizers raises a bare Exception on a malformed file
            first = (str(e).splitlines() or [type(e).__name__])[0][:200]
            raise ConfigError(f"{path}: unreadable tokenizer ({first})") from None

    def join(self, items: Sequence[list[str]]) -> list[str]:
        return items[0] if len(items) == 1 else [t for item in items for t in item]

    def encode(self, batch: list[str]) -> tuple[np.ndarray, ...]:
        """N texts → (ids_T int64, offsets_B1 int64), as ``dlhpc.data.tokenizer.encode_texts``."""
        enc = self.tokenizer.encode_batch_fast(batch, add_special_tokens=False)
        offsets_B1 = np.zeros(len(enc) + 1, dtype=np.int64)
        np.cumsum([len(e.ids) for e in enc], out=offsets_B1[1:])
        ids_T = np.fromiter(
            (i for e in enc for i in e.ids), dtype=np.int64, count=int(offsets_B1[-1])
        )
        return ids_T, offsets_B1

    def blank(self) -> list[str]:
        return ["warm up"]


ENCODERS: dict[type, Callable[[Path, Any], Encoder]] = {
    ImageInput: lambda _, inp: ImageEncoder(inp),
    TextInput: TextEncoder.from_run,
}


def build_encoder(run_dir: Path, spec: ModelSpec) -> Encoder:
    """The encoder for the run's input kind; new kinds register in ``ENCODERS``."""
    make = ENCODERS.get(type(spec.input))
    if make is None:
        raise ConfigError(f"{run_dir}: serving {spec.input.kind} models is not supported")
    return make(run_dir, spec.input)


def _softmax(logits_NK: np.ndarray) -> np.ndarray:
    z = logits_NK.astype(np.float32, copy=False)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


class _SpecPredictor:
    """What every backend reads from the run's spec and encoder."""

    spec: ModelSpec
    encoder: Encoder

    @property
    def input(self) -> ModelInput:
        return self.spec.input

    @property
    def labels(self) -> tuple[str, ...]:
        return self.spec.labels

    def join(self, items: Sequence[Any]) -> Any:
        return self.encoder.join(items)


class EagerPredictor(_SpecPredictor):
    """The run's PyTorch model on CPU, under ``torch.inference_mode``."""

    backend = "eager"

    def __init__(self, model: torch.nn.Module, spec: ModelSpec, encoder: Encoder) -> None:
        self.model = model.eval()
        self.spec = spec
        self.encoder = encoder

    @classmethod
    def from_dir(cls, model_dir: Path, threads: int | None = None) -> EagerPredictor:
        if threads is not None:
            torch.set_num_threads(threads)  # process-wide: all instances share the pool
        model, spec = load_model(model_dir, "cpu")
        if isinstance(spec.input, ImageInput):
            # oneDNN's channels-last convolutions are ~1.5× faster per sample at batch 8–32 on
            # CPU (same at batch 1); for models without convolutions this changes nothing.
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        return cls(model, spec, build_encoder(model_dir, spec))

    def predict(self, batch: Any) -> np.ndarray:
        args = [torch.from_numpy(a) for a in self.encoder.encode(batch)]
        with torch.inference_mode():
            logits = self.model(*args)
            probs = torch.softmax(logits.float(), dim=1)
        return probs.numpy()


# ONNX tensor types → the dtype each argument is cast to before a run.
_ORT_TYPES = {
    "tensor(uint8)": np.uint8,
    "tensor(float)": np.float32,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}


class OnnxPredictor(_SpecPredictor):
    """``RUN/optimized/onnx/model.onnx`` on ONNX Runtime (CPU); labels from ``RUN/model.json``.

    The graph's inputs take the encoder's arguments in order — image graphs ``pixels``
    (N, C, H, W), uint8 or float; text graphs ``ids`` (T,) and ``offsets`` (N+1,), int64 (see
    ``dlhpc.optimize.onnx_export``) — and its first output is logits, or probabilities when
    named ``probabilities``.
    """

    backend = "onnx"

    def __init__(self, session: Any, spec: ModelSpec, encoder: Encoder) -> None:
        self.session = session
        self.spec = spec
        self.encoder = encoder
        inputs = session.get_inputs()
        if len(inputs) != len(encoder.ranks):
            raise ConfigError(
                f"the ONNX model takes {len(inputs)} inputs; a {spec.input.kind} model "
                f"takes {len(encoder.ranks)}"
            )
        for inp, rank in zip(inputs, encoder.ranks, strict=True):
            if inp.shape is not None and len(inp.shape) != rank:
                raise ConfigError(
                    f"ONNX input {inp.name!r} has rank {len(inp.shape)}; expected {rank}"
                )
        self._feeds = [(i.name, _ORT_TYPES.get(i.type, np.float32)) for i in inputs]
        out = session.get_outputs()[0]
        self._output_name: str = out.name
        self._is_probs = out.name == "probabilities"

    @classmethod
    def from_dir(
        cls, model_dir: Path, threads: int | None = None, run_dir: Path | None = None
    ) -> OnnxPredictor:
        """``model_dir/model.onnx``; spec and tokenizer from ``model_dir``, else ``run_dir``."""
        path = model_dir / _FILES["onnx"]
        spec_dir = model_dir if (model_dir / SPEC_FILE).is_file() else (run_dir or model_dir)
        spec = read_spec(spec_dir)
        encoder = build_encoder(spec_dir, spec)
        try:
            import onnxruntime as ort  # type: ignore[import-untyped,unused-ignore]
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
        return cls(session, spec, encoder)

    def predict(self, batch: Any) -> np.ndarray:
        args = self.encoder.encode(batch)
        feeds = {
            name: np.ascontiguousarray(a, dtype=dtype)
            for (name, dtype), a in zip(self._feeds, args, strict=True)
        }
        (out,) = self.session.run([self._output_name], feeds)
        out = np.asarray(out, dtype=np.float32)
        return out if self._is_probs else _softmax(out)


def model_dir(run_dir: Path, backend: str = "eager", variant: str | None = None) -> Path:
    """The folder whose model ``backend`` runs: ``run_dir``, or ``run_dir/optimized/<variant>``.

    ``variant=None`` means the run's own model: its weights (eager), or its fp32 ONNX export
    ``optimized/onnx`` (onnx). Raises ConfigError, in one line, for a run, variant or file that
    is not there, naming the variants that are.
    """
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run directory")
    if variant is None and backend == "eager":
        return run_dir
    if variant is None:
        if not (run_dir / ONNX_FILE).is_file():
            raise ConfigError(
                f"{run_dir}: no ONNX model at {ONNX_FILE}; "
                f"export it first with dlhpc optimize {run_dir} --export onnx"
            )
        return run_dir / ONNX_FILE.parent
    folder = run_dir / OPTIMIZED / variant
    if not folder.is_dir():
        found = sorted(
            p.name for p in (run_dir / OPTIMIZED).glob("*/") if not p.name.startswith(".")
        )
        have = f"it has {', '.join(found)}" if found else "it has none"
        raise ConfigError(
            f"{run_dir}: no variant {variant!r} in {OPTIMIZED}/ ({have}; dlhpc optimize makes them)"
        )
    if not (folder / _FILES[backend]).is_file():
        other = next((b for b, f in _FILES.items() if (folder / f).is_file()), None)
        hint = f"serve it with --backend {other}" if other else "it holds no model"
        raise ConfigError(f"{folder}: variant {variant!r} has no {_FILES[backend]}; {hint}")
    return folder


def load_predictor(
    run_dir: Path, backend: str = "eager", threads: int | None = None, variant: str | None = None
) -> Predictor:
    """The run's model (or its ``variant``) on ``backend``, warmed up with one forward pass."""
    loaders: dict[str, Callable[[Path, int | None, Path], EagerPredictor | OnnxPredictor]] = {
        "eager": lambda d, t, _: EagerPredictor.from_dir(d, t),
        "onnx": OnnxPredictor.from_dir,
    }
    if backend not in loaders:
        raise ConfigError(f"unknown backend {backend!r}; choose from {sorted(loaders)}")
    predictor = loaders[backend](model_dir(run_dir, backend, variant), threads, run_dir)
    probs = predictor.predict(predictor.encoder.blank())  # first call builds kernels
    if probs.shape != (1, len(predictor.labels)):
        raise ConfigError(
            f"{run_dir}: the {backend} model returns {probs.shape[1:]} scores "
            f"for {len(predictor.labels)} labels"
        )
    return predictor
