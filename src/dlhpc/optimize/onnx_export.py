"""ONNX export with a dynamic batch axis, kept only when ONNX Runtime matches eager PyTorch.

    parity = export_onnx(model, test_samples, Path("out/model.onnx"), threads=2)
    parity.max_abs_diff, parity.argmax_agreement          # checked on every test record

Image graphs take raw uint8 pixels ``pixels (N, C, H, W)`` (standardization is the model's
first layer, so it is in the graph); text graphs take the CSR pair ``ids (T,)``,
``offsets (N+1,)``, both int64 (tokenize with the run's ``tokenizer.json``). Output:
``logits (N, C)`` float32.

Exporter: the TorchScript tracer (``dynamo=False``), opset 17. Measured with torch 2.13: it
exports all five models in under a second each; the ``torch.export`` exporter (the default,
needs ``onnxscript``) takes 4–17 s per model and fails on the LSTM's data-dependent length.
In a trial the forwards of ``graphs.py`` for the CNN, MLP, bag and Transformer also went
through ``torch.export``; the LSTM's did not (its padded length is data-dependent). Switching
is the ``dynamo=`` flag in ``_export``, without the ``index_add`` symbolic (which only fixes the
TorchScript exporter's translation).
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dlhpc.errors import DlhpcError
from dlhpc.optimize.graphs import export_graph
from dlhpc.optimize.runtime import ort_session, predict_eager, predict_session
from dlhpc.optimize.samples import IMAGE_INPUTS, OUTPUT, Samples

OPSET = 17  # LayerNormalization (17) and ScatterElements with reduction="add" (16)
EXAMPLE_RECORDS = 3  # traced with a small batch; every size in the graph stays symbolic


class ExportError(DlhpcError):
    """An export that does not match eager PyTorch (or cannot be produced)."""


@dataclass(frozen=True)
class Parity:
    samples: int
    max_abs_diff: float  # of the logits, over every record
    argmax_agreement: float  # share of records with the same top class
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance and self.argmax_agreement >= 0.99

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def compare_logits(eager: np.ndarray, other: np.ndarray, rel_tol: float = 1e-4) -> Parity:
    """Max |Δlogit| and argmax agreement; the tolerance scales with the logits' size."""
    if eager.shape != other.shape:
        return Parity(int(eager.shape[0]), math.inf, 0.0, 0.0)
    n = int(eager.shape[0])
    if n == 0:
        return Parity(0, 0.0, 1.0, rel_tol)
    diff = float(np.abs(eager - other).max())
    agree = float((eager.argmax(1) == other.argmax(1)).mean())
    tol = rel_tol * max(1.0, float(np.abs(eager).max()))
    return Parity(n, diff if math.isfinite(diff) else math.inf, agree, tol)


def dynamic_axes(names: tuple[str, ...]) -> dict[str, dict[int, str]]:
    if names == IMAGE_INPUTS:
        axes = {names[0]: {0: "batch"}}
    else:
        axes = {names[0]: {0: "tokens"}, names[1]: {0: "batch_plus_1"}}
    return {**axes, OUTPUT: {0: "batch"}}


def _index_add_rows(g: Any, data: Any, dim: Any, index: Any, source: Any, alpha: Any) -> Any:
    """``index_add(0, index, source)`` as ScatterND(reduction="add"): whole rows, duplicates add.

    The built-in translation emits ScatterElements without a reduction, which keeps one of
    several updates to the same row. Only dim 0 and alpha 1 occur in ``graphs.py``.
    """
    rows = g.op("Unsqueeze", index, g.op("Constant", value_t=torch.tensor([1])))
    return g.op("ScatterND", data, rows, source, reduction_s="add")


def trace_to_onnx(
    graph: nn.Module, args: tuple[torch.Tensor, ...], names: tuple[str, ...], path: Path
) -> None:
    """Trace ``graph`` on ``args`` and write ONNX to ``path`` (every axis in ``dynamic_axes``)."""
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter warns that it is deprecated, and the tracer about Python
        # values it sees; parity below is the check that matters.
        warnings.simplefilter("ignore")
        api: Any = torch.onnx  # the (un)register functions are public, not in its __all__
        api.register_custom_op_symbolic("aten::index_add", _index_add_rows, OPSET)
        try:
            _export(graph, args, names, path)
        finally:
            api.unregister_custom_op_symbolic("aten::index_add", OPSET)


def _export(
    graph: nn.Module, args: tuple[torch.Tensor, ...], names: tuple[str, ...], path: Path
) -> None:
    torch.onnx.export(
        graph,
        args,
        str(path),
        input_names=list(names),
        output_names=[OUTPUT],
        dynamic_axes=dynamic_axes(names),
        opset_version=OPSET,
        do_constant_folding=True,
        dynamo=False,  # the TorchScript exporter: see the module docstring
    )


def export_onnx(
    model: nn.Module, samples: Samples, path: Path, threads: int, rel_tol: float = 1e-4
) -> Parity:
    """Export ``model`` to ``path`` and check it on ``samples``; on a mismatch remove it, raise.

    The caller writes ``path`` inside a staging directory: nothing reaches the variant's
    final place unless this returns.
    """
    if len(samples) == 0:
        raise ExportError("no samples to check the export on")
    args = samples.inputs(0, min(EXAMPLE_RECORDS, len(samples)))
    try:
        trace_to_onnx(export_graph(model), args, samples.input_names, path)
        got = predict_session(ort_session(path, threads), samples)
    except DlhpcError:
        path.unlink(missing_ok=True)
        raise
    except Exception as e:  # the tracer and ONNX Runtime raise many kinds; report one line
        path.unlink(missing_ok=True)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ExportError(f"ONNX export failed: {first}") from None
    parity = compare_logits(predict_eager(model, samples).numpy(), got, rel_tol)
    if not parity.passed:
        path.unlink(missing_ok=True)
        raise ExportError(
            f"ONNX export failed the parity check, nothing written: max |Δlogit| "
            f"{parity.max_abs_diff:.3g} (tolerance {parity.tolerance:.3g}), argmax agreement "
            f"{parity.argmax_agreement:.2%} on {parity.samples} records"
        )
    return parity


def file_size(path: Path) -> int:
    return os.path.getsize(path)
