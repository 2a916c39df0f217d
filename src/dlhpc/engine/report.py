"""``RUN/report.md`` with loss/accuracy curves and the confusion matrix as PNG (matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dlhpc.fsio import atomic_write, atomic_write_text


def _figure(**kw: Any) -> Any:
    """A matplotlib figure drawn by Agg, without pyplot (its import and global state are
    ≈ 0.2 s of every training run's report)."""
    from matplotlib.figure import Figure

    return Figure(**kw)


def _plot_curves(path: Path, history: list[dict[str, Any]]) -> None:
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


def _plot_confusion(path: Path, confusion: torch.Tensor, labels: list[str]) -> None:
    k = len(labels)
    fig = _figure(figsize=(1.5 + 0.45 * k, 1.2 + 0.45 * k))
    ax = fig.subplots()
    ax.imshow(confusion.numpy(), cmap="Blues")
    ax.set_xticks(range(k), labels, rotation=90 if k > 12 else 0)
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 20:
        vmax = int(confusion.max())
        for i in range(k):
            for j in range(k):
                v = int(confusion[i, j])
                color = "white" if v > vmax / 2 else "black"
                ax.text(j, i, str(v), ha="center", va="center", fontsize=7, color=color)
    fig.tight_layout()  # class names of any length
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


def write_report(
    run_dir: Path,
    summary: dict[str, Any],
    history: list[dict[str, Any]],
    confusion: torch.Tensor | None,
    labels: list[str],
) -> None:
    lines = [f"# {summary['model']} — {run_dir.name}", "", "| metric | value |", "|---|---|"]
    for k, v in summary.items():
        if isinstance(v, float):
            v = f"{v:.4g}"
        lines.append(f"| {k} | {v} |")
    if history:
        _plot_curves(run_dir / "curves.png", history)
        lines += ["", "## Curves", "", "![loss and accuracy](curves.png)"]
        lines += ["", "| epoch | train loss | train acc | eval | seconds |", "|---" * 5 + "|"]
        for h in history:
            ev = ", ".join(
                f"{s} acc {h[f'{s}_accuracy']:.4f}" for s in ("val", "test") if f"{s}_loss" in h
            )
            lines.append(
                f"| {h['epoch']} | {h['train_loss']:.4f} | {h['train_accuracy']:.4f} | {ev} "
                f"| {h['elapsed']:.1f} |"
            )
    if confusion is not None:
        _plot_confusion(run_dir / "confusion.png", confusion, labels)
        lines += ["", "## Confusion matrix (test)", "", "![confusion matrix](confusion.png)"]
    atomic_write_text(run_dir / "report.md", "\n".join(lines) + "\n")
