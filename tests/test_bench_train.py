"""``dlhpc bench train``: the bookkeeping behind the side-by-side table."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import pytest

from dlhpc.bench import check_python
from dlhpc.bench.train import Runner, run_once, runners, summarise, write_report
from dlhpc.errors import ConfigError


def run(times: list[float], accs: list[float], n: int = 100) -> dict[str, object]:
    epochs = [{"epoch": i + 1, "train_seconds": t, "test_accuracy": a}
              for i, (t, a) in enumerate(zip(times, accs, strict=True))]  # fmt: skip
    return {"epochs": epochs, "train_samples": n}


def test_time_to_target_and_throughput() -> None:
    row = summarise(
        [run([1, 2, 3], [0.9, 0.97, 0.98]), run([1.2, 2.4, 3.6], [0.9, 0.96, 0.975])], 0.97
    )
    assert row["time_to_target_s"] == pytest.approx((2 + 3.6) / 2)
    assert row["samples_per_second"] == pytest.approx((300 / 3 + 300 / 3.6) / 2)
    assert row["final_accuracy"] == pytest.approx(0.9775)
    never = summarise([run([1, 2], [0.5, 0.96])], 0.97)
    assert never["time_to_target_s"] is None  # not reached: no time is claimed


@pytest.mark.skipif(find_spec("tensorflow") is not None, reason="TensorFlow is installed here")
def test_a_missing_peer_is_reported_as_skipped(tmp_path: Path) -> None:
    keras = next(r for r in runners(None, 1) if r.name == "keras")
    result = run_once(keras, tmp_path / "x.npz", tmp_path)
    assert "TensorFlow not installed" in result["skipped"]
    rows = {"keras": summarise([result], 0.97)}
    report = {"data": "digits", "train_samples": 1, "test_samples": 1, "threads": 1,
              "repeats": 1, "target": 0.97, "peers_python": None, "rows": rows}  # fmt: skip
    text = write_report(report, tmp_path, "dlhpc bench train").read_text()
    assert "| keras | skipped: TensorFlow not installed" in text


def test_on_a_gpu_the_cpu_only_keras_peer_is_skipped_and_runners_get_the_device() -> None:
    plan = {r.name: r for r in runners(None, 4, "cuda")}
    assert "CPU build of TensorFlow" in plan["keras"].kind
    for name in ("dlhpc", "dlhpc (tutorial recipe)", "pytorch-loop"):
        argv = plan[name].argv
        assert argv[argv.index("--device") + 1] == "cuda"


@pytest.mark.slow
@pytest.mark.skipif(find_spec("fasttext") is not None, reason="fastText is installed here")
def test_the_text_bench_runs_dlhpc_defaults_and_reports_fasttext_skipped(tmp_path: Path) -> None:
    from dlhpc.bench.text_corpus import build_corpus, write_corpus
    from dlhpc.cli import main

    data = tmp_path / "corpus"
    write_corpus(build_corpus(max_files_per_family=2), data)
    argv = ["bench", "train", "--model", "bag", "--data", str(data), "--threads", "1",
            "--repeats", "1", "--out", str(tmp_path / "out"), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    [report] = (tmp_path / "out").glob("text_cpu_*.md")
    text = report.read_text()
    assert "`dlhpc train bag --data DATA --threads T` (its defaults)" in text
    row = next(line for line in text.splitlines() if line.startswith("| dlhpc bag (1 thread)"))
    assert float(row.split("|")[3]) > 0.2  # test accuracy of a real run, 12 classes
    assert "- fastText: skipped (no --peers-python)" in text
    assert "lstm" not in row and "| dlhpc lstm" not in text  # --model bag runs bag only


def test_the_cli_sets_its_openmp_default_unless_the_user_did_and_peers_run_without_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os
    import subprocess
    import sys

    from dlhpc.bench import peer_env

    probe = (
        "import os, sys, dlhpc.cli; assert 'torch' not in sys.modules; "
        "print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('DLHPC_DEFAULTED'))"
    )
    base = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "DLHPC_DEFAULTED")}

    def cli_env(**extra: str) -> str:
        argv = [sys.executable, "-c", probe]
        return subprocess.run(argv, env={**base, **extra}, capture_output=True, text=True,
                              check=True).stdout.strip()  # fmt: skip

    assert cli_env() == "10000 GOMP_SPINCOUNT"  # set before torch (and OpenMP) load
    assert cli_env(GOMP_SPINCOUNT="5") == "5 None"  # the user's choice stands
    monkeypatch.setenv("GOMP_SPINCOUNT", "10000")
    monkeypatch.setenv("DLHPC_DEFAULTED", "GOMP_SPINCOUNT")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    env = peer_env()
    assert "GOMP_SPINCOUNT" not in env and "DLHPC_DEFAULTED" not in env
    assert env["OMP_NUM_THREADS"] == "2"


def test_peers_python_must_be_an_interpreter_that_starts(tmp_path: Path) -> None:
    import sys

    assert check_python(sys.executable) == sys.executable
    script = tmp_path / "not-python"
    script.write_text("#!/bin/sh\necho 'no python here' >&2\nexit 3\n")
    plain = tmp_path / "plain"
    plain.write_text("")
    cases = {
        str(tmp_path / "nope"): "no such file",
        str(tmp_path): "is a directory, not a Python interpreter",
        str(plain): "not executable",
        "no-such-python-3.99": "not found on PATH",
        str(script): "does not run Python code (no python here)",
    }
    script.chmod(0o755)
    for python, says in cases.items():
        with pytest.raises(ConfigError) as e:
            check_python(python)
        assert str(e.value) == f"--peers-python {python}: {says}"


def test_a_runner_that_fails_is_skipped_with_its_own_error_line(tmp_path: Path) -> None:
    import sys

    boom = "import sys; sys.stderr.write('warming up\\nkeras: error: no GPU\\nbye\\n'); sys.exit(1)"
    result = run_once(Runner("peer", [sys.executable, "-c", boom], "peer"), tmp_path, tmp_path)
    assert result == {"skipped": "keras: error: no GPU"}
