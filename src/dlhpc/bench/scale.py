"""``dlhpc bench scale``: throughput and time to accuracy for 1..N ranks × threads.

    dlhpc bench scale --model cnn --data digits --out benchmarks

Strong scaling keeps the global batch (the same training, split among more ranks); weak scaling
keeps the per-rank batch (more work per step as ranks grow). Every configuration is a real
``dlhpc train`` run (subprocess; ranks through torch's elastic launcher), the repeats are
interleaved so a noisy neighbour hits all configurations alike, and the report quotes ratios
against 1 rank × 1 thread measured in the same invocation.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dlhpc.bench import last_error_line, run_child, scratch_dir
from dlhpc.data import DataConfig
from dlhpc.data.readers import find_reader
from dlhpc.engine.datasets import source_files
from dlhpc.engine.env import available_cores
from dlhpc.engine.flops import cpu_name
from dlhpc.engine.jobs import check_global_batch
from dlhpc.errors import ConfigError, DlhpcError
from dlhpc.fsio import atomic_write, atomic_write_text, dated_name


@dataclass(frozen=True)
class Config:
    mode: str  # strong | weak
    ranks: int
    threads: int
    batch: int  # global


def configs(cores: int, batch: int) -> list[Config]:
    out = [Config("strong", 1, t, batch) for t in range(1, cores + 1)]
    out += [Config("strong", r, 1, batch) for r in range(2, cores + 1)]
    out += [Config("weak", r, 1, batch * r) for r in range(2, cores + 1)]
    return out


def run_one(
    c: Config, model: str, data: str, epochs: int, seed: int, workdir: Path
) -> dict[str, Any]:
    out = workdir / f"{c.mode}-{c.ranks}x{c.threads}-{time.monotonic_ns()}"
    cmd = [sys.executable, "-m", "dlhpc", "train", model, "--data", data, "--out", str(out),
           "--epochs", str(epochs), "--batch-size", str(c.batch), "--threads", str(c.threads),
           "--nproc", str(c.ranks), "--seed", str(seed), "--quiet", "--json"]  # fmt: skip
    proc = run_child(cmd)
    if proc.returncode != 0:  # the child's own one-line reason, not its whole stderr
        why = last_error_line(proc.stderr, proc.returncode)
        raise DlhpcError(
            f"the {c.mode} {c.ranks} rank(s) × {c.threads} thread(s) run failed: {why}"
        )
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    epochs_log = [json.loads(x) for x in (out / "metrics.jsonl").open() if '"epoch"' in x]
    return {"summary": summary, "epochs": [e for e in epochs_log if e["kind"] == "epoch"]}


def time_to(history: list[dict[str, Any]], target: float) -> float | None:
    for e in history:
        if (e.get("test_accuracy") or 0) >= target:
            return float(e["step_seconds"])
    return None


def check_source(model: str, source: str) -> None:
    """What every ``dlhpc train`` child would refuse about --data for MODEL, refused once before
    the first run, by the child's own look-ups (which read no samples)."""
    if source_files(DataConfig(source), model) is None:
        find_reader(source)  # an image source no reader recognises


def check_plan(model: str, data: str, batch: int, max_ranks: int | None) -> int:
    """Refuse, before the first of many minutes-long runs, what would stop the benchmark later
    (the numbers' own ranges are the parser's); returns the largest number of cores (ranks, and
    threads of one rank) to measure."""
    # Fewer than 2 cores: the plan would hold the 1 rank × 1 thread baseline alone.
    cores = available_cores()
    if cores < 2:
        raise ConfigError(
            "only 1 core available: scaling compares 2 or more cores with 1 rank × 1 thread; "
            "run it where 2 or more are available"
        )
    if max_ranks is not None and max_ranks < 2:
        raise ConfigError(
            f"--max-ranks {max_ranks}: scaling compares 2 or more cores with 1 rank × 1 thread; "
            f"use --max-ranks 2 to {cores}"
        )
    if max_ranks is not None and max_ranks > cores:
        # each child checks its threads × ranks against the cores: the first run over fails
        raise ConfigError(
            f"--max-ranks {max_ranks}: only {cores} core(s) available; use --max-ranks {cores} "
            "or fewer"
        )
    top = cores if max_ranks is None else max_ranks
    check_global_batch(batch, top)  # strong scaling splits the global batch among the ranks
    check_source(model, data)
    return top


def run_scale(
    model: str = "cnn", data: str = "digits", epochs: int = 15, batch: int = 128,
    repeats: int = 2, target: float = 0.97, max_ranks: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    cores = check_plan(model, data, batch, max_ranks)
    plan = configs(cores, batch)
    results: dict[Config, list[dict[str, Any]]] = {c: [] for c in plan}
    with scratch_dir("dlhpc-scale-") as tmp:
        for rep in range(repeats):
            for c in plan if rep % 2 == 0 else list(reversed(plan)):
                results[c].append(run_one(c, model, data, epochs, 0, tmp))
    base = results[plan[0]]  # 1 rank × 1 thread
    rows: list[dict[str, Any]] = []
    for c, runs in results.items():
        sps = [x["summary"]["samples_per_second"] for x in runs]
        # each repeat's ratio to the baseline of the same pass (runs minutes apart see
        # different neighbours; runs side by side see the same), then the median of those
        ratios = [v / b["summary"]["samples_per_second"] for v, b in zip(sps, base, strict=True)]
        acc = statistics.median(x["summary"]["test_accuracy"] for x in runs)
        tta = [t for t in (time_to(x["epochs"], target) for x in runs) if t is not None]
        rows.append({"mode": c.mode, "ranks": c.ranks, "threads": c.threads, "batch": c.batch,
                     "samples_per_second": statistics.median(sps), "test_accuracy": acc,
                     "time_to_target_s": statistics.median(tta) if tta else None,
                     "speedup": statistics.median(ratios), "ratios": ratios,
                     "gradient_exchange": runs[0]["summary"].get("gradient_exchange"),
                     "waiting_share": _median_of(runs, "waiting_share"),
                     "exchange_share": _median_of(runs, "exchange_share")})  # fmt: skip
    for r in rows:
        r["efficiency"] = r["speedup"] / (r["ranks"] * r["threads"])
    return {"model": model, "data": data, "epochs": epochs, "batch": batch, "repeats": repeats,
            "target": target, "rows": rows}  # fmt: skip


def _median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    """The median of a ``summary.json`` figure over runs; None where the runs do not have it."""
    values = [x["summary"][key] for x in runs if x["summary"].get(key) is not None]
    return statistics.median(values) if values else None


def _shares(r: dict[str, Any]) -> str:
    if r.get("waiting_share") is None:
        return "—"
    return f"{r['waiting_share']:.1%} / {r['exchange_share']:.1%}"


def _exchange(result: dict[str, Any]) -> str:
    """How the multi-rank runs averaged their gradients (``summary.json``'s gradient_exchange)."""
    seen = sorted({str(r["gradient_exchange"]) for r in result["rows"] if r["gradient_exchange"]})
    return " / ".join(seen) or "—"


def _plot(path: Path, result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    curves = {
        "threads (1 rank)": ("strong", True),
        "ranks × 1 thread, strong": ("strong", False),
        "ranks × 1 thread, weak": ("weak", False),
    }
    for label, (mode, one_rank) in curves.items():
        pts = [(r["ranks"] * r["threads"], r["speedup"]) for r in result["rows"]
               if r["mode"] == mode and (r["ranks"] == 1) == one_rank]  # fmt: skip
        if label.startswith("ranks"):
            pts = [(1, 1.0), *pts]
        if pts:
            ax.plot(*zip(*sorted(pts), strict=True), marker="o", label=label)
    top = max(r["ranks"] * r["threads"] for r in result["rows"])
    ax.plot([1, top], [1, top], "k--", alpha=0.4, label="ideal")
    ax.set_xlabel("cores used")
    ax.set_ylabel("speed-up vs 1 rank × 1 thread")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def write_report(result: dict[str, Any], out_dir: Path, command: str) -> Path:
    name = dated_name(out_dir, f"scale_{platform.machine()}-{available_cores()}core", ".md", ".png")
    _plot(out_dir / f"{name}.png", result)
    lines = [
        f"# Scaling: {result['model']} on {result['data']} — ranks × threads", "",
        f"Date: {time.strftime('%Y-%m-%d')}. Command: `{command}`.", "",
        "## Hardware and versions", "",
        f"- CPU: {cpu_name()} ({available_cores()} cores available)",
        f"- Python {platform.python_version()}, torch {torch.__version__}, gloo process group; "
        f"gradients averaged through {_exchange(result)}", "",
        "## Config", "",
        f"- model `{result['model']}`, data `{result['data']}`, {result['epochs']} epochs, "
        f"global batch {result['batch']} (strong), per-rank batch {result['batch']} (weak)",
        f"- repeats {result['repeats']} (interleaved, order reversed every other pass); "
        "speed-up: the median over repeats of each run's samples/s ÷ the 1 × 1 run of the same "
        f"pass; other columns medians; time to {result['target']:.0%} test accuracy counts "
        "training-step time",
        "", "## Method", "",
        "Each configuration is a full `dlhpc train` run in its own processes (ranks through "
        "torch's elastic launcher, DDP, one gradient all-reduce per step). Speed-up is training "
        "samples/s over 1 rank × 1 thread from the same invocation; efficiency is speed-up ÷ "
        "cores used. Waiting / exchange: the share of the ranks' training-step time spent "
        "waiting at the gradient exchange for the other ranks to arrive (every step lasts as long "
        "as the slowest rank's), and spent in the exchange itself (`summary.json`'s "
        "`waiting_share` and `exchange_share`; measured where gradients meet in shared memory).",
        "",
        "## Results", "",
        "| mode | ranks × threads | global batch | samples/s | speed-up | efficiency | "
        "time to target (s) | test accuracy | waiting / exchange | per-pass speed-ups |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in result["rows"]:
        tta = f"{r['time_to_target_s']:.1f}" if r["time_to_target_s"] is not None else "—"
        lines.append(
            f"| {r['mode']} | {r['ranks']} × {r['threads']} | {r['batch']} | "
            f"{r['samples_per_second']:,.0f} | {r['speedup']:.2f}× | {r['efficiency']:.0%} | "
            f"{tta} | {r['test_accuracy']:.4f} | {_shares(r)} | "
            f"{', '.join(f'{x:.2f}' for x in r['ratios'])} |"
        )
    lines += ["", f"![speed-up]({name}.png)", ""]
    path = out_dir / f"{name}.md"
    atomic_write_text(path, "\n".join(lines))
    return path
