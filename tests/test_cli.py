"""The CLI: its flags (permanent API), --json, exit codes, train → evaluate → predict."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlhpc.cli import build_parser, main

# Every flag of every command. Adding or removing one is a decision: update this list with it.
FLAGS = {
    "train": {
        "--data", "--val-fraction", "--test-fraction", "--image-size", "--channels", "--augment",
        "--text-column", "--label-column", "--vocab-size", "--cache-dir",
        "--hidden", "--activation", "--dropout", "--embed-dim", "--units", "--bigrams", "--sparse",
        "--max-length", "--layers", "--heads", "--optimizer", "--lr", "--momentum",
        "--weight-decay", "--schedule", "--warmup-epochs", "--step-epochs", "--gamma",
        "--plateau-patience", "--min-lr", "--epochs", "--batch-size", "--eval-batch-size",
        "--early-stop", "--seed", "--device", "--threads", "--precision", "--compile",
        "--checkpoint-every", "--max-steps",
        "--nproc", "--max-restarts",
        "--log-every", "--out", "--resume", "--init-from", "--freeze", "--json", "--quiet",
    },
    "evaluate": {"--data", "--batch-size", "--json", "--quiet"},
    "predict": {"--top-k", "--json", "--quiet"},
    "demo": {"--out", "--json", "--quiet"},
    "bench": set(),
    "serve": {
        "--backend", "--variant", "--host", "--port", "--name", "--max-batch-size",
        "--max-queue-delay-ms", "--max-queue", "--workers", "--read-timeout-s", "--token",
    },
    "loadgen": {
        "--scenario", "--qps", "--duration", "--concurrency", "--data", "--out", "--token",
        "--timeout",
        "--json", "--quiet",
    },
    "reference": {"--data", "--hidden", "--optimizer", "--epochs", "--iterations", "--lr",
                  "--seed", "--json", "--quiet"},
    "optimize": {"--quantize", "--prune", "--prune-structured", "--export", "--data", "--threads",
                 "--json", "--quiet"},
    "plan": {"--data", "--epochs", "--batch-size", "--target-hours", "--catalog", "--steps",
             "--json", "--quiet"},
}  # fmt: skip


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_the_flags_are_exactly_the_documented_ones() -> None:
    subs = subcommands()
    assert set(FLAGS) <= set(subs)
    for name, flags in FLAGS.items():
        found = {o for a in subs[name]._actions for o in a.option_strings if o.startswith("--")}
        assert found - {"--help"} == flags, name


def test_help_works_on_every_level(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], *([c, "--help"] for c in subcommands())):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0
        assert "usage: dlhpc" in capsys.readouterr().out


def last_json(out: str) -> dict[str, object]:
    return json.loads(out.strip().splitlines()[-1])


def test_train_evaluate_predict_round_trip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    argv = ["train", "mlp", "--data", "digits", "--out", str(run), "--epochs", "2",
            "--hidden", "32", "--batch-size", "64", "--json"]  # fmt: skip
    assert main(argv) == 0
    summary = last_json(capsys.readouterr().out)
    assert summary["model"] == "mlp" and summary["epochs"] == 2
    assert json.loads((run / "config.json").read_text())["model"]["hidden"] == [32]

    assert main(["evaluate", str(run), "--data", "digits", "--json", "--quiet"]) == 0
    ev = last_json(capsys.readouterr().out)
    assert ev["test_accuracy"] == pytest.approx(summary["test_accuracy"])
    assert ev["test_samples"] == summary["test_samples"]

    # predict on real PNG files made from test digits; the label must match the class
    from dlhpc.data import DataConfig, load_images

    test = load_images(DataConfig("digits")).test
    assert test is not None
    files = []
    for i in range(6):
        f = tmp_path / f"d{i}.png"
        Image.fromarray(test.x[i, 0].numpy()).save(f)
        files.append(str(f))
    assert main(["predict", str(run), *files, "--json", "--top-k", "3"]) == 0
    out = capsys.readouterr().out
    preds = last_json(out)["predictions"]
    assert isinstance(preds, list) and len(preds) == 6
    assert all(len(p["top"]) == 3 and 0 <= p["probability"] <= 1 for p in preds)
    right = sum(p["label"] == str(int(test.y[i])) for i, p in enumerate(preds))
    assert right >= 4  # a 2-epoch MLP on digits is far better than chance (1/10)
    assert out.splitlines()[0].startswith(files[0] + "\t")


def test_bad_input_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        ["train", "cnn", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r")],
        ["evaluate", str(tmp_path / "norun"), "--data", "digits"],
        ["predict", str(tmp_path / "norun"), "x.png"],
        ["train", "cnn", "--data", "digits", "--lr", "-1"],
        ["train", "cnn", "--data", "digits", "--schedule", "plateau"],
        ["train", "--resume", str(tmp_path / "norun")],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "error" in err, (argv, err)
    assert not (tmp_path / "r").exists()


def test_argument_errors_are_one_line_too(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["train", "cnn", "--epochs", "many"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--epochs" in err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["train", "cnn", "--nproc", "0"], "--nproc: must be at least 1, got 0"),
        (["train", "cnn", "--max-restarts", "-1"], "--max-restarts: must be 0 or more"),
        (["evaluate", "r", "--data", "digits", "--batch-size", "0"], "--batch-size: must be"),
        (["reference", "mlp", "--hidden", "64,0"], "--hidden: expected widths of at least 1"),
        (["reference", "mlp", "--epochs", "0"], "--epochs: must be at least 1"),
        (["reference", "gd", "--lr", "-1"], "--lr: must be above 0"),
        (["reference", "gd", "--lr", "inf"], "--lr: expected a finite number"),
        (["reference", "gd", "--iterations", "-5"], "--iterations: must be at least 1"),
        (["plan", "cnn", "--data", "digits", "--target-hours", "0"], "--target-hours: must be"),
        (["optimize", "r", "--threads", "0"], "--threads: must be at least 1"),
    ],
)
def test_numbers_out_of_range_are_refused_before_any_work(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and says in err, err


def test_settings_name_the_flag_that_is_wrong(capsys: pytest.CaptureFixture[str]) -> None:
    cases = [("--eval-batch-size", "0", "--eval-batch-size must be at least 1"),
             ("--lr", "inf", "--lr must be a positive finite number"),
             ("--weight-decay", "inf", "--weight-decay and --warmup-epochs")]  # fmt: skip
    for flag, value, says in cases:
        assert main(["train", "cnn", "--data", "digits", flag, value]) == 2
        assert says in capsys.readouterr().err


def test_an_output_path_that_cannot_be_made_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = tmp_path / "plain"
    plain.write_text("a file")
    assert main(["train", "mlp", "--data", "digits", "--out", str(plain / "run"), "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == f"dlhpc train: error: {plain}/run: not a directory"
    assert main(["demo", "--out", str(plain / "run"), "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == f"dlhpc demo: error: {plain}/run: not a directory"
    assert plain.read_text() == "a file"


def test_resume_continues_a_stopped_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "r"
    base = ["--data", "digits", "--out", str(run), "--hidden", "16", "--epochs", "2", "--quiet"]
    assert main(["train", "mlp", *base, "--max-steps", "5", "--json"]) == 0
    assert last_json(capsys.readouterr().out)["stopped_by"] == "max_steps"
    assert main(["train", "--resume", str(run), "--lr", "1"]) == 2  # settings are the run's
    assert "cannot change" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--json", "--quiet"]) == 0
    assert last_json(capsys.readouterr().out)["epochs"] == 2
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert main(["train", "--resume", str(run), "--quiet"]) == 2  # finished: nothing to do
    assert "already finished (2 of 2 epochs)" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_a_run_that_cannot_be_resumed_is_left_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "r"
    base = ["--data", "digits", "--out", str(run), "--hidden", "16", "--epochs", "2", "--quiet"]
    assert main(["train", "mlp", *base, "--max-steps", "5"]) == 0
    checkpoint = run / "checkpoint" / "state.safetensors"
    checkpoint.write_bytes(checkpoint.read_bytes()[:300])  # cut short, as by a full disk
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "state.safetensors: unreadable checkpoint" in err and len(err.splitlines()) == 1
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    checkpoint.unlink()
    assert main(["train", "--resume", str(run)]) == 2
    assert "no checkpoint to resume from" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == {
        p: b for p, b in before.items() if p != checkpoint
    }


@pytest.mark.slow
def test_the_default_cnn_reaches_97_percent_on_digits(tmp_path: Path) -> None:
    """Issue 2's promise: `dlhpc train cnn --data digits` with no other flag reaches ≥ 97%."""
    proc = subprocess.run(
        [sys.executable, "-m", "dlhpc", "train", "cnn", "--data", "digits",
         "--out", str(tmp_path / "run"), "--json"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = last_json(proc.stdout)
    assert summary["test_accuracy"] >= 0.97
    assert summary["params"] == 93_322
    assert "Traceback" not in proc.stderr
    assert np.isfinite(summary["samples_per_second"])


def test_predict_refuses_a_directory(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dlhpc.engine.inference import read_text_inputs
    from dlhpc.errors import DataError

    assert main(["predict", str(trained_run), str(tmp_path)]) == 2  # an image run
    assert capsys.readouterr().err.strip().endswith(f"{tmp_path}: is a directory; give image files")
    with pytest.raises(DataError, match="is a directory; give text files, texts or -"):
        read_text_inputs(["a text", str(tmp_path)])  # a text run
    assert read_text_inputs(["a text", "x" * 5000, ""]) == ["a text", "x" * 5000, ""]
