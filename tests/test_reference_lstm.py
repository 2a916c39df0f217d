"""dlhpc.reference.lstm: BPTT vs finite differences and torch.nn.LSTM (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlhpc.reference.gradcheck import numerical_grad, rel_error
from dlhpc.reference.lstm import PARAM_NAMES, init_lstm_params, lstm_backward, lstm_forward

T, B, D, H = 5, 3, 4, 6
TORCH_ORDER = ("i", "f", "g", "o")  # how torch.nn.LSTM stacks the gates in its (4H, ·) weights


def _setup(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x": rng.normal(size=(T, B, D)),
        "h0": rng.normal(size=(B, H)),
        "c0": rng.normal(size=(B, H)),
        # a loss that reads every h_t and the final state: L = Σ R∘h + Σ r_h∘h_T + Σ r_c∘C_T
        "R": rng.normal(size=(T, B, H)),
        "r_h": rng.normal(size=(B, H)),
        "r_c": rng.normal(size=(B, H)),
    }


def test_shapes_and_initial_state_defaults_to_zero() -> None:
    params = init_lstm_params(D, H, seed=0)
    assert {k: v.shape for k, v in params.items()} == {
        name: (D, H) if name.startswith("W_x") else (H, H) if name.startswith("W_h") else (H,)
        for name in PARAM_NAMES
    }
    x = np.random.default_rng(0).normal(size=(T, B, D))
    h, (h_T, c_T), _ = lstm_forward(x, params)
    assert h.shape == (T, B, H) and h_T.shape == c_T.shape == (B, H)
    np.testing.assert_array_equal(h[-1], h_T)
    zeros = np.zeros((B, H))
    np.testing.assert_array_equal(lstm_forward(x, params, zeros, zeros)[0], h)
    with pytest.raises(ValueError, match="W_hg"):
        lstm_forward(x, {k: v for k, v in params.items() if k != "W_hg"})


def test_bptt_matches_finite_differences_with_nonzero_initial_state() -> None:
    s = _setup(1)
    params = init_lstm_params(D, H, seed=1)

    def loss(_: np.ndarray) -> float:
        h, (h_T, c_T), _cache = lstm_forward(s["x"], params, s["h0"], s["c0"])
        return float(np.sum(s["R"] * h) + np.sum(s["r_h"] * h_T) + np.sum(s["r_c"] * c_T))

    _, _, cache = lstm_forward(s["x"], params, s["h0"], s["c0"])
    dx, dparams, dh0, dc0 = lstm_backward(s["R"], cache, dh_T=s["r_h"], dc_T=s["r_c"])
    for name in PARAM_NAMES:
        assert rel_error(numerical_grad(loss, params[name]), dparams[name]) < 1e-6, name
    for name, grad in [("x", dx), ("h0", dh0), ("c0", dc0)]:
        assert rel_error(numerical_grad(loss, s[name]), grad) < 1e-6, name


def _torch_lstm(params: dict[str, np.ndarray]) -> torch.nn.LSTM:
    lstm = torch.nn.LSTM(D, H).double()
    with torch.no_grad():
        # torch: weights (4H, in), transposed, gates stacked i, f, g, o; two biases b_ih + b_hh
        lstm.weight_ih_l0.copy_(
            torch.from_numpy(np.concatenate([params[f"W_x{g}"].T for g in TORCH_ORDER]))
        )
        lstm.weight_hh_l0.copy_(
            torch.from_numpy(np.concatenate([params[f"W_h{g}"].T for g in TORCH_ORDER]))
        )
        lstm.bias_ih_l0.copy_(
            torch.from_numpy(np.concatenate([params[f"b_{g}"] for g in TORCH_ORDER]))
        )
        lstm.bias_hh_l0.zero_()
    return lstm


def test_forward_and_backward_equal_torch_lstm() -> None:
    s = _setup(2)
    params = init_lstm_params(D, H, seed=2)
    h, (h_T, c_T), cache = lstm_forward(s["x"], params, s["h0"], s["c0"])
    dx, dparams, dh0, dc0 = lstm_backward(s["R"], cache, dh_T=s["r_h"], dc_T=s["r_c"])

    lstm = _torch_lstm(params)
    xt, h0t, c0t = (torch.tensor(s[k], requires_grad=True) for k in ("x", "h0", "c0"))
    out, (hn, cn) = lstm(xt, (h0t[None], c0t[None]))
    np.testing.assert_allclose(h, out.detach().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(h_T, hn[0].detach().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(c_T, cn[0].detach().numpy(), rtol=0, atol=1e-12)
    loss = (
        (torch.from_numpy(s["R"]) * out).sum()
        + (torch.from_numpy(s["r_h"]) * hn[0]).sum()
        + (torch.from_numpy(s["r_c"]) * cn[0]).sum()
    )
    loss.backward()

    def close(ours: np.ndarray, theirs: torch.Tensor | None) -> None:
        assert theirs is not None
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=0, atol=1e-9)

    close(dx, xt.grad)
    close(dh0, h0t.grad)
    close(dc0, c0t.grad)
    grads = {
        "W_x": lstm.weight_ih_l0.grad,
        "W_h": lstm.weight_hh_l0.grad,
        "b_": lstm.bias_ih_l0.grad,
    }
    for prefix, g_4H in grads.items():
        assert g_4H is not None
        for k, gate in enumerate(TORCH_ORDER):
            chunk = g_4H[k * H : (k + 1) * H]
            close(dparams[f"{prefix}{gate}"], chunk.T if prefix != "b_" else chunk)
    close(dparams["b_i"], lstm.bias_hh_l0.grad[:H] if lstm.bias_hh_l0.grad is not None else None)


def test_state_carries_information_across_time() -> None:
    # Only x_0 differs between the two batch rows; the last output must still differ, and the
    # gradient of h_T with respect to x_0 must be nonzero: the recurrence really connects steps.
    params = init_lstm_params(1, 4, seed=3)
    x = np.zeros((6, 2, 1))
    x[0, 1, 0] = 3.0
    h, _, cache = lstm_forward(x, params)
    assert np.abs(h[-1, 0] - h[-1, 1]).max() > 1e-3
    dh = np.zeros_like(h)
    dh[-1] = 1.0
    dx, *_ = lstm_backward(dh, cache)
    assert np.abs(dx[0]).max() > 1e-4
