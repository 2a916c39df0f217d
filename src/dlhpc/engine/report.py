"""``RUN/report.md`` with loss/accuracy curves and the confusion matrix as PNG (engine.plots)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dlhpc.engine import plots
from dlhpc.fsio import atomic_write_text


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
    figures: list[dict[str, Any]] = []
    if history:
        figures.append({"kind": "curves", "path": str(run_dir / "curves.png"), "history": history})
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
        figures.append({"kind": "confusion", "path": str(run_dir / "confusion.png"),
                        "matrix": confusion.tolist(), "labels": list(labels)})  # fmt: skip
        lines += ["", "## Confusion matrix (test)", "", "![confusion matrix](confusion.png)"]
    plots.draw(figures)  # on disk before report.md links them
    atomic_write_text(run_dir / "report.md", "\n".join(lines) + "\n")
