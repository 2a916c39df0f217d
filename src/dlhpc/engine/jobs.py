"""What the CLI calls: one function per command, taking typed config, returning plain dicts.

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
from dlhpc.data import (
    DataConfig,
    ImageSet,
    ImageSplits,
    decode_image_files,
    load_images,
    random_affine,
)
from dlhpc.data.images import convert_channels, resize_images
from dlhpc.engine.config import RunConfig, TrainConfig
from dlhpc.engine.env import detect_env, resolve_device, resolve_threads
from dlhpc.engine.evaluate import EvalResult, evaluate, predict_logits
from dlhpc.engine.loop import Batches, fit
from dlhpc.engine.report import write_report
from dlhpc.engine.rundir import (
    load_config,
    load_run,
    load_spec,
    prepare_new_run,
    write_run_start,
    write_weights,
)
from dlhpc.errors import ConfigError, DataError
from dlhpc.fsio import atomic_write_json
from dlhpc.models import ImageInput, ModelSpec, build_model, count_parameters


@dataclass(frozen=True)
class TrainOutcome:
    run_dir: Path
    summary: dict[str, Any] | None  # None when stopped early on request (resumable)
    stopped_by: str | None


def _spec_for(cfg: RunConfig, splits: ImageSplits) -> ModelSpec:
    mean, std = splits.channel_stats()
    c, h, w = splits.train.image_shape
    return ModelSpec(cfg.model, ImageInput(c, h, w, mean, std), splits.classes)


def _on(s: ImageSet, device: torch.device) -> Batches:
    return Batches(s.x.to(device), s.y.to(device))


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
    splits = load_images(cfg.data)
    spec = load_spec(run_dir) if resume else _spec_for(cfg, splits)
    if resume and spec.input.shape != splits.train.image_shape:
        raise ConfigError(f"{run_dir}: the data no longer has the run's shape {spec.input.shape}")
    torch.manual_seed(cfg.train.seed)
    model = build_model(spec).to(device)
    if not resume:
        prepare_new_run(run_dir)
    write_run_start(run_dir, cfg, spec)
    evals = {k: _on(s, device) for k, s in (("val", splits.val), ("test", splits.test)) if s}
    train = _on(splits.train, device)
    if cfg.data.augment == "affine":
        seed = cfg.train.seed
        train.augment = lambda x, step: random_affine(x, seed, step)
    result = fit(
        model, train, evals, spec.num_classes, cfg.optim, cfg.train,
        run_dir, resume=resume,
    )  # fmt: skip
    if result.stopped_by is not None:
        return TrainOutcome(run_dir, None, result.stopped_by)
    write_weights(run_dir / "model.safetensors", model)
    final = evals.get("test")
    test: EvalResult | None = None
    if final is not None:
        test = evaluate(model, final.x, final.y, spec.num_classes, cfg.train.eval_batch_size)
    st = result.state
    summary: dict[str, Any] = {
        "model": cfg.model.name,
        "params": count_parameters(model),
        "world_size": env.world_size,
        "epochs": len(st.history),
        "train_samples": len(splits.train),
        "test_samples": len(splits.test) if splits.test else 0,
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


def _conform(s: ImageSet, spec: ModelSpec) -> ImageSet:
    inp = spec.input
    x = convert_channels(resize_images(s.x, inp.height, inp.width), inp.channels)
    return ImageSet(x, s.y)


def evaluate_job(run_dir: Path, data: DataConfig, batch_size: int = 1024) -> dict[str, Any]:
    """Accuracy and loss of a trained run on the test split of ``data``."""
    run = load_run(run_dir)
    splits = load_images(dataclasses.replace(data, channels=run.spec.input.channels))
    if splits.test is None:
        raise DataError(f"{data.source}: has no test split to evaluate on")
    missing = [c for c in splits.classes if c not in run.spec.labels]
    if missing:
        raise DataError(f"{data.source}: classes {missing[:5]} are unknown to the run")
    remap = torch.tensor([run.spec.labels.index(c) for c in splits.classes])
    test = _conform(splits.test, run.spec)
    r = evaluate(run.model, test.x, remap[test.y], run.spec.num_classes, batch_size)
    per_class = (r.confusion.diag() / r.confusion.sum(1).clamp_min(1)).tolist()
    return {
        "run": str(run_dir),
        "data": data.source,
        "test_samples": r.samples,
        "test_accuracy": r.accuracy,
        "test_loss": r.loss,
        "per_class_accuracy": dict(zip(run.spec.labels, per_class, strict=True)),
    }


def predict_job(run_dir: Path, inputs: list[str], top_k: int = 1) -> list[dict[str, Any]]:
    """Label and probability for each image file."""
    run = load_run(run_dir)
    paths = [Path(p) for p in inputs]
    for p in paths:
        if not p.is_file():
            raise DataError(f"{p}: no such file")
    inp = run.spec.input
    x = torch.from_numpy(decode_image_files(paths, inp.channels, inp.height, inp.width))
    probs = torch.softmax(predict_logits(run.model, x.permute(0, 3, 1, 2), 256), dim=1)
    k = min(top_k, run.spec.num_classes)
    top_p, top_i = probs.topk(k, dim=1)
    out = []
    for path, ps, ids in zip(inputs, top_p.tolist(), top_i.tolist(), strict=True):
        labels = [run.spec.labels[i] for i in ids]
        top = [{"label": lb, "probability": p} for lb, p in zip(labels, ps, strict=True)]
        out.append({"input": path, "label": labels[0], "probability": ps[0], "top": top})
    return out


def resume_overrides(train: TrainConfig, given: dict[str, Any]) -> dict[str, Any]:
    """The training settings a resumed run may change; validated by building a TrainConfig."""
    allowed = {"epochs", "max_steps", "quiet", "device", "threads", "checkpoint_every"}
    bad = set(given) - allowed
    if bad:
        raise ConfigError(f"--resume keeps the run's settings; cannot change {sorted(bad)}")
    dataclasses.replace(train, **given)  # validates
    return given
