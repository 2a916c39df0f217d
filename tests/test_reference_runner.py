"""dlhpc.reference.runner: the demos behind `dlhpc reference` do what they claim."""

from __future__ import annotations

import doctest
import importlib
from collections.abc import Iterator

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from dlhpc.reference.runner import run_check, run_gd, run_lstm, run_mlp, standardize

Split = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@pytest.fixture(autouse=True)
def one_blas_thread() -> Iterator[None]:
    # The demos multiply small matrices (batch 32): extra BLAS threads only add sync, and on a
    # busy 2-core machine OpenBLAS's spinning threads made the 28×28 run 30× slower (43 s).
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def digits_8x8() -> Split:
    d = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(
        d.data, d.target, test_size=0.2, stratify=d.target, random_state=0
    )
    return x_tr, y_tr, x_te, y_te


def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of half-pixel-centred bilinear resampling (PIL / torch style)."""
    src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    M = np.zeros((n_out, n_in))
    M[np.arange(n_out), lo] += 1 - (src - lo)
    M[np.arange(n_out), hi] += src - lo
    return M


def _to_28x28_pixels(x_N64: np.ndarray) -> np.ndarray:
    """8×8 digits (0..16) → 28×28 uint8 pixels (0..255), like dlhpc's built-in `digits` source."""
    M = _bilinear_matrix(8, 28)
    img = np.einsum("ij,njk,lk->nil", M, x_N64.reshape(-1, 8, 8) * (255 / 16), M)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def test_bilinear_helper_is_a_resampler() -> None:
    M = _bilinear_matrix(8, 28)
    np.testing.assert_allclose(M.sum(axis=1), 1.0)  # a constant image stays constant
    flat = _to_28x28_pixels(np.full((1, 64), 16.0))
    assert flat.shape == (1, 28, 28) and np.all(flat == 255)


def test_run_gd_reaches_lstsq() -> None:
    out = run_gd(seed=0)
    assert out["theta_error_vs_lstsq"] < 1e-8
    assert len(out["loss_curve"]) == 501 and out["loss_curve"][0] > 10 * out["final_loss"]
    assert out["final_loss"] == out["loss_curve"][-1]
    assert run_gd(seed=0, iterations=3)["theta_error_vs_lstsq"] > 0.1


def test_run_mlp_on_8x8_digits(digits_8x8: Split) -> None:
    out = run_mlp(*digits_8x8)
    assert out["test_accuracy"] >= 0.95
    assert out["train_accuracy"] >= out["test_accuracy"] - 0.02
    assert len(out["loss_curve"]) == 20 and out["loss_curve"][-1] < 0.2 * out["loss_curve"][0]
    assert out["seconds"] > 0 and out["sizes"] == [64, 128, 10]


def test_run_mlp_on_28x28_digits_pixels(digits_8x8: Split) -> None:
    x_tr, y_tr, x_te, y_te = digits_8x8
    out = run_mlp(_to_28x28_pixels(x_tr), y_tr, _to_28x28_pixels(x_te), y_te)
    assert out["sizes"] == [784, 128, 10]
    assert out["test_accuracy"] >= 0.95


def test_standardize_uses_training_statistics_only() -> None:
    rng = np.random.default_rng(0)
    x_tr = rng.normal(5.0, 2.0, size=(500, 3))
    x_tr[:, 2] = 1.0  # constant feature: must not divide by zero
    x_te = x_tr[:10] + 100.0
    s_tr, s_te = standardize(x_tr, x_te)
    np.testing.assert_allclose(s_tr[:, :2].mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(s_tr[:, :2].std(axis=0), 1.0, atol=1e-12)
    assert np.all(np.isfinite(s_te)) and np.all(s_te[:, :2] > 10)  # shifted by test, not refit


def test_run_lstm_learns_the_sequence_task() -> None:
    out = run_lstm(seed=0)
    assert out["accuracy"] > 0.9  # chance is 0.5
    assert out["loss_curve"][-1] < 0.5 * out["loss_curve"][0]
    assert out["seconds"] < 30


def test_run_check_every_gradient_is_right() -> None:
    errors = run_check(seed=0)
    assert set(errors) == {"mlp", "lstm", "softmax_regression"}
    for name, err in errors.items():
        assert 0 < err < 1e-6, name  # exactly 0 would mean nothing was compared


@pytest.mark.parametrize("module", ["softmax", "gd", "mlp", "lstm", "gradcheck"])
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(f"dlhpc.reference.{module}"))
    assert result.attempted > 0 and result.failed == 0
