"""Runnable demos of the reference math; each returns a plain dict (the CLI prints it).

Run them::

    dlhpc reference ...                      # the CLI front end
    python -c "from dlhpc.reference.runner import run_gd; print(run_gd()['final_loss'])"
    python -c "from dlhpc.reference.runner import run_check; print(run_check())"

* ``run_gd``    least squares by gradient descent vs ``numpy.linalg.lstsq``
* ``run_mlp``   the reference MLP trained on any (x, y) split, e.g. the ``digits`` data
* ``run_lstm``  the reference LSTM + softmax head learns a synthetic sequence task by BPTT
* ``run_check`` finite-difference relative errors of every hand-written gradient (float64)

Shapes::

    N  samples      F  features      K  classes
    T  time steps   B  batch         D  LSTM input features      H  LSTM hidden size
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from dlhpc.reference.gd import (
    Adam,
    gradient_descent_history,
    softmax_regression_loss_and_grad,
)
from dlhpc.reference.gradcheck import numerical_grad, rel_error
from dlhpc.reference.lstm import (
    PARAM_NAMES,
    LSTMParams,
    init_lstm_params,
    lstm_backward,
    lstm_forward,
)
from dlhpc.reference.mlp import ACTIVATIONS, MLP
from dlhpc.reference.softmax import FloatArray, IntArray, cross_entropy_and_grad


def run_gd(seed: int = 0, iterations: int = 500, alpha: float = 0.1) -> dict[str, Any]:
    """Fit y = Xθ + noise (m = 200, n = 5, columns ~ N(0, 1): well conditioned) by gradient
    descent from θ = 0 and compare with the exact least-squares solution."""
    rng = np.random.default_rng(seed)
    X_mn = np.column_stack([np.ones(200), rng.normal(size=(200, 4))])  # with an intercept
    theta_true = rng.normal(size=5)
    y_m = X_mn @ theta_true + 0.1 * rng.normal(size=200)
    t0 = time.perf_counter()
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging α is reported, not warned
        theta, losses = gradient_descent_history(X_mn, y_m, np.zeros(5), alpha, iterations)
    seconds = time.perf_counter() - t0
    theta_star = np.linalg.lstsq(X_mn, y_m, rcond=None)[0]
    # J's Hessian is XᵀX/m; gradient descent converges iff α < 2/λmax of it
    alpha_max = 2.0 / float(np.linalg.eigvalsh(X_mn.T @ X_mn / len(y_m)).max())
    return {
        "loss_curve": losses,
        "final_loss": losses[-1],
        "alpha_max": alpha_max,
        "diverged": not (np.isfinite(losses[-1]) and losses[-1] <= losses[0]),
        "theta_error_vs_lstsq": float(
            np.linalg.norm(theta - theta_star) / np.linalg.norm(theta_star)
        )
        if np.all(np.isfinite(theta))
        else float("inf"),
        "theta": theta.tolist(),
        "theta_lstsq": theta_star.tolist(),
        "iterations": iterations,
        "alpha": alpha,
        "seconds": seconds,
    }


def standardize(x_train: FloatArray, x_test: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per-feature (x − mean)/std with the *training* statistics, flattened to (N, F).

    A feature that barely varies in training (a border pixel) would be blown up by a tiny std
    and amplify noise in the test set, so std is floored at 10% of the mean std.
    """
    xtr = np.asarray(x_train, dtype=np.float64).reshape(len(x_train), -1)
    xte = np.asarray(x_test, dtype=np.float64).reshape(len(x_test), -1)
    mean_F = xtr.mean(axis=0)
    std_F = xtr.std(axis=0)
    std_F = np.maximum(std_F, 0.1 * float(std_F.mean()) + 1e-12)
    return (xtr - mean_F) / std_F, (xte - mean_F) / std_F


def run_mlp(
    x_train: FloatArray,
    y_train: IntArray,
    x_test: FloatArray,
    y_test: IntArray,
    hidden: Sequence[int] = (128,),
    epochs: int = 20,
    batch_size: int = 32,
    lr: float = 1e-3,
    optimizer: str = "adam",
    seed: int = 0,
) -> dict[str, Any]:
    """Train the reference MLP (ReLU, float64) on standardized inputs; report accuracy."""
    xtr_NF, xte_NF = standardize(x_train, x_test)
    ytr = np.asarray(y_train, dtype=np.int64)
    yte = np.asarray(y_test, dtype=np.int64)
    classes = int(max(ytr.max(), yte.max(initial=0))) + 1
    net = MLP([xtr_NF.shape[1], *hidden, classes], activation="relu", seed=seed)
    t0 = time.perf_counter()
    history = net.fit(xtr_NF, ytr, epochs, batch_size, lr, optimizer, seed=seed)
    seconds = time.perf_counter() - t0
    return {
        "loss_curve": history["loss"],
        "train_accuracy": net.accuracy(xtr_NF, ytr),
        "test_accuracy": net.accuracy(xte_NF, yte) if len(yte) else None,
        "seconds": seconds,
        "samples_per_second": epochs * len(ytr) / seconds if seconds > 0 else None,
        "params": sum(p.size for p in net.params),
        "sizes": net.sizes,
        "train_samples": len(ytr),
        "test_samples": len(yte),
    }


def sum_sign_task(n: int, steps: int, rng: np.random.Generator) -> tuple[FloatArray, IntArray]:
    """x_t ~ N(0, 1) (T, N, 1); the label says whether Σ_t x_t > 0. The answer needs every step:
    the LSTM must learn to integrate (input gate open, forget gate ≈ 1)."""
    x_TND = rng.normal(size=(steps, n, 1))
    return x_TND, (x_TND.sum(axis=(0, 2)) > 0).astype(np.int64)


def lstm_classifier_loss_and_grads(
    params: LSTMParams, W_HK: FloatArray, b_K: FloatArray, x_TBD: FloatArray, y_B: IntArray
) -> tuple[float, list[FloatArray]]:
    """Softmax cross-entropy of h_T W + b; gradients in the order [*PARAM_NAMES, W, b]."""
    _, (h_T, _), cache = lstm_forward(x_TBD, params)
    loss, dlogits_BK = cross_entropy_and_grad(h_T @ W_HK + b_K, y_B)
    dh_T = dlogits_BK @ W_HK.T  # the head sees only the last hidden state
    _, dparams, _, _ = lstm_backward(np.zeros_like(cache.h_TBH), cache, dh_T=dh_T)
    return loss, [*(dparams[k] for k in PARAM_NAMES), h_T.T @ dlogits_BK, dlogits_BK.sum(0)]


def _lstm_accuracy(
    params: LSTMParams, W_HK: FloatArray, b_K: FloatArray, x_TND: FloatArray, y_N: IntArray
) -> float:
    _, (h_T, _), _ = lstm_forward(x_TND, params)
    return float(np.mean(np.argmax(h_T @ W_HK + b_K, axis=1) == y_N))


def run_lstm(
    seed: int = 0,
    steps: int = 12,
    hidden: int = 16,
    train_size: int = 2000,
    test_size: int = 500,
    epochs: int = 10,
    batch_size: int = 50,
    lr: float = 1e-2,
) -> dict[str, Any]:
    """Train LSTM + softmax head on ``sum_sign_task`` with Adam and BPTT; chance is 50%."""
    rng = np.random.default_rng(seed)
    x_tr, y_tr = sum_sign_task(train_size, steps, rng)
    x_te, y_te = sum_sign_task(test_size, steps, rng)
    params = init_lstm_params(1, hidden, seed)
    W_HK = rng.normal(0.0, 1.0 / np.sqrt(hidden), (hidden, 2))
    b_K = np.zeros(2)
    arrays = [*(params[k] for k in PARAM_NAMES), W_HK, b_K]  # the live arrays Adam updates
    opt = Adam(lr)
    curve: list[float] = []
    t0 = time.perf_counter()
    for _ in range(epochs):
        order = rng.permutation(train_size)
        total = 0.0
        for start in range(0, train_size, batch_size):
            idx = order[start : start + batch_size]
            loss, grads = lstm_classifier_loss_and_grads(params, W_HK, b_K, x_tr[:, idx], y_tr[idx])
            opt.step(arrays, grads)
            total += loss * len(idx)
        curve.append(total / train_size)
    seconds = time.perf_counter() - t0
    return {
        "task": f"sign of the sum of {steps} N(0,1) inputs (chance 0.5)",
        "loss_curve": curve,
        "train_accuracy": _lstm_accuracy(params, W_HK, b_K, x_tr, y_tr),
        "accuracy": _lstm_accuracy(params, W_HK, b_K, x_te, y_te),
        "seconds": seconds,
    }


def check_mlp(activation: str, seed: int = 0) -> float:
    """Largest finite-difference relative error over the parameters of a small float64 MLP."""
    rng = np.random.default_rng(seed)
    X_NF, y_N = rng.normal(size=(6, 5)), rng.integers(0, 3, 6)
    net = MLP([5, 7, 4, 3], activation=activation, seed=seed)
    for b in net.biases:  # nonzero biases, so their gradients are exercised off the origin
        b[:] = 0.1 * rng.normal(size=b.shape)
    _, dW, db = net.loss_and_grads(X_NF, y_N)
    return max(
        rel_error(numerical_grad(lambda _: net.loss_and_grads(X_NF, y_N)[0], p), g)
        for p, g in zip(net.params, [*dW, *db], strict=True)
    )


def check_lstm(seed: int = 0) -> float:
    """Largest relative error over every LSTM parameter, x, h0 and c0 (all nonzero), with a loss
    that reads every h_t and the final (h_T, C_T)."""
    rng = np.random.default_rng(seed)
    T, B, D, H = 4, 3, 3, 4
    params = init_lstm_params(D, H, seed)
    x, h0, c0 = rng.normal(size=(T, B, D)), rng.normal(size=(B, H)), rng.normal(size=(B, H))
    R_TBH, r_h, r_c = rng.normal(size=(T, B, H)), rng.normal(size=(B, H)), rng.normal(size=(B, H))

    def loss(_: FloatArray) -> float:
        h_TBH, (h_T, c_T), _cache = lstm_forward(x, params, h0, c0)
        return float(np.sum(R_TBH * h_TBH) + np.sum(r_h * h_T) + np.sum(r_c * c_T))

    _, _, cache = lstm_forward(x, params, h0, c0)
    dx, dparams, dh0, dc0 = lstm_backward(R_TBH, cache, dh_T=r_h, dc_T=r_c)
    pairs = [(params[k], dparams[k]) for k in PARAM_NAMES] + [(x, dx), (h0, dh0), (c0, dc0)]
    return max(rel_error(numerical_grad(loss, a), g) for a, g in pairs)


def check_softmax_regression(seed: int = 0) -> float:
    """Largest relative error over W and b of L2-regularized softmax regression."""
    rng = np.random.default_rng(seed)
    X_NF, y_N = rng.normal(size=(8, 5)), rng.integers(0, 4, 8)
    W, b = rng.normal(size=(5, 4)), rng.normal(size=4)
    _, dW, db = softmax_regression_loss_and_grad(W, b, X_NF, y_N, l2=0.1)

    def loss(_: FloatArray) -> float:
        return softmax_regression_loss_and_grad(W, b, X_NF, y_N, l2=0.1)[0]

    return max(rel_error(numerical_grad(loss, W), dW), rel_error(numerical_grad(loss, b), db))


def run_check(seed: int = 0) -> dict[str, float]:
    """Finite-difference relative errors (float64; each should be < 1e-6, typically ~1e-9)."""
    return {
        "mlp": max(check_mlp(act, seed) for act in ACTIVATIONS),
        "lstm": check_lstm(seed),
        "softmax_regression": check_softmax_regression(seed),
    }
