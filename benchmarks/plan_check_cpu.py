"""Issue 9, item 3: ``dlhpc plan``'s projection for this machine against a measured full run.

Run it (about 1–2 minutes a round on 2 cores; more when the machine is shared)::

    .venv/bin/python benchmarks/plan_check_cpu.py --rounds 3 > /tmp/plan_check.md

Each round runs ``dlhpc plan cnn --data digits`` and ``dlhpc train cnn --data digits`` (both
with the defaults: 15 epochs, global batch 128, all cores), each in its own process, plan first
in even rounds and train first in odd ones, so a neighbour's load hits both alike. Compared:
the plan's projected samples/s and time to finish for this machine (its calibration, 30 steps)
against the run's summary.json ``samples_per_second`` (training steps only) and
``train_seconds`` (the whole fit: steps, evaluation each epoch, checkpoints). Prints Markdown;
benchmarks/plan_cpu_<date>.md is written from it by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

DLHPC = [sys.executable, "-m", "dlhpc"]


def run_json(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run([*DLHPC, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"dlhpc {' '.join(args)} failed: {proc.stderr.strip()[-800:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def one_round(i: int, workdir: Path, model: str, data: str) -> dict[str, Any]:
    plan_args = ["plan", model, "--data", data, "--json", "--quiet"]
    train_args = ["train", model, "--data", data, "--out", str(workdir / f"run{i}"),
                  "--json", "--quiet"]  # fmt: skip
    out: dict[str, Any] = {"load_before": os.getloadavg()[0]}
    for which in ("plan", "train") if i % 2 == 0 else ("train", "plan"):
        out[which] = run_json(plan_args if which == "plan" else train_args)
    out["load_after"] = os.getloadavg()[0]
    return out


def row(i: int, r: dict[str, Any]) -> str:
    here, s, c = r["plan"]["projections"][0], r["train"], r["plan"]["calibration"]
    return (
        f"| {i} | {r['load_before']:.1f}–{r['load_after']:.1f} | "
        f"{here['samples_per_second']:,.0f} (mean {c['mean_samples_per_second']:,.0f}, "
        f"spread {c['spread']:.0%}) | "
        f"{s['samples_per_second']:,.0f} | "
        f"{here['samples_per_second'] / s['samples_per_second']:.2f} | "
        f"{here['finish_seconds']:.1f} | {s['train_seconds']:.1f} | "
        f"{here['finish_seconds'] / s['train_seconds']:.2f} | "
        f"{c['mfu']:.3f} / {s['mfu']:.3f} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--data", default="digits")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="dlhpc-plan-check-") as tmp:
        rounds = [one_round(i, Path(tmp), a.model, a.data) for i in range(a.rounds)]
    print("| round | load avg | plan: samples/s (this machine) | train: samples/s | ratio | "
          "plan: finish (s) | train: train_seconds | ratio | MFU plan / train |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for i, r in enumerate(rounds):
        print(row(i, r))
    sps = [r["plan"]["projections"][0]["samples_per_second"] / r["train"]["samples_per_second"]
           for r in rounds]  # fmt: skip
    fin = [r["plan"]["projections"][0]["finish_seconds"] / r["train"]["train_seconds"]
           for r in rounds]  # fmt: skip
    print(f"\nmedian ratio samples/s {statistics.median(sps):.2f} (range {min(sps):.2f}–"
          f"{max(sps):.2f}); time to finish {statistics.median(fin):.2f} "
          f"(range {min(fin):.2f}–{max(fin):.2f})")  # fmt: skip
    last = rounds[-1]["plan"]
    print("\n| device | step | bound | samples/s | 15 epochs |\n|---|---|---|---|---|")
    for p in last["projections"]:
        print(f"| {p['device']} | {p['step']['seconds'] * 1e3:.3g} ms | {p['step']['bound']} | "
              f"{p['samples_per_second']:,.0f} | {p['finish_seconds']:.3g} s |")  # fmt: skip
    print("\n```json\n" + json.dumps({k: last[k] for k in ("efficiency", "recommendation")},
                                     indent=1) + "\n```")  # fmt: skip


if __name__ == "__main__":
    main()
