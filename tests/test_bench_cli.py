"""``dlhpc bench …`` refuses bad input in one line, before any run, writing nothing.

Every case here would otherwise start a benchmark of minutes (or fail in one): the runners are
replaced by ones that fail the test if reached, so a check that slips costs an assertion, not a
real run."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dlhpc.cli import main


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The working directory, temporary files and caches of a command all in ``tmp_path`` (so what
    a refused command wrote shows), and no benchmark run can start."""
    for name in ("work", "scratch"):
        (tmp_path / name).mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "scratch"))
    monkeypatch.setenv("DLHPC_CACHE", str(tmp_path / "cache"))

    def no_run(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a benchmark run started")

    import dlhpc.bench.scale
    import dlhpc.bench.text_corpus
    import dlhpc.bench.text_peers
    import dlhpc.bench.train

    monkeypatch.setattr(dlhpc.bench.scale, "run_one", no_run)
    monkeypatch.setattr(dlhpc.bench.train, "run_bench", no_run)
    monkeypatch.setattr(dlhpc.bench.text_peers, "run_rounds", no_run)
    monkeypatch.setattr(dlhpc.bench.text_corpus, "build_corpus", no_run)
    monkeypatch.setattr(dlhpc.bench.scale, "available_cores", lambda: 4)
    yield tmp_path
    assert not list((tmp_path / "scratch").iterdir()), "a scratch directory was left behind"
    assert not (tmp_path / "cache").exists(), "a cache was written"


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``dlhpc ARGV``: it must exit 2, one line on stderr, nothing on stdout. The line."""
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own refusals exit from the parser
        code = e.code  # type: ignore[assignment]
    out, err = capsys.readouterr()
    assert code == 2, (argv, out, err)
    assert out == "" and len(err.splitlines()) == 1 and "Traceback" not in err, (argv, err)
    return err.strip()


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["peak", "--threads", "0"], "argument --threads: must be at least 1, got 0"),
        (["peak", "--seconds", "-1"], "argument --seconds: must be above 0, got -1"),
        (["peak", "--seconds", "nan"], "argument --seconds: expected a finite number"),
        (["scale", "--max-ranks", "0"], "argument --max-ranks: must be at least 1, got 0"),
        (["scale", "--target", "2"], "argument --target: must be at most 1, got 2"),
        (["scale", "--target", "0"], "argument --target: must be above 0, got 0"),
        (["scale", "--epochs", "0"], "argument --epochs: must be at least 1, got 0"),
        (["scale", "--batch-size", "-3"], "argument --batch-size: must be at least 1, got -3"),
        (["scale", "--repeats", "0"], "argument --repeats: must be at least 1, got 0"),
        (["scale", "--model", "resnet"], "argument --model: invalid choice: 'resnet'"),
        (["train", "--threads", "0"], "argument --threads: must be at least 1, got 0"),
        (["train", "--repeats", "0"], "argument --repeats: must be at least 1, got 0"),
        (["train", "--target", "1.5"], "argument --target: must be at most 1, got 1.5"),
    ],
)
def test_numbers_out_of_range_are_refused_by_the_parser(
    argv: list[str], says: str, sandbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = refused(["bench", *argv], capsys)
    assert line.startswith(f"dlhpc bench {argv[0]}: error: {says}"), line


@pytest.mark.parametrize("command", ["scale", "train"])
def test_an_out_that_is_a_file_or_under_one_is_refused_before_the_runs(
    command: str, sandbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = sandbox / "work" / "report.md"
    plain.write_text("a file")
    line = refused(["bench", command, "--out", str(plain)], capsys)
    assert f"argument --out: {plain}: exists and is not a directory" in line
    line = refused(["bench", command, "--out", str(plain / "reports")], capsys)
    assert f"argument --out: {plain}/reports: cannot be written, {plain} is not a directory" in line
    assert plain.read_text() == "a file"
    assert [p.name for p in (sandbox / "work").iterdir()] == ["report.md"]


def test_an_out_that_can_be_made_is_accepted_and_not_made_yet(sandbox: Path) -> None:
    from dlhpc.cli.bench import out_dir

    deep = sandbox / "work" / "a" / "b"
    assert out_dir(str(deep)) == str(deep)  # made when the report is written, not before
    assert out_dir(str(sandbox / "work")) == str(sandbox / "work")
    assert not (sandbox / "work" / "a").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_out_in_a_read_only_directory_is_refused(
    sandbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    locked = sandbox / "work" / "locked"
    locked.mkdir(mode=0o555)
    line = refused(["bench", "scale", "--out", str(locked / "reports")], capsys)
    assert f"{locked}/reports: cannot be written (Permission denied)" in line


def test_a_missing_peers_python_is_refused_before_any_run(
    sandbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = refused(["bench", "train", "--peers-python", "/nonexistent/python"], capsys)
    assert line == "dlhpc bench train: error: --peers-python /nonexistent/python: no such file"
    for model in ("bag", "lstm"):  # the text benchmark, before its corpus is built
        line = refused(["bench", "train", "--model", model, "--peers-python", "/no/py"], capsys)
        assert line == "dlhpc bench train: error: --peers-python /no/py: no such file"


def test_a_text_corpus_that_is_not_one_is_refused_before_any_run(
    sandbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = sandbox / "work" / "nope"
    line = refused(["bench", "train", "--model", "bag", "--data", str(missing)], capsys)
    assert line.startswith(f"dlhpc bench train: error: {missing}: no such directory")
    empty = sandbox / "work" / "empty"
    empty.mkdir()
    line = refused(["bench", "train", "--model", "lstm", "--data", str(empty)], capsys)
    assert line.startswith(f"dlhpc bench train: error: {empty}: no train.csv or test.csv")


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (
            ["--max-ranks", "1"],
            "--max-ranks 1: scaling compares 2 or more cores with 1 rank × "
            "1 thread; use --max-ranks 2 to 4",
        ),
        (["--max-ranks", "5"], "--max-ranks 5: only 4 core(s) available; use --max-ranks 4"),
        (["--batch-size", "3"], "--batch-size 3 is the global batch: it must be at least"),
        (
            ["--model", "bag"],
            "digits: not a text source (a CSV, TSV, JSONL or fastText file, or "
            "a directory with train.* and test.*), and bag is a text model",
        ),
    ],
)
def test_scale_refuses_a_plan_that_would_fail_part_way(
    argv: list[str], says: str, sandbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = refused(["bench", "scale", *argv], capsys)
    assert line.startswith(f"dlhpc bench scale: error: {says}"), line


def test_scale_refuses_a_data_source_before_the_first_run(
    sandbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = sandbox / "work" / "nonexistent"
    line = refused(["bench", "scale", "--data", str(missing)], capsys)
    assert line == f"dlhpc bench scale: error: {missing}: no such file or directory (and not a " \
        "built-in source: digits)"  # fmt: skip
    text = sandbox / "work" / "corpus.csv"
    text.write_text("text,label\nhello there,a\nbye now,b\n")
    line = refused(["bench", "scale", "--model", "cnn", "--data", str(text)], capsys)
    assert line == f"dlhpc bench scale: error: cnn is an image model, but {text} holds text"


def test_scale_on_one_core_says_what_it_needs(
    sandbox: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import dlhpc.bench.scale

    monkeypatch.setattr(dlhpc.bench.scale, "available_cores", lambda: 1)
    line = refused(["bench", "scale"], capsys)
    assert "only 1 core available" in line and "2 or more" in line
