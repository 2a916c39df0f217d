"""``dlhpc bench scale`` on a tiny twin: real runs, a report with ratios."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from dlhpc.bench import run_child, scratch_dir
from dlhpc.bench.scale import Config, configs, run_scale, write_report


def test_the_plan_covers_threads_ranks_and_weak_scaling() -> None:
    plan = configs(2, 64)
    assert Config("strong", 1, 1, 64) in plan and Config("strong", 1, 2, 64) in plan
    assert Config("strong", 2, 1, 64) in plan and Config("weak", 2, 1, 128) in plan


@pytest.mark.slow
def test_scale_twin_writes_a_report(tmp_path: Path) -> None:
    result = run_scale("mlp", "digits", epochs=1, batch=64, repeats=1, target=0.5, max_ranks=2)
    rows = {(r["mode"], r["ranks"], r["threads"]): r for r in result["rows"]}
    assert rows[("strong", 1, 1)]["speedup"] == 1.0
    assert all(r["samples_per_second"] > 0 and 0 < r["test_accuracy"] <= 1 for r in rows.values())
    report = write_report(result, tmp_path, "dlhpc bench scale --model mlp")
    text = report.read_text()
    assert "| strong | 2 × 1 |" in text and "| weak | 2 × 1 | 128 |" in text
    two = rows[("strong", 2, 1)]  # paired with the 1 × 1 run of its own pass
    base = rows[("strong", 1, 1)]["samples_per_second"]
    assert two["ratios"] == [pytest.approx(two["samples_per_second"] / base)]
    assert two["gradient_exchange"] in ("shared memory", "gloo")
    assert rows[("strong", 1, 1)]["gradient_exchange"] is None
    assert rows[("strong", 1, 1)]["waiting_share"] is None
    table = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
             if line.startswith("| ")]  # fmt: skip
    column = table[0].index("waiting / exchange")
    assert next(r for r in table if r[:2] == ["strong", "1 × 1"])[column] == "—"
    if two["gradient_exchange"] == "shared memory":
        assert 0 < two["waiting_share"] < 1 and 0 < two["exchange_share"] < 1
        assert f"| {two['waiting_share']:.1%} / {two['exchange_share']:.1%} |" in text
    assert report.with_suffix(".png").is_file()


def test_a_failed_run_is_its_own_one_line_and_leaves_no_scratch_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import dlhpc.bench.scale
    from dlhpc.cli import main

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(dlhpc.bench.scale, "available_cores", lambda: 2)
    started: list[list[str]] = []

    def failing_child(cmd: list[str]) -> subprocess.CompletedProcess[str]:
        started.append(cmd)
        run = Path(cmd[cmd.index("--out") + 1])  # what a child leaves in the scratch directory
        run.mkdir(parents=True)
        (run / "metrics.jsonl").write_text("{}\n")
        stderr = ("W1129 some launcher warning\n[rank0]: dlhpc train: error: digits: broken\n"
                  "ERROR: failures\n  File x, line 3\n")  # fmt: skip
        return subprocess.CompletedProcess(cmd, 2, "", stderr)

    monkeypatch.setattr(dlhpc.bench.scale, "run_child", failing_child)
    assert main(["bench", "scale", "--model", "mlp", "--epochs", "1", "--repeats", "1"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == (
        "dlhpc bench scale: error: the strong 1 rank(s) × 1 thread(s) run failed: "
        "[rank0]: dlhpc train: error: digits: broken\n"
    )
    assert len(started) == 1  # the first failure ends the benchmark
    assert not list(tmp_path.iterdir())  # the scratch directory went with it


def test_without_an_error_line_the_childs_last_line_or_status_is_the_reason() -> None:
    from dlhpc.bench import last_error_line

    traceback = "Traceback (most recent call last):\n  File x\nValueError: bad\n\n"
    assert last_error_line(traceback, 1) == "ValueError: bad"
    assert last_error_line("", -9) == "exit status -9 and no message"


@pytest.mark.skipif(
    signal.getsignal(signal.SIGTERM) != signal.SIG_DFL, reason="SIGTERM is handled here already"
)
def test_sigterm_unwinds_through_the_scratch_directory(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as e, scratch_dir("dlhpc-scale-") as scratch:
        (scratch / "run").mkdir()
        os.kill(os.getpid(), signal.SIGTERM)  # as `timeout` or a batch system's time limit
        time.sleep(5)  # the handler raises before this ends
    assert e.value.code == 128 + signal.SIGTERM
    assert not scratch.exists()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # put back as it was


def test_an_interrupted_benchmark_lets_its_child_stop_before_cleaning_up(tmp_path: Path) -> None:
    # The child stands in for torch's launcher: on SIGTERM it stops its ranks, which takes a
    # moment. Killed at once instead, its ranks would write on into the removed directory.
    ready, stopped = tmp_path / "ready", tmp_path / "stopped"
    child = (
        "import pathlib, signal, sys, time\n"
        "def stop(*_):\n"
        "    time.sleep(0.3)\n"
        f"    pathlib.Path({str(stopped)!r}).write_text('ranks stopped')\n"
        "    sys.exit(1)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        f"pathlib.Path({str(ready)!r}).touch()\n"
        "time.sleep(30)\n"
    )

    def interrupt_when_ready() -> None:
        deadline = time.monotonic() + 20
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: KeyboardInterrupt in the main thread

    threading.Thread(target=interrupt_when_ready, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        run_child([sys.executable, "-c", child])
    assert stopped.read_text() == "ranks stopped"
