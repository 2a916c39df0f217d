"""Per-model default recipes: what ``dlhpc train MODEL`` uses for every flag not given.

The image recipe (the dataclass defaults) is measured on MNIST-like data (README, "Defaults").
The text recipes are measured on the standard-library docstring corpus against fastText and the
tutorial's Keras models (``benchmarks/text_cpu_*.md``). A flag on the command line always wins.
"""

from __future__ import annotations

from typing import Any

# section (data | model | optim | train) → field → value
RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    # 73.1% vs fastText's 67.4% and Keras's 70.7% on the stdlib-docstring corpus. Dense
    # embedding gradients on purpose: sparse ones (SparseAdam) train faster but ~2 points less
    # accurately here, and fused Adam makes the dense update fast (benchmarks/bag_sparse_cpu_*.md)
    "bag": {
        "optim": {"lr": 5e-2, "schedule": "cosine", "warmup_epochs": 1.0},
        "train": {"batch_size": 256, "epochs": 5},
    },
    # 73.2% (with Keras' initialization, models/text.py) vs Keras's LSTM 69.5%
    "lstm": {
        "model": {"max_length": 64},
        "optim": {"lr": 1e-2, "schedule": "cosine", "warmup_epochs": 1.0},
        "train": {"batch_size": 128, "epochs": 5},
    },
    "transformer": {
        "model": {"max_length": 128},
        "optim": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.01},
        "train": {"batch_size": 128, "epochs": 8},
    },
}


def recipe(model: str, section: str) -> dict[str, Any]:
    """The recipe's values for one config section (empty when the dataclass defaults apply)."""
    return dict(RECIPES.get(model, {}).get(section, {}))
