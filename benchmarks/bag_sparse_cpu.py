"""Sparse embedding updates (SparseAdam) vs dense Adam for ``bag``, and Adam's implementations
(default single-tensor, foreach, fused) for ``bag`` and ``cnn``, side by side on the CPU.

Run (the report is benchmarks/bag_sparse_cpu_20261128.md)::

    .venv/bin/python -m dlhpc.bench.text_corpus /tmp/stdlib-docs
    .venv/bin/python benchmarks/bag_sparse_cpu.py --data /tmp/stdlib-docs --rounds 5 \\
        --json /tmp/bag_sparse_cpu.json

Method. Part 1, whole runs: every variant is ``dlhpc train`` in its own process
(``--threads 1 --quiet --json``, the bag recipe: batch 256, 5 epochs, Adam 5e-2, cosine), with
the choice under test forced from outside (the bag builder's ``sparse`` flag; the fused device
list and ``foreach`` of ``dlhpc.engine.optim``). A round runs every variant once, in an order
rotated each round, so drift and the neighbours' load hit all variants alike; round r trains with
``--seed r`` (the same for every variant of the round), so accuracy is compared over seeds.
Speed is ``samples_per_second`` of the summary (time inside training steps; steps/s is the same
ratio), reported as the median over rounds of the per-round ratio to the reference variant.
Part 2, the optimizer step alone: ``optimizer.step()`` over the real model's parameters with
fixed random gradients, in-process, implementations interleaved in blocks; median µs per step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


@dataclass(frozen=True)
class Variant:
    group: str  # variants of one group are compared with each other; the first is the reference
    name: str
    model: str
    sparse: bool | None  # bag only: the embedding's sparse flag
    impl: str  # Adam for the dense parameters: default | foreach | fused
    args: tuple[str, ...] = ()


BIGRAMS = 100_000  # "with bigrams": the buckets of models/text.py's example


def variants(cnn_epochs: int) -> list[Variant]:
    out = []
    for buckets in (0, BIGRAMS):
        g = f"bag, bigrams {buckets:,}"
        extra = ("--bigrams", str(buckets))
        out += [
            Variant(g, "dense Adam (default)", "bag", False, "default", extra),
            Variant(g, "dense Adam (foreach)", "bag", False, "foreach", extra),
            Variant(g, "dense Adam (fused)", "bag", False, "fused", extra),
            Variant(g, "SparseAdam + Adam (default)", "bag", True, "default", extra),
            Variant(g, "SparseAdam + Adam (fused)", "bag", True, "fused", extra),
        ]
    g, extra = "cnn (digits)", ("--epochs", str(cnn_epochs))
    out += [Variant(g, f"Adam ({impl})", "cnn", None, impl, extra)
            for impl in ("default", "foreach", "fused")]  # fmt: skip
    return out


# --------------------------------------------------------------------------- the child process


def apply_variant(sparse: bool | None, impl: str) -> None:
    """Force the choices under test inside this process, before ``dlhpc train`` runs."""
    import dlhpc.engine.loop as loop
    import dlhpc.models.registry as registry
    from dlhpc.engine import optim
    from dlhpc.models.text import BagClassifier

    optim.FUSED_DEVICES = ("cpu",) if impl == "fused" else ()
    build = optim.build_optimizer

    def build_and_report(cfg: Any, model: torch.nn.Module) -> torch.optim.Optimizer:
        opt = build(cfg, model)
        parts = getattr(opt, "parts", (opt,))
        for part in parts:
            for g in part.param_groups:
                if impl == "foreach" and "fused" in g:
                    g["foreach"] = True
        desc = [f"{type(p).__name__}(fused={p.param_groups[0].get('fused')}, "
                f"foreach={p.param_groups[0].get('foreach')})" for p in parts]  # fmt: skip
        print(json.dumps({"optimizer": desc}), file=sys.stderr)
        return opt

    loop.build_optimizer = build_and_report  # type: ignore[attr-defined]
    if sparse is not None:

        def bag(cfg: Any, inp: Any, n: int) -> torch.nn.Module:
            return BagClassifier(inp.vocab_size, n, cfg.embed_dim, cfg.units, cfg.bigrams,
                                 sparse=sparse)  # fmt: skip

        registry.TEXT_BUILDERS["bag"] = bag


def child(spec: str, argv: list[str]) -> int:
    v = json.loads(spec)
    apply_variant(v["sparse"], v["impl"])
    from dlhpc.cli import main

    return main(argv)


# --------------------------------------------------------------------------- whole runs


def run_one(v: Variant, data: dict[str, str], seed: int, tmp: Path) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(dir=tmp)) / "run"
    argv = ["train", v.model, "--data", data[v.model], "--threads", "1", "--seed", str(seed),
            "--quiet", "--json", "--out", str(out), *v.args]  # fmt: skip
    spec = json.dumps({"sparse": v.sparse, "impl": v.impl})
    p = subprocess.run([sys.executable, __file__, "--child", spec, "--", *argv],
                       capture_output=True, text=True, check=False)  # fmt: skip
    if p.returncode != 0:
        raise RuntimeError(f"{v.name}: {p.stderr[-2000:]}")
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    opt = next(json.loads(x)["optimizer"] for x in p.stderr.splitlines() if x.startswith("{"))
    return {"group": v.group, "name": v.name, "seed": seed, "optimizer": opt,
            "samples_per_second": summary["samples_per_second"],
            "step_seconds": summary["step_seconds"],
            "test_accuracy": summary["test_accuracy"]}  # fmt: skip


def whole_runs(vs: list[Variant], data: dict[str, str], rounds: int) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for v in vs[:1]:  # warm the token cache and the page cache; not counted
            run_one(v, data, 0, Path(tmp))
        for r in range(rounds):
            order = vs[r % len(vs) :] + vs[: r % len(vs)]
            for v in order:
                rows.append(run_one(v, data, r, Path(tmp)))
                print(f"round {r}: {v.group} / {v.name}: "
                      f"{rows[-1]['samples_per_second']:,.0f}/s "
                      f"acc {rows[-1]['test_accuracy']:.4f}", file=sys.stderr)  # fmt: skip
    return rows


def whole_table(vs: list[Variant], rows: list[dict[str, Any]]) -> str:
    lines = ["| model | variant | samples/s (median) | speed ÷ reference (median of per-round "
             "ratios) | per-round ratios | test acc per seed | mean acc |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for group in dict.fromkeys(v.group for v in vs):
        names = [v.name for v in vs if v.group == group]
        by = {n: sorted((r for r in rows if r["group"] == group and r["name"] == n),
                        key=lambda r: r["seed"]) for n in names}  # fmt: skip
        ref = by[names[0]]
        for n in names:
            sps = [r["samples_per_second"] for r in by[n]]
            ratios = [a["samples_per_second"] / b["samples_per_second"]
                      for a, b in zip(by[n], ref, strict=True)]  # fmt: skip
            accs = [r["test_accuracy"] for r in by[n]]
            lines.append(
                f"| {group} | {n} | {statistics.median(sps):,.0f} | "
                f"{statistics.median(ratios):.2f}× | {', '.join(f'{x:.2f}' for x in ratios)} | "
                f"{', '.join(f'{a:.4f}' for a in accs)} | {statistics.mean(accs):.4f} |"
            )
    return "\n".join(lines)


# --------------------------------------------------------------------------- the step alone


def step_models() -> dict[str, torch.nn.Module]:
    from dlhpc.models.cnn import TutorialCNN
    from dlhpc.models.text import BagClassifier

    return {
        "bag (10,000 × 64)": BagClassifier(10_000, 12),
        f"bag + {BIGRAMS:,} bigrams": BagClassifier(10_000, 12, bigram_buckets=BIGRAMS),
        "cnn": TutorialCNN(1, 28, 28, 10),
    }


def time_steps(model: torch.nn.Module, impl: str, steps: int) -> float:
    params = list(model.parameters())
    g = torch.Generator().manual_seed(0)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g) * 1e-3
    kw: dict[str, Any] = {"fused": True} if impl == "fused" else {}
    if impl == "foreach":
        kw = {"foreach": True}
    opt = torch.optim.Adam(params, lr=1e-3, **kw)
    opt.step()  # creates the state
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.step()
    return (time.perf_counter() - t0) / steps


def step_table(rounds: int, steps: int) -> str:
    impls = ("default", "foreach", "fused")
    lines = ["| model (dense Adam over all parameters) | params | " +
             " | ".join(f"{i} µs/step" for i in impls) + " | foreach ÷ default | "
             "fused ÷ default (time) |",
             "|---|---|" + "---|" * (len(impls) + 2)]  # fmt: skip
    for name, model in step_models().items():
        times: dict[str, list[float]] = {i: [] for i in impls}
        for r in range(rounds * 3):
            for i in impls[r % 3 :] + impls[: r % 3]:
                times[i].append(time_steps(model, i, steps))
        med = {i: statistics.median(t) for i, t in times.items()}
        n = sum(p.numel() for p in model.parameters())
        lines.append(f"| {name} | {n:,} | " + " | ".join(f"{med[i] * 1e6:,.0f}" for i in impls)
                     + f" | {med['foreach'] / med['default']:.2f} | "
                     f"{med['fused'] / med['default']:.2f} |")  # fmt: skip
    return "\n".join(lines)


def conditions() -> str:
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    keep = ("Model name", "CPU(s)", "Thread(s) per core", "L2 cache", "L3 cache")
    picked = [line.split(":", 1) for line in cpu.splitlines()
              if line.split(":", 1)[0].strip() in keep]  # fmt: skip
    return (f"- CPU: {', '.join(f'{k.strip()}: {v.strip()}' for k, v in picked)}\n"
            f"- Load average: {os.getloadavg()}\n"
            f"- torch {torch.__version__}, Python {platform.python_version()}")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/tmp/stdlib-docs", help="text corpus for bag")
    ap.add_argument("--rounds", type=int, default=5, help="rounds (seeds 0…N-1)")
    ap.add_argument("--cnn-epochs", type=int, default=5)
    ap.add_argument("--step-reps", type=int, default=50, help="optimizer steps per timing")
    ap.add_argument("--only", choices=("runs", "steps"), help="one part only")
    ap.add_argument("--json", type=Path, help="also write every measurement here")
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(conditions() + "\n")
    record: dict[str, Any] = {"argv": sys.argv, "load_before": os.getloadavg()}
    if a.only != "steps":
        vs = variants(a.cnn_epochs)
        rows = whole_runs(vs, {"bag": a.data, "cnn": "digits"}, a.rounds)
        record["runs"] = rows
        print(whole_table(vs, rows) + "\n")
    if a.only != "runs":
        table = step_table(a.rounds, a.step_reps)
        record["steps"] = table
        print(table + "\n")
    record["load_after"] = os.getloadavg()
    print(f"- Load average after: {record['load_after']}")
    if a.json:
        a.json.write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        sys.exit(child(sys.argv[2], sys.argv[4:]))
    sys.exit(main())
