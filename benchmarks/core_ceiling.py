"""How much two independent processes get out of this machine's cores, with no communication.

    python benchmarks/core_ceiling.py --rounds 5 --out benchmarks

The ceiling for data-parallel scaling on one machine: the same work (1-thread fp32 GEMMs, and
the tutorial CNN's training step at a per-rank batch of 64 = a global 128 over two ranks) run
by one process alone and then by N processes at once, each pinned to nothing and sharing
nothing. The aggregate rate of N ÷ the rate of one is the most that N ranks can reach before
any all-reduce. Between that and DDP sits ``cnn-lockstep``: the same processes waiting for each
other once per step with nothing to exchange, the cost of stepping together on this machine
(every step lasts as long as the slowest rank's); DDP's efficiency on top of that is the part
the engine controls. Rounds are interleaved (alone, together, alone, …) and medians reported,
since the machine is shared; a second report on one day gets ``-2`` in its name.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from dlhpc.fsio import atomic_write_text, dated_name

WORKER = r"""
import json, os, sys, time
from dlhpc.engine.allocator import tune_host_allocator
tune_host_allocator()  # as every dlhpc process does, before torch allocates
import torch
import torch.nn.functional as F
torch.set_num_threads(1)
kind, seconds = sys.argv[1], float(sys.argv[2])
ddp = kind.startswith("cnn-ddp")
lockstep = kind == "cnn-lockstep"
if ddp or lockstep:
    import torch.distributed as dist
    from dlhpc.engine.distributed import Dist, init_distributed
    from dlhpc.engine.env import ClusterEnv
    w = int(os.environ["WORLD_SIZE"])
    env = ClusterEnv(rank=int(os.environ["RANK"]), world_size=w, local_world_size=w,
                     master_port=int(os.environ["MASTER_PORT"]))
    group = init_distributed(env, torch.device("cpu"), 60)
if kind == "gemm":
    a = torch.randn(512, 512)
    work = lambda: a @ a
    per_call = 2 * 512 ** 3
else:
    from dlhpc.models.cnn import TutorialCNN
    from dlhpc.engine.fused_adam import FusedAdam
    torch.manual_seed(0)
    m = TutorialCNN(1, 28, 28, 10).to(memory_format=torch.channels_last)
    opt = FusedAdam(m.parameters(), lr=1e-3)
    net = m
    if kind == "cnn-ddp":  # PyTorch's defaults
        net = torch.nn.parallel.DistributedDataParallel(m, gradient_as_bucket_view=True)
    elif ddp:  # dlhpc's wrapping: gloo with its bucket size, or shared memory
        group.shared_memory = kind == "cnn-ddp-shm"
        net = group.wrap(m)
    elif lockstep:  # no DDP: the ranks only wait for each other once per step
        from dlhpc.engine.shm_allreduce import open_shared
        sync, flag = open_shared(1, env.rank, w, 60), torch.zeros(1)
        assert sync is not None, "cnn-lockstep needs the shared segment (x86-64 Linux /dev/shm)"
    x = torch.randn(64, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (64,))
    def work():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        if lockstep:
            sync.all_reduce_mean(flag)
        opt.step()
    per_call = 64  # samples
for _ in range(3):
    work()
sys.stdout.write("ready\n"); sys.stdout.flush()
sys.stdin.readline()  # start together
n, t0, times = 0, time.perf_counter(), []
while True:
    t = time.perf_counter()
    work()
    times.append(time.perf_counter() - t)
    n += 1
    if n % 8 == 0:  # DDP ranks must run the same number of steps: agree on the end
        done = torch.tensor([float(time.perf_counter() - t0 >= seconds)])
        if ddp or lockstep:
            dist.all_reduce(done, op=dist.ReduceOp.MAX)
        if done.item():
            break
mean = sum(times) / len(times)
cv = (sum((t - mean) ** 2 for t in times) / len(times)) ** 0.5 / mean  # step-time spread
print(json.dumps({"rate": n * per_call / (time.perf_counter() - t0), "cv": cv}))
if ddp or lockstep:
    del net, work  # the DDP wrapper holds the group: dropped, close frees it
    group.close()
"""


def run(kind: str, procs: int, seconds: float) -> tuple[float, float]:
    """Aggregate rate of ``procs`` concurrent 1-thread workers (units/s), and their step times'
    coefficient of variation (standard deviation ÷ mean; the median over processes)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GOMP_SPINCOUNT": "10000",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
           "WORLD_SIZE": str(procs)}  # fmt: skip
    ps = [subprocess.Popen([sys.executable, "-c", WORKER, kind, str(seconds)],
                           env={**env, "RANK": str(rank)}, stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True, stderr=subprocess.DEVNULL)
          for rank in range(procs)]  # fmt: skip
    for p in ps:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    for p in ps:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in ps]
    return sum(o["rate"] for o in outs), statistics.median(o["cv"] for o in outs)


KINDS = ("gemm", "cnn", "cnn-lockstep", "cnn-ddp", "cnn-ddp-gloo", "cnn-ddp-shm")


def grouped(kind: str) -> bool:
    """Kinds whose processes form one process group (run only as ``--procs`` of them)."""
    return kind.startswith("cnn-")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    res: dict[str, dict[str, list[float]]] = {}
    cvs: dict[str, list[float]] = {}
    for r in range(a.rounds):
        for kind in KINDS:
            order = (1, a.procs) if r % 2 == 0 else (a.procs, 1)
            for n in order if not grouped(kind) else (a.procs,):
                rate, cv = run(kind, n, a.seconds)
                res.setdefault(kind, {}).setdefault(str(n), []).append(rate)
                cvs.setdefault(f"{kind} × {n}", []).append(cv)
                print(f"round {r + 1}: {kind} × {n}: {rate:,.0f}/s", flush=True)
    lines = [
        f"# Core ceiling: {a.procs} independent 1-thread processes vs 1 "
        f"({time.strftime('%Y-%m-%d')})",
        "",
        f"Command: `python benchmarks/core_ceiling.py --rounds {a.rounds} --seconds "
        f"{a.seconds} --procs {a.procs}`. {os.cpu_count()} CPUs ({platform.machine()}); "
        f"load average before the last round: {os.getloadavg()[0]:.2f}.",
        "",
        "| work | 1 process | " + f"{a.procs} processes (sum) | ratio | per-round ratios |",
        "|---|---|---|---|---|",
    ]
    for kind in KINDS[2:]:
        res[kind]["1"] = res["cnn"]["1"]
    summary = {}
    for kind in KINDS:
        unit = "GFLOP/s" if kind == "gemm" else "samples/s"
        one, many = res[kind]["1"], res[kind][str(a.procs)]
        ratios = [m / o for o, m in zip(one, many, strict=True)]
        scale = 1e9 if kind == "gemm" else 1.0
        med_one, med_many = statistics.median(one) / scale, statistics.median(many) / scale
        summary[kind] = statistics.median(ratios)
        lines.append(
            f"| {kind} ({unit}) | {med_one:,.1f} | {med_many:,.1f} | "
            f"**{statistics.median(ratios):.2f}×** | {', '.join(f'{x:.2f}' for x in ratios)} |"
        )
    spread = {k: statistics.median(v) for k, v in cvs.items() if k.startswith("cnn ×")}
    lines += [
        "",
        "Step-time spread of one cnn process (standard deviation ÷ mean of its steps, median "
        f"over rounds): {spread.get('cnn × 1', 0):.1%} running alone, "
        f"{spread.get(f'cnn × {a.procs}', 0):.1%} with {a.procs} running. Ranks that step "
        "together wait, every step, for the slowest of them.",
        "",
        "gemm: 512 × 512 fp32 products, 1 thread each. cnn: the tutorial CNN's training step "
        "(forward, backward, fused Adam) at batch 64, channels-last, 1 thread each — one DDP "
        "rank's share of a global batch of 128, without the all-reduce. cnn-lockstep: the same "
        "processes waiting for each other once per step (a 1-number mean through the shared "
        "segment, no gradients): the cost of stepping together on this machine, with an "
        "exchange that costs nothing. cnn-ddp: the same "
        "processes as DDP ranks (gloo, 373 kB of gradients per step) with PyTorch's default "
        "25 MB buckets (one bucket, reduced after the whole backward); cnn-ddp-gloo: dlhpc's "
        "DDP wrapping on gloo (`engine.distributed.bucket_cap_mb`: buckets of a quarter of the "
        "gradients, so the exchange overlaps the backward); cnn-ddp-shm: dlhpc's default on "
        "one machine, gradients averaged in shared memory by the ranks' own threads "
        "(`engine/shm_allreduce.py`, one bucket). The ratio against cnn's is what the gradient "
        "exchange costs. Every process runs with dlhpc's host-allocator setting "
        "(`engine/allocator.py`).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out is not None:
        out = a.out / f"{dated_name(a.out, 'core_ceiling_cpu', '.md')}.md"
        atomic_write_text(out, text)
        print(f"report: {out}; ratios {json.dumps(summary)}")


if __name__ == "__main__":
    main()
