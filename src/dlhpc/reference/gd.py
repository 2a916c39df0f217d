"""Gradient descent, as the tutorial writes it, and its family — NumPy only.

* least squares by full-batch gradient descent: θ ← θ − α·(1/m)·Xᵀ(Xθ − y)
* the same by mini-batch SGD, with momentum and a learning-rate schedule
* softmax (multinomial logistic) regression trained by gradient descent
* the update rules the reference MLP and LSTM train with (``SGD`` with momentum, ``Adam``)

Run it::

    >>> import numpy as np
    >>> from dlhpc.reference.gd import gradient_descent
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3)); y = X @ np.array([1.0, -2.0, 0.5])
    >>> np.round(gradient_descent(X, y, np.zeros(3), alpha=0.1, iterations=500), 6)
    array([ 1. , -2. ,  0.5])

Shapes::

    m  samples (also N)
    n  features (also D)
    K  classes
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from dlhpc.reference.softmax import FloatArray, IntArray, cross_entropy_and_grad


def least_squares_loss(X_mn: FloatArray, y_m: FloatArray, theta_n: FloatArray) -> float:
    """J(θ) = (1/2m)·‖Xθ − y‖², the objective whose gradient is (1/m)·Xᵀ(Xθ − y)."""
    r_m = X_mn @ theta_n - y_m
    return float(r_m @ r_m) / (2 * len(y_m))


def least_squares_grad(X_mn: FloatArray, y_m: FloatArray, theta_n: FloatArray) -> FloatArray:
    """∇J(θ) = (1/m)·Xᵀ(Xθ − y)."""
    return X_mn.T @ (X_mn @ theta_n - y_m) / len(y_m)


def gradient_descent_history(
    X_mn: FloatArray, y_m: FloatArray, theta_n: FloatArray, alpha: float, iterations: int
) -> tuple[FloatArray, list[float]]:
    """Full-batch gradient descent; returns θ and the loss J(θ) before each step and at the end."""
    theta = np.array(theta_n, dtype=np.float64)  # a copy: the caller's θ is left alone
    losses = [least_squares_loss(X_mn, y_m, theta)]
    for _ in range(iterations):
        theta -= alpha * least_squares_grad(X_mn, y_m, theta)
        losses.append(least_squares_loss(X_mn, y_m, theta))
    return theta, losses


def gradient_descent(
    X_mn: FloatArray, y_m: FloatArray, theta_n: FloatArray, alpha: float, iterations: int
) -> FloatArray:
    """θ ← θ − α·(1/m)·Xᵀ(Xθ − y), ``iterations`` times, from ``theta_n`` (not modified)."""
    theta = np.array(theta_n, dtype=np.float64)
    for _ in range(iterations):
        theta -= alpha * least_squares_grad(X_mn, y_m, theta)
    return theta


def minibatch_sgd(
    X_mn: FloatArray,
    y_m: FloatArray,
    theta_n: FloatArray,
    alpha: float,
    epochs: int,
    batch_size: int,
    shuffle: bool = True,
    momentum: float = 0.0,
    schedule: Callable[[int], float] | None = None,
    seed: int = 0,
) -> FloatArray:
    """Least squares by mini-batch SGD with (heavy-ball) momentum.

    Per batch B: g = (1/|B|)·X_Bᵀ(X_B θ − y_B); v ← μ·v + g; θ ← θ − α·s(epoch)·v, where
    ``schedule(epoch)`` gives the factor s (1 when there is no schedule). With ``shuffle`` the
    sample order is redrawn every epoch from ``seed``.
    """
    if batch_size < 1 or epochs < 0:
        raise ValueError(f"need batch_size ≥ 1 and epochs ≥ 0, got {batch_size}, {epochs}")
    rng = np.random.default_rng(seed)
    theta = np.array(theta_n, dtype=np.float64)
    opt = SGD(alpha, momentum)
    m = len(y_m)
    for epoch in range(epochs):
        opt.lr = alpha * (schedule(epoch) if schedule is not None else 1.0)
        order = rng.permutation(m) if shuffle else np.arange(m)
        for start in range(0, m, batch_size):
            idx = order[start : start + batch_size]
            opt.step([theta], [least_squares_grad(X_mn[idx], y_m[idx], theta)])
    return theta


# --- softmax regression --------------------------------------------------------------------


class SoftmaxRegression(NamedTuple):
    W_DK: FloatArray
    b_K: FloatArray
    loss_curve: list[float]


def softmax_regression_loss_and_grad(
    W_DK: FloatArray, b_K: FloatArray, X_ND: FloatArray, y_N: IntArray, l2: float = 0.0
) -> tuple[float, FloatArray, FloatArray]:
    """Mean cross-entropy of scores s = XW + b (plus (l2/2)·‖W‖²) and its gradients dW, db."""
    loss, dlogits_NK = cross_entropy_and_grad(X_ND @ W_DK + b_K, y_N)
    dW_DK = X_ND.T @ dlogits_NK + l2 * W_DK  # s = XW + b ⇒ ∂s/∂W contracts with X over N
    db_K = dlogits_NK.sum(axis=0)
    return loss + 0.5 * l2 * float(np.sum(W_DK * W_DK)), dW_DK, db_K


def fit_softmax_regression(
    X_ND: FloatArray,
    y_N: IntArray,
    num_classes: int,
    alpha: float = 0.5,
    iterations: int = 200,
    l2: float = 0.0,
) -> SoftmaxRegression:
    """Full-batch gradient descent from W = 0, b = 0 (the problem is convex: no seed needed)."""
    W_DK = np.zeros((X_ND.shape[1], num_classes))
    b_K = np.zeros(num_classes)
    curve: list[float] = []
    for _ in range(iterations):
        loss, dW_DK, db_K = softmax_regression_loss_and_grad(W_DK, b_K, X_ND, y_N, l2)
        curve.append(loss)
        W_DK -= alpha * dW_DK
        b_K -= alpha * db_K
    return SoftmaxRegression(W_DK, b_K, curve)


# --- update rules ----------------------------------------------------------------------------


class SGD:
    """p ← p − lr·v with v ← μ·v + g (PyTorch's convention; μ = 0 is plain SGD). In place."""

    def __init__(self, lr: float, momentum: float = 0.0) -> None:
        if lr <= 0 or not 0.0 <= momentum < 1.0:
            raise ValueError(f"need lr > 0 and 0 ≤ momentum < 1, got {lr}, {momentum}")
        self.lr = lr
        self.momentum = momentum
        self._velocity: list[FloatArray] | None = None

    def step(self, params: Sequence[FloatArray], grads: Sequence[FloatArray]) -> None:
        if self.momentum == 0.0:
            for p, g in zip(params, grads, strict=True):
                p -= self.lr * g
            return
        if self._velocity is None:
            self._velocity = [np.zeros_like(p) for p in params]
        for p, g, v in zip(params, grads, self._velocity, strict=True):
            v *= self.momentum
            v += g
            p -= self.lr * v


class Adam:
    """Adam (Kingma & Ba 2015) with bias correction; updates the parameter arrays in place."""

    def __init__(
        self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
    ) -> None:
        if lr <= 0:
            raise ValueError(f"need lr > 0, got {lr}")
        self.lr = lr
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.t = 0
        self._m: list[FloatArray] | None = None
        self._v: list[FloatArray] | None = None

    def step(self, params: Sequence[FloatArray], grads: Sequence[FloatArray]) -> None:
        if self._m is None or self._v is None:
            self._m = [np.zeros_like(p) for p in params]
            self._v = [np.zeros_like(p) for p in params]
        self.t += 1
        # m̂ = m/(1−β1ᵗ), v̂ = v/(1−β2ᵗ); p ← p − lr·m̂/(√v̂ + ε), arranged as torch.optim.Adam
        # does it (same ε placement, so the two agree step for step).
        step_size = self.lr / (1 - self.beta1**self.t)
        sqrt_bc2 = (1 - self.beta2**self.t) ** 0.5
        for p, g, m, v in zip(params, grads, self._m, self._v, strict=True):
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * g * g
            p -= step_size * m / (np.sqrt(v) / sqrt_bc2 + self.eps)
