"""``RUN/optimized/report.md``: one table of the variants, then how it was measured.

write_report(Path("RUN/optimized/report.md"), result)   # result: optimize_run's dict
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

from dlhpc.fsio import atomic_write_text

WHY_ORT = (
    "int8 variants are ONNX Runtime graphs: `torch.ao.quantization` is deprecated, its int8 "
    "modules run only in eager PyTorch, and on the 2-core benchmark machine (1 thread) ONNX "
    "Runtime's static int8 CNN answered one image 4–5.5× sooner and served 1.4–1.7× the "
    "batch-256 throughput of torch.ao's static int8 CNN (benchmarks/optimize_cpu_20261128.md)."
)


def _num(v: float | None, fmt: str = "{:.4f}") -> str:
    return "—" if v is None else fmt.format(v)


def _timing(t: dict[str, Any] | None) -> tuple[str, str]:
    if t is None:
        return "—", "—"
    return f"{t['p50_ms']:.3f} / {t['p99_ms']:.3f}", f"{t['throughput']:,.0f}"


def _speed(row: dict[str, Any], key: str) -> str:
    ratios = row[key]
    parts = [f"{ratios[k]:.2f}×" if k in ratios else "—" for k in ("eager", "onnxruntime")]
    return " / ".join(parts)


def table(result: dict[str, Any]) -> list[str]:
    lines = [
        "| variant | file | size | × fp32 | params | non-zeros | accuracy | Δ pts | "
        "eager p50 / p99 ms (b=1) | eager /s (b=256) | ORT p50 / p99 ms (b=1) | "
        "ORT /s (b=256) | b=1 speed-up eager / ORT | b=256 speed-up eager / ORT |",
        "|" + "---|" * 14,
    ]
    for r in result["variants"]:
        e50, e_thr = _timing(r["eager"])
        o50, o_thr = _timing(r["onnxruntime"])
        lines.append(
            f"| {r['name']} | `{r['path']}` | {r['file_bytes'] / 1024:,.1f} KiB | "
            f"{r['size_vs_fp32']:.2f} | {r['params']:,} | {r['nonzeros']:,} | "
            f"{_num(r['accuracy'])} | {_num(r['accuracy_delta_pts'], '{:+.2f}')} | "
            f"{e50} | {e_thr} | {o50} | {o_thr} | {_speed(r, 'speedup_b1_vs_fp32_eager')} | "
            f"{_speed(r, 'throughput_vs_fp32_eager')} |"
        )
    return lines


def _parity_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    for r in result["variants"]:
        p = r["parity"]
        if p is not None and r["name"] != "onnx":
            lines.append(
                f"- {r['name']}: ONNX Runtime vs eager PyTorch on {p['samples']} records: "
                f"max |Δlogit| {p['max_abs_diff']:.2e} (tolerance {p['tolerance']:.1e}), "
                f"argmax agreement {p['argmax_agreement']:.2%}"
            )
        elif r["agreement_with_fp32"] is not None and r["name"].startswith("int8"):
            lines.append(
                f"- {r['name']}: top class agrees with fp32 on {r['agreement_with_fp32']:.2%}"
            )
    return lines


def render(result: dict[str, Any]) -> str:
    m = result["measure"]
    data = result["data"] or "synthetic inputs (no labelled data: accuracy not measured)"
    lines = [
        f"# Optimized variants of `{result['run']}` ({result['model']})",
        "",
        *table(result),
        "",
        "## Variants",
        "",
        *[f"- **{r['name']}**: {r['what']}" for r in result["variants"]],
        "",
        "## Parity",
        "",
        *_parity_lines(result),
        "",
        "## Method",
        "",
        f"- data: {data}; {result['test_samples']} test records for accuracy and parity.",
        f"- threads: {result['threads']} for PyTorch (`torch.set_num_threads`) and for ONNX "
        "Runtime (intra-op; inter-op 1; idle spinning off so neither steals the other's cores).",
        f"- timing: {m['rounds']} interleaved rounds; per round and runner {m['per_round']} "
        f"single-record calls (p50/p99 latency) and one batch of {m['batch']} records "
        "(throughput = batch / median time). Runner order rotates each round; speed-ups are "
        "ratios to fp32 eager PyTorch measured in the same rounds.",
        "- size: the variant's model file; × fp32 is against the run's `model.safetensors`.",
        "- non-zeros: parameters ≠ 0 of the PyTorch model the variant was made from.",
        f"- {WHY_ORT}",
        f"- machine: {platform.machine()}, {os.cpu_count()} logical CPUs, Python "
        f"{platform.python_version()}, torch {torch.__version__}, onnxruntime "
        f"{result.get('onnxruntime_version', '?')}.",
        "",
    ]
    return "\n".join(lines)


def write_report(path: Path, result: dict[str, Any]) -> None:
    atomic_write_text(path, render(result))


def summary_lines(result: dict[str, Any]) -> list[str]:
    """A compact console table: size, accuracy and batch-1 latency of every variant."""
    head = f"{'variant':<24} {'size':>6} {'accuracy':>9} {'Δ pts':>6} {'eager ms':>9} {'ORT ms':>8}"
    lines = [head]
    for r in result["variants"]:
        e, o = r["eager"], r["onnxruntime"]
        lines.append(
            f"{r['name']:<24} {r['size_vs_fp32']:>5.2f}× {_num(r['accuracy']):>9} "
            f"{_num(r['accuracy_delta_pts'], '{:+.2f}'):>6} "
            f"{_num(e and e['p50_ms'], '{:.3f}'):>9} {_num(o and o['p50_ms'], '{:.3f}'):>8}"
        )
    lines.append(f"(size × fp32 file; latency p50 at batch 1, {result['threads']} thread(s))")
    return lines
