"""Softmax, log-softmax, cross-entropy and its gradient — numerically stable, NumPy only.

The tutorial's model of a class given an input: a score ``s(y, x)`` per class, turned into a
probability by the softmax::

    P(y|x) = exp(s(y,x)) / Σ_y' exp(s(y',x))

Run it::

    >>> import numpy as np
    >>> from dlhpc.reference.softmax import softmax, cross_entropy
    >>> softmax(np.array([[1000.0, 1000.0]]))          # no overflow
    array([[0.5, 0.5]])
    >>> round(cross_entropy(np.zeros((4, 10)), np.array([0, 1, 2, 3])), 4)  # log(10)
    2.3026

Shapes::

    N  batch
    K  classes (scores per sample)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

# Every reference module works in float64 by default (the gradient checks need it); float32
# flows through unchanged for the benchmarks.
FloatArray = npt.NDArray[np.floating[Any]]
IntArray = npt.NDArray[np.integer[Any]]


def softmax(z: FloatArray, axis: int = -1) -> FloatArray:
    """exp(z) / Σ exp(z) along ``axis``; subtracting the max first keeps exp() ≤ 1 (no overflow)."""
    e = np.exp(z - np.max(z, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(z: FloatArray, axis: int = -1) -> FloatArray:
    """log softmax(z) = z − max − log Σ exp(z − max): stays finite where softmax underflows to 0."""
    shifted = z - np.max(z, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def sigmoid(z: FloatArray) -> FloatArray:
    """σ(z) = 1 / (1 + exp(−z)), the two-class softmax; written so exp() never overflows."""
    e = np.exp(-np.abs(z))  # in (0, 1]
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)


def cross_entropy(logits_NK: FloatArray, y_N: IntArray) -> float:
    """Mean over the batch of −log P(y|x), from raw scores and integer labels."""
    logp_NK = log_softmax(logits_NK)
    return float(-np.mean(logp_NK[np.arange(len(y_N)), y_N]))


def cross_entropy_grad(logits_NK: FloatArray, y_N: IntArray) -> FloatArray:
    """∂ cross_entropy / ∂ logits = (softmax(logits) − onehot(y)) / N."""
    n = len(y_N)
    d_NK = softmax(logits_NK)
    d_NK[np.arange(n), y_N] -= 1.0
    d_NK /= n
    return d_NK


def cross_entropy_and_grad(logits_NK: FloatArray, y_N: IntArray) -> tuple[float, FloatArray]:
    """Both at once from one log-softmax: the mean loss and ∂loss/∂logits."""
    rows = np.arange(len(y_N))
    logp_NK = log_softmax(logits_NK)
    loss = float(-np.mean(logp_NK[rows, y_N]))
    d_NK = np.exp(logp_NK)  # = softmax(logits)
    d_NK[rows, y_N] -= 1.0
    d_NK /= len(y_N)
    return loss, d_NK
