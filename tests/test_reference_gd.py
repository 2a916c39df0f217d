"""dlhpc.reference.gd: gradient descent reaches the least-squares solution; softmax regression."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from dlhpc.reference.gd import (
    SGD,
    Adam,
    fit_softmax_regression,
    gradient_descent,
    gradient_descent_history,
    least_squares_grad,
    least_squares_loss,
    minibatch_sgd,
    softmax_regression_loss_and_grad,
)
from dlhpc.reference.gradcheck import numerical_grad, rel_error


def _problem(seed: int = 0, m: int = 300, n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Well conditioned: i.i.d. N(0,1) columns, m ≫ n, plus noise so the fit is not exact."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, n))
    return X, X @ rng.normal(size=n) + 0.3 * rng.normal(size=m)


def test_gradient_descent_converges_to_lstsq() -> None:
    X, y = _problem()
    theta0 = np.zeros(X.shape[1])
    theta = gradient_descent(X, y, theta0, alpha=0.1, iterations=500)
    theta_star = np.linalg.lstsq(X, y, rcond=None)[0]
    np.testing.assert_allclose(theta, theta_star, atol=1e-10)
    assert np.all(theta0 == 0)  # the caller's θ is not modified
    # and a few steps are *not* enough: the test can tell convergence from a lucky start
    early = gradient_descent(X, y, theta0, alpha=0.1, iterations=5)
    assert np.linalg.norm(early - theta_star) > 0.1


def test_history_decreases_monotonically_to_the_optimum() -> None:
    X, y = _problem(1)
    theta, losses = gradient_descent_history(X, y, np.zeros(X.shape[1]), 0.1, 300)
    assert len(losses) == 301
    assert all(b <= a + 1e-15 for a, b in itertools.pairwise(losses))
    theta_star = np.linalg.lstsq(X, y, rcond=None)[0]
    assert losses[-1] == pytest.approx(least_squares_loss(X, y, theta_star), rel=1e-10)
    np.testing.assert_allclose(theta, gradient_descent(X, y, np.zeros(X.shape[1]), 0.1, 300))


def test_least_squares_grad_matches_finite_differences() -> None:
    X, y = _problem(2, m=20, n=4)
    theta = np.random.default_rng(0).normal(size=4)
    num = numerical_grad(lambda t: least_squares_loss(X, y, t), theta)
    assert rel_error(num, least_squares_grad(X, y, theta)) < 1e-8


def test_minibatch_sgd_with_momentum_and_schedule_gets_close() -> None:
    X, y = _problem(3)
    theta_star = np.linalg.lstsq(X, y, rcond=None)[0]
    seen: list[int] = []

    def schedule(epoch: int) -> float:
        seen.append(epoch)
        return 0.5 ** (epoch // 10)  # step decay: the noise floor of SGD shrinks with α

    theta = minibatch_sgd(X, y, np.zeros(6), 0.02, 40, 16, momentum=0.9, schedule=schedule)
    assert seen == list(range(40))
    assert np.linalg.norm(theta - theta_star) / np.linalg.norm(theta_star) < 1e-2
    # same seed, same result; different seed, different path
    again = minibatch_sgd(X, y, np.zeros(6), 0.02, 40, 16, momentum=0.9, schedule=schedule)
    np.testing.assert_array_equal(theta, again)
    other = minibatch_sgd(X, y, np.zeros(6), 0.02, 40, 16, momentum=0.9, seed=1)
    assert not np.array_equal(theta, other)


def test_minibatch_sgd_full_batch_without_shuffle_is_gradient_descent() -> None:
    X, y = _problem(4)
    theta = minibatch_sgd(X, y, np.zeros(6), 0.1, 50, batch_size=len(y), shuffle=False)
    np.testing.assert_allclose(theta, gradient_descent(X, y, np.zeros(6), 0.1, 50), atol=1e-14)


@pytest.mark.parametrize("l2", [0.0, 0.3])
def test_softmax_regression_gradient_matches_finite_differences(l2: float) -> None:
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(9, 4)), rng.integers(0, 3, 9)
    W, b = rng.normal(size=(4, 3)), rng.normal(size=3)
    _, dW, db = softmax_regression_loss_and_grad(W, b, X, y, l2)

    def f(_: np.ndarray) -> float:
        return softmax_regression_loss_and_grad(W, b, X, y, l2)[0]

    assert rel_error(numerical_grad(f, W), dW) < 1e-6
    assert rel_error(numerical_grad(f, b), db) < 1e-6


def test_fit_softmax_regression_learns_separable_classes() -> None:
    rng = np.random.default_rng(6)
    centers = np.array([[3.0, 0.0], [-3.0, 0.0], [0.0, 3.0]])
    y = rng.integers(0, 3, 300)
    X = centers[y] + rng.normal(size=(300, 2))
    model = fit_softmax_regression(X, y, num_classes=3, alpha=0.5, iterations=200)
    assert model.loss_curve[0] == pytest.approx(np.log(3))  # W = 0: uniform prediction
    assert model.loss_curve[-1] < 0.15
    accuracy = np.mean(np.argmax(X @ model.W_DK + model.b_K, axis=1) == y)
    assert accuracy > 0.97


def test_update_rules() -> None:
    # SGD with momentum: v1 = g, v2 = μ·g + g.
    p, g = np.array([1.0]), np.array([2.0])
    opt = SGD(lr=0.1, momentum=0.5)
    opt.step([p], [g])
    opt.step([p], [g])
    np.testing.assert_allclose(p, 1.0 - 0.1 * 2.0 - 0.1 * 3.0)
    # Adam's first step moves every coordinate by ≈ lr, whatever the gradient's scale.
    q = np.array([0.0, 0.0])
    Adam(lr=0.01).step([q], [np.array([1e-3, -50.0])])
    np.testing.assert_allclose(q, [-0.01, 0.01], rtol=1e-4)
    with pytest.raises(ValueError):
        SGD(lr=0.1, momentum=1.0)
    with pytest.raises(ValueError):
        Adam(lr=-1.0)


def test_adam_minimizes_a_quadratic() -> None:
    target = np.array([3.0, -2.0])
    x = np.zeros(2)
    opt = Adam(lr=0.1)
    for _ in range(500):
        opt.step([x], [2 * (x - target)])
    np.testing.assert_allclose(x, target, atol=1e-3)


def test_update_rules_match_torch_optim_step_for_step() -> None:
    rng = np.random.default_rng(7)
    grads = [rng.normal(size=(3, 2)) for _ in range(5)]
    for ours, make_theirs in [
        (SGD(lr=0.05, momentum=0.9), lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9)),
        (Adam(lr=0.05), lambda ps: torch.optim.Adam(ps, lr=0.05)),
    ]:
        p = np.ones((3, 2))
        pt = torch.ones(3, 2, dtype=torch.float64, requires_grad=True)
        theirs = make_theirs([pt])
        for g in grads:
            ours.step([p], [g])
            pt.grad = torch.from_numpy(g.copy())
            theirs.step()
        np.testing.assert_allclose(p, pt.detach().numpy(), rtol=0, atol=1e-12)
