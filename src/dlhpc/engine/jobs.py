"""``train_job``: what ``dlhpc train`` calls — data, model, loop, run directory, summary.

from dlhpc.engine.jobs import train_job
outcome = train_job(RunConfig(DataConfig("digits"), ModelConfig("cnn")), Path("runs/x"))
outcome.summary["test_accuracy"]
"""

from __future__ import annotations

import dataclasses
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import dlhpc
from dlhpc.data.batches import Batches
from dlhpc.engine.checkpoint import CHECKPOINT, check_checkpoint, checkpoint_world_size
from dlhpc.engine.config import RunConfig, TrainConfig
from dlhpc.engine.datasets import prepare_data
from dlhpc.engine.distributed import DEFAULT_TIMEOUT_S, Dist, init_distributed
from dlhpc.engine.env import ClusterEnv, detect_env, resolve_device, resolve_threads
from dlhpc.engine.evaluate import EvalResult, evaluate
from dlhpc.engine.finetune import apply_freeze, apply_init
from dlhpc.engine.flops import count_train_flops, measured_peak
from dlhpc.engine.loop import TrainerState, fit, resolve_precision
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


CHANNELS_LAST = {"cnn"}  # models whose convolutions gain from NHWC (measured)


def plan_lines(env: ClusterEnv, cfg: RunConfig, device: torch.device, threads: int) -> list[str]:
    """What this job will run on, said (by rank 0) before the first collective."""
    w = env.world_size
    per_rank = f"{cfg.train.batch_size // w}–{-(-cfg.train.batch_size // w)}"
    if cfg.train.batch_size % w == 0:
        per_rank = str(cfg.train.batch_size // w)
    return [
        f"plan: {w} rank(s) = {env.nodes} node(s) × {env.local_world_size} per node "
        f"({env.launcher}), device {device.type}, {threads} thread(s) per rank",
        f"      global batch {cfg.train.batch_size} = {per_rank} per rank × {w}; "
        f"lr {cfg.optim.lr:g} ({cfg.optim.schedule}) for the global batch",
    ]


def check_global_batch(batch: int, world: int, resumed: Path | None = None) -> None:
    """Every rank needs at least one sample of the global batch."""
    if batch >= world:
        return
    if resumed is not None:
        raise ConfigError(
            f"{resumed}: its global batch {batch} cannot be split among {world} ranks; resume "
            f"it with {batch} rank(s) or fewer"
        )
    raise ConfigError(
        f"--batch-size {batch} is the global batch: it must be at least the world size {world}"
    )


def train_job(
    cfg: RunConfig | None,
    run_dir: Path,
    resume: bool = False,
    train_overrides: dict[str, Any] | None = None,
    say: Callable[[str], None] | None = None,
) -> TrainOutcome:
    """Train ``cfg`` into ``run_dir`` (or continue the run there with ``resume``).

    Under a launcher every rank calls this; rank 0's ``run_dir`` is used by all. After an
    elastic restart (torchrun --max-restarts) the run resumes from its last checkpoint.
    """
    env = detect_env()
    if env.restart_count > 0 and (run_dir / CHECKPOINT).is_file():
        resume = True
    if resume or cfg is None:
        resume, cfg = True, load_config(run_dir)
        if train_overrides:
            cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **train_overrides))
    check_global_batch(cfg.train.batch_size, env.world_size, run_dir if resume else None)
    threads = resolve_threads(env, cfg.train.threads)
    torch.set_num_threads(threads)
    device = resolve_device(cfg.train.device, env)
    if env.is_main and say is not None and env.distributed:
        for line in plan_lines(env, cfg, device, threads):
            say(line)
    if resume and env.is_main and say is not None:
        for line in _resume_lines(run_dir, env.world_size, cfg.train.batch_size):
            say(line)
    dist = init_distributed(env, device, DEFAULT_TIMEOUT_S)
    try:
        return _train(cfg, dist.broadcast(run_dir), resume, dist)
    finally:
        dist.close()


def _train(cfg: RunConfig, run_dir: Path, resume: bool, dist: Dist) -> TrainOutcome:
    device, env = dist.device, dist.env
    if not dist.is_main:
        dist.barrier()  # rank 0 builds any text cache first; the others then read it
    init = Path(cfg.train.init_from) if cfg.train.init_from else None
    tokenizer = init / "tokenizer.json" if init and (init / "tokenizer.json").is_file() else None
    data = prepare_data(cfg.data, cfg.model, device, cfg.train.seed, tokenizer)
    if dist.is_main:
        dist.barrier()
    spec = data.spec
    if resume:
        trainer, _ = check_checkpoint(run_dir)  # before anything in the run dir is rewritten
        finished = trainer.get("epoch", 0) >= cfg.train.epochs or trainer.get("stopped_early")
        if finished and (run_dir / "summary.json").is_file() and env.restart_count == 0:
            raise ConfigError(
                f"{run_dir}: already finished ({trainer.get('epoch')} of {cfg.train.epochs} "
                "epochs); nothing to resume (--epochs N trains it further)"
            )
        spec = load_spec(run_dir)
        if spec.input != data.spec.input or spec.labels != data.spec.labels:
            raise ConfigError(f"{run_dir}: the data has changed since this run started")
    torch.manual_seed(cfg.train.seed)
    model = build_model(spec)
    if init is not None and not resume:  # a resumed run restores its own weights instead
        apply_init(model, cfg.model.name, init)
    if init is not None:
        apply_freeze(model, cfg.train.freeze)
    model = model.to(device)
    if cfg.model.name in CHANNELS_LAST:
        # NHWC lets oneDNN (CPU) and cuDNN (GPU) run the convolutions without layout
        # conversions: +25–40% training samples/s for the tutorial CNN on this CPU
        # (benchmarks/channels_last_cpu_20261128.md)
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    per_rank_batch = max(1, cfg.train.batch_size // env.world_size)
    flops = count_train_flops(model, data.train, per_rank_batch)  # before training: same model
    if dist.is_main:
        if not resume:
            prepare_new_run(run_dir, restarted=env.restart_count > 0)
        write_run_start(run_dir, cfg, spec)
        if data.tokenizer_file is not None:
            atomic_write_bytes(run_dir / "tokenizer.json", data.tokenizer_file.read_bytes())
    dist.barrier()  # the run directory exists before any rank uses it
    result = fit(
        model, data.train, data.evals, spec.num_classes, cfg.optim, cfg.train, run_dir,
        resume=resume, augment=data.augment, dist=dist,
    )  # fmt: skip
    if result.stopped_by is not None:
        return TrainOutcome(run_dir, None, result.stopped_by)
    final = data.evals.get("test")
    test: EvalResult | None = None
    if final is not None:
        test = evaluate(model, final, spec.num_classes, cfg.train.eval_batch_size, dist)
    summary = _summary(cfg, model, result.state, env.world_size, len(data.train), final, test)
    summary.update(device=str(device), run_dir=str(run_dir))
    # how the ranks averaged gradients: "shared memory", "gloo", "nccl"; null for one process
    summary.update(gradient_exchange=dist.gradient_exchange)
    summary.update(dist.exchange_shares(result.step_seconds_here))
    precision = resolve_precision(cfg.train.precision)
    summary.update(precision=precision)
    summary.update(_utilisation(summary, flops, device, env.world_size, precision))
    if dist.is_main:
        write_weights(run_dir / "model.safetensors", model)
        atomic_write_json(run_dir / "summary.json", summary)
        labels = list(spec.labels)
        write_report(
            run_dir, summary, result.state.history, test.confusion if test else None, labels
        )
    dist.barrier()
    return TrainOutcome(run_dir, summary, None)


def _utilisation(
    summary: dict[str, Any], flops: float, device: torch.device, world: int, precision: str
) -> dict[str, Any]:
    """FLOPs per sample, achieved FLOP/s and MFU against the measured peak of all ranks.

    The peak is the fp32 GEMM rate, or with bf16 autocast the faster of the bf16 and fp32
    rates: a CPU without bf16 arithmetic emulates it far below its fp32 roof, and the roof is
    the best the hardware can do for the work, not the rate of a slow choice."""
    peak = measured_peak(device)
    if precision == "bf16":
        peak = max(peak, measured_peak(device, torch.bfloat16), key=lambda p: p["flops"])
    achieved = flops * summary["samples_per_second"]
    where = f"{peak['threads']} thread(s)" if device.type == "cpu" else device.type
    return {
        "flops_per_sample": round(flops),
        "achieved_flops": round(achieved),
        "peak_flops": round(peak["flops"] * world),
        "peak_source": f"measured {peak['dtype']} GEMM, {peak['device']}, {where}",
        "mfu": round(achieved / (peak["flops"] * world), 5) if peak["flops"] else None,
    }


def _summary(
    cfg: RunConfig,
    model: nn.Module,
    st: TrainerState,
    world_size: int,
    train_samples: int,
    final: Batches | None,
    test: EvalResult | None,
) -> dict[str, Any]:
    return {
        "model": cfg.model.name,
        "params": count_parameters(model),
        "world_size": world_size,
        "epochs": len(st.history),
        "train_samples": train_samples,
        "test_samples": len(final) if final is not None else 0,
        "train_seconds": round(st.wall_seconds, 4),  # the whole fit, evaluation included
        "samples_per_second": round(st.samples / max(st.step_seconds, 1e-9), 1),
        "test_accuracy": test.accuracy if test else None,
        "test_loss": test.loss if test else None,
        "val_accuracy": st.history[-1].get("val_accuracy") if st.history else None,
        "best_epoch": st.best_epoch,
        "stopped_early": st.stopped_early,
        "step_seconds": round(st.step_seconds, 4),  # forward/backward/step only
        "threads": torch.get_num_threads(),
        "batch_size": cfg.train.batch_size,
        "dlhpc": dlhpc.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def _resume_lines(run_dir: Path, world: int, batch: int) -> list[str]:
    """Said when a run resumes with another world size than the one that wrote its checkpoint."""
    was = checkpoint_world_size(run_dir)
    if was is None or was == world:
        return []
    return [
        f"resume: checkpoint written by {was} rank(s), continuing with {world}; the global "
        f"batch {batch} and the schedule stay, so training continues as with {was}"
    ]


def resume_overrides(train: TrainConfig, given: dict[str, Any]) -> dict[str, Any]:
    """The training settings a resumed run may change; validated by building a TrainConfig.

    The world size (``--nproc``, the launcher's) is not a setting of the run and may change:
    the global batch is fixed, and each rank's part of it follows from the world size.
    """
    allowed = {"epochs", "max_steps", "quiet", "device", "threads", "checkpoint_every"}
    bad = set(given) - allowed
    if bad:
        raise ConfigError(f"--resume keeps the run's settings; cannot change {sorted(bad)}")
    dataclasses.replace(train, **given)  # validates
    return given
