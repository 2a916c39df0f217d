"""``dlhpc bench …``: side-by-side measurements.

dlhpc bench peak            # this machine's fp32 (and bf16) matrix-multiply peak
"""

from __future__ import annotations

import argparse
from typing import Any

from dlhpc.cli.common import add_output_flags, emit


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
    emit(a, result, f"GEMM peak on {result['device']} ({device.type}, {threads} thread(s)):")
    return 0


def add_bench(sub: Any) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("bench", help="side-by-side benchmarks", description=__doc__,
                       formatter_class=raw)  # fmt: skip
    bench = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    peak = bench.add_parser("peak", help="measure this machine's matrix-multiply peak")
    peak.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="(auto)")
    peak.add_argument("--threads", type=int, help="intra-op threads (all cores)")
    peak.add_argument("--seconds", type=float, default=1.0, help="per dtype (1.0)")
    add_output_flags(peak)
    peak.set_defaults(func=_cmd_peak)


COMMANDS = (add_bench,)
