"""The one training loop. Each step, in order: LR, forward, backward, step, log; each epoch:
evaluate, schedule, early stopping, checkpoint. Read it top to bottom; there are no callbacks.

Host syncs (``.item()``, ``float(tensor)``) happen only every ``log_every`` steps, at checkpoints
and at the end of an epoch, so a GPU is never stalled waiting for the Python side. With several
ranks (``Dist``), each trains on its part of every global batch through DDP; rank 0 alone logs,
shows progress and writes checkpoints; a stop request on any rank stops all at the same step.
"""

from __future__ import annotations

import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from dlhpc.data import batch_slices
from dlhpc.data.batches import Augment, Batches
from dlhpc.engine.checkpoint import load_checkpoint, save_checkpoint
from dlhpc.engine.config import OptimConfig, TrainConfig
from dlhpc.engine.distributed import Dist
from dlhpc.engine.env import ClusterEnv
from dlhpc.engine.evaluate import evaluate
from dlhpc.engine.metrics import MetricsLog
from dlhpc.engine.optim import build_optimizer
from dlhpc.engine.progress import TrainProgress
from dlhpc.engine.schedule import LRSchedule
from dlhpc.fsio import atomic_write

BEST = Path("checkpoint") / "best.safetensors"
STOP_POLL_STEPS = 8  # distributed runs: steps between agreeing on a stop request


@dataclass
class TrainerState:
    """Where training stands; saved in every checkpoint, restored on --resume."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    samples: int = 0
    step_seconds: float = 0.0  # in training steps (samples_per_second's denominator)
    wall_seconds: float = 0.0  # the whole fit so far, evaluation and checkpoints included
    loss_sum: float = 0.0  # of the current epoch so far
    correct: int = 0
    seen: int = 0
    best_val_loss: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    schedule: dict[str, Any] = field(default_factory=dict)


class StopRequest:
    """SIGINT/SIGTERM/SIGUSR1 → stop at the next step boundary with a checkpoint.

    SIGTERM and SIGUSR1 are how Slurm announces preemption; a second SIGINT kills at once.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum

    def __enter__(self) -> StopRequest:
        import threading

        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


@dataclass
class FitResult:
    state: TrainerState
    stopped_by: str | None  # None: finished; "max_steps" or a signal name: resumable
    step_seconds_here: float = 0.0  # training-step time of this process (a resume's own part)


def resolve_precision(requested: str) -> str:
    """``auto`` is fp32 on every device, by measurement: on an H200, bf16 autocast made the
    tutorial CNN 0.69–0.90× as fast as fp32 at batch 128–1024 (its layers are too small for
    tensor-core gains to pay for the casts; benchmarks/gpu_sweep_nvidia-h200_20261128.md), and
    a CPU without bf16 arithmetic emulates it. ``--precision bf16`` stays one flag away."""
    return "fp32" if requested == "auto" else requested


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class _Fit:
    """The pieces of one fit, so the loop below reads as the steps it takes."""

    model: nn.Module  # the plain model (checkpoints, evaluation)
    net: nn.Module  # what trains: the model, or DDP around it
    train: Batches
    evals: dict[str, Batches]
    num_classes: int
    cfg: TrainConfig
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    st: TrainerState
    dist: Dist
    run_dir: Path
    augment: Augment | None
    bf16: bool = False  # autocast the forward pass to bfloat16
    started: float = field(default_factory=time.perf_counter)
    prior_wall: float = 0.0

    def elapsed(self) -> float:
        return self.prior_wall + time.perf_counter() - self.started

    def checkpoint(self) -> None:
        """Rank 0 writes; the state is the same on every rank (DDP keeps replicas equal)."""
        if self.dist.is_main:
            self.st.schedule = self.schedule.state_dict()
            self.st.wall_seconds = self.elapsed()
            save_checkpoint(self.run_dir, self.model, self.optimizer, asdict(self.st),
                            world_size=self.dist.env.world_size)  # fmt: skip

    def run_epoch(self, log: MetricsLog, bar: TrainProgress, stop: StopRequest) -> str | None:
        """Steps from where the epoch stands to its end; returns why it stopped early, if so."""
        st, cfg, train, dist = self.st, self.cfg, self.train, self.dist
        device = train.y.device
        slices = batch_slices(len(train), cfg.batch_size)
        order = train.order(cfg.seed, st.epoch, cfg.batch_size)
        bar.start_epoch(st.epoch, cfg.epochs, len(train), done=min(len(train), st.seen))
        # running sums of this epoch; on resume rank 0 carries the global sums so far
        sums = torch.tensor([st.loss_sum, st.correct] if dist.is_main else [0.0, 0.0],
                            dtype=torch.float64, device=device)  # fmt: skip
        # the ranks start the epoch's clock together: a rank that waited for rank 0's
        # checkpoint would otherwise count that wait as training-step time (and waiting_share)
        dist.barrier()
        t0 = time.perf_counter()
        stopped_by = None
        for i in range(st.step_in_epoch, len(slices)):
            batch = order[slices[i]]
            global_n = len(batch)
            part = dist.part(global_n)
            idx = batch[part]
            xb, yb = train.inputs(idx), train.labels(idx)
            if self.augment is not None:
                xb = self.augment(xb, st.global_step, part.start, global_n)
            lr = self.schedule.lr_at(st.global_step)  # 1. learning rate
            for g in self.optimizer.param_groups:
                g["lr"] = lr
            with torch.autocast(device.type, torch.bfloat16, enabled=self.bf16):
                logits = self.net(*xb)  # 2. forward
            loss_sum = F.cross_entropy(logits.float(), yb, reduction="sum")
            # sum ÷ (global batch ÷ world): DDP's average is then the global batch mean
            loss = loss_sum * (dist.env.world_size / global_n)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]  # 3. backward (DDP all-reduces)
            self.optimizer.step()  # 4. step
            sums[0] += loss_sum.detach()  # stays on the device: no sync
            sums[1] += (logits.detach().argmax(1) == yb).sum()
            st.global_step, st.step_in_epoch = st.global_step + 1, i + 1
            st.seen += global_n
            st.samples += global_n
            bar.advance(global_n)
            if st.global_step % cfg.log_every == 0:  # 5. log (syncs: one all-reduce)
                batch_loss = float(dist.all_sum(loss_sum.detach().clone())) / global_n
                if dist.is_main:  # the global batch's mean loss, whatever the world size
                    log.log("step", st.global_step, loss=batch_loss, lr=lr)
                    bar.set_info(f"loss {batch_loss:.4f}")
            at_max = cfg.max_steps is not None and st.global_step >= cfg.max_steps
            # ranks agree on a stop every STOP_POLL_STEPS steps: one tiny collective, not one
            # host sync per step
            poll = not dist.active or st.global_step % STOP_POLL_STEPS == 0
            if at_max or (poll and dist.any(stop.signal is not None)):
                stopped_by = "max_steps" if at_max else signal.Signals(stop.signal or 15).name
                break
            if cfg.checkpoint_every and st.global_step % cfg.checkpoint_every == 0:
                self._fold(sums)
                self.checkpoint()
        _sync(device)
        st.step_seconds += time.perf_counter() - t0
        self._fold(sums)
        return stopped_by

    def _fold(self, sums: torch.Tensor) -> None:
        """The epoch's global loss and correct counts so far into the state (one all-reduce)."""
        total = self.dist.all_sum(sums.clone())
        self.st.loss_sum, self.st.correct = float(total[0]), int(total[1])

    def end_epoch(self, log: MetricsLog) -> None:
        """6. evaluate, schedule and early-stop; 7. checkpoint."""
        st = self.st
        record: dict[str, Any] = {
            "epoch": st.epoch + 1,
            "train_loss": st.loss_sum / max(1, st.seen),
            "train_accuracy": st.correct / max(1, st.seen),
            "lr": self.schedule.lr_at(max(0, st.global_step - 1)),
            "step_seconds": st.step_seconds,
            "elapsed": self.elapsed(),
        }
        for name, data in self.evals.items():
            r = evaluate(self.model, data, self.num_classes, self.cfg.eval_batch_size, self.dist)
            record[f"{name}_loss"], record[f"{name}_accuracy"] = r.loss, r.accuracy
        self.schedule.on_epoch_end(record.get("val_loss"))
        _early_stopping(st, record, self.cfg, self.model, self.run_dir, self.dist.is_main)
        st.history.append(record)
        if self.dist.is_main:
            log.log("epoch", st.global_step, **record)
        st.epoch, st.step_in_epoch, st.seen, st.loss_sum, st.correct = st.epoch + 1, 0, 0, 0, 0
        self.checkpoint()


def fit(
    model: nn.Module,
    train: Batches,
    evals: dict[str, Batches],  # "val" and/or "test"
    num_classes: int,
    optim_cfg: OptimConfig,
    cfg: TrainConfig,
    run_dir: Path,
    resume: bool = False,
    augment: Augment | None = None,  # training inputs only, keyed by the global step
    dist: Dist | None = None,
) -> FitResult:
    dist = dist or Dist(ClusterEnv(), train.y.device)
    optimizer = build_optimizer(optim_cfg, model)
    steps_per_epoch = len(batch_slices(len(train), cfg.batch_size))
    schedule = LRSchedule(optim_cfg, steps_per_epoch, cfg.epochs)
    st = TrainerState()
    if resume:
        st = TrainerState(**load_checkpoint(run_dir, model, optimizer))
        schedule.load_state_dict(st.schedule)
    prior_step_seconds = st.step_seconds
    net = dist.wrap(model)
    if cfg.compile:  # compiled lazily, on the first step
        net = torch.compile(net)  # type: ignore[assignment]
    bf16 = resolve_precision(cfg.precision) == "bf16"
    f = _Fit(model, net, train, evals, num_classes, cfg, optimizer, schedule, st, dist,
             run_dir, augment, bf16=bf16, prior_wall=st.wall_seconds)  # fmt: skip
    stopped_by: str | None = None
    model.train()
    with (
        MetricsLog(run_dir, enabled=dist.is_main) as log,
        TrainProgress(not cfg.quiet and dist.is_main) as bar,
        StopRequest() as stop,
    ):
        while st.epoch < cfg.epochs and stopped_by is None and not st.stopped_early:
            stopped_by = f.run_epoch(log, bar, stop)
            if stopped_by is not None and st.step_in_epoch < len(
                batch_slices(len(train), cfg.batch_size)
            ):
                f.checkpoint()  # mid-epoch stop: resume continues from this very step
                break
            f.end_epoch(log)
    if st.stopped_early or (cfg.early_stop is not None and stopped_by is None):
        _restore_best(model, run_dir)
    st.wall_seconds = f.elapsed()
    return FitResult(st, stopped_by, st.step_seconds - prior_step_seconds)


def _early_stopping(
    st: TrainerState,
    record: dict[str, Any],
    cfg: TrainConfig,
    model: nn.Module,
    run_dir: Path,
    write: bool,
) -> None:
    """Track the best validation loss; keep its weights; stop after ``early_stop`` bad epochs."""
    val = record.get("val_loss")
    if cfg.early_stop is None or val is None:
        return
    if st.best_val_loss is None or val < st.best_val_loss:
        st.best_val_loss, st.best_epoch, st.bad_epochs = val, st.epoch + 1, 0
        if write:
            weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
            atomic_write(run_dir / BEST, lambda tmp: save_file(weights, tmp))
    else:
        st.bad_epochs += 1
        st.stopped_early = st.bad_epochs >= cfg.early_stop


def _restore_best(model: nn.Module, run_dir: Path) -> None:
    if (run_dir / BEST).is_file():
        device = next(model.parameters()).device
        model.load_state_dict({k: v.to(device) for k, v in load_file(run_dir / BEST).items()})
