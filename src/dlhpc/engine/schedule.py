"""Learning-rate schedules as one small, resumable object: ``lr_at(step)`` before every step.

``plateau`` is the tutorial's "dynamic learning-rate adjustment": the rate is cut by ``gamma``
when the validation loss has not improved for ``plateau_patience`` epochs. Every schedule may
start with a linear warm-up, which makes large batches (with a scaled rate) train stably.
"""

from __future__ import annotations

import math
from typing import Any

from dlhpc.engine.config import OptimConfig

WARMUP_START = 1 / 25  # warm-up starts at lr/25, as one-cycle does
ONECYCLE_WARMUP = 0.25  # one-cycle's rising part when --warmup-epochs is not set
ONECYCLE_FINAL = 1e-4  # one-cycle ends at lr × this


class LRSchedule:
    def __init__(self, cfg: OptimConfig, steps_per_epoch: int, epochs: int) -> None:
        self.cfg = cfg
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.total = self.steps_per_epoch * epochs
        warm = cfg.warmup_epochs
        if cfg.schedule == "onecycle" and warm == 0:
            warm = ONECYCLE_WARMUP * epochs
        self.warmup = min(self.total, round(warm * self.steps_per_epoch))
        self.plateau_cuts = 0
        self.best = math.inf
        self.bad_epochs = 0

    def lr_at(self, step: int) -> float:
        c = self.cfg
        if step < self.warmup:
            t = (step + 1) / self.warmup
            return c.lr * (WARMUP_START + (1 - WARMUP_START) * t)
        if c.schedule == "constant":
            return c.lr
        if c.schedule == "step":
            return max(c.min_lr, c.lr * c.gamma ** (step // self.steps_per_epoch // c.step_epochs))
        if c.schedule == "plateau":
            return max(c.min_lr, c.lr * c.gamma**self.plateau_cuts)
        # cosine and one-cycle: a half cosine from lr down over the steps after warm-up
        t = (step - self.warmup) / max(1, self.total - self.warmup)
        floor = c.lr * ONECYCLE_FINAL if c.schedule == "onecycle" else c.min_lr
        return floor + 0.5 * (c.lr - floor) * (1 + math.cos(math.pi * min(1.0, t)))

    def on_epoch_end(self, val_loss: float | None) -> None:
        if self.cfg.schedule != "plateau" or val_loss is None:
            return
        if val_loss < self.best:
            self.best, self.bad_epochs = val_loss, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs > self.cfg.plateau_patience:
                self.plateau_cuts += 1
                self.bad_epochs = 0

    def state_dict(self) -> dict[str, Any]:
        return {"plateau_cuts": self.plateau_cuts, "best": self.best, "bad": self.bad_epochs}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.plateau_cuts, self.best, self.bad_epochs = s["plateau_cuts"], s["best"], s["bad"]
