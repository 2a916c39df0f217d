"""``train_job``: what ``dlhpc train`` calls — data, model, loop, run directory, summary.

from dlhpc.engine.jobs import train_job
outcome = train_job(RunConfig(DataConfig("digits"), ModelConfig("cnn")), Path("runs/x"))
outcome.summary["test_accuracy"]
"""

from __future__ import annotations

import dataclasses
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import dlhpc
from dlhpc.engine.config import RunConfig, TrainConfig
from dlhpc.engine.datasets import prepare_data
from dlhpc.engine.env import detect_env, resolve_device, resolve_threads
from dlhpc.engine.evaluate import EvalResult, evaluate
from dlhpc.engine.loop import fit
from dlhpc.engine.report import write_report
from dlhpc.engine.rundir import (
    load_config,
    load_spec,
    prepare_new_run,
    write_run_start,
    write_weights,
)
from dlhpc.errors import ConfigError
from dlhpc.fsio import atomic_write_bytes, atomic_write_json
from dlhpc.models import build_model, count_parameters


@dataclass(frozen=True)
class TrainOutcome:
    run_dir: Path
    summary: dict[str, Any] | None  # None when stopped early on request (resumable)
    stopped_by: str | None


def train_job(
    cfg: RunConfig | None,
    run_dir: Path,
    resume: bool = False,
    train_overrides: dict[str, Any] | None = None,
) -> TrainOutcome:
    """Train ``cfg`` into ``run_dir`` (or continue the run there with ``resume``)."""
    if resume or cfg is None:
        resume, cfg = True, load_config(run_dir)
        if train_overrides:
            cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **train_overrides))
    env = detect_env()
    torch.set_num_threads(resolve_threads(env, cfg.train.threads))
    device = resolve_device(cfg.train.device, env)
    data = prepare_data(cfg.data, cfg.model, device, cfg.train.seed)
    spec = data.spec
    if resume:
        spec = load_spec(run_dir)
        if spec.input != data.spec.input or spec.labels != data.spec.labels:
            raise ConfigError(f"{run_dir}: the data has changed since this run started")
    torch.manual_seed(cfg.train.seed)
    model = build_model(spec).to(device)
    if not resume:
        prepare_new_run(run_dir)
    write_run_start(run_dir, cfg, spec)
    if data.tokenizer_file is not None:
        tok = data.tokenizer_file.read_bytes()
        atomic_write_bytes(run_dir / "tokenizer.json", tok)
    result = fit(
        model, data.train, data.evals, spec.num_classes, cfg.optim, cfg.train, run_dir,
        resume=resume, augment=data.augment,
    )  # fmt: skip
    if result.stopped_by is not None:
        return TrainOutcome(run_dir, None, result.stopped_by)
    write_weights(run_dir / "model.safetensors", model)
    final = data.evals.get("test")
    test: EvalResult | None = None
    if final is not None:
        test = evaluate(model, final, spec.num_classes, cfg.train.eval_batch_size)
    st = result.state
    summary: dict[str, Any] = {
        "model": cfg.model.name,
        "params": count_parameters(model),
        "world_size": env.world_size,
        "epochs": len(st.history),
        "train_samples": len(data.train),
        "test_samples": len(final) if final is not None else 0,
        "train_seconds": round(st.wall_seconds, 4),  # the whole fit, evaluation included
        "samples_per_second": round(st.samples / max(st.step_seconds, 1e-9), 1),
        "test_accuracy": test.accuracy if test else None,
        "test_loss": test.loss if test else None,
        "val_accuracy": st.history[-1].get("val_accuracy") if st.history else None,
        "best_epoch": st.best_epoch,
        "stopped_early": st.stopped_early,
        "step_seconds": round(st.step_seconds, 4),  # forward/backward/step only
        "device": str(device),
        "threads": torch.get_num_threads(),
        "batch_size": cfg.train.batch_size,
        "run_dir": str(run_dir),
        "dlhpc": dlhpc.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    atomic_write_json(run_dir / "summary.json", summary)
    write_report(run_dir, summary, st.history, test.confusion if test else None, list(spec.labels))
    return TrainOutcome(run_dir, summary, None)


def resume_overrides(train: TrainConfig, given: dict[str, Any]) -> dict[str, Any]:
    """The training settings a resumed run may change; validated by building a TrainConfig."""
    allowed = {"epochs", "max_steps", "quiet", "device", "threads", "checkpoint_every"}
    bad = set(given) - allowed
    if bad:
        raise ConfigError(f"--resume keeps the run's settings; cannot change {sorted(bad)}")
    dataclasses.replace(train, **given)  # validates
    return given
