"""How long idle OpenMP threads spin (GOMP_SPINCOUNT, OMP_WAIT_POLICY) vs CNN training speed,
on a quiet machine and beside one busy process, interleaved.

    python benchmarks/omp_spin_cpu.py --rounds 2

Each run is ``dlhpc train cnn --data digits --epochs 3 --threads T`` in its own process (its
training samples/s from summary.json); "hog" runs a pure-Python busy loop on one core for the
whole condition. The dlhpc CLI's own default (CLI_ENV) is overridden per run.
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

VARIANTS = {  # name → (threads, environment)
    "1 thread, libgomp default": (1, {"GOMP_SPINCOUNT": "300000"}),
    "2 threads, libgomp default (300,000 spins)": (2, {"GOMP_SPINCOUNT": "300000"}),
    "2 threads, GOMP_SPINCOUNT=100000": (2, {"GOMP_SPINCOUNT": "100000"}),
    "2 threads, GOMP_SPINCOUNT=10000": (2, {"GOMP_SPINCOUNT": "10000"}),
    "2 threads, GOMP_SPINCOUNT=1000": (2, {"GOMP_SPINCOUNT": "1000"}),
    "2 threads, OMP_WAIT_POLICY=PASSIVE": (2, {"OMP_WAIT_POLICY": "PASSIVE"}),
}


def run(threads: int, extra: dict[str, str], work: Path) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(extra)
    out = Path(tempfile.mkdtemp(dir=work)) / "run"
    argv = [sys.executable, "-m", "dlhpc", "train", "cnn", "--data", "digits", "--epochs", "3",
            "--threads", str(threads), "--out", str(out), "--quiet", "--json"]  # fmt: skip
    p = subprocess.run(argv, capture_output=True, text=True, env=env, check=True)
    return float(json.loads(p.stdout.strip().splitlines()[-1])["samples_per_second"])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args()
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for cond in ("quiet", "hog"):
            hog = None
            if cond == "hog":
                hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                names = list(VARIANTS)
                for r in range(a.rounds):
                    k = r % len(names)
                    for name in names[k:] + names[:k]:  # rotated order
                        threads, extra = VARIANTS[name]
                        sps = run(threads, extra, Path(tmp))
                        results.setdefault((cond, name), []).append(sps)
                        print(f"{cond:5} {name:45} {sps:8.0f}", flush=True)
            finally:
                if hog is not None:
                    hog.kill()
    print("\n| setting | quiet samples/s | beside a busy process |\n|---|---|---|")
    for name in VARIANTS:
        q, h = (statistics.median(results[(c, name)]) for c in ("quiet", "hog"))
        print(f"| {name} | {q:,.0f} | {h:,.0f} |")


if __name__ == "__main__":
    main()
