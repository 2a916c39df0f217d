"""The host allocator setting (``engine/allocator.py``) against glibc's defaults, side by side.

    python benchmarks/host_allocator.py --rounds 5 --out benchmarks

Each round runs the tutorial CNN's training step (forward, backward, fused Adam; channels-last
fp32, 28×28 digits-shaped random inputs) in two fresh processes, one with glibc's defaults and
one after ``tune_host_allocator()``, alternating which goes first; each times ``--steps`` steps
after 5 warm-up steps. Reported: median ms per step and the per-round ratio default ÷ tuned.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from dlhpc.fsio import atomic_write_text, dated_name

WORKER = r"""
import json, sys, time
if sys.argv[1] == "tuned":
    from dlhpc.engine.allocator import tune_host_allocator
    assert tune_host_allocator()
import torch
import torch.nn.functional as F
from dlhpc.engine.fused_adam import FusedAdam
from dlhpc.models.cnn import TutorialCNN
batch, threads, steps = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
torch.manual_seed(0)
m = TutorialCNN(1, 28, 28, 10).to(memory_format=torch.channels_last)
opt = FusedAdam(m.parameters(), lr=1e-3)
x = (torch.rand(batch, 1, 28, 28) * 255).contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 10, (batch,))
def step():
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(m(x), y).backward()
    opt.step()
for _ in range(5):
    step()
times = []
for _ in range(steps):
    t = time.perf_counter()
    step()
    times.append(time.perf_counter() - t)
times.sort()
print(json.dumps({"ms": 1e3 * times[len(times) // 2]}))
"""

CASES = [(128, 1), (64, 1), (128, 2)]  # (batch, threads)


def run(variant: str, batch: int, threads: int, steps: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-c", WORKER, variant, str(batch), str(threads), str(steps)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["ms"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    res: dict[tuple[int, int], dict[str, list[float]]] = {c: {"default": [], "tuned": []}
                                                           for c in CASES}  # fmt: skip
    for r in range(a.rounds):
        for batch, threads in CASES:
            order = ("default", "tuned") if r % 2 == 0 else ("tuned", "default")
            for v in order:
                res[(batch, threads)][v].append(run(v, batch, threads, a.steps))
            d, t = res[(batch, threads)]["default"][-1], res[(batch, threads)]["tuned"][-1]
            print(f"round {r + 1}: batch {batch}, {threads} thread(s): {d:.1f} vs {t:.1f} ms")
    lines = [
        f"# Host allocator: glibc defaults vs dlhpc's setting ({time.strftime('%Y-%m-%d')})",
        "",
        f"Command: `python benchmarks/host_allocator.py --rounds {a.rounds} --steps {a.steps}`. "
        f"{os.cpu_count()} CPUs ({platform.machine()}), {os.confstr('CS_GNU_LIBC_VERSION')}; "
        f"load average at the end: {os.getloadavg()[0]:.2f}.",
        "",
        "| batch × threads | glibc defaults (ms/step) | dlhpc setting (ms/step) | speed-up | "
        "per-round speed-ups |",
        "|---|---|---|---|---|",
    ]
    for (batch, threads), v in res.items():
        ratios = [d / t for d, t in zip(v["default"], v["tuned"], strict=True)]
        lines.append(
            f"| {batch} × {threads} | {statistics.median(v['default']):.1f} | "
            f"{statistics.median(v['tuned']):.1f} | **{statistics.median(ratios):.2f}×** | "
            f"{', '.join(f'{x:.2f}' for x in ratios)} |"
        )
    lines += [
        "",
        "The step: the tutorial CNN (Conv32-Pool-Conv64-Pool-Conv64-Dense64-Dense10), forward, "
        "cross-entropy, backward and fused Adam, channels-last fp32, median of the timed steps. "
        "dlhpc setting: `mallopt(M_MMAP_THRESHOLD, 32 MiB)` and `mallopt(M_TRIM_THRESHOLD, "
        "1 GiB)`, made by every dlhpc process before torch loads (`engine/allocator.py`). With "
        "glibc's defaults each step's activations (5.5 MB for the first convolution at batch 64) "
        "are fresh `mmap`s or a regrown heap: new zeroed pages from the kernel every step.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out is not None:
        out = a.out / f"{dated_name(a.out, 'host_allocator_cpu', '.md')}.md"
        atomic_write_text(out, text)
        print(f"report: {out}")


if __name__ == "__main__":
    main()
