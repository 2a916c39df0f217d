"""Issue 7's targets for the tutorial CNN on digits, measured side by side on this CPU.

Run it (a trained run; ``dlhpc train cnn --data digits`` makes one)::

    .venv/bin/python benchmarks/optimize_cnn_cpu.py --run runs/cnn-… --threads 1 2

Per thread count, two interleaved measurements (dlhpc.optimize.measure: every runner in turn
each round, order rotating):

1. ``optimize_run`` as ``dlhpc optimize RUN --export onnx --quantize static --quantize dynamic
   --prune 0.5`` does it: fp32 eager and ONNX Runtime, int8 static/dynamic on ONNX Runtime,
   pruned eager and ONNX Runtime.
2. The choice of quantizer: int8 in eager PyTorch through ``torch.ao.quantization`` (dynamic
   Linear, and static x86/fbgemm eager-mode for the whole CNN; both deprecated, skipped when
   gone) next to fp32 eager and ONNX Runtime's int8 graphs.

Prints Markdown; benchmarks/optimize_cpu_<date>.md is written from it by hand.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlhpc.cli.optimize import load_samples
from dlhpc.models.artifact import load_model
from dlhpc.optimize import MeasureSettings, OptimizeOptions, export_onnx, optimize_run
from dlhpc.optimize.measure import (
    Runner,
    eager_runner,
    measure_interleaved,
    session_runner,
    torch_threads,
)
from dlhpc.optimize.quantize import quantize_dynamic_onnx, quantize_static_onnx
from dlhpc.optimize.report import table
from dlhpc.optimize.runtime import accuracy, ort_session, predict_eager, predict_session


def torch_ao_variants(model: nn.Module, calibration: Any) -> dict[str, nn.Module]:
    """int8 eager-PyTorch twins made with the deprecated torch.ao flow (empty if it is gone)."""
    out: dict[str, nn.Module] = {}
    try:
        import torch.ao.quantization as tq
    except ImportError:
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["torch.ao dynamic int8 (Linear)"] = tq.quantize_dynamic(
            model, {nn.Linear}, dtype=torch.qint8
        )
        try:
            norm, body = model.norm, model.body  # type: ignore[union-attr]
            wrapped = nn.Sequential(norm, tq.QuantStub(), body, tq.DeQuantStub()).eval()
            wrapped.qconfig = tq.get_default_qconfig("x86")  # type: ignore[assignment]
            prepared = tq.prepare(wrapped)
            with torch.no_grad():
                for i in range(0, min(len(calibration), 512), 32):
                    prepared(*calibration.inputs(i, i + 32))
            out["torch.ao static int8 (x86, eager mode)"] = tq.convert(prepared)
        except Exception as e:  # report and go on: this row is optional
            print(f"torch.ao static: {type(e).__name__}: {e}")
    return out


def quantizer_comparison(run: Path, test: Any, calibration: Any, threads: int) -> list[str]:
    model, _ = load_model(run)
    settings = MeasureSettings()
    with tempfile.TemporaryDirectory() as d, torch_threads(threads):
        work = Path(d)
        export_onnx(model, test, work / "fp32.onnx", threads)
        quantize_static_onnx(work / "fp32.onnx", work / "static.onnx", calibration)
        quantize_dynamic_onnx(work / "fp32.onnx", work / "dynamic.onnx")
        eager = {"fp32 eager": model, **torch_ao_variants(model, calibration)}
        sessions = {
            f"ONNX Runtime {n}": ort_session(work / f"{n}.onnx", threads)
            for n in ("fp32", "static", "dynamic")
        }
        runners: dict[str, Runner] = {n: eager_runner(m, test, settings) for n, m in eager.items()}
        runners |= {n: session_runner(s, test, settings) for n, s in sessions.items()}
        t = measure_interleaved(runners, settings)
        acc = {n: accuracy(predict_eager(m, test).numpy(), test.y) for n, m in eager.items()}
        acc |= {n: accuracy(predict_session(s, test), test.y) for n, s in sessions.items()}
    ref = t["fp32 eager"]
    lines = [
        "| runner | accuracy | p50 ms (b=1) | p99 ms (b=1) | /s (b=256) | b=1 × fp32 eager |",
        "|---|---|---|---|---|---|",
    ]
    for n, x in t.items():
        lines.append(
            f"| {n} | {acc[n]:.4f} | {x.p50_ms:.3f} | {x.p99_ms:.3f} | {x.throughput:,.0f} | "
            f"{ref.p50_ms / x.p50_ms:.2f}× |"
        )
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    a = p.parse_args()
    test, calibration, data = load_samples(a.run, None, calibrate=True)
    for threads in a.threads:
        opts = OptimizeOptions(
            quantize=("static", "dynamic"), prune=0.5, export_onnx=True, threads=threads
        )
        result = optimize_run(a.run, opts, test, calibration, data)
        print(f"\n### threads = {threads}: dlhpc optimize\n")
        print("\n".join(table(result)))
        print(f"\n### threads = {threads}: quantizers\n")
        print("\n".join(quantizer_comparison(a.run, test, calibration, threads)))


if __name__ == "__main__":
    main()
