"""Finite-difference gradient checks — NumPy only.

Run it::

    >>> import numpy as np
    >>> from dlhpc.reference.gradcheck import numerical_grad, rel_error
    >>> x = np.array([1.0, -2.0, 3.0])
    >>> num = numerical_grad(lambda v: float(np.sum(v**3)), x)
    >>> rel_error(num, 3 * x**2) < 1e-8
    True

Use float64: with ε = 1e-6 a central difference is accurate to about 1e-10 relative in float64,
and useless in float32 (rounding error ~ 1e-7/ε swamps the signal).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dlhpc.reference.softmax import FloatArray


def numerical_grad(
    f: Callable[[FloatArray], float], x: FloatArray, eps: float = 1e-6
) -> FloatArray:
    """∂f/∂x by central differences (f(x+ε) − f(x−ε)) / 2ε, one element at a time.

    ``x`` is perturbed *in place* (so ``f`` may close over a model that holds ``x``) and each
    element is restored before the next; ``f(x)`` must return a scalar.
    """
    grad = np.zeros(x.shape, dtype=np.float64)
    for idx in np.ndindex(x.shape):  # indexing x itself works for views of any layout
        saved = x[idx]
        x[idx] = saved + eps
        up = f(x)
        x[idx] = saved - eps
        down = f(x)
        x[idx] = saved  # restore exactly, not saved + eps − eps
        grad[idx] = (up - down) / (2 * eps)
    return grad


def rel_error(a: FloatArray, b: FloatArray) -> float:
    """‖a − b‖ / (‖a‖ + ‖b‖), 0 when both are 0: scale-free, and not fooled by tiny entries."""
    denom = float(np.linalg.norm(a) + np.linalg.norm(b))
    if denom == 0.0:
        return 0.0
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b))) / denom
