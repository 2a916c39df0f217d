"""dlhpc.reference.softmax: stable softmax / log-softmax / cross-entropy, checked against torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlhpc.reference.gradcheck import numerical_grad, rel_error
from dlhpc.reference.softmax import (
    cross_entropy,
    cross_entropy_and_grad,
    cross_entropy_grad,
    log_softmax,
    sigmoid,
    softmax,
)


def test_softmax_is_a_distribution_and_shift_invariant() -> None:
    z = np.random.default_rng(0).normal(size=(5, 7))
    p = softmax(z)
    assert np.all(p > 0)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-15)
    np.testing.assert_allclose(softmax(z + 123.0), p, atol=1e-15)
    # axis=0 normalizes columns
    np.testing.assert_allclose(softmax(z, axis=0).sum(axis=0), 1.0, atol=1e-15)


def test_no_overflow_or_nan_for_huge_scores() -> None:
    z = np.array([[1000.0, 1000.0, -1000.0], [-1e308, 0.0, 1e3]])
    p = softmax(z)
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p[0], [0.5, 0.5, 0.0], atol=1e-15)
    logp = log_softmax(z)
    assert np.isfinite(logp[0, 2]) and logp[0, 2] < -1999  # where softmax underflows to 0
    assert np.isfinite(cross_entropy(z[:1], np.array([2])))
    s = sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    np.testing.assert_array_equal(s, [0.0, 0.5, 1.0])


def test_matches_torch_in_float64() -> None:
    rng = np.random.default_rng(1)
    z, y = rng.normal(size=(6, 4)) * 5, rng.integers(0, 4, 6)
    zt = torch.tensor(z, requires_grad=True)
    loss_t = F.cross_entropy(zt, torch.tensor(y))
    loss_t.backward()
    assert zt.grad is not None
    np.testing.assert_allclose(softmax(z), torch.softmax(zt, -1).detach().numpy(), atol=1e-15)
    np.testing.assert_allclose(log_softmax(z), F.log_softmax(zt, -1).detach().numpy(), atol=1e-13)
    assert cross_entropy(z, y) == pytest.approx(loss_t.item(), abs=1e-13)
    np.testing.assert_allclose(cross_entropy_grad(z, y), zt.grad.numpy(), atol=1e-15)
    loss, grad = cross_entropy_and_grad(z, y)
    assert loss == pytest.approx(loss_t.item(), abs=1e-13)
    np.testing.assert_allclose(grad, zt.grad.numpy(), atol=1e-15)


def test_cross_entropy_grad_matches_finite_differences() -> None:
    rng = np.random.default_rng(2)
    z, y = rng.normal(size=(5, 3)), rng.integers(0, 3, 5)
    num = numerical_grad(lambda v: cross_entropy(v, y), z)
    assert rel_error(num, cross_entropy_grad(z, y)) < 1e-8


def test_float32_stays_float32() -> None:
    z = np.ones((2, 3), dtype=np.float32)
    assert softmax(z).dtype == np.float32
    assert cross_entropy_grad(z, np.array([0, 1])).dtype == np.float32
    assert sigmoid(z).dtype == np.float32
