"""``dlhpc bench …``: side-by-side measurements.

dlhpc bench peak                      # this machine's fp32 and bf16 matrix-multiply peak
dlhpc bench train --out benchmarks    # the tutorial's CNN: dlhpc vs Keras vs a PyTorch loop
dlhpc bench train --model bag         # text: dlhpc's defaults vs fastText and Keras
dlhpc bench scale --out benchmarks    # 1..N ranks × threads: scaling efficiency
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dlhpc.cli.common import add_output_flags, emit, fraction, positive_float, positive_int
from dlhpc.fsio import unwritable


def out_dir(text: str) -> str:
    """An argparse type for ``--out``: a directory, or a path that can be made one. Checked when
    the command line is read: the report is written after minutes of runs, too late to find the
    path unusable."""
    why = unwritable(Path(text).expanduser(), directory=True)
    if why is not None:
        raise argparse.ArgumentTypeError(why)
    return text


def _cmd_peak(a: argparse.Namespace) -> int:
    import torch

    from dlhpc.engine.env import ClusterEnv, resolve_device, resolve_threads
    from dlhpc.engine.flops import device_name, measure_peak

    threads = resolve_threads(ClusterEnv(), a.threads)
    torch.set_num_threads(threads)
    device = resolve_device(a.device, ClusterEnv())
    result: dict[str, Any] = {"device": device_name(device), "threads": threads}
    for dtype in (torch.float32, torch.bfloat16):
        name = str(dtype).removeprefix("torch.")
        try:
            result[f"{name}_gflops"] = round(measure_peak(device, dtype, a.seconds) / 1e9, 2)
        except RuntimeError as e:  # a dtype this device cannot multiply
            result[f"{name}_gflops"] = None
            result[f"{name}_error"] = str(e).splitlines()[0]
    if device.type == "cuda":
        from dlhpc.bench.plan_catalog import datasheet_for

        sheet = datasheet_for(result["device"])
        if sheet is not None:  # known GPUs: the datasheet beside the measurement
            result["datasheet"] = sheet.name
            for key, flops in (("float32", sheet.fp32_flops), ("bfloat16", sheet.bf16_flops)):
                if flops and result.get(f"{key}_gflops"):
                    result[f"{key}_datasheet_gflops"] = round(flops / 1e9, 1)
                    result[f"{key}_of_datasheet"] = round(result[f"{key}_gflops"] * 1e9 / flops, 3)
    emit(a, result, f"GEMM peak on {result['device']} ({device.type}, {threads} thread(s)):")
    return 0


def _cmd_scale(a: argparse.Namespace) -> int:
    import shlex
    import sys

    from dlhpc.bench.scale import run_scale, write_report

    result = run_scale(a.model, a.data, a.epochs, a.batch_size, a.repeats, a.target, a.max_ranks)
    command = "dlhpc " + shlex.join(sys.argv[1:])
    report = write_report(result, Path(a.out), command) if a.out else None
    if not a.quiet:
        for r in result["rows"]:
            head = f"{r['mode']:>6} {r['ranks']} rank(s) × {r['threads']} thread(s): "
            rate = f"{r['samples_per_second']:>9,.0f} samples/s  {r['speedup']:.2f}×"
            wait = "" if r["waiting_share"] is None else f"  waiting {r['waiting_share']:.0%}"
            print(f"{head}{rate}  efficiency {r['efficiency']:.0%}  acc {r['test_accuracy']:.4f}"
                  f"{wait}")  # fmt: skip
        if report:
            print(f"report: {report}")
    if a.json:
        print(json.dumps({**result, "report": str(report) if report else None}))
    return 0


def _cmd_train(a: argparse.Namespace) -> int:
    import shlex
    import sys

    from dlhpc.bench import check_python
    from dlhpc.bench.train import run_bench, write_report
    from dlhpc.engine.env import ClusterEnv, resolve_device, resolve_threads

    if a.peers_python is not None:  # now: the peers run after dlhpc's runs (and the corpus)
        a.peers_python = check_python(a.peers_python)
    threads = resolve_threads(ClusterEnv(), a.threads)
    if a.model != "cnn":
        return _text_train_bench(a, threads)
    device = resolve_device(a.device, ClusterEnv()).type
    result = run_bench(a.data, threads, a.repeats, a.target, a.peers_python, device)
    report = (
        write_report(result, Path(a.out), "dlhpc " + shlex.join(sys.argv[1:])) if a.out else None
    )
    if not a.quiet:
        for name, row in result["rows"].items():
            if "skipped" in row:
                print(f"{name:>24}: skipped ({row['skipped']})")
                continue
            tta = row["time_to_target_s"]
            print(f"{name:>24}: {row['samples_per_second']:>8,.0f} samples/s, "
                  f"to {a.target:.0%}: {'—' if tta is None else f'{tta:.1f} s'}, "
                  f"final {row['final_accuracy']:.4f}")  # fmt: skip
        if report:
            print(f"report: {report}")
    if a.json:
        print(json.dumps({**result, "report": str(report) if report else None}))
    return 0


def _text_train_bench(a: argparse.Namespace, threads: int) -> int:
    """``bag``/``lstm``: dlhpc's defaults vs fastText and the tutorial's Keras models, on the
    standard-library docstring corpus (built in a temporary directory unless --data names one)."""
    import sys
    from importlib.util import find_spec

    from dlhpc.bench import scratch_dir, text_corpus, text_peers
    from dlhpc.errors import DlhpcError

    if a.device != "cpu":
        raise DlhpcError("--model bag|lstm compares CPU tools: use --device cpu")
    if a.data != "digits":  # a corpus of the user's: checked before the corpus of ours is built
        text_peers.check_corpus(Path(a.data).expanduser().resolve())
    with scratch_dir("dlhpc-corpus-") as tmp:
        data = a.data
        if data == "digits":  # the default names the image set: build the text corpus
            data = str(tmp)
            text_corpus.write_corpus(text_corpus.build_corpus(), tmp)
        argv = ["--data", data, "--threads", str(threads), "--dlhpc-threads", str(threads),
                "--repeats", str(a.repeats), "--only", a.model]  # fmt: skip
        peers = a.peers_python or (
            sys.executable if find_spec("fasttext") or find_spec("tensorflow") else None
        )
        argv += ["--peers-python", peers] if peers else []
        argv += ["--out", a.out] if a.out else []
        return text_peers.main(argv)


def add_bench(sub: Any) -> None:
    from dlhpc.models import model_names

    raw = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("bench", help="side-by-side benchmarks", description=__doc__,
                       formatter_class=raw)  # fmt: skip
    bench = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    peak = bench.add_parser("peak", help="measure this machine's matrix-multiply peak")
    peak.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="(auto)")
    peak.add_argument("--threads", type=positive_int, help="intra-op threads (all cores)")
    peak.add_argument("--seconds", type=positive_float, default=1.0, help="per dtype (1.0)")
    add_output_flags(peak)
    peak.set_defaults(func=_cmd_peak)
    scale = bench.add_parser("scale", help="throughput for 1..N ranks × threads (a report)")
    scale.add_argument("--model", default="cnn", choices=model_names(), help="(cnn)")
    scale.add_argument("--data", default="digits", help="(digits)")
    scale.add_argument("--epochs", type=positive_int, default=15, help="(15)")
    scale.add_argument("--batch-size", type=positive_int, default=128,
                       help="global, strong scaling (128)")  # fmt: skip
    scale.add_argument("--repeats", type=positive_int, default=2, help="interleaved repeats (2)")
    scale.add_argument("--target", type=fraction, default=0.97,
                       help="accuracy for time-to (0.97)")  # fmt: skip
    scale.add_argument("--max-ranks", type=positive_int,
                       help="2 or more (the cores available)")  # fmt: skip
    scale.add_argument("--out", type=out_dir,
                       help="directory for the dated report, e.g. benchmarks")  # fmt: skip
    add_output_flags(scale)
    scale.set_defaults(func=_cmd_scale)
    train = bench.add_parser(
        "train", help="dlhpc vs the tutorial's Keras, a plain PyTorch loop, fastText"
    )
    train.add_argument("--model", choices=("cnn", "bag", "lstm"), default="cnn",
                       help="cnn: vs Keras and a PyTorch loop; bag|lstm: vs fastText and Keras "
                            "(cnn)")  # fmt: skip
    train.add_argument("--data", default="digits",
                       help="image source for cnn (digits); text source for bag|lstm (the "
                            "stdlib-docstring corpus, built on the fly)")  # fmt: skip
    train.add_argument("--threads", type=positive_int, help="for every runner (all cores)")
    train.add_argument("--repeats", type=positive_int, default=2, help="interleaved repeats (2)")
    train.add_argument("--target", type=fraction, default=0.97, help="test accuracy (0.97)")
    train.add_argument("--peers-python", help="python of an environment with TensorFlow")
    train.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu",
                       help="for dlhpc and the PyTorch loop (cpu)")  # fmt: skip
    train.add_argument("--out", type=out_dir,
                       help="directory for the dated report, e.g. benchmarks")  # fmt: skip
    add_output_flags(train)
    train.set_defaults(func=_cmd_train)


COMMANDS = (add_bench,)
