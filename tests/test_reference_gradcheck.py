"""dlhpc.reference.gradcheck: the checker itself must be right, or every other check is void."""

from __future__ import annotations

import numpy as np
import pytest

from dlhpc.reference.gradcheck import numerical_grad, rel_error


def test_numerical_grad_of_known_function_and_restores_input() -> None:
    x = np.array([[0.5, -1.5], [2.0, 3.0]])
    before = x.copy()
    num = numerical_grad(lambda v: float(np.sum(np.sin(v) * v)), x)
    np.testing.assert_allclose(num, np.cos(before) * before + np.sin(before), rtol=1e-8)
    np.testing.assert_array_equal(x, before)  # restored bit for bit


def test_numerical_grad_perturbs_in_place_for_closures() -> None:
    # f ignores its argument and reads the array through a closure, as the model checks do.
    W = np.array([1.0, 2.0])
    num = numerical_grad(lambda _: float(W @ W), W)
    np.testing.assert_allclose(num, 2 * W, rtol=1e-8)


def test_numerical_grad_works_through_a_strided_view() -> None:
    base = np.arange(12.0).reshape(3, 4)
    view = base.T[::2]  # non-contiguous: perturbing must still reach ``base``
    num = numerical_grad(lambda _: float(np.sum(base**2)), view)
    np.testing.assert_allclose(num, 2 * view, rtol=1e-8)
    np.testing.assert_array_equal(base, np.arange(12.0).reshape(3, 4))


def test_rel_error() -> None:
    a = np.array([1.0, 2.0, 3.0])
    assert rel_error(a, a) == 0.0
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    assert rel_error(a, -a) == pytest.approx(1.0)
    assert rel_error(a, a * (1 + 1e-6)) == pytest.approx(5e-7, rel=1e-3)
    assert rel_error(1e-12 * a, 2e-12 * a) == pytest.approx(1 / 3)  # scale-free
