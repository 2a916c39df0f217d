"""int8 post-training quantization of an exported fp32 ONNX graph, with ONNX Runtime's tools.

    quantize_dynamic_onnx(Path("fp32.onnx"), Path("int8.onnx"))               # any model
    quantize_static_onnx(Path("fp32.onnx"), Path("int8.onnx"), train_images)  # image models

- dynamic: int8 weights for MatMul/Gemm (the Linear layers), LSTM and Gather (the embedding
  tables); activations are quantized on the fly per call. No calibration data.
- static: QDQ format, int8 per-channel weights and uint8 activations whose ranges come from
  calibration batches of training images (MinMax). Convolutions run as int8 kernels.

Why ONNX Runtime and not ``torch.ao.quantization``: ``torch.ao`` is deprecated (its successor,
torchao, is not a dependency) and its int8 modules run only in eager PyTorch. Measured on the
digits CNN (1 thread, interleaved; ``benchmarks/optimize_cpu_20261128.md``), ORT's static int8
graph answered one image 4–5.5× sooner than torch.ao's static int8 model and served 1.4–1.7×
its batch-256 throughput. Nothing here imports ``torch.ao``.

``reduce_range``: weights use 7 bits. On x86 CPUs without VNNI (AVX2, AVX-512 without
VNNI) the u8×s8 kernels add pairs of products in 16 bits and saturate; measured on the
digits CNN, static int8 lost 2 points with 8-bit weights and none with 7-bit ones.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dlhpc.errors import ConfigError
from dlhpc.optimize.runtime import import_onnxruntime
from dlhpc.optimize.samples import Samples, feeds

DYNAMIC_OPS = ["MatMul", "Gemm", "Gather", "LSTM"]
CALIBRATION_BATCH = 32  # every calibration batch has the same size (histogram methods need it)
CALIBRATION_SAMPLES = 512


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ORT's quantizer logs advice at WARNING through the root logger; keep it off the console."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _preprocess(src: Path, work: Path) -> Path:
    """Shape inference and graph fusions before quantization, as ONNX Runtime recommends."""
    import_onnxruntime()
    from onnxruntime.quantization.shape_inference import (  # type: ignore[import-untyped,unused-ignore]
        quant_pre_process,
    )

    out = work / "pre.onnx"
    try:
        quant_pre_process(str(src), str(out), skip_symbolic_shape=False)
    except Exception:  # symbolic shape inference gives up on some graphs (the Transformer's)
        quant_pre_process(str(src), str(out), skip_symbolic_shape=True)
    return out


def quantize_dynamic_onnx(src: Path, dest: Path) -> None:
    """int8 weights, activations quantized per call: Linear, LSTM and embedding tables."""
    import_onnxruntime()
    from onnxruntime.quantization import (  # type: ignore[import-untyped,unused-ignore]
        QuantType,
        quantize_dynamic,
    )

    with tempfile.TemporaryDirectory(dir=dest.parent) as work, _quiet():
        pre = _preprocess(src, Path(work))
        quantize_dynamic(
            str(pre),
            str(dest),
            op_types_to_quantize=DYNAMIC_OPS,
            per_channel=False,
            reduce_range=True,
            weight_type=QuantType.QInt8,
        )


class _Calibration:
    """``CalibrationDataReader``: fixed-size batches of training records, then None."""

    def __init__(self, samples: Samples, batch: int, limit: int) -> None:
        n = min(len(samples), limit) // batch * batch
        self._batches = iter(range(0, n, batch))
        self._samples = samples
        self._batch = batch

    def get_next(self) -> dict[str, np.ndarray] | None:
        start = next(self._batches, None)
        return None if start is None else feeds(self._samples, start, start + self._batch)

    def rewind(self) -> None:  # part of ORT's reader protocol; one pass is all MinMax needs
        pass


def quantize_static_onnx(
    src: Path,
    dest: Path,
    calibration: Samples,
    batch: int = CALIBRATION_BATCH,
    limit: int = CALIBRATION_SAMPLES,
) -> None:
    """QDQ int8 (per-channel weights, uint8 activations) calibrated on ``calibration``."""
    if len(calibration) < batch:
        raise ConfigError(
            f"static quantization calibrates on training samples: need at least {batch}, "
            f"got {len(calibration)}"
        )
    import_onnxruntime()
    from onnxruntime.quantization import (  # type: ignore[import-untyped,unused-ignore]
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    reader: Any = _Calibration(calibration, batch, limit)
    with tempfile.TemporaryDirectory(dir=dest.parent) as work, _quiet():
        pre = _preprocess(src, Path(work))
        quantize_static(
            str(pre),
            str(dest),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
