"""Model → model transforms (int8 quantization, magnitude pruning) and the ONNX exporter.

Each output is checked: an ONNX export must match eager PyTorch on the test records or it is
not written; int8 and pruned variants report accuracy and agreement against fp32. The CLI::

    dlhpc optimize runs/cnn-… --export onnx --quantize static --prune 0.5 --data digits

and from Python (the caller loads the data; this layer never imports ``data/`` or ``engine/``)::

    from dlhpc.optimize import ImageSamples, OptimizeOptions, optimize_run
    result = optimize_run(run_dir, OptimizeOptions(export_onnx=True), test=ImageSamples(x, y))
"""

from dlhpc.optimize.measure import MeasureSettings
from dlhpc.optimize.onnx_export import ExportError, Parity, export_onnx
from dlhpc.optimize.pipeline import QUANTIZE_MODES, OptimizeOptions, optimize_run
from dlhpc.optimize.prune import PruneStats, apply_magnitude_pruning, count_nonzeros
from dlhpc.optimize.samples import ImageSamples, Samples, TokenSamples

__all__ = [
    "QUANTIZE_MODES",
    "ExportError",
    "ImageSamples",
    "MeasureSettings",
    "OptimizeOptions",
    "Parity",
    "PruneStats",
    "Samples",
    "TokenSamples",
    "apply_magnitude_pruning",
    "count_nonzeros",
    "export_onnx",
    "optimize_run",
]
