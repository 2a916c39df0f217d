"""A multilayer perceptron with hand-written backpropagation — NumPy only.

The twin of ``dlhpc.models.mlp.MLP``: layer ``l`` computes ``z = a·W + b`` with ``W`` stored
``(in, out)`` (the torch ``nn.Linear.weight`` transposed), hidden layers apply the activation,
and the last layer's scores go through softmax cross-entropy. The tests check the gradients
against finite differences and ``torch.autograd`` and the logits against the torch model.

Run it::

    >>> import numpy as np
    >>> from dlhpc.reference.mlp import MLP
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(256, 2)); y = (X[:, 0] * X[:, 1] > 0).astype(int)  # XOR-like
    >>> net = MLP([2, 32, 2], activation="tanh", seed=0)
    >>> hist = net.fit(X, y, epochs=200, batch_size=32, lr=0.01, optimizer="adam")
    >>> net.accuracy(X, y) > 0.95
    True

Shapes::

    N    batch
    D    input features (sizes[0])
    K    classes (sizes[-1])
    I,O  a layer's fan-in and fan-out
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from dlhpc.reference.gd import SGD, Adam
from dlhpc.reference.softmax import (
    FloatArray,
    IntArray,
    cross_entropy,
    cross_entropy_and_grad,
    sigmoid,
)

ACTIVATIONS = ("relu", "sigmoid", "tanh")


def activate(name: str, z: FloatArray) -> FloatArray:
    """φ(z) for a hidden layer."""
    if name == "relu":
        return np.maximum(z, 0)
    if name == "sigmoid":
        return sigmoid(z)
    if name == "tanh":
        return np.tanh(z)
    raise ValueError(f"unknown activation {name!r}; choose from {', '.join(ACTIVATIONS)}")


def activate_grad(name: str, z: FloatArray, a: FloatArray) -> FloatArray:
    """φ'(z), using the already computed a = φ(z) where that is cheaper."""
    if name == "relu":
        return (z > 0).astype(z.dtype)
    if name == "sigmoid":
        return a * (1 - a)  # σ' = σ(1 − σ)
    if name == "tanh":
        return 1 - a * a  # tanh' = 1 − tanh²
    raise ValueError(f"unknown activation {name!r}; choose from {', '.join(ACTIVATIONS)}")


class MLP:
    """Fully connected classifier ``sizes[0] → … → sizes[-1]``; float64 unless ``dtype`` says."""

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str = "relu",
        seed: int = 0,
        dtype: npt.DTypeLike = np.float64,
    ) -> None:
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes needs ≥ 2 positive layer widths, got {list(sizes)}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose from {ACTIVATIONS}")
        self.sizes = list(sizes)
        self.activation = activation
        self.dtype = np.dtype(dtype)
        rng = np.random.default_rng(seed)
        self.weights: list[FloatArray] = []
        self.biases: list[FloatArray] = []
        for fan_in, fan_out in itertools.pairwise(self.sizes):
            if activation == "relu":  # He: Var(W) = 2/I keeps the activations' scale under ReLU
                W_IO = rng.normal(0.0, np.sqrt(2.0 / fan_in), (fan_in, fan_out))
            else:  # Glorot: Var(W) = 2/(I+O), the uniform form
                limit = np.sqrt(6.0 / (fan_in + fan_out))
                W_IO = rng.uniform(-limit, limit, (fan_in, fan_out))
            self.weights.append(W_IO.astype(self.dtype))
            self.biases.append(np.zeros(fan_out, dtype=self.dtype))

    @property
    def params(self) -> list[FloatArray]:
        """The parameter arrays themselves (weights, then biases): updating them updates the net."""
        return [*self.weights, *self.biases]

    def _forward_cached(
        self, X_ND: FloatArray
    ) -> tuple[FloatArray, list[FloatArray], list[FloatArray]]:
        """Logits, the inputs ``a`` of every layer (a[0] = X) and the hidden pre-activations z."""
        a: list[FloatArray] = [np.asarray(X_ND, dtype=self.dtype).reshape(len(X_ND), -1)]
        z: list[FloatArray] = []
        last = len(self.weights) - 1
        for layer, (W_IO, b_O) in enumerate(zip(self.weights, self.biases, strict=True)):
            z_NO = a[-1] @ W_IO + b_O
            if layer == last:
                return z_NO, a, z
            z.append(z_NO)
            a.append(activate(self.activation, z_NO))
        raise AssertionError("unreachable: an MLP has at least one layer")

    def forward(self, X_ND: FloatArray) -> FloatArray:
        """Scores (N, K) before the softmax."""
        return self._forward_cached(X_ND)[0]

    def loss_and_grads(
        self, X_ND: FloatArray, y_N: IntArray
    ) -> tuple[float, list[FloatArray], list[FloatArray]]:
        """Mean softmax cross-entropy and its gradient for every weight and bias (backprop)."""
        logits_NK, a, z = self._forward_cached(X_ND)
        # Start at the top: ∂L/∂z_last = (softmax(z_last) − onehot(y)) / N.
        loss, dz_NO = cross_entropy_and_grad(logits_NK, y_N)
        dW: list[FloatArray] = [np.empty(0)] * len(self.weights)
        db: list[FloatArray] = [np.empty(0)] * len(self.biases)
        for layer in reversed(range(len(self.weights))):
            # z = a·W + b  ⇒  ∂L/∂W = aᵀ·∂L/∂z (sums over the batch), ∂L/∂b = Σ_N ∂L/∂z.
            dW[layer] = a[layer].T @ dz_NO
            db[layer] = dz_NO.sum(axis=0)
            if layer == 0:
                break
            # ∂L/∂a = ∂L/∂z·Wᵀ: the error flows back along every weight that a fed.
            da_NI = dz_NO @ self.weights[layer].T
            # a = φ(z_below)  ⇒  ∂L/∂z_below = ∂L/∂a ∘ φ'(z_below)   (elementwise).
            dz_NO = da_NI * activate_grad(self.activation, z[layer - 1], a[layer])
        return loss, dW, db

    def predict(self, X_ND: FloatArray) -> IntArray:
        return np.argmax(self.forward(X_ND), axis=1)

    def accuracy(self, X_ND: FloatArray, y_N: IntArray) -> float:
        return float(np.mean(self.predict(X_ND) == y_N))

    def fit(
        self,
        X_ND: FloatArray,
        y_N: IntArray,
        epochs: int = 10,
        batch_size: int = 32,
        lr: float = 1e-2,
        optimizer: str = "sgd",
        momentum: float = 0.0,
        seed: int = 0,
        X_val: FloatArray | None = None,
        y_val: IntArray | None = None,
    ) -> dict[str, list[float]]:
        """Mini-batch training, reshuffled every epoch; ``optimizer`` is "sgd" (with
        ``momentum``) or "adam". Returns per-epoch ``loss`` (mean over the epoch's batches, by
        sample) and, with validation data, ``val_loss`` and ``val_accuracy``."""
        opt: SGD | Adam
        if optimizer == "sgd":
            opt = SGD(lr, momentum)
        elif optimizer == "adam":
            opt = Adam(lr)
        else:
            raise ValueError(f"unknown optimizer {optimizer!r}; choose 'sgd' or 'adam'")
        rng = np.random.default_rng(seed)
        X = np.asarray(X_ND, dtype=self.dtype).reshape(len(X_ND), -1)
        history: dict[str, list[float]] = {"loss": []}
        for _ in range(epochs):
            order = rng.permutation(len(X))
            total = 0.0
            for start in range(0, len(X), batch_size):
                idx = order[start : start + batch_size]
                loss, dW, db = self.loss_and_grads(X[idx], y_N[idx])
                opt.step(self.params, [*dW, *db])
                total += loss * len(idx)
            history["loss"].append(total / len(X))
            if X_val is not None and y_val is not None:
                val_loss = cross_entropy(self.forward(X_val), y_val)
                history.setdefault("val_loss", []).append(val_loss)
                history.setdefault("val_accuracy", []).append(self.accuracy(X_val, y_val))
        return history
