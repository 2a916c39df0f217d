"""``dlhpc reference``: each demo runs from the CLI and says what the issue promises."""

from __future__ import annotations

import json

import pytest

from dlhpc.cli import main


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert main(["reference", *argv, "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) > 1  # a human-readable curve comes first
    return json.loads(out[-1])


def test_reference_check_prints_tiny_errors(capsys: pytest.CaptureFixture[str]) -> None:
    r = run_json(capsys, "check")
    assert set(r) == {"mlp", "lstm", "softmax_regression"}
    assert all(isinstance(v, float) and v < 1e-6 for v in r.values())


def test_reference_gd_matches_lstsq(capsys: pytest.CaptureFixture[str]) -> None:
    r = run_json(capsys, "gd", "--iterations", "300")
    curve = r["loss_curve"]
    assert isinstance(curve, list) and curve[-1] < curve[0]
    assert isinstance(r["theta_error_vs_lstsq"], float) and r["theta_error_vs_lstsq"] < 1e-6


def test_reference_mlp_on_digits_reaches_95_percent(capsys: pytest.CaptureFixture[str]) -> None:
    r = run_json(capsys, "mlp", "--data", "digits")
    assert isinstance(r["test_accuracy"], float) and r["test_accuracy"] >= 0.95


def test_reference_lstm_learns(capsys: pytest.CaptureFixture[str]) -> None:
    r = run_json(capsys, "lstm", "--epochs", "4")
    assert isinstance(r["accuracy"], float) and r["accuracy"] > 0.8  # chance is 0.5


def test_reference_gd_says_when_a_step_diverges(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reference", "gd", "--lr", "5", "--json"]) == 0
    out, err = capsys.readouterr()
    assert err == ""  # no numpy overflow warnings
    assert "diverged: α = 5 is above 2/λmax(XᵀX/m) = 1.67" in out
    r = json.loads(out.splitlines()[-1])  # strict JSON: the overflowed losses are null
    assert (
        r["diverged"] is True
        and r["final_loss"] is None
        and r["alpha_max"] == pytest.approx(1.67, abs=0.01)
    )
    assert main(["reference", "gd", "--lr", "1.6", "--json", "--quiet"]) == 0  # just below
    r = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert r["diverged"] is False and r["theta_error_vs_lstsq"] < 1e-6
