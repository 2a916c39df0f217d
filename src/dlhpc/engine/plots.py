"""The run report's figures (matplotlib, Agg), drawn here or by a helper process started early.

    plots.prestart()        # `dlhpc train`, before torch loads: a helper imports matplotlib
    ...                     # (≈ 0.6 s) on the core that importing torch leaves idle
    plots.draw([{"kind": "curves", "path": "RUN/curves.png", "history": [...]},
                {"kind": "confusion", "path": "RUN/confusion.png", "matrix": [[...]],
                 "labels": [...]}])

``draw`` hands the figures to the helper when one is waiting and blocks until they are written,
so the report never points at a missing PNG; without a helper, or if it fails, it draws them in
this process. Either way each PNG is written atomically. A helper that is never used exits when
this process does (its stdin closes). Nothing here imports torch.

Why: for a small run, the report's figures were a fifth of ``dlhpc train bag``'s 6 s end to end,
most of it importing matplotlib (``benchmarks/text_bag_cpu_20261128.md``).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import subprocess
import sys
from typing import Any

from dlhpc.fsio import atomic_write

__all__ = ["draw", "prestart"]

_helper: subprocess.Popen[str] | None = None


def prestart() -> None:
    """Start the helper (``python -m dlhpc.engine.plots``) unless one is waiting already."""
    global _helper
    if _helper is not None and _helper.poll() is None:
        return
    try:
        _helper = subprocess.Popen(
            # -P: the working directory does not shadow installed packages
            [sys.executable, "-P", "-m", "dlhpc.engine.plots"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
    except OSError:
        _helper = None


def _release() -> None:
    if _helper is not None and _helper.stdin is not None:
        with contextlib.suppress(OSError):
            _helper.stdin.close()  # the helper reads EOF and exits


atexit.register(_release)


def draw(jobs: list[dict[str, Any]]) -> None:
    """Write every figure of ``jobs``; return once all are on disk."""
    global _helper
    helper, _helper = _helper, None
    if helper is not None and helper.poll() is None:
        try:
            out, _ = helper.communicate(json.dumps(jobs) + "\n" if jobs else "", timeout=120)
            if helper.returncode == 0 and (out.strip() == "ok" or not jobs):
                return
        except (OSError, ValueError, subprocess.TimeoutExpired):
            helper.kill()
            helper.wait()
    for job in jobs:  # no helper, or it failed: draw them here
        _draw(job)


def _draw(job: dict[str, Any]) -> None:
    if job["kind"] == "curves":
        _curves(job["path"], job["history"])
    elif job["kind"] == "confusion":
        _confusion(job["path"], job["matrix"], job["labels"])
    else:
        raise ValueError(f"unknown figure kind {job['kind']!r}")


def _figure(**kw: Any) -> Any:
    """A figure drawn by Agg, without pyplot (its import and global state cost ≈ 0.2 s)."""
    from matplotlib.figure import Figure

    return Figure(**kw)


def _curves(path: str, history: list[dict[str, Any]]) -> None:
    epochs = [h["epoch"] for h in history]
    fig = _figure(figsize=(10, 3.8))
    ax_l, ax_a = fig.subplots(1, 2)
    # Fixed margins (the labels are fixed): tight_layout would draw the figure twice.
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.14, top=0.9, wspace=0.22)
    for split in ("train", "val", "test"):
        if f"{split}_loss" in history[0]:
            ax_l.plot(epochs, [h[f"{split}_loss"] for h in history], marker="o", label=split)
            ax_a.plot(epochs, [h[f"{split}_accuracy"] for h in history], marker="o", label=split)
    for ax, title in ((ax_l, "loss"), (ax_a, "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


def _confusion(path: str, matrix: list[list[int]], labels: list[str]) -> None:
    k = len(labels)
    fig = _figure(figsize=(1.5 + 0.45 * k, 1.2 + 0.45 * k))
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    # upright column labels only where they fit: short names, few classes
    upright = k <= 12 and max((len(name) for name in labels), default=0) * k <= 48
    ax.set_xticks(range(k), labels, rotation=0 if upright else 90)
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 20:
        vmax = max((v for row in matrix for v in row), default=0)
        for i in range(k):
            for j in range(k):
                v = matrix[i][j]
                color = "white" if v > vmax / 2 else "black"
                ax.text(j, i, str(v), ha="center", va="center", fontsize=7, color=color)
    fig.tight_layout()  # class names of any length
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


def _serve() -> int:
    """The helper: import matplotlib now, then draw the one batch of jobs stdin brings."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.figure

    line = sys.stdin.readline()
    if not line.strip():
        return 0  # the parent finished without a report
    for job in json.loads(line):
        _draw(job)
    sys.stdout.write("ok\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    sys.exit(_serve())
