"""The CUDA path: device choice (tested everywhere), training on a GPU (where one is present).

CI has no GPU: the tests marked ``cuda`` are skipped there and run on a GPU machine with
``pytest tests/test_cuda.py``. They check behaviour, never speed.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import pytest
import torch

from dlhpc.data import DataConfig
from dlhpc.engine.checkpoint import CHECKPOINT
from dlhpc.engine.config import OptimConfig, RunConfig, TrainConfig
from dlhpc.engine.env import ClusterEnv, resolve_device
from dlhpc.engine.jobs import train_job
from dlhpc.errors import ConfigError
from dlhpc.models import ModelConfig
from tests.conftest import tiny_config

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")


def test_cuda_requested_without_a_gpu_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA device"):
        resolve_device("cuda", ClusterEnv())
    assert resolve_device("auto", ClusterEnv()).type == "cpu"


def test_more_ranks_per_node_than_gpus_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    env = ClusterEnv(rank=1, world_size=4, local_rank=1, local_world_size=2)
    assert resolve_device("auto", env) == torch.device("cuda", 1)
    crowded = dataclasses.replace(env, local_world_size=3, world_size=3)
    with pytest.raises(ConfigError, match="3 ranks per node need as many GPUs; this node has 2"):
        resolve_device("cuda", crowded)
    assert resolve_device("cpu", crowded).type == "cpu"  # CPU ranks share nothing


def _cnn(epochs: int = 1, **train: object) -> RunConfig:
    t = dataclasses.replace(TrainConfig(epochs=epochs, quiet=True, device="cuda"), **train)
    return RunConfig(DataConfig("digits"), ModelConfig("cnn"), OptimConfig(), t)


@cuda
def test_gpu_and_cpu_training_agree_in_fp32(tmp_path: Path) -> None:
    torch.backends.cudnn.allow_tf32 = False  # full fp32 on both sides for the comparison
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        runs = {}
        for device in ("cpu", "cuda"):
            cfg = tiny_config(device=device, precision="fp32", max_steps=20)
            # SGD: a weight's drift follows its gradient's difference (Adam's normalised step
            # can turn a 1e-9 difference of a near-zero gradient into a full step)
            sgd = OptimConfig(optimizer="sgd", lr=0.05, momentum=0.9, warmup_epochs=0.5)
            train_job(dataclasses.replace(cfg, optim=sgd), tmp_path / device)
            runs[device] = tmp_path / device
    finally:
        torch.backends.cudnn.allow_tf32 = True
    from safetensors.torch import load_file

    cpu = load_file(runs["cpu"] / CHECKPOINT)
    gpu = load_file(runs["cuda"] / CHECKPOINT)
    weights = [k for k in cpu if k.startswith("model.")]
    assert weights
    for k in weights:
        torch.testing.assert_close(gpu[k], cpu[k], rtol=1e-4, atol=1e-5)


@cuda
@pytest.mark.parametrize("precision", ["auto", "bf16"])
def test_the_cnn_trains_on_the_gpu(tmp_path: Path, precision: str) -> None:
    out = train_job(_cnn(epochs=10, precision=precision), tmp_path / "cnn")
    s = out.summary
    assert s is not None
    assert s["device"].startswith("cuda")
    assert s["precision"] == ("fp32" if precision == "auto" else "bf16")  # auto: measured fp32
    assert s["test_accuracy"] > 0.95
    assert 0 < s["mfu"] < 1
    # the weights are written on the host, loadable anywhere
    from dlhpc.engine.rundir import load_run

    run = load_run(tmp_path / "cnn")
    assert next(run.model.parameters()).device.type == "cpu"


@cuda
def test_a_training_step_does_not_wait_for_the_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No host synchronisation per step: inside an epoch's steps, only the epoch's end syncs."""
    from dlhpc.engine import loop

    caught: list[str] = []
    run_epoch = loop._Fit.run_epoch

    def watched(self: loop._Fit, *args: object) -> str | None:
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                result = run_epoch(self, *args)  # type: ignore[arg-type]
        finally:
            torch.cuda.set_sync_debug_mode("default")
        caught.extend(str(w.message) for w in seen if "synchroniz" in str(w.message))
        return result

    monkeypatch.setattr(loop._Fit, "run_epoch", watched)
    out = train_job(_cnn(epochs=1, log_every=10**9, batch_size=32), tmp_path / "nosync")
    assert out.summary is not None
    steps = -(-out.summary["train_samples"] // 32)
    # the epoch's end: one explicit synchronize, reading the loss and correct sums
    assert steps >= 40 and len(caught) <= 4, caught[:8]


def _corpus(tmp_path: Path) -> Path:
    words = {"sport": "goal match team score win", "tech": "code chip data cloud model"}
    rows = ["text,label"]
    g = torch.Generator().manual_seed(0)
    for i in range(600):
        label = ("sport", "tech")[i % 2]
        vocab = words[label].split()
        picks = torch.randint(0, len(vocab), (6,), generator=g).tolist()
        rows.append(f"{' '.join(vocab[j] for j in picks)},{label}")
    path = tmp_path / "corpus.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


@cuda
@pytest.mark.parametrize("model", ["bag", "lstm", "transformer"])
def test_text_models_train_on_the_gpu_and_evaluate_anywhere(tmp_path: Path, model: str) -> None:
    from dlhpc.engine.inference import evaluate_job

    data = DataConfig(str(_corpus(tmp_path)), test_fraction=0.2, cache_dir=str(tmp_path / "c"))
    train = TrainConfig(epochs=2, quiet=True, device="cuda", batch_size=32)
    cfg = RunConfig(data, ModelConfig(model), OptimConfig(), train)
    out = train_job(cfg, tmp_path / model)
    assert out.summary is not None and out.summary["test_accuracy"] > 0.9
    on_cpu = evaluate_job(tmp_path / model, data, batch_size=64)  # loads on the host
    assert abs(on_cpu["test_accuracy"] - out.summary["test_accuracy"]) <= 1 / 120


@cuda
def test_bench_peak_reports_a_known_gpus_datasheet(capsys: pytest.CaptureFixture[str]) -> None:
    from dlhpc.cli import main

    assert main(["bench", "peak", "--device", "cuda", "--seconds", "0.3", "--json", "--quiet"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["bfloat16_gflops"] > r["float32_gflops"] > 1000  # GFLOP/s
    if "datasheet" in r:
        assert 0.2 < r["bfloat16_of_datasheet"] < 1.2


@cuda
def test_a_resumed_gpu_run_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    """Fused Adam on channels-last weights, stopped mid-epoch and resumed: bit-identical."""
    from tests.conftest import assert_same_weights

    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        cfg = _cnn(epochs=2)
        whole = train_job(cfg, tmp_path / "whole")
        stop = dataclasses.replace(cfg.train, max_steps=15)  # 12 steps per epoch: mid-epoch 2
        part = train_job(dataclasses.replace(cfg, train=stop), tmp_path / "part")
        assert part.stopped_by == "max_steps"
        go_on = {"max_steps": None}
        resumed = train_job(None, tmp_path / "part", resume=True, train_overrides=go_on)
    finally:
        torch.backends.cudnn.deterministic = False
    assert whole.summary is not None and resumed.summary is not None
    assert_same_weights(tmp_path / "whole", tmp_path / "part")


@cuda
def test_a_sparse_bag_trains_on_the_gpu(tmp_path: Path) -> None:
    data = DataConfig(str(_corpus(tmp_path)), test_fraction=0.2, cache_dir=str(tmp_path / "c"))
    train = TrainConfig(epochs=2, quiet=True, device="cuda", batch_size=32)
    cfg = RunConfig(data, ModelConfig("bag", sparse=True), OptimConfig(), train)
    out = train_job(cfg, tmp_path / "bag")
    assert out.summary is not None and out.summary["test_accuracy"] > 0.9
