"""One MLP training step: the NumPy reference (hand-written backprop) vs PyTorch, on CPU.

Run it::

    python -m dlhpc.bench.reference_mlp --out benchmarks  # benchmarks/reference_mlp_cpu_<date>.md
    python -m dlhpc.bench.reference_mlp --threads 1 --repeats 100 --out /tmp/bench

Method: Both networks start from the same float32 weights and see the same batch. A step is
forward + softmax cross-entropy + backward + plain SGD update (``p ← p − lr·g``). After
``warmup`` untimed steps each, the two are timed in interleaved pairs (the order alternates
every repeat so drift — thermal, a neighbour's load — hits both alike) and the medians are
compared. PyTorch's intra-op threads are set with ``torch.set_num_threads``; NumPy's BLAS
(OpenBLAS in the numpy wheels) is limited through ``threadpoolctl`` when it is installed, and
otherwise runs with the BLAS library's own default, which the report states.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dlhpc.fsio import atomic_write_text, dated_name
from dlhpc.models.mlp import MLP as TorchMLP
from dlhpc.reference.mlp import MLP as NumpyMLP

try:  # ships with scikit-learn; optional here
    import threadpoolctl  # type: ignore[import-untyped,unused-ignore]
except ImportError:  # pragma: no cover - depends on the environment
    threadpoolctl = None


def numpy_blas_info() -> list[dict[str, Any]]:
    """The BLAS libraries NumPy loaded and their thread counts (empty without threadpoolctl)."""
    if threadpoolctl is None:
        return []
    keys = ("internal_api", "version", "num_threads", "filepath")
    return [
        {k: lib.get(k) for k in keys}
        for lib in threadpoolctl.threadpool_info()
        if lib.get("user_api") == "blas" and "torch" not in str(lib.get("filepath"))
    ]


@contextlib.contextmanager
def _threads(threads: int | None) -> Iterator[None]:
    """Set torch's and NumPy-BLAS's thread counts for the block, then put them back."""
    before = torch.get_num_threads()
    limiter: Any = contextlib.nullcontext()
    if threads is not None:
        torch.set_num_threads(threads)
        if threadpoolctl is not None:
            limiter = threadpoolctl.threadpool_limits(limits=threads, user_api="blas")
    try:
        with limiter:
            yield
    finally:
        torch.set_num_threads(before)


def _twins(sizes: list[int], seed: int) -> tuple[NumpyMLP, TorchMLP]:
    """A float32 reference MLP and the torch MLP holding the same weights."""
    ref = NumpyMLP(sizes, activation="relu", seed=seed, dtype=np.float32)
    model = TorchMLP(sizes[0], sizes[1:-1], sizes[-1], act="relu")
    with torch.no_grad():
        for lin, W_IO, b_O in zip(model.linears, ref.weights, ref.biases, strict=True):
            lin.weight.copy_(torch.from_numpy(W_IO.T.copy()))  # torch stores (out, in)
            lin.bias.copy_(torch.from_numpy(b_O))
    return ref, model


def _training_steps(
    sizes: list[int], X_NF: np.ndarray, y_N: np.ndarray, lr: float, seed: int
) -> tuple[Callable[[], float], Callable[[], float]]:
    """One SGD training step of each twin on the same batch; each returns its loss."""
    ref, model = _twins(sizes, seed)
    xt, yt = torch.from_numpy(X_NF), torch.from_numpy(y_N)
    opt = torch.optim.SGD(model.parameters(), lr=lr)

    def numpy_step() -> float:
        loss, dW, db = ref.loss_and_grads(X_NF, y_N)
        for p, g in zip(ref.params, [*dW, *db], strict=True):
            p -= lr * g
        return loss

    def torch_step() -> float:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xt), yt)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        return float(loss.detach())  # one scalar read, as the NumPy step returns its loss

    return numpy_step, torch_step


def bench_mlp_step(
    batch_size: int = 256,
    hidden: Sequence[int] = (256, 128),
    in_features: int = 784,
    classes: int = 10,
    threads: int | None = None,
    repeats: int = 100,
    warmup: int = 5,
    lr: float = 0.01,
    seed: int = 0,
) -> dict[str, Any]:
    """Median seconds per training step of each implementation, and their ratio."""
    sizes = [in_features, *hidden, classes]
    rng = np.random.default_rng(seed)
    X_NF = rng.normal(size=(batch_size, in_features)).astype(np.float32)
    y_N = rng.integers(0, classes, batch_size)
    numpy_step, torch_step = _training_steps(sizes, X_NF, y_N, lr, seed)

    with _threads(threads):
        # Same weights, same batch: the first losses must agree (float32 rounding only).
        first = (numpy_step(), torch_step())
        for _ in range(warmup - 1):
            numpy_step(), torch_step()
        times = _interleaved({"numpy": numpy_step, "torch": torch_step}, repeats)
        used = {"torch": torch.get_num_threads(), "numpy_blas": numpy_blas_info()}
    t_np, t_pt = statistics.median(times["numpy"]), statistics.median(times["torch"])
    return {
        "config": {
            "batch_size": batch_size,
            "sizes": sizes,
            "activation": "relu",
            "dtype": "float32",
            "optimizer": f"SGD lr={lr}, no momentum",
            "threads_requested": threads,
            "repeats": repeats,
            "warmup": warmup,
            "seed": seed,
        },
        "threads_used": used,
        "first_step_loss": {"numpy": first[0], "torch": first[1]},
        "numpy_ms": 1e3 * t_np,
        "torch_ms": 1e3 * t_pt,
        "numpy_samples_per_s": batch_size / t_np,
        "torch_samples_per_s": batch_size / t_pt,
        "torch_over_numpy_time": t_pt / t_np,
        "spread_ms": {k: _spread_ms(v) for k, v in times.items()},
    }


def _interleaved(steps: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    names = list(steps)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:  # alternate who goes first
            t0 = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def _spread_ms(xs: list[float]) -> dict[str, float]:
    q = statistics.quantiles(xs, n=10) if len(xs) > 1 else [xs[0]] * 9
    return {"p10": 1e3 * q[0], "p90": 1e3 * q[-1]}


def hardware() -> dict[str, str]:
    """CPU model and counts from ``lscpu`` (Linux), else what ``platform`` knows."""
    info = {"cpu": platform.processor() or platform.machine(), "logical_cpus": str(os.cpu_count())}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return info
    fields = dict(
        (k.strip(), v.strip())
        for k, _, v in (line.partition(":") for line in out.stdout.splitlines())
    )
    info["cpu"] = fields.get("Model name", info["cpu"])
    for key in ("CPU(s)", "Core(s) per socket", "Socket(s)", "Thread(s) per core"):
        if key in fields:
            info[key] = fields[key]
    return info


def _table_rows(result: dict[str, Any]) -> list[str]:
    threads = result["threads_used"]
    blas = threads["numpy_blas"]
    np_threads = (
        "/".join(str(lib["num_threads"]) for lib in blas) if blas else "BLAS default (unknown)"
    )
    cfg = result["config"]
    label = "library default" if cfg["threads_requested"] is None else cfg["threads_requested"]
    ratio = result["torch_over_numpy_time"]
    return [
        f"| {label} | NumPy reference | {np_threads} | {result['numpy_ms']:.2f} "
        f"| {result['spread_ms']['numpy']['p10']:.2f}–{result['spread_ms']['numpy']['p90']:.2f} "
        f"| {result['numpy_samples_per_s']:,.0f} | 1.00 |",
        f"| {label} | PyTorch `models.mlp.MLP` | {threads['torch']} | {result['torch_ms']:.2f} "
        f"| {result['spread_ms']['torch']['p10']:.2f}–{result['spread_ms']['torch']['p90']:.2f} "
        f"| {result['torch_samples_per_s']:,.0f} | {ratio:.2f} |",
    ]


def versions() -> dict[str, str]:
    mkl = torch.backends.mkl.is_available()  # type: ignore[no-untyped-call]
    out = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch BLAS": "MKL" if mkl else "not MKL (see torch.__config__.show())",
    }
    blas = numpy_blas_info()
    out["numpy BLAS"] = ", ".join(f"{b['internal_api']} {b['version']}" for b in blas) or "unknown"
    out["threadpoolctl"] = threadpoolctl.__version__ if threadpoolctl is not None else "absent"
    return out


def render_report(results: list[dict[str, Any]], command: str, load: tuple[float, float]) -> str:
    """The Markdown document: hardware, versions, config, method, table, headline ratio."""
    hw = hardware()
    cfg = {k: v for k, v in results[0]["config"].items() if k != "threads_requested"}
    method = (__doc__ or "Method: see the module docstring.").split("Method:", 1)[1].strip()
    lines = [
        "# One MLP training step: NumPy reference vs PyTorch (CPU)",
        "",
        f"Date: {dt.date.today().isoformat()}. Command: `{command}`.",
        "",
        "## Hardware",
        "",
        *(f"- {k}: {v}" for k, v in hw.items()),
        f"- 1-minute load average before / after the run: {load[0]:.2f} / {load[1]:.2f}"
        " (it lags by about a minute; other busy processes inflate the times, most at 2+ threads)",
        "",
        "## Versions",
        "",
        *(f"- {k}: {v}" for k, v in versions().items()),
        "",
        "## Config",
        "",
        "```",
        *(f"{k} = {v}" for k, v in cfg.items()),
        "threads = " + ", ".join(str(r["config"]["threads_requested"]) for r in results),
        "```",
        "",
        "## Method",
        "",
        " ".join(method.split()),
        "",
        "## Results",
        "",
        "| threads requested | implementation | threads used | median ms/step | p10–p90 ms "
        "| samples/s | time ratio (÷ NumPy) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines += _table_rows(r)
    lines += ["", "## Headline", ""]
    for r in results:
        ratio = r["torch_over_numpy_time"]
        lines.append(
            f"- threads {r['config']['threads_requested'] or 'default'}: a PyTorch step takes "
            f"{ratio:.2f}× the NumPy step's time ({1 / ratio:.2f}× the NumPy throughput). "
            f"First-step losses: NumPy {r['first_step_loss']['numpy']:.6f}, "
            f"torch {r['first_step_loss']['torch']:.6f} (same weights, same batch)."
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks"), help="report directory")
    parser.add_argument(
        "--threads", type=int, nargs="*", default=None, help="thread counts (default: 1 and all)"
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args(argv)
    threads = args.threads or sorted({1, os.cpu_count() or 1})
    before = os.getloadavg()[0]
    results = [
        bench_mlp_step(batch_size=args.batch_size, threads=t, repeats=args.repeats) for t in threads
    ]
    command = "python -m dlhpc.bench.reference_mlp " + " ".join(argv or [])
    report = render_report(results, command.strip(), (before, os.getloadavg()[0]))
    path = args.out / f"{dated_name(args.out, 'reference_mlp_cpu', '.md')}.md"
    return atomic_write_text(path, report)


if __name__ == "__main__":
    print(main(sys.argv[1:]))
