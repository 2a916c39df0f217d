"""The one training loop. Each step, in order: LR, forward, backward, step, log; each epoch:
evaluate, schedule, early stopping, checkpoint. Read it top to bottom; there are no callbacks.

Host syncs (``.item()``, ``float(tensor)``) happen only every ``log_every`` steps, at checkpoints
and at the end of an epoch, so a GPU is never stalled waiting for the Python side.
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
from dlhpc.engine.evaluate import evaluate
from dlhpc.engine.metrics import MetricsLog
from dlhpc.engine.optim import build_optimizer
from dlhpc.engine.progress import TrainProgress
from dlhpc.engine.schedule import LRSchedule
from dlhpc.fsio import atomic_write

BEST = Path("checkpoint") / "best.safetensors"


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
    """SIGINT/SIGTERM → stop at the next step boundary with a checkpoint (a second ^C kills)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum

    def __enter__(self) -> StopRequest:
        import threading

        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


@dataclass
class FitResult:
    state: TrainerState
    stopped_by: str | None  # None: finished; "max_steps" or a signal name: resumable


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _evaluate_epoch(
    model: nn.Module, splits: dict[str, Batches], classes: int, cfg: TrainConfig
) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, b in splits.items():
        r = evaluate(model, b, classes, cfg.eval_batch_size)
        out[f"{name}_loss"], out[f"{name}_accuracy"] = r.loss, r.accuracy
    return out


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
) -> FitResult:
    device = train.y.device
    n = len(train)
    slices = batch_slices(n, cfg.batch_size)
    optimizer = build_optimizer(optim_cfg, model)
    schedule = LRSchedule(optim_cfg, len(slices), cfg.epochs)
    st = TrainerState()
    if resume:
        st = TrainerState(**load_checkpoint(run_dir, model, optimizer))
        schedule.load_state_dict(st.schedule)

    started = time.perf_counter()
    prior_wall = st.wall_seconds

    def elapsed() -> float:
        return prior_wall + time.perf_counter() - started

    def checkpoint() -> None:
        st.schedule = schedule.state_dict()
        st.wall_seconds = elapsed()
        save_checkpoint(run_dir, model, optimizer, asdict(st))

    stopped_by: str | None = None
    model.train()
    with (
        MetricsLog(run_dir) as log,
        TrainProgress(not cfg.quiet) as bar,
        StopRequest() as stop,
    ):
        while st.epoch < cfg.epochs and stopped_by is None and not st.stopped_early:
            order = train.order(cfg.seed, st.epoch, cfg.batch_size)
            bar.start_epoch(st.epoch, cfg.epochs, n, done=min(n, st.seen))
            loss_sum = torch.tensor(st.loss_sum, device=device, dtype=torch.float64)
            correct = torch.tensor(st.correct, device=device)
            t0 = time.perf_counter()
            for i in range(st.step_in_epoch, len(slices)):
                idx = order[slices[i]]
                xb, yb = train.inputs(idx), train.y[idx]
                if augment is not None:
                    xb = augment(xb, st.global_step)
                lr = schedule.lr_at(st.global_step)  # 1. learning rate
                for g in optimizer.param_groups:
                    g["lr"] = lr
                logits = model(*xb)  # 2. forward
                loss = F.cross_entropy(logits, yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]  # 3. backward
                optimizer.step()  # 4. step
                loss_sum += loss.detach() * len(yb)  # stays on device: no sync
                correct += (logits.detach().argmax(1) == yb).sum()
                st.global_step, st.step_in_epoch = st.global_step + 1, i + 1
                st.seen += len(yb)
                st.samples += len(yb)
                bar.advance(len(yb))
                if st.global_step % cfg.log_every == 0:  # 5. log (syncs)
                    log.log("step", st.global_step, loss=loss.item(), lr=lr)
                    bar.set_info(f"loss {float(loss_sum) / st.seen:.4f}")
                at_max = cfg.max_steps is not None and st.global_step >= cfg.max_steps
                if at_max or stop.signal is not None:
                    stopped_by = "max_steps" if at_max else signal.Signals(stop.signal or 0).name
                    break
                if cfg.checkpoint_every and st.global_step % cfg.checkpoint_every == 0:
                    st.loss_sum, st.correct = float(loss_sum), int(correct)
                    checkpoint()
            _sync(device)
            st.step_seconds += time.perf_counter() - t0
            st.loss_sum, st.correct = float(loss_sum), int(correct)
            if stopped_by is not None and st.step_in_epoch < len(slices):
                checkpoint()  # mid-epoch stop: resume continues from this very step
                break
            # 6. evaluate, schedule and early-stop at the end of the epoch
            record: dict[str, Any] = {
                "epoch": st.epoch + 1,
                "train_loss": st.loss_sum / max(1, st.seen),
                "train_accuracy": st.correct / max(1, st.seen),
                "lr": schedule.lr_at(max(0, st.global_step - 1)),
                "step_seconds": st.step_seconds,
                "elapsed": elapsed(),
            }
            record.update(_evaluate_epoch(model, evals, num_classes, cfg))
            schedule.on_epoch_end(record.get("val_loss"))
            _early_stopping(st, record, cfg, model, run_dir)
            st.history.append(record)
            log.log("epoch", st.global_step, **record)
            st.epoch, st.step_in_epoch, st.seen, st.loss_sum, st.correct = st.epoch + 1, 0, 0, 0, 0
            checkpoint()  # 7. checkpoint
    if st.stopped_early or (cfg.early_stop is not None and stopped_by is None):
        _restore_best(model, run_dir)
    st.wall_seconds = elapsed()
    return FitResult(st, stopped_by)


def _early_stopping(
    st: TrainerState, record: dict[str, Any], cfg: TrainConfig, model: nn.Module, run_dir: Path
) -> None:
    """Track the best validation loss; keep its weights; stop after ``early_stop`` bad epochs."""
    val = record.get("val_loss")
    if cfg.early_stop is None or val is None:
        return
    if st.best_val_loss is None or val < st.best_val_loss:
        st.best_val_loss, st.best_epoch, st.bad_epochs = val, st.epoch + 1, 0
        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        atomic_write(run_dir / BEST, lambda tmp: save_file(weights, tmp))
    else:
        st.bad_epochs += 1
        st.stopped_early = st.bad_epochs >= cfg.early_stop


def _restore_best(model: nn.Module, run_dir: Path) -> None:
    if (run_dir / BEST).is_file():
        device = next(model.parameters()).device
        model.load_state_dict({k: v.to(device) for k, v in load_file(run_dir / BEST).items()})
