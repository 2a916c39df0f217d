"""Typed settings of the engine, and the root ``RunConfig`` that a run saves as config.json."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from dlhpc.data import DataConfig
from dlhpc.errors import ConfigError
from dlhpc.models import ModelConfig

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "step", "cosine", "onecycle", "plateau")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class OptimConfig:
    optimizer: str = "adam"
    # Defaults measured to serve MNIST-like data (README, "Defaults"): the tutorial's Adam at a
    # 4× batch with the rate scaled up, a one-epoch warm-up and a cosine decay.
    lr: float = 3e-3
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup_epochs: float = 1.0  # linear warm-up from lr/25, before any schedule
    step_epochs: int = 5  # step: multiply by gamma every step_epochs
    gamma: float = 0.1  # step and plateau: the factor
    plateau_patience: int = 2  # plateau: epochs without val-loss improvement before a cut
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose from {OPTIMIZERS}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; choose from {SCHEDULES}")
        if not 0 < self.lr < math.inf:
            raise ConfigError(f"--lr must be a positive finite number, got {self.lr}")
        if not (math.isfinite(self.weight_decay) and math.isfinite(self.warmup_epochs)):
            raise ConfigError("--weight-decay and --warmup-epochs must be finite numbers")
        if self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise ConfigError("--weight-decay must be ≥ 0 and --momentum in [0, 1)")
        if self.warmup_epochs < 0 or self.step_epochs < 1 or not 0 < self.gamma < 1:
            raise ConfigError("need --warmup-epochs ≥ 0, --step-epochs ≥ 1, 0 < --gamma < 1")
        if self.plateau_patience < 0 or not 0 <= self.min_lr < self.lr:
            raise ConfigError("need --plateau-patience ≥ 0 and 0 ≤ --min-lr < --lr")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 15
    batch_size: int = 128  # global: split among ranks
    eval_batch_size: int = 1024
    seed: int = 0
    device: str = "auto"
    early_stop: int | None = None  # patience in epochs on validation loss; restores the best
    checkpoint_every: int | None = None  # also checkpoint every N steps (always each epoch)
    max_steps: int | None = None  # stop (resumably) after N optimizer steps in total
    log_every: int = 50  # steps between train-loss records (the only host syncs in an epoch)
    threads: int | None = None  # intra-op threads per rank (default: the cores we may use)
    quiet: bool = False
    precision: str = "auto"  # auto (bf16 autocast on a CUDA device that has it) | fp32 | bf16
    compile: bool = False  # torch.compile the model (opt-in: compiling takes a while)
    init_from: str | None = None  # a pretrained run to start from (matching weights copied)
    freeze: str = "none"  # none | backbone (all but the output layer)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"--epochs must be at least 1, got {self.epochs}")
        for name in ("batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} must be at least 1, got {getattr(self, name)}")
        if self.device not in DEVICES:
            raise ConfigError(f"--device must be one of {DEVICES}, got {self.device!r}")
        for name in ("early_stop", "checkpoint_every", "max_steps", "threads"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {v}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"--precision must be auto, fp32 or bf16, got {self.precision!r}")
        if self.freeze not in ("none", "backbone"):
            raise ConfigError(f"--freeze must be none or backbone, got {self.freeze!r}")
        if self.freeze != "none" and self.init_from is None:
            raise ConfigError(
                "--freeze needs --init-from RUN (frozen random weights learn nothing)"
            )
        if self.log_every < 1:
            raise ConfigError(f"--log-every must be at least 1, got {self.log_every}")


@dataclass(frozen=True)
class RunConfig:
    """The root: every setting that produced a run. Each component gets only its own piece."""

    data: DataConfig
    model: ModelConfig
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        needs_val = self.optim.schedule == "plateau" or self.train.early_stop is not None
        if needs_val and self.data.val_fraction == 0:
            raise ConfigError(
                "--schedule plateau and --early-stop watch the validation loss: "
                "set --val-fraction (e.g. 0.1); the test split is never used for decisions"
            )

    def to_dict(self) -> dict[str, Any]:
        return {"format": "dlhpc.config/1", **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        def build(kind: type[Any], values: dict[str, Any]) -> Any:
            known = {f.name for f in fields(kind)}
            unknown = set(values) - known
            if unknown:
                raise ConfigError(f"config.json: unknown {kind.__name__} keys {sorted(unknown)}")
            return kind(**values)

        try:
            model = dict(d["model"])
            model["hidden"] = tuple(model.get("hidden", ()))
            return cls(
                data=build(DataConfig, d["data"]),
                model=build(ModelConfig, model),
                optim=build(OptimConfig, d.get("optim", {})),
                train=build(TrainConfig, d.get("train", {})),
            )
        except (KeyError, TypeError) as e:
            raise ConfigError(f"config.json is incomplete or malformed: {e}") from None
