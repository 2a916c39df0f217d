"""Shared fixtures: a small, fast training configuration and one trained run per session."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dlhpc.data import DataConfig
from dlhpc.engine.config import OptimConfig, RunConfig, TrainConfig
from dlhpc.models import ModelConfig


def tiny_config(model: str = "mlp", **train: object) -> RunConfig:
    """Digits, a small MLP, two quick epochs: the default recipe's twin that runs in seconds."""
    t = dataclasses.replace(TrainConfig(epochs=2, batch_size=64, quiet=True, log_every=5), **train)
    return RunConfig(
        DataConfig("digits"),
        ModelConfig(model, hidden=(32,)),
        OptimConfig(lr=3e-3, warmup_epochs=0.5),
        t,
    )


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Measured peaks and other caches of the tests stay out of the user's ~/.cache."""
    import os

    os.environ.setdefault("DLHPC_CACHE", str(tmp_path_factory.mktemp("dlhpc-cache")))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dlhpc.engine.jobs import train_job

    run = tmp_path_factory.mktemp("runs") / "mlp"
    outcome = train_job(tiny_config(epochs=3), run)
    assert outcome.summary is not None
    return run


def assert_same_weights(run_a: Path, run_b: Path) -> None:
    """The two runs' ``model.safetensors`` hold bit-identical tensors under the same names."""
    import torch
    from safetensors.torch import load_file

    a = load_file(run_a / "model.safetensors")
    b = load_file(run_b / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
