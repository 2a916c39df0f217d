"""The training loop, schedules, checkpoints and resume."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path

import pytest
import torch

from dlhpc.data import DataConfig
from dlhpc.engine.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from dlhpc.engine.config import OptimConfig, RunConfig, TrainConfig
from dlhpc.engine.env import ClusterEnv, detect_env, resolve_threads
from dlhpc.engine.jobs import train_job
from dlhpc.engine.rundir import SUMMARY_KEYS, load_run
from dlhpc.engine.schedule import WARMUP_START, LRSchedule
from dlhpc.errors import ConfigError
from dlhpc.models import ModelConfig

from .conftest import assert_same_weights, tiny_config


def lrs(cfg: OptimConfig, steps: int = 10, epochs: int = 4) -> list[float]:
    s = LRSchedule(cfg, steps, epochs)
    return [s.lr_at(i) for i in range(steps * epochs)]


def test_constant_and_warmup() -> None:
    assert lrs(OptimConfig(schedule="constant", warmup_epochs=0)) == [1e-3 * 3] * 40
    w = lrs(OptimConfig(schedule="constant", warmup_epochs=1))
    assert w[0] == pytest.approx(3e-3 * (WARMUP_START + (1 - WARMUP_START) / 10))
    assert all(a < b for a, b in itertools.pairwise(w[:10]))  # rises during warm-up
    assert w[9:] == [3e-3] * 31


def test_step_schedule_cuts_every_step_epochs() -> None:
    cfg = OptimConfig(schedule="step", warmup_epochs=0, step_epochs=2, gamma=0.5, lr=1.0)
    v = lrs(cfg)
    assert v[0] == v[19] == 1.0 and v[20] == v[39] == 0.5


def test_cosine_decays_to_min_lr_and_onecycle_rises_then_falls() -> None:
    v = lrs(OptimConfig(schedule="cosine", warmup_epochs=0, lr=1.0, min_lr=0.1), 100, 1)
    assert v[0] == 1.0 and v[-1] == pytest.approx(0.1, abs=1e-3)
    assert all(a >= b for a, b in itertools.pairwise(v))
    o = lrs(OptimConfig(schedule="onecycle", warmup_epochs=0, lr=1.0), 100, 4)
    peak = max(range(len(o)), key=o.__getitem__)
    assert 90 <= peak <= 110 and o[0] < 0.1 and o[-1] < 1e-3


def test_plateau_cuts_after_patience_epochs_without_improvement() -> None:
    s = LRSchedule(OptimConfig(schedule="plateau", warmup_epochs=0, lr=1.0, gamma=0.1,
                               plateau_patience=1), 10, 10)  # fmt: skip
    for loss in (1.0, 0.9, 0.95, 0.95):  # two bad epochs > patience 1 → one cut
        s.on_epoch_end(loss)
    assert s.lr_at(0) == pytest.approx(0.1)
    restored = LRSchedule(s.cfg, 10, 10)
    restored.load_state_dict(json.loads(json.dumps(s.state_dict())))
    assert restored.lr_at(5) == s.lr_at(5)


def test_val_watching_settings_need_a_val_split() -> None:
    with pytest.raises(ConfigError, match="--val-fraction"):
        RunConfig(DataConfig("digits"), ModelConfig(), OptimConfig(schedule="plateau"))
    with pytest.raises(ConfigError, match="--val-fraction"):
        RunConfig(DataConfig("digits"), ModelConfig(), train=TrainConfig(early_stop=2))


def test_config_round_trips_and_rejects_unknown_keys() -> None:
    cfg = tiny_config()
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    d = cfg.to_dict()
    d["train"]["warp_speed"] = 9
    with pytest.raises(ConfigError, match="warp_speed"):
        RunConfig.from_dict(d)


def test_run_directory_has_the_contract(trained_run: Path) -> None:
    names = ["config.json", "model.json", "model.safetensors", "metrics.jsonl", "summary.json"]
    for name in [*names, "report.md", "curves.png", "confusion.png", CHECKPOINT]:
        assert (trained_run / name).is_file(), name
    assert any((trained_run / "tb").iterdir())
    summary = json.loads((trained_run / "summary.json").read_text())
    assert set(SUMMARY_KEYS) <= set(summary)
    assert summary["world_size"] == 1 and summary["epochs"] == 3
    assert summary["train_samples"] + summary["test_samples"] == 1797
    assert 0.8 < summary["test_accuracy"] <= 1.0  # a 3-epoch MLP on digits learns
    epochs = [r for r in map(json.loads, (trained_run / "metrics.jsonl").open()) if
              r["kind"] == "epoch"]  # fmt: skip
    assert [r["epoch"] for r in epochs] == [1, 2, 3]
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    cfg = json.loads((trained_run / "config.json").read_text())
    assert cfg["train"]["epochs"] == 3 and cfg["optim"]["optimizer"] == "adam"


def test_loaded_run_reproduces_the_summary_accuracy(trained_run: Path) -> None:
    from dlhpc.data import load_images

    run = load_run(trained_run)
    test = load_images(run.config.data).test
    assert test is not None
    with torch.no_grad():
        acc = (run.model(test.x).argmax(1) == test.y).double().mean().item()
    summary = json.loads((trained_run / "summary.json").read_text())
    assert acc == pytest.approx(summary["test_accuracy"])


def test_a_run_is_never_overwritten(trained_run: Path) -> None:
    with pytest.raises(ConfigError, match="already holds a run"):
        train_job(tiny_config(), trained_run)


def test_checkpoint_round_trip_restores_model_optimizer_and_rng(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(8, 4)).pow(2).mean().backward()
        opt.step()
    save_checkpoint(tmp_path, model, opt, {"epoch": 1, "note": "x"})
    expected_next = torch.rand(3)
    model2 = torch.nn.Linear(4, 3)
    opt2 = torch.optim.Adam(model2.parameters(), lr=0.5)
    state = load_checkpoint(tmp_path, model2, opt2)
    assert state == {"epoch": 1, "note": "x"}
    assert torch.equal(torch.rand(3), expected_next)  # RNG restored
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s2["param_groups"][0]["lr"] == 0.1
    for k in s1["state"]:
        for name, v in s1["state"][k].items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(s2["state"][k][name]))


def test_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    model = torch.nn.Linear(2, 2)
    with pytest.raises(ConfigError, match="no checkpoint"):
        load_checkpoint(tmp_path, model, torch.optim.SGD(model.parameters(), lr=0.1))


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path: Path, model: str) -> None:
    """Stop mid-epoch (step 30 of 2 × 23), resume, and end with bit-identical weights."""
    cfg = tiny_config(model)
    whole = train_job(cfg, tmp_path / "whole")
    part = train_job(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_steps=30)),
                     tmp_path / "part")  # fmt: skip
    assert part.summary is None and part.stopped_by == "max_steps"
    assert not (tmp_path / "part" / "model.safetensors").exists()
    resumed = train_job(None, tmp_path / "part", resume=True, train_overrides={"max_steps": None})
    assert resumed.summary is not None and whole.summary is not None
    assert_same_weights(tmp_path / "whole", tmp_path / "part")
    assert resumed.summary["test_accuracy"] == whole.summary["test_accuracy"]
    assert resumed.summary["epochs"] == 2


def test_early_stopping_keeps_the_best_weights(tmp_path: Path) -> None:
    cfg = tiny_config(epochs=30)
    cfg = dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, val_fraction=0.2),
        optim=dataclasses.replace(cfg.optim, lr=0.05, schedule="constant"),  # too hot: val stalls
        train=dataclasses.replace(cfg.train, early_stop=1),
    )
    out = train_job(cfg, tmp_path / "es")
    assert out.summary is not None
    assert out.summary["stopped_early"] is True
    assert out.summary["epochs"] < 30
    best = out.summary["best_epoch"]
    history = [json.loads(line) for line in (tmp_path / "es" / "metrics.jsonl").open()]
    val = {r["epoch"]: r["val_loss"] for r in history if r["kind"] == "epoch"}
    assert min(val, key=val.__getitem__) == best


def test_threads_follow_the_cores_and_refuse_oversubscription() -> None:
    env = ClusterEnv(local_world_size=1)
    n = resolve_threads(env, None)
    assert n >= 1
    with pytest.raises(ConfigError, match="exceeds"):
        resolve_threads(env, n + 1)
    assert detect_env({}).world_size == 1
    torchrun = detect_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert (torchrun.rank, torchrun.world_size, torchrun.is_main) == (1, 2, False)


def test_lr_in_metrics_follows_the_schedule(trained_run: Path) -> None:
    steps = [json.loads(line) for line in (trained_run / "metrics.jsonl").open()]
    lr = [r["lr"] for r in steps if r["kind"] == "step"]
    assert lr and all(not math.isnan(v) for v in lr)
    assert lr[-1] < max(lr)  # cosine decay


def test_bf16_autocast_trains_on_cpu(tmp_path: Path) -> None:
    out = train_job(tiny_config(precision="bf16"), tmp_path / "bf16")
    assert out.summary is not None and out.summary["test_accuracy"] > 0.6
    assert (
        json.loads((tmp_path / "bf16" / "config.json").read_text())["train"]["precision"] == "bf16"
    )


def test_precision_auto_is_fp32_on_cpu_and_compile_wraps(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from dlhpc.engine import loop

    assert loop.resolve_precision("auto") == "fp32"
    assert loop.resolve_precision("bf16") == "bf16"
    seen: list[object] = []

    def fake_compile(net: torch.nn.Module) -> torch.nn.Module:
        seen.append(net)
        return net

    monkeypatch.setattr(torch, "compile", fake_compile)  # compiling itself takes minutes here
    with pytest.raises(ConfigError):
        TrainConfig(precision="fp8")
    out = train_job(tiny_config(compile=True, max_steps=2), tmp_path / "compiled")
    assert out.stopped_by == "max_steps" and len(seen) == 1
