"""The report's figures: drawn by the helper process or in-process, atomically, readable by all."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dlhpc.engine import plots
from dlhpc.fsio import atomic_write_text

PNG = b"\x89PNG\r\n\x1a\n"
HISTORY = [
    {"epoch": e, "train_loss": 1.0 / e, "train_accuracy": 0.5 + e / 10,
     "test_loss": 1.2 / e, "test_accuracy": 0.4 + e / 10}
    for e in (1, 2, 3)
]  # fmt: skip


def jobs(d: Path) -> list[dict[str, object]]:
    return [
        {"kind": "curves", "path": str(d / "curves.png"), "history": HISTORY},
        {"kind": "confusion", "path": str(d / "confusion.png"), "matrix": [[5, 1], [2, 7]],
         "labels": ["internet_protocols", "b"]},
    ]  # fmt: skip


def pngs(d: Path) -> list[bytes]:
    return [(d / n).read_bytes()[:8] for n in ("curves.png", "confusion.png")]


def test_the_helper_draws_the_figures_and_exits(tmp_path: Path) -> None:
    plots.prestart()
    helper = plots._helper
    assert helper is not None and helper.poll() is None
    plots.draw(jobs(tmp_path))
    assert pngs(tmp_path) == [PNG, PNG]
    assert helper.returncode == 0 and plots._helper is None  # used once, then gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion.png", "curves.png"]


def test_without_a_helper_or_when_it_dies_the_figures_are_drawn_here(tmp_path: Path) -> None:
    plots.draw(jobs(tmp_path / "none"))
    assert pngs(tmp_path / "none") == [PNG, PNG]
    plots.prestart()
    assert plots._helper is not None
    plots._helper.kill()
    plots._helper.wait()
    plots.draw(jobs(tmp_path / "dead"))
    assert pngs(tmp_path / "dead") == [PNG, PNG]


def test_an_unused_helper_exits_with_its_parent() -> None:
    code = "from dlhpc.engine import plots; plots.prestart(); print(plots._helper.pid)"
    pid = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, timeout=60).stdout)  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        stat_line = (
            Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}/stat").exists() else ""
        )
        if ") Z " in stat_line:  # exited, not yet reaped by its new parent
            return
        time.sleep(0.1)
    pytest.fail(f"helper {pid} still running after its parent exited")


def test_written_files_are_readable_by_others_under_the_usual_umask(tmp_path: Path) -> None:
    path = atomic_write_text(tmp_path / "report.md", "x\n")
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == 0o666 & ~_umask()


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old
