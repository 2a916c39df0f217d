"""Training throughput on a GPU: the CNN over batch size × precision × compile, text models GPU
vs this machine's CPU. One process, runs one after another, each its own run directory.

    python benchmarks/gpu_sweep.py --images /tmp/digits30k.npz --text /tmp/stdlib-docs \
        --out benchmarks

Writes ``gpu_sweep_<gpu>_<yyyymmdd>.md`` and ``.json``: per run, training samples/s (forward,
backward and step only), MFU against the measured GEMM peak of the precision used, and test
accuracy. CNN runs are short (``--epochs``): accuracy there is a sanity check, not a result.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from dlhpc.bench.train import hardware_tag
from dlhpc.data import DataConfig
from dlhpc.engine.config import OptimConfig, RunConfig, TrainConfig
from dlhpc.engine.flops import device_name
from dlhpc.engine.jobs import train_job
from dlhpc.engine.recipes import recipe
from dlhpc.fsio import dated_name
from dlhpc.models import ModelConfig

CNN = [  # (batch, precision, compile)
    (128, "bf16", False), (128, "fp32", False), (1024, "bf16", False), (1024, "fp32", False),
    (4096, "bf16", False), (1024, "bf16", True),
]  # fmt: skip


def _run(cfg: RunConfig, root: Path, label: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        out = train_job(cfg, root / f"run-{time.monotonic_ns()}")
    except Exception as e:  # one failed configuration must not stop the sweep
        traceback.print_exc()
        return {"run": label, "error": f"{type(e).__name__}: {e}".splitlines()[0]}
    s = out.summary or {}
    keys = ("model", "device", "precision", "batch_size", "epochs", "samples_per_second", "mfu",
            "test_accuracy", "step_seconds")  # fmt: skip
    row = {k: s.get(k) for k in keys}
    row.update(run=label, compile=cfg.train.compile, wall_s=round(time.perf_counter() - t0, 1))
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images", required=True, help="an image .npz (benchmarks/digits_augmented.py)")
    p.add_argument("--text", help="a text source (python -m dlhpc.bench.text_corpus DIR)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="cuda", help="cpu: a dry run of this script (cuda)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile run")
    a = p.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for batch, precision, compiled in CNN:
            if compiled and a.no_compile:
                continue
            train = TrainConfig(epochs=a.epochs, batch_size=batch, precision=precision,
                                compile=compiled, device=a.device, quiet=True)  # fmt: skip
            lr = 3e-3 * (batch / 128) ** 0.5  # square-root scaling from the default recipe
            cfg = RunConfig(DataConfig(a.images), ModelConfig("cnn"), OptimConfig(lr=lr), train)
            label = f"cnn b{batch} {precision}{' compile' if compiled else ''}"
            rows.append(_run(cfg, root, label))
        if a.text:
            for model in ("bag", "lstm"):
                runs = [(a.device, "fp32"), (a.device, "bf16"), ("cpu", "fp32")]
                for device, precision in dict.fromkeys(runs):
                    train = TrainConfig(device=device, precision=precision, quiet=True,
                                        **recipe(model, "train"))  # fmt: skip
                    cfg = RunConfig(
                        DataConfig(a.text, cache_dir=str(root / "cache"), **recipe(model, "data")),
                        ModelConfig(model, **recipe(model, "model")),
                        OptimConfig(**recipe(model, "optim")),
                        train,
                    )
                    rows.append(_run(cfg, root, f"{model} defaults {device} {precision}"))
    gpu = device_name(torch.device(a.device))
    name = dated_name(a.out, f"gpu_sweep_{hardware_tag(a.device)}", ".md", ".json")
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / f"{name}.json").write_text(json.dumps({"gpu": gpu, "rows": rows}, indent=1))
    lines = [
        f"# GPU training sweep: {gpu}", "",
        f"Date: {time.strftime('%Y-%m-%d')}. Command: `python benchmarks/gpu_sweep.py "
        f"--images {a.images} --text {a.text} --epochs {a.epochs}"
        f"{' --no-compile' if a.no_compile else ''}`. torch {torch.__version__}, "
        f"Python {platform.python_version()}, {torch.get_num_threads()} CPU threads.", "",
        "| run | samples/s | MFU | test accuracy | epochs | wall s |", "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['run']} | failed: {r['error']} | | | | |")
            continue
        mfu = "—" if r["mfu"] is None else f"{r['mfu']:.4f}"
        lines.append(f"| {r['run']} | {r['samples_per_second']:,.0f} | {mfu} | "
                     f"{r['test_accuracy']:.4f} | {r['epochs']} | {r['wall_s']} |")  # fmt: skip
    (a.out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
