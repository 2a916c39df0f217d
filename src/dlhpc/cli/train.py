"""``dlhpc``: parse → config → call one function. Run ``dlhpc --help``.

dlhpc train cnn --data digits            # the tutorial's CNN on the built-in digits
dlhpc evaluate runs/cnn-… --data digits
dlhpc predict runs/cnn-… some.png
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from dlhpc.cli.common import S, add_output_flags, emit, int_list, nonnegative_int, positive_int
from dlhpc.errors import DlhpcError


def add_train(sub: Any) -> None:
    from dlhpc.data import AUGMENTS
    from dlhpc.engine.config import DEVICES, OPTIMIZERS, SCHEDULES
    from dlhpc.models import model_names
    from dlhpc.models.spec import ACTIVATIONS

    p = sub.add_parser("train", help="train a model into a run directory",
                       description="Train MODEL on --data and write a run directory.",
                       epilog="Defaults in brackets are the image recipe; bag, lstm and "
                       "transformer start from their own measured recipes "
                       "(dlhpc/engine/recipes.py). A flag always wins.")  # fmt: skip
    p.add_argument("model", nargs="?", choices=model_names(), help="architecture")
    g = p.add_argument_group("data")
    g.add_argument("--data", dest="source", default=S, metavar="SRC",
                   help="digits | MNIST IDX dir | .npz | class folders")  # fmt: skip
    g.add_argument("--val-fraction", type=float, default=S, help="held out of train (0)")
    g.add_argument("--test-fraction", type=float, default=S,
                   help="held out as test when the source has none (0.2)")  # fmt: skip
    g.add_argument("--image-size", type=int, default=S, help="resize images to SIZE×SIZE")
    g.add_argument("--channels", type=int, default=S, choices=(1, 3), help="1 or 3 (auto)")
    g.add_argument("--augment", choices=AUGMENTS, default=S, help="training batches (affine)")
    g.add_argument("--text-column", default=S, help="CSV/TSV/JSONL text field (text)")
    g.add_argument("--label-column", default=S, help="CSV/TSV/JSONL label field (label)")
    g.add_argument("--vocab-size", type=int, default=S, help="tokenizer vocabulary (10000)")
    g.add_argument("--cache-dir", default=S, help="token shards (~/.cache/dlhpc/text)")
    g = p.add_argument_group("model")
    g.add_argument("--hidden", type=int_list, default=S, help="mlp hidden sizes, e.g. 256,128")
    g.add_argument("--activation", choices=ACTIVATIONS, default=S, help="mlp activation")
    g.add_argument("--dropout", type=float, default=S, help="mlp/transformer dropout (0)")
    g.add_argument("--embed-dim", type=int, default=S, help="text: embedding size (64)")
    g.add_argument("--units", type=int, default=S, help="text: LSTM units and Dense size (64)")
    g.add_argument("--bigrams", type=int, default=S, metavar="BUCKETS",
                   help="bag: hashed word-bigram buckets (0 = off)")  # fmt: skip
    g.add_argument("--sparse", action="store_true", default=S,
                   help="bag: sparse embedding updates (SparseAdam): faster with many "
                        "bigram buckets, less accurate at the defaults")  # fmt: skip
    g.add_argument("--max-length", type=int, default=S, help="lstm/transformer tokens (256)")
    g.add_argument("--layers", type=int, default=S, help="transformer layers (2)")
    g.add_argument("--heads", type=int, default=S, help="transformer heads (4)")
    g = p.add_argument_group("optimization")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=S, help="adam (default) | sgd")
    g.add_argument("--lr", type=float, default=S, help="learning rate (3e-3)")
    g.add_argument("--momentum", type=float, default=S, help="sgd momentum (0.9)")
    g.add_argument("--weight-decay", type=float, default=S, help="(0)")
    g.add_argument("--schedule", choices=SCHEDULES, default=S, help="lr schedule (cosine)")
    g.add_argument("--warmup-epochs", type=float, default=S, help="linear warm-up (1)")
    g.add_argument("--step-epochs", type=int, default=S, help="step: epochs per cut (5)")
    g.add_argument("--gamma", type=float, default=S, help="step/plateau: lr factor (0.1)")
    g.add_argument("--plateau-patience", type=int, default=S, help="plateau: epochs (2)")
    g.add_argument("--min-lr", type=float, default=S, help="lower bound of the lr (0)")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=S, help="(15)")
    g.add_argument("--batch-size", type=int, default=S, help="global batch size (128)")
    g.add_argument("--eval-batch-size", type=int, default=S, help="(1024)")
    g.add_argument("--early-stop", type=int, default=S, metavar="PATIENCE",
                   help="stop when val loss stalls PATIENCE epochs; keep the best")  # fmt: skip
    g.add_argument("--seed", type=int, default=S, help="(0)")
    g.add_argument("--device", choices=DEVICES, default=S, help="(auto)")
    g.add_argument("--threads", type=int, default=S, help="intra-op threads (all cores)")
    g.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default=S,
        help="bf16 autocast (auto: on CUDA devices that have it)",
    )
    g.add_argument("--compile", action="store_const", const=True, default=S,
                   help="torch.compile the model (opt-in: compiling takes a while)")  # fmt: skip
    g.add_argument("--checkpoint-every", type=int, default=S, metavar="STEPS",
                   help="checkpoint every STEPS steps too (always each epoch)")  # fmt: skip
    g.add_argument("--max-steps", type=int, default=S, help="stop resumably after N steps")
    g = p.add_argument_group("parallel")
    g.add_argument(
        "--nproc",
        type=positive_int,
        default=1,
        metavar="N",
        help="ranks on this machine (torch.distributed; gloo on CPU, NCCL on GPU)",
    )
    g.add_argument(
        "--max-restarts",
        type=nonnegative_int,
        default=0,
        metavar="K",
        help="restart all ranks up to K times after a failure, from the checkpoint",
    )
    g.add_argument("--log-every", type=int, default=S, metavar="STEPS", help="(50)")
    g = p.add_argument_group("run")
    g.add_argument("--out", type=Path, help="run directory (runs/MODEL-TIMESTAMP)")
    g.add_argument("--resume", type=Path, metavar="RUN", help="continue a stopped run")
    g.add_argument(
        "--init-from",
        default=S,
        metavar="RUN",
        help="start from a trained run's weights (a new head if classes differ)",
    )
    g.add_argument("--freeze", choices=("none", "backbone"), default=S,
                   help="with --init-from: train only the output layer (backbone)")  # fmt: skip
    add_output_flags(p)
    p.set_defaults(func=_cmd_train)


def _build_run_config(a: argparse.Namespace) -> Any:
    from dlhpc.data import DataConfig
    from dlhpc.engine.config import OptimConfig, RunConfig, TrainConfig
    from dlhpc.engine.recipes import recipe
    from dlhpc.models import ModelConfig

    given = vars(a)

    def pick(kind: type[Any], section: str, **extra: Any) -> Any:
        from dataclasses import fields

        names = {f.name for f in fields(kind)}
        values = recipe(a.model, section)  # the model's measured defaults, then the flags
        values.update({k: v for k, v in given.items() if k in names})
        return kind(**values, **extra)

    return RunConfig(
        data=pick(DataConfig, "data"),
        model=pick(ModelConfig, "model", name=a.model),
        optim=pick(OptimConfig, "optim"),
        train=pick(TrainConfig, "train"),
    )


EXIT_PREEMPTED = 75  # EX_TEMPFAIL: stopped by SIGTERM/SIGUSR1 after a checkpoint; requeue


def _cmd_train(a: argparse.Namespace) -> int:
    from dlhpc.engine.env import detect_env
    from dlhpc.engine.jobs import resume_overrides, train_job
    from dlhpc.engine.rundir import default_run_dir, load_config

    under_launcher = detect_env().distributed
    if (a.nproc > 1 or a.max_restarts > 0) and not under_launcher:
        return _launch(a)
    say = None if a.quiet else print
    if a.resume is not None:
        if a.model is not None or a.out is not None or "source" in vars(a):
            raise DlhpcError("--resume RUN continues that run: drop MODEL, --data and --out")
        fixed = {"model", "out", "resume", "json", "quiet", "func", "command", "argv",
                 "nproc", "max_restarts"}  # fmt: skip
        given = {k: v for k, v in vars(a).items() if k not in fixed}
        if "max_steps" not in given:
            given["max_steps"] = None  # a resumed run goes to the end unless told otherwise
        given["quiet"] = a.quiet
        overrides = resume_overrides(load_config(a.resume).train, given)
        outcome = train_job(None, a.resume, resume=True, train_overrides=overrides, say=say)
    else:
        if a.model is None or "source" not in vars(a):
            raise DlhpcError("train needs MODEL and --data SRC (or --resume RUN)")
        cfg = _build_run_config(a)
        outcome = train_job(cfg, a.out or default_run_dir(cfg.model.name), say=say)
    if detect_env().rank != 0:
        return 0 if outcome.stopped_by in (None, "max_steps") else _stop_code(outcome.stopped_by)
    if outcome.summary is None:
        msg = f"stopped ({outcome.stopped_by}); continue: dlhpc train --resume {outcome.run_dir}"
        emit(a, {"run_dir": str(outcome.run_dir), "stopped_by": outcome.stopped_by}, msg)
        return _stop_code(outcome.stopped_by)
    emit(a, outcome.summary, f"run saved to {outcome.run_dir}")
    return 0


def _stop_code(stopped_by: str | None) -> int:
    if stopped_by in (None, "max_steps"):
        return 0
    return 130 if stopped_by == "SIGINT" else EXIT_PREEMPTED


def _launch(a: argparse.Namespace) -> int:
    """Start ``--nproc`` ranks on this machine through PyTorch's elastic launcher (torchrun)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    from dlhpc.engine.env import available_cores
    from dlhpc.engine.rundir import default_run_dir

    _check_before_launch(a)
    # torchrun warns and sets OMP_NUM_THREADS=1 unless told; each rank sets its own threads
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, available_cores() // a.nproc)))
    argv = _strip(a.argv, ("--nproc", "--max-restarts"))
    if a.resume is None and a.out is None:  # every rank (and every restart) needs one name
        argv += ["--out", str(default_run_dir(a.model or "run"))]
    launcher = ["--standalone", "--nproc-per-node", str(a.nproc),
                "--max-restarts", str(a.max_restarts), "--module", "dlhpc", *argv]  # fmt: skip
    try:
        run(get_args_parser().parse_args(launcher))  # type: ignore[no-untyped-call]
    except ChildFailedError as e:
        codes = [f.exitcode for f in e.failures.values()]
        return next((c for c in codes if c > 0), 1)
    return 0


def _check_before_launch(a: argparse.Namespace) -> None:
    """What every rank would refuse, refused once, before any rank starts."""
    from dlhpc.engine.env import ClusterEnv, available_cores, resolve_device
    from dlhpc.engine.jobs import check_global_batch
    from dlhpc.engine.rundir import load_config
    from dlhpc.errors import ConfigError

    if a.resume is not None:
        train = load_config(a.resume).train
        check_global_batch(train.batch_size, a.nproc, a.resume)
    elif a.model is not None and "source" in vars(a):
        train = _build_run_config(a).train
        check_global_batch(train.batch_size, a.nproc)
    else:
        return  # the ranks say what is missing
    device = getattr(a, "device", train.device)
    env = ClusterEnv(world_size=a.nproc, local_world_size=a.nproc)
    cores = available_cores()
    if resolve_device(device, env).type == "cpu" and a.nproc > cores:
        raise ConfigError(  # more ranks than cores only contend for them, and every step waits
            f"--nproc {a.nproc}: CPU ranks need a core each, and {cores} core(s) are available "
            f"here; use --nproc {cores} or fewer"
        )


def _strip(argv: list[str], flags: tuple[str, ...]) -> list[str]:
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item in flags:
            skip = True
        elif not any(item.startswith(f + "=") for f in flags):
            out.append(item)
    return out


def add_evaluate(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="accuracy of a run on a data source's test split")
    p.add_argument("run", type=Path, help="run directory")
    p.add_argument("--data", required=True, help="data source (as for train)")
    p.add_argument("--batch-size", type=positive_int, default=1024, help="(1024)")
    add_output_flags(p)
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(a: argparse.Namespace) -> int:
    from dlhpc.data import DataConfig
    from dlhpc.engine.inference import evaluate_job

    result = evaluate_job(a.run, DataConfig(a.data), a.batch_size)
    emit(a, result, f"{a.run} on {a.data}: accuracy {result['test_accuracy']:.4f}")
    return 0


def add_predict(sub: Any) -> None:
    p = sub.add_parser("predict", help="label images or texts with a trained run")
    p.add_argument("run", type=Path, help="run directory")
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image files; for a text run: texts, text files (a text a line) or -",
    )
    p.add_argument("--top-k", type=int, default=1, help="also list the K most likely labels")
    add_output_flags(p)
    p.set_defaults(func=_cmd_predict)


def _cmd_predict(a: argparse.Namespace) -> int:
    from dlhpc.engine.inference import predict_job

    if a.top_k < 1:
        raise DlhpcError(f"--top-k must be at least 1, got {a.top_k}")
    preds = predict_job(a.run, a.inputs, a.top_k)
    if not a.quiet:
        for p in preds:
            extra = "  ".join(f"{t['label']}:{t['probability']:.3f}" for t in p["top"][1:])
            print(f"{p['input']}\t{p['label']}\t{p['probability']:.4f}\t{extra}".rstrip())
    if a.json:
        print(json.dumps({"predictions": preds}))
    return 0


def add_demo(sub: Any) -> None:
    p = sub.add_parser("demo", help="train the tutorial's CNN on the built-in digits")
    p.add_argument("--out", type=Path, help="run directory (runs/demo-TIMESTAMP)")
    add_output_flags(p)
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(a: argparse.Namespace) -> int:
    from dlhpc.data import DataConfig
    from dlhpc.engine.config import RunConfig, TrainConfig
    from dlhpc.engine.jobs import train_job
    from dlhpc.engine.rundir import default_run_dir
    from dlhpc.models import ModelConfig

    cfg = RunConfig(DataConfig("digits"), ModelConfig("cnn"), train=TrainConfig(quiet=a.quiet))
    if not a.quiet:
        print("dlhpc demo: the tutorial's CNN on 1,797 handwritten digits (28×28), defaults only")
    outcome = train_job(cfg, a.out or default_run_dir("demo"))
    assert outcome.summary is not None
    emit(a, outcome.summary, f"run saved to {outcome.run_dir} (report: report.md)")
    return 0


COMMANDS = (add_train, add_evaluate, add_predict, add_demo)
