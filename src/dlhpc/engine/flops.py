"""FLOPs per training sample (counted, not estimated) and this machine's measured GEMM peak.

    flops = count_train_flops(model, batches, 64)      # forward + backward, per sample
    peak = measured_peak(torch.device("cpu"))           # {"flops": …, "measured": …}

``mfu`` (model FLOPs utilisation) = flops per sample × samples/s ÷ peak. The peak is a
measurement of large matrix multiplies on this device with these threads (≈ 0.6 s per dtype),
kept for ``PEAK_TTL_S`` in a small cache file that later runs read.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from dlhpc.data.batches import Batches
from dlhpc.errors import DlhpcError
from dlhpc.fsio import atomic_write_json, read_json


class _FlopCounter(FlopCounterMode):
    """``FlopCounterMode`` (its FLOP formulas, module tracking and totals) without importing
    ``torch._dynamo``, which its dispatch mode loads on entry to keep ``torch.compile`` out of
    it: ≈ 2 s of start-up for every training run, which never compiles inside the count.
    Where PyTorch's internals differ from the ones this was written against, the plain
    ``FlopCounterMode`` is used."""

    def __enter__(self) -> _FlopCounter:
        mode = _dynamo_free_mode()
        if mode is None:
            super().__enter__()  # type: ignore[no-untyped-call]
            return self
        self.flop_counts.clear()
        self.mod_tracker.__enter__()  # type: ignore[no-untyped-call]
        self.mode = mode(self)
        self.mode.__enter__()
        return self


def _dynamo_free_mode() -> Any:
    inner = getattr(flop_counter, "_FlopCounterMode", None)
    dispatch = getattr(inner, "__dict__", {}).get("__torch_dispatch__")
    raw = getattr(dispatch, "__wrapped__", None)  # the function torch._disable_dynamo wrapped
    if inner is None or raw is None:
        return None

    class Mode(inner):  # type: ignore[misc, valid-type]
        @classmethod
        def _should_skip_dynamo(cls) -> bool:
            return False  # TorchDispatchMode.__init_subclass__: leave __torch_dispatch__ as is

        __torch_dispatch__ = raw

    return Mode


def count_train_flops(model: nn.Module, data: Batches, batch_size: int) -> float:
    """FLOPs of one forward + backward pass per sample, on the first ``batch_size`` samples.

    The model's weights and gradients are left as they were.
    """
    n = min(batch_size, len(data))
    if n == 0:
        return 0.0
    idx = torch.arange(n, device=data.index_device)
    grads = {p: p.grad for p in model.parameters()}
    was_training = model.training
    model.train()
    try:
        with _FlopCounter(display=False) as counter:
            loss = F.cross_entropy(model(*data.inputs(idx)), data.labels(idx))
            loss.backward()  # type: ignore[no-untyped-call]
    finally:
        for p, g in grads.items():
            p.grad = g
        model.train(was_training)
    return float(counter.get_total_flops()) / n


def cpu_name() -> str:
    return device_name(torch.device("cpu"))


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure_peak(
    device: torch.device, dtype: torch.dtype = torch.float32, seconds: float = 0.6
) -> float:
    """Best FLOP/s of square matrix multiplies (the roofline's compute roof) on ``device``.

    On CUDA the products are queued in growing chunks with one synchronisation per chunk, and
    the sizes are large enough that launch overhead does not hide the arithmetic rate.
    """
    sizes = (2048, 4096, 8192) if device.type == "cuda" else (512, 1024, 2048)
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        torch.mm(a, b)  # warm-up
        _sync(device)
        reps, chunk, start = 0, 1, time.perf_counter()
        while True:
            for _ in range(chunk):
                torch.mm(a, b)
            _sync(device)
            reps += chunk
            elapsed = time.perf_counter() - start
            if elapsed > seconds / len(sizes):
                break
            chunk = min(2 * chunk, 64)
        best = max(best, 2 * n**3 * reps / elapsed)
        if elapsed > seconds:  # a slow dtype here (bf16 without hardware support): stop growing
            break
    return best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


PEAK_TTL_S = 900.0  # later runs on this machine reuse a measured peak for this long
_MEASURED: dict[str, dict[str, Any]] = {}


def peak_cache_file() -> Path:
    """Where measured peaks are kept between runs (``$DLHPC_CACHE`` or ~/.cache/dlhpc)."""
    root = os.environ.get("DLHPC_CACHE") or Path.home() / ".cache" / "dlhpc"
    return Path(root) / "peak.json"


def measured_peak(device: torch.device, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """This device's GEMM peak with the current threads: measured once per process, and reused
    by later processes for ``PEAK_TTL_S`` seconds (≈ 1 s saved per run: the peak is a property
    of the machine, and within minutes the same load). Keyed by device, threads, dtype and torch
    version; an unreadable cache is measured over, never an error."""
    threads = torch.get_num_threads()
    name = device_name(device)
    key = f"{name}|{device.type}|{threads}|{dtype}|{torch.__version__}"
    if key in _MEASURED:
        return dict(_MEASURED[key])
    path = peak_cache_file()
    try:
        cached = read_json(path)
    except (OSError, ValueError, DlhpcError):
        cached = {}

    def fresh(v: Any) -> bool:
        return isinstance(v, dict) and 0 <= time.time() - float(v.get("at", 0)) < PEAK_TTL_S

    others = {k: v for k, v in cached.items() if fresh(v)} if isinstance(cached, dict) else {}
    entry = others.get(key)
    if entry is None:
        entry = {
            "flops": measure_peak(device, dtype),
            "device": name,
            "threads": threads,
            "dtype": str(dtype).removeprefix("torch."),
            "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
            "at": time.time(),
        }
        with contextlib.suppress(OSError):  # a read-only home: measured again next time
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path, {**others, key: entry})
    _MEASURED[key] = entry
    return dict(entry)
