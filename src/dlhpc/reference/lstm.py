"""The tutorial's LSTM cell, forward and backpropagation through time — NumPy only.

The equations, under the tutorial's names (σ the logistic sigmoid, ∘ the elementwise product)::

    i   = σ(x_t W_xi + h_{t−1} W_hi + b_i)       input gate
    f   = σ(x_t W_xf + h_{t−1} W_hf + b_f)       forget gate
    o   = σ(x_t W_xo + h_{t−1} W_ho + b_o)       output gate
    g   = tanh(x_t W_xg + h_{t−1} W_hg + b_g)    candidate cell
    C_t = f ∘ C_{t−1} + i ∘ g
    h_t = o ∘ tanh(C_t)

The loops run over time only; every step is vectorized over the batch. The tests check the
gradients against finite differences and both directions against ``torch.nn.LSTM``.

Run it::

    >>> import numpy as np
    >>> from dlhpc.reference.lstm import init_lstm_params, lstm_forward, lstm_backward
    >>> params = init_lstm_params(D=3, H=5, seed=0)
    >>> x_TBD = np.random.default_rng(0).normal(size=(7, 2, 3))
    >>> h_TBH, (h_T, c_T), cache = lstm_forward(x_TBD, params)
    >>> dx_TBD, dparams, dh0, dc0 = lstm_backward(np.ones_like(h_TBH), cache)
    >>> h_TBH.shape, dx_TBD.shape, dparams["W_hi"].shape
    ((7, 2, 5), (7, 2, 3), (5, 5))

Shapes::

    T  time steps
    B  batch
    D  input features
    H  hidden (and cell) size
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlhpc.reference.softmax import FloatArray, sigmoid

GATES = ("i", "f", "o", "g")  # the tutorial's order; torch.nn.LSTM stacks them i, f, g, o
PARAM_NAMES = tuple(name for g in GATES for name in (f"W_x{g}", f"W_h{g}", f"b_{g}"))

LSTMParams = dict[str, FloatArray]


def init_lstm_params(D: int, H: int, seed: int = 0) -> LSTMParams:
    """U(−1/√H, 1/√H) for every weight and bias, as ``torch.nn.LSTM`` initializes; float64."""
    rng = np.random.default_rng(seed)
    k = 1.0 / np.sqrt(H)
    params: LSTMParams = {}
    for g in GATES:
        params[f"W_x{g}"] = rng.uniform(-k, k, (D, H))
        params[f"W_h{g}"] = rng.uniform(-k, k, (H, H))
        params[f"b_{g}"] = rng.uniform(-k, k, H)
    return params


@dataclass
class LSTMCache:
    """What the backward pass needs from the forward pass: inputs and every step's gates."""

    x_TBD: FloatArray
    params: LSTMParams
    h0_BH: FloatArray
    c0_BH: FloatArray
    gates: dict[str, FloatArray]  # "i", "f", "o", "g" → (T, B, H), after their nonlinearity
    c_TBH: FloatArray
    tanh_c_TBH: FloatArray
    h_TBH: FloatArray


def _pre_activation(x_BD: FloatArray, h_BH: FloatArray, p: LSTMParams, g: str) -> FloatArray:
    """x_t W_x· + h_{t−1} W_h· + b_· for gate ``g``."""
    return x_BD @ p[f"W_x{g}"] + h_BH @ p[f"W_h{g}"] + p[f"b_{g}"]


def lstm_forward(
    x_TBD: FloatArray,
    params: LSTMParams,
    h0: FloatArray | None = None,
    c0: FloatArray | None = None,
) -> tuple[FloatArray, tuple[FloatArray, FloatArray], LSTMCache]:
    """Run the cell over the sequence: every h_t (T, B, H), the final (h_T, C_T), and a cache."""
    missing = set(PARAM_NAMES) - set(params)
    if missing:
        raise ValueError(f"LSTM parameters missing {sorted(missing)}")
    T, B, _ = x_TBD.shape
    H = params["W_hi"].shape[0]
    dtype = np.result_type(x_TBD, params["W_hi"])
    h_BH = np.zeros((B, H), dtype) if h0 is None else h0
    c_BH = np.zeros((B, H), dtype) if c0 is None else c0
    cache = LSTMCache(
        x_TBD=x_TBD,
        params=params,
        h0_BH=h_BH,
        c0_BH=c_BH,
        gates={g: np.empty((T, B, H), dtype) for g in GATES},
        c_TBH=np.empty((T, B, H), dtype),
        tanh_c_TBH=np.empty((T, B, H), dtype),
        h_TBH=np.empty((T, B, H), dtype),
    )
    for t in range(T):
        i = sigmoid(_pre_activation(x_TBD[t], h_BH, params, "i"))
        f = sigmoid(_pre_activation(x_TBD[t], h_BH, params, "f"))
        o = sigmoid(_pre_activation(x_TBD[t], h_BH, params, "o"))
        g = np.tanh(_pre_activation(x_TBD[t], h_BH, params, "g"))
        c_BH = f * c_BH + i * g  # forget part of the old cell, write the gated candidate
        tanh_c = np.tanh(c_BH)
        h_BH = o * tanh_c  # expose a gated view of the cell
        for name, value in zip(GATES, (i, f, o, g), strict=True):
            cache.gates[name][t] = value
        cache.c_TBH[t], cache.tanh_c_TBH[t], cache.h_TBH[t] = c_BH, tanh_c, h_BH
    return cache.h_TBH, (h_BH, c_BH), cache


def _step_backward(
    t: int,
    dh_BH: FloatArray,
    dc_BH: FloatArray,
    cache: LSTMCache,
    dx_TBD: FloatArray,
    dparams: LSTMParams,
) -> tuple[FloatArray, FloatArray]:
    """One step of BPTT: takes ∂L/∂h_t (all paths) and ∂L/∂C_t (from t+1), accumulates the
    parameter gradients and dx_t, and returns ∂L/∂h_{t−1} and ∂L/∂C_{t−1}."""
    p = cache.params
    i, f, o, g = (cache.gates[name][t] for name in GATES)
    tanh_c = cache.tanh_c_TBH[t]
    c_prev = cache.c_TBH[t - 1] if t > 0 else cache.c0_BH
    h_prev = cache.h_TBH[t - 1] if t > 0 else cache.h0_BH
    # h_t = o ∘ tanh(C_t): split ∂L/∂h_t between the output gate and the cell.
    do = dh_BH * tanh_c
    dc = dc_BH + dh_BH * o * (1 - tanh_c * tanh_c)  # the cell also gets C_{t+1}'s gradient
    # C_t = f ∘ C_{t−1} + i ∘ g, then back through each gate's nonlinearity
    # (σ' = σ(1 − σ), tanh' = 1 − tanh²) to its pre-activation.
    d_pre = {
        "i": dc * g * i * (1 - i),
        "f": dc * c_prev * f * (1 - f),
        "o": do * o * (1 - o),
        "g": dc * i * (1 - g * g),
    }
    x_BD = cache.x_TBD[t]
    dh_prev = np.zeros_like(h_prev)
    for name, da_BH in d_pre.items():
        # pre = x_t W_x + h_{t−1} W_h + b: the same rule as a dense layer, for both inputs.
        dparams[f"W_x{name}"] += x_BD.T @ da_BH
        dparams[f"W_h{name}"] += h_prev.T @ da_BH
        dparams[f"b_{name}"] += da_BH.sum(axis=0)
        dx_TBD[t] += da_BH @ p[f"W_x{name}"].T
        dh_prev += da_BH @ p[f"W_h{name}"].T
    return dh_prev, dc * f  # ∂C_t/∂C_{t−1} = f: the cell's gradient highway


def lstm_backward(
    dh_TBH: FloatArray,
    cache: LSTMCache,
    dh_T: FloatArray | None = None,
    dc_T: FloatArray | None = None,
) -> tuple[FloatArray, LSTMParams, FloatArray, FloatArray]:
    """BPTT. ``dh_TBH`` is ∂L/∂h_t from outside at every step; ``dh_T``/``dc_T`` are extra
    gradients on the final state. Returns (dx (T, B, D), dparams, dh0, dc0)."""
    dx_TBD = np.zeros_like(cache.x_TBD)
    dparams = {name: np.zeros_like(cache.params[name]) for name in PARAM_NAMES}
    dh_next = np.zeros_like(cache.h0_BH) if dh_T is None else dh_T
    dc_next = np.zeros_like(cache.c0_BH) if dc_T is None else dc_T
    for t in reversed(range(dh_TBH.shape[0])):
        # h_t feeds the loss directly (dh_TBH[t]) and the next step (dh_next): add both paths.
        dh_next, dc_next = _step_backward(t, dh_TBH[t] + dh_next, dc_next, cache, dx_TBD, dparams)
    return dx_TBD, dparams, dh_next, dc_next
