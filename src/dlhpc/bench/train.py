"""``dlhpc bench train``: the tutorial's CNN task with dlhpc and with what users would run instead.

    dlhpc bench train --peers-python /path/to/tf-venv/bin/python --out benchmarks

Runners, each its own process on the same data (``digits`` as 28×28 uint8, exported to .npz)
with the same threads, repeats interleaved in rotated order:

* ``keras``        the tutorial's Keras code (TensorFlow CPU): batch 32, Adam, 10 epochs;
* ``pytorch-loop`` a plain PyTorch loop in tutorial style (DataLoader over a TensorDataset),
                   the same network and recipe as Keras;
* ``dlhpc (tutorial recipe)`` dlhpc's engine with the tutorial's recipe (batch 32, Adam 1e-3,
                   constant rate, no augmentation, 10 epochs) — the engine alone;
* ``dlhpc``        ``dlhpc train cnn`` with its defaults — engine and recipe.

Reported: training samples/s, time to the target test accuracy (training time only, evaluation
excluded for every runner), final accuracy, and ratios against dlhpc. A runner whose peer is not
installed is reported as skipped, never faked.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlhpc.bench import last_error_line, peer_env, run_child, scratch_dir
from dlhpc.data import DataConfig, load_images
from dlhpc.engine.env import available_cores
from dlhpc.engine.flops import cpu_name, device_name
from dlhpc.fsio import atomic_write, atomic_write_text, dated_name

PEERS = Path(__file__).parent / "peers"
TUTORIAL = ["--batch-size", "32", "--lr", "1e-3", "--schedule", "constant", "--warmup-epochs",
            "0", "--augment", "none", "--epochs", "10"]  # fmt: skip


@dataclass(frozen=True)
class Runner:
    name: str
    argv: list[str]  # the command; "{data}" and "{out}" are filled in per run
    kind: str  # "peer" (prints epochs JSON) or "dlhpc" (reads the run directory)


def runners(peers_python: str | None, threads: int, device: str = "cpu") -> list[Runner]:
    t = str(threads)
    dl = [sys.executable, "-m", "dlhpc", "train", "cnn", "--data", "{data}", "--out", "{out}",
          "--threads", t, "--device", device, "--quiet", "--json"]  # fmt: skip
    loop = [sys.executable, str(PEERS / "torch_loop.py"), "{data}", "--threads", t,
            "--device", device]  # fmt: skip
    out = [
        Runner("dlhpc", dl, "dlhpc"),
        Runner("dlhpc (tutorial recipe)", [*dl, *TUTORIAL], "dlhpc"),
        Runner("pytorch-loop", loop, "peer"),
    ]
    py = peers_python or (sys.executable if find_spec("tensorflow") else None)
    if device != "cpu":  # the tutorial's code, as written, runs TensorFlow's CPU build
        out.append(Runner("keras", [], "skipped: the tutorial's Keras code runs on the CPU "
                                       "build of TensorFlow"))  # fmt: skip
    elif py is None:  # reported as skipped, never faked
        out.append(Runner("keras", [], "skipped: TensorFlow not installed (pip install -e .[bench] "
                                       "or --peers-python)"))  # fmt: skip
    else:
        out.append(Runner("keras", [py, str(PEERS / "keras_cnn.py"), "{data}", "--threads", t],
                          "peer"))  # fmt: skip
    return out


def export_npz(source: str, path: Path) -> tuple[int, int]:
    s = load_images(DataConfig(source, augment="none"))
    assert s.test is not None
    np.savez(path, x_train=s.train.x[:, 0].numpy(), y_train=s.train.y.numpy(),
             x_test=s.test.x[:, 0].numpy(), y_test=s.test.y.numpy())  # fmt: skip
    return len(s.train), len(s.test)


def run_once(r: Runner, data: Path, work: Path) -> dict[str, Any]:
    if r.kind.startswith("skipped"):
        return {"skipped": r.kind.removeprefix("skipped: ")}
    out = work / f"run-{time.monotonic_ns()}"
    cmd = [a.replace("{data}", str(data)).replace("{out}", str(out)) for a in r.argv]
    t0 = time.perf_counter()
    env = peer_env() if r.kind == "peer" else None  # peers run as users would run them
    proc = run_child(cmd, env)
    process_s = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"skipped": last_error_line(proc.stderr, proc.returncode)}
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    if r.kind == "peer":
        epochs, n = last["epochs"], last["train_samples"]
    else:
        log = [json.loads(x) for x in (out / "metrics.jsonl").open()]
        epochs = [
            {"epoch": e["epoch"], "train_seconds": e["step_seconds"], "test_accuracy": acc}
            for e in log
            if e["kind"] == "epoch" and (acc := e["test_accuracy"]) is not None
        ]
        n = last["train_samples"]
    return {"epochs": epochs, "train_samples": n, "process_seconds": process_s}


def summarise(runs: list[dict[str, Any]], target: float) -> dict[str, Any]:
    ok = [r for r in runs if "epochs" in r]
    if not ok:
        return {"skipped": runs[0].get("skipped", "failed")}

    def tta(r: dict[str, Any]) -> float | None:
        return next((e["train_seconds"] for e in r["epochs"] if e["test_accuracy"] >= target), None)

    times = [tta(r) for r in ok]
    reached = [t for t in times if t is not None]
    last = [r["epochs"][-1] for r in ok]
    return {
        "samples_per_second": statistics.median(
            r["train_samples"] * len(r["epochs"]) / r["epochs"][-1]["train_seconds"] for r in ok),
        "time_to_target_s": statistics.median(reached) if len(reached) == len(ok) else None,
        "train_seconds": statistics.median(e["train_seconds"] for e in last),
        "final_accuracy": statistics.median(e["test_accuracy"] for e in last),
        "best_accuracy": statistics.median(
            max(x["test_accuracy"] for x in r["epochs"]) for r in ok
        ),
        "epochs": len(ok[0]["epochs"]),
        "repeats": len(ok),
        "curve": [(e["train_seconds"], e["test_accuracy"]) for e in ok[0]["epochs"]],
    }  # fmt: skip


def run_bench(
    source: str,
    threads: int,
    repeats: int,
    target: float,
    peers_python: str | None,
    device: str = "cpu",
) -> dict[str, Any]:
    plan = runners(peers_python, threads, device)
    raw: dict[str, list[dict[str, Any]]] = {r.name: [] for r in plan}
    with scratch_dir("dlhpc-bench-") as tmp:
        data = tmp / "data.npz"
        n_train, n_test = export_npz(source, data)
        for rep in range(repeats):
            k = rep % len(plan)
            for r in plan[k:] + plan[:k]:  # rotated order: drift hits every runner alike
                raw[r.name].append(run_once(r, data, tmp))
    rows = {name: summarise(runs, target) for name, runs in raw.items()}
    base = rows["dlhpc"]
    for row in rows.values():
        if "skipped" in row or "skipped" in base:
            continue
        row["throughput_vs_dlhpc"] = row["samples_per_second"] / base["samples_per_second"]
        if row["time_to_target_s"] and base["time_to_target_s"]:
            row["time_to_target_vs_dlhpc"] = row["time_to_target_s"] / base["time_to_target_s"]
    return {"data": source, "train_samples": n_train, "test_samples": n_test, "threads": threads,
            "repeats": repeats, "target": target, "rows": rows,
            "peers_python": peers_python, "device": device,
            "device_name": device_name(torch.device(device))}  # fmt: skip


def _plot(path: Path, result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, row in result["rows"].items():
        if "curve" in row:
            ax.plot(*zip(*row["curve"], strict=True), marker="o", label=name)
    ax.axhline(
        result["target"], color="k", ls="--", alpha=0.4, label=f"target {result['target']:.0%}"
    )
    ax.set_xlabel("training seconds")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0.8, 1.0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def _fmt(v: float | None, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def write_report(result: dict[str, Any], out_dir: Path, command: str) -> Path:
    name = dated_name(out_dir, f"train_{hardware_tag(result.get('device', 'cpu'))}", ".md", ".png")
    _plot(out_dir / f"{name}.png", result)
    lines = [
        "# Training side by side: the tutorial's CNN", "",
        f"Date: {time.strftime('%Y-%m-%d')}. Command: `{command}`.", "",
        "## Hardware and versions", "",
        *([f"- GPU: {result['device_name']} (every runner trains on it)"]
          if result.get("device", "cpu") != "cpu" else []),
        f"- CPU: {cpu_name()}, {available_cores()} cores available; {result['threads']} thread(s) "
        "for every runner",
        f"- Python {platform.python_version()}, torch {torch.__version__}; peers from "
        f"`{result['peers_python'] or 'not given'}`", "",
        "## Config", "",
        f"- data `{result['data']}`: {result['train_samples']} training and "
        f"{result['test_samples']} test images, 28×28 uint8, the same .npz for every runner",
        "- keras and pytorch-loop: the tutorial's recipe (batch 32, Adam 1e-3, 10 epochs, "
        "pixels/255); dlhpc (tutorial recipe): `" + " ".join(TUTORIAL) + "`; dlhpc: defaults",
        f"- {result['repeats']} repeats, rotated order; medians; target test accuracy "
        f"{result['target']:.0%}", "",
        "## Method", "",
        "Each runner is its own process. Training time counts the training epochs only "
        "(per-epoch test evaluation is excluded for every runner); time to target is the "
        "training time at the end of the first epoch whose test accuracy reaches the target "
        "(— when a runner does not reach it in every repeat). Samples/s = epochs × training "
        "samples ÷ training time. Ratios are against dlhpc from the same invocation.", "",
        "## Results", "",
        "| runner | samples/s | × dlhpc throughput | time to target (s) | ÷ dlhpc time | "
        "final accuracy | best accuracy | epochs |", "|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for runner, row in result["rows"].items():
        if "skipped" in row:
            lines.append(f"| {runner} | skipped: {row['skipped']} | | | | | | |")
            continue
        lines.append(
            f"| {runner} | {row['samples_per_second']:,.0f} | "
            f"{_fmt(row.get('throughput_vs_dlhpc'), '.2f')} | "
            f"{_fmt(row['time_to_target_s'], '.1f')} | "
            f"{_fmt(row.get('time_to_target_vs_dlhpc'), '.2f')} | "
            f"{row['final_accuracy']:.4f} | {row['best_accuracy']:.4f} | {row['epochs']} |"
        )
    lines += ["", f"![accuracy over training time]({name}.png)", ""]
    path = out_dir / f"{name}.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def hardware_tag(device: str) -> str:
    """``x86_64-2core`` for the CPU; the GPU's name for CUDA (``nvidia-h200``)."""
    if device == "cpu":
        return f"{platform.machine()}-{available_cores()}core"
    words = device_name(torch.device(device)).lower().replace("-", " ").split()
    return "-".join(w for w in words if w.isalnum())
