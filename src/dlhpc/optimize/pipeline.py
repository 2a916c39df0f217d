"""``optimize_run``: every requested variant of a run, checked, measured side by side, reported.

    opts = OptimizeOptions(quantize=("static",), prune=0.5, export_onnx=True, threads=2)
    result = optimize_run(Path("runs/cnn-…"), opts, test=test_samples, calibration=train_samples)
    result["variants"][0]["onnxruntime"]["p50_ms"]

The caller loads the data (this layer may not import ``data/``) and hands over samples: the
test split for parity, accuracy and timing; training samples for static calibration. Without
labelled data pass synthetic samples: parity and timing still run, accuracy is left out.

Every variant starts from the fp32 run; nothing is chained (a pruned model is not also
quantized), so each accuracy delta belongs to one transform. The fp32 model is always exported
to ONNX (it is the source of the int8 graphs and the ONNX Runtime baseline); it is kept as the
``onnx`` variant only with ``export_onnx``.
"""

from __future__ import annotations

import contextlib
import copy
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from dlhpc.errors import ConfigError
from dlhpc.fsio import atomic_write_json
from dlhpc.models import ImageInput, ModelSpec
from dlhpc.models.artifact import WEIGHTS_FILE, load_model
from dlhpc.optimize.files import (
    ONNX_FILE,
    OPTIMIZED,
    commit,
    new_staging,
    onnx_variant_info,
    write_spec,
    write_torch_variant,
)
from dlhpc.optimize.measure import (
    MeasureSettings,
    Runner,
    Timing,
    eager_runner,
    measure_interleaved,
    session_runner,
    torch_threads,
)
from dlhpc.optimize.onnx_export import ExportError, Parity, compare_logits, export_onnx, file_size
from dlhpc.optimize.prune import apply_magnitude_pruning, check_amount, count_nonzeros
from dlhpc.optimize.quantize import quantize_dynamic_onnx, quantize_static_onnx
from dlhpc.optimize.report import write_report
from dlhpc.optimize.runtime import (
    accuracy,
    import_onnxruntime,
    ort_session,
    predict_eager,
    predict_session,
)
from dlhpc.optimize.samples import Samples

QUANTIZE_MODES = ("dynamic", "static")


@dataclass(frozen=True)
class OptimizeOptions:
    quantize: tuple[str, ...] = ()  # any of QUANTIZE_MODES
    prune: float | None = None  # share of weights (or channels) to zero
    prune_structured: bool = False
    export_onnx: bool = False
    threads: int = 1  # PyTorch intra-op threads and ONNX Runtime intra-op threads alike
    measure: MeasureSettings = field(default_factory=MeasureSettings)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.quantize) - set(QUANTIZE_MODES))
        if unknown:
            raise ConfigError(
                f"unknown --quantize mode {unknown[0]!r}; choose from {QUANTIZE_MODES}"
            )
        if self.prune is not None:
            check_amount(self.prune)
        elif self.prune_structured:
            raise ConfigError("--prune-structured needs --prune AMOUNT (the share of channels)")
        if self.threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {self.threads}")
        if not (self.quantize or self.prune is not None or self.export_onnx):
            raise ConfigError("nothing to do: give --quantize, --prune and/or --export onnx")


@dataclass
class Variant:
    name: str
    what: str  # one line for the report
    path: str  # its model file, relative to the run directory
    file_bytes: int
    params: int
    nonzeros: int
    model: nn.Module | None = None  # eager PyTorch
    session: Any = None  # ONNX Runtime
    ort_key: str | None = None  # whose ONNX Runtime timing this row shows
    parity: Parity | None = None


@dataclass(frozen=True)
class _Context:
    run_dir: Path
    spec: ModelSpec
    test: Samples
    staging: Path
    threads: int


def _variant_path(name: str, file: str) -> str:
    return f"{OPTIMIZED}/{name}/{file}"


def _baseline(
    run_dir: Path, model: nn.Module, test: Samples, staging: Path, threads: int
) -> Variant:
    onnx_path = staging / "onnx" / ONNX_FILE
    onnx_path.parent.mkdir()
    parity = export_onnx(model, test, onnx_path, threads)
    params, nonzeros = count_nonzeros(model)
    return Variant(
        "fp32", "the run: eager PyTorch; ONNX Runtime runs its fp32 ONNX graph", WEIGHTS_FILE,
        file_size(run_dir / WEIGHTS_FILE), params, nonzeros, model,
        ort_session(onnx_path, threads), "fp32", parity,
    )  # fmt: skip


def _exported(
    base: Variant, spec: ModelSpec, run_dir: Path, test: Samples, staging: Path
) -> Variant:
    assert base.parity is not None
    info = {**onnx_variant_info("onnx", test.input_names), "parity": base.parity.as_dict()}
    write_spec(staging / "onnx", spec, run_dir, info)
    what = "fp32 ONNX graph (dynamic batch), checked against eager PyTorch"
    size = file_size(staging / "onnx" / ONNX_FILE)
    return Variant(
        "onnx", what, _variant_path("onnx", ONNX_FILE), size, base.params, base.nonzeros,
        None, base.session, "fp32", base.parity,
    )  # fmt: skip


def _quantized(mode: str, base: Variant, ctx: _Context, calibration: Samples | None) -> Variant:
    name = f"int8-{mode}"
    path = ctx.staging / name / ONNX_FILE
    path.parent.mkdir()
    src = ctx.staging / "onnx" / ONNX_FILE
    if mode == "static":
        assert calibration is not None
        quantize_static_onnx(src, path, calibration)
        what = "int8 static QDQ (ONNX Runtime): per-channel weights, calibrated activations"
    else:
        quantize_dynamic_onnx(src, path)
        what = "int8 dynamic (ONNX Runtime): int8 weights, activations quantized per call"
    write_spec(path.parent, ctx.spec, ctx.run_dir, onnx_variant_info(name, ctx.test.input_names))
    return Variant(
        name, what, _variant_path(name, ONNX_FILE), file_size(path), base.params,
        base.nonzeros, None, ort_session(path, ctx.threads), name,
    )  # fmt: skip


def _pruned(amount: float, structured: bool, base: Variant, ctx: _Context) -> Variant:
    assert base.model is not None
    model = copy.deepcopy(base.model)
    stats = apply_magnitude_pruning(model, amount, structured)
    name = f"pruned-{amount * 100:g}" + ("-structured" if structured else "")
    info = {"name": name, "pruning": stats.as_dict()}
    weights = write_torch_variant(ctx.staging / name, model, ctx.spec, ctx.run_dir, info)
    session, parity = None, None
    try:  # for the ONNX Runtime column only: this graph is not kept
        probe = ctx.staging / f".{name}.onnx"
        parity = export_onnx(model, ctx.test, probe, ctx.threads)
        session = ort_session(probe, ctx.threads)
    except ExportError:
        pass
    kind = "structured, per output channel" if structured else "unstructured"
    what = f"magnitude pruning ({kind}): {amount:g} of {len(stats.tensors)} tensors zeroed"
    return Variant(
        name, what, _variant_path(name, WEIGHTS_FILE), file_size(weights), stats.params,
        stats.nonzeros, model, session, name if session is not None else None, parity,
    )  # fmt: skip


def _check_request(opts: OptimizeOptions, spec: ModelSpec, calibration: Samples | None) -> None:
    if "static" not in opts.quantize:
        return
    if not isinstance(spec.input, ImageInput):
        raise ConfigError("--quantize static is for image models; use --quantize dynamic for text")
    if calibration is None or len(calibration) == 0:
        raise ConfigError("--quantize static calibrates on training samples: give --data SRC")


def _build(
    opts: OptimizeOptions, ctx: _Context, model: nn.Module, calibration: Samples | None
) -> list[Variant]:
    base = _baseline(ctx.run_dir, model, ctx.test, ctx.staging, ctx.threads)
    variants = [base]
    if opts.export_onnx:
        variants.append(_exported(base, ctx.spec, ctx.run_dir, ctx.test, ctx.staging))
    variants += [_quantized(mode, base, ctx, calibration) for mode in opts.quantize]
    if opts.prune is not None:
        variants.append(_pruned(opts.prune, opts.prune_structured, base, ctx))
    return variants


def _measure(
    variants: list[Variant], test: Samples, settings: MeasureSettings
) -> dict[str, Timing]:
    runners: dict[str, Runner] = {}
    for v in variants:
        if v.model is not None:
            runners[f"{v.name}/eager"] = eager_runner(v.model, test, settings)
        if v.session is not None and v.ort_key == v.name:
            runners[f"{v.name}/onnxruntime"] = session_runner(v.session, test, settings)
    return measure_interleaved(runners, settings)


def _ratios(timings: dict[str, Timing | None], ref: Timing) -> dict[str, dict[str, float]]:
    there = {k: t for k, t in timings.items() if t is not None}
    return {
        "speedup_b1_vs_fp32_eager": {k: ref.p50_ms / t.p50_ms for k, t in there.items()},
        "throughput_vs_fp32_eager": {k: t.throughput / ref.throughput for k, t in there.items()},
    }


def _rows(
    variants: list[Variant], test: Samples, timings: dict[str, Timing]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    ref_logits = predict_eager(variants[0].model, test).numpy() if variants[0].model else None
    for v in variants:
        logits = (
            predict_eager(v.model, test).numpy() if v.model else predict_session(v.session, test)
        )
        acc = accuracy(logits, test.y)
        acc0 = rows[0]["accuracy"] if rows else acc
        t = {
            "eager": timings.get(f"{v.name}/eager"),
            "onnxruntime": timings.get(f"{v.ort_key}/onnxruntime"),
        }
        rows.append({
            "name": v.name, "what": v.what, "path": v.path, "file_bytes": v.file_bytes,
            "size_vs_fp32": v.file_bytes / variants[0].file_bytes,
            "params": v.params, "nonzeros": v.nonzeros,
            "accuracy": acc,
            "accuracy_delta_pts": None if acc is None or acc0 is None else (acc - acc0) * 100,
            "agreement_with_fp32": compare_logits(ref_logits, logits).argmax_agreement
            if ref_logits is not None else None,
            "parity": v.parity.as_dict() if v.parity is not None else None,
            **{k: x.as_dict() if x is not None else None for k, x in t.items()},
            **_ratios(t, timings["fp32/eager"]),
        })  # fmt: skip
    return rows


def optimize_run(
    run_dir: Path,
    opts: OptimizeOptions,
    test: Samples,
    calibration: Samples | None = None,
    data: str | None = None,
) -> dict[str, Any]:
    """Make, check, measure and write the variants of ``opts``; return the report as a dict."""
    model, spec = load_model(run_dir)
    _check_request(opts, spec, calibration)
    out = run_dir / OPTIMIZED
    staging = new_staging(out)
    try:
        ctx = _Context(run_dir, spec, test, staging, opts.threads)
        with torch_threads(opts.threads):
            variants = _build(opts, ctx, model, calibration)
            rows = _rows(variants, test, _measure(variants, test, opts.measure))
        commit(staging, out, [v.name for v in variants[1:]])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        with contextlib.suppress(OSError):  # a first attempt that failed leaves no empty folder
            out.rmdir()
    result = {
        "run": str(run_dir),
        "model": spec.config.name,
        "data": data,
        "test_samples": len(test),
        "threads": opts.threads,
        "onnxruntime_version": import_onnxruntime().__version__,
        "measure": asdict(opts.measure),
        "variants": rows,
        "report": str(out / "report.md"),
    }
    atomic_write_json(out / "report.json", result)
    write_report(out / "report.md", result)
    return result
