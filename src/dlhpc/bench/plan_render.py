"""A plan for people: rich tables of the needs, the projections and the recommendation.

    from dlhpc.bench.plan_render import render_plan
    render_plan(run_plan(DataConfig("digits"), ModelConfig("cnn")))

Every projected figure is marked as an estimate (``~``); the assumptions are printed with it.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dlhpc.bench.plan_roofline import hours, ms


def si(x: float | None, unit: str) -> str:
    if x is None:
        return "—"
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}"


def nbytes(n: float) -> str:
    return f"{si(n, 'B')} ({int(n):,} B)" if n < 1e9 else si(n, "B")


def _needs_table(plan: dict[str, Any]) -> Table:
    m, c = plan["memory"], plan["calibration"]
    t = Table(title=f"{plan['model']} on {plan['data']}: what one rank needs (measured)",
              show_header=False, title_justify="left")  # fmt: skip
    t.add_column(style="bold")
    t.add_column()
    rows = [
        ("parameters", f"{plan['params']:,} ({plan['trainable_params']:,} trainable)"),
        ("samples", f"{plan['train_samples']:,} train, {plan['eval_samples']:,} evaluated "
                    f"per epoch; {plan['steps_per_epoch']} steps of {plan['batch_size']}"),
        ("FLOPs (counted)", f"{si(plan['flops_per_sample'], 'FLOP')} per sample, "
                            f"{si(plan['flops_per_epoch'], 'FLOP')} per epoch, "
                            f"{si(plan['flops_total'], 'FLOP')} for {plan['epochs']} epochs"),
        ("weights", nbytes(m["weights_bytes"])),
        ("gradients", nbytes(m["gradients_bytes"])),
        ("optimizer state", nbytes(m["optimizer_state_bytes"])),
        (f"activations (batch {m['batch_size']})", nbytes(m["activations_bytes"])),
        ("memory per rank", nbytes(m["total_bytes"])),
        ("bytes moved per step", f"~{si(plan['bytes_per_step'], 'B')} (estimate)"),
        ("all-reduced per step", nbytes(plan["allreduce_bytes_per_step"])),
        ("ops per step", f"{plan['ops_per_step']} (profiled)"),
        ("calibration", f"{c['steps']} steps after {c['warmup_steps']} warm-up on "
                        f"{c['device']} ({c['device_type']}, {c['threads']} thread(s))"),
        ("throughput here", f"{c['samples_per_second']:,.0f} samples/s (median of "
                            f"{len(c['chunk_samples_per_second'])} chunks, spread "
                            f"{c['spread']:.0%}), {ms(c['step_seconds'])} per step"),
        ("MFU here", f"{c['mfu']:.3g} of a measured {si(c['peak_flops'], 'FLOP/s')} fp32 GEMM "
                     f"peak; memory copy {si(c['memory_bandwidth'], 'B/s')}"),
        ("efficiency applied", f"{plan['efficiency']['applied']:.3g}"
                               + (" (clamped)" if plan["efficiency"]["clamped"] else "")),
    ]  # fmt: skip
    if c["load_average"] is not None:
        rows.append(("load average", f"{c['load_average']:.2f} (a busy machine measures slower)"))
    for k, v in rows:
        t.add_row(escape(k), escape(v))
    return t


def _projection_table(plan: dict[str, Any]) -> Table:
    target = plan["target_hours"]
    t = Table(title="Projections (estimates; ~ marks every projected figure)",
              title_justify="left")  # fmt: skip
    for col in ("device", "fp32 peak", "mem BW", "step", "bound", "samples/s", "epoch",
                f"{plan['epochs']} epochs"):  # fmt: skip
        t.add_column(col, justify="left" if col == "device" else "right")
    t.add_column("fits")
    if target is not None:
        t.add_column(f"nodes for {hours(target * 3600)}", justify="right")
    t.add_column("cost", justify="right")
    for p in plan["projections"]:
        s = p["step"]
        row = [p["device"] + (" (measured)" if p["measured"] else ""),
               si(p["peak_flops"], "FLOP/s"), si(p["memory_bandwidth"], "B/s"),
               f"~{ms(s['seconds'])}", s["bound"], f"~{p['samples_per_second']:,.0f}",
               f"~{hours(p['epoch_seconds'])}", f"~{hours(p['finish_seconds'])}",
               "yes" if p["fits"] else "no"]  # fmt: skip
        if target is not None:
            n = p["nodes_needed"]
            row.append(f"~{n} ({hours(p['plan_finish_seconds'])})" if n else "not reachable")
        row.append("—" if p["cost"] is None else f"~{p['cost']:.2f} {p['currency'] or ''}")
        t.add_row(*(escape(x) for x in row))
    return t


def render_plan(plan: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console(width=None if Console().is_terminal else 160)
    console.print(_needs_table(plan))
    console.print(_projection_table(plan))
    if plan["target_hours"] is not None:
        for p in plan["projections"]:
            if p["nodes_needed"] is None:
                console.print(
                    f"  {p['device']}: {p['nodes_needed_reason']}", markup=False, soft_wrap=True
                )
    r = plan["recommendation"]
    console.print(f"\nRecommendation (estimate): {r['device']} × {r['nodes']} node(s), "
                  f"~{hours(r['finish_seconds'])} for {plan['epochs']} epochs", markup=False,
                  style="bold")  # fmt: skip
    for reason in r["reasons"]:
        console.print(f"  - {reason}", markup=False, soft_wrap=True)
    console.print("\nAssumptions (every projection is an estimate)", style="bold")
    for a in plan["assumptions"]:
        console.print(f"  - {a}", markup=False, soft_wrap=True)
