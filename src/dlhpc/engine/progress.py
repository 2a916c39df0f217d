"""A rich progress bar with samples/s and ETA; silent with --quiet or when stdout is no terminal."""

from __future__ import annotations

import sys
from types import TracebackType

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} samples/s" if speed else "… samples/s", style="cyan")


class TrainProgress:
    """One bar per epoch, counting samples."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stdout.isatty()
        self._p: Progress | None = None
        self._task: object = None

    def __enter__(self) -> TrainProgress:
        if self.enabled:
            self._p = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                _RateColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                transient=False,
            )
            self._p.__enter__()
        return self

    def start_epoch(self, epoch: int, epochs: int, total: int, done: int = 0) -> None:
        if self._p is not None:
            self._task = self._p.add_task(
                f"epoch {epoch + 1}/{epochs}", total=total, completed=done, info=""
            )

    def advance(self, samples: int) -> None:
        if self._p is not None:
            self._p.advance(self._task, samples)  # type: ignore[arg-type]

    def set_info(self, info: str) -> None:
        if self._p is not None:
            self._p.update(self._task, info=info)  # type: ignore[arg-type]

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._p is not None:
            self._p.__exit__(et, e, tb)
