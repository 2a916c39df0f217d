"""``dlhpc optimize RUN``: int8 quantization, magnitude pruning and ONNX export, with a report.

dlhpc optimize runs/cnn-… --export onnx                        # RUN/optimized/onnx/model.onnx
dlhpc optimize runs/cnn-… --quantize static --quantize dynamic --data digits
dlhpc optimize runs/bag-… --quantize dynamic --prune 0.5 --json
dlhpc optimize runs/mlp-… --prune 0.25 --prune-structured --threads 1

The data (``--data``, default: the run's own source from config.json) is loaded here, because
``optimize/`` may not import ``data/``: its test split checks parity and gives accuracy, and
training samples calibrate static int8.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from dlhpc.cli.common import add_output_flags, emit, positive_int
from dlhpc.errors import ConfigError, DataError

MAX_TEST = 10_000  # records for parity, accuracy and timing inputs
CALIBRATION = 512  # training records for static int8 (a seeded random subset)
MEASURE: Any = None  # MeasureSettings for the timings; None = the defaults (tests shorten it)


def add_optimize(sub: Any) -> None:
    from dlhpc.optimize import QUANTIZE_MODES

    p = sub.add_parser(
        "optimize", help="int8 quantization, pruning and ONNX export of a run, with a report",
        description="Write variants of RUN to RUN/optimized/<variant>/ and compare them in "
        "RUN/optimized/report.md: accuracy, size, latency and throughput, eager PyTorch and "
        "ONNX Runtime side by side.",
    )  # fmt: skip
    p.add_argument("run", type=Path, help="run directory")
    p.add_argument("--quantize", action="append", choices=QUANTIZE_MODES, default=None,
                   help="int8: dynamic (any model) or static (image models, calibrated on "
                   "training samples); repeat for both")  # fmt: skip
    p.add_argument("--prune", type=float, metavar="AMOUNT",
                   help="magnitude pruning: share of weights to zero, in (0, 1)")  # fmt: skip
    p.add_argument("--prune-structured", action="store_true",
                   help="zero whole output channels (Conv/Linear), not single weights")  # fmt: skip
    p.add_argument("--export", choices=("onnx",), help="keep the fp32 ONNX graph as a variant")
    p.add_argument("--data", metavar="SRC",
                   help="labelled data for accuracy and calibration (the run's own)")  # fmt: skip
    p.add_argument(
        "--threads", type=positive_int, help="PyTorch and ONNX Runtime threads (all cores)"
    )
    add_output_flags(p)
    p.set_defaults(func=_cmd_optimize)


def _label_ids(labels: list[str], spec: Any, where: str) -> Any:
    import torch

    index = {c: i for i, c in enumerate(spec.labels)}
    unknown = sorted({c for c in labels if c not in index})
    if unknown:
        raise DataError(f"{where}: labels {unknown[:5]} are unknown to the run")
    return torch.tensor([index[c] for c in labels], dtype=torch.int64)


def _image_samples(cfg: Any, spec: Any, calibrate: bool) -> tuple[Any, Any]:
    import torch

    from dlhpc.data import load_images
    from dlhpc.data.images import convert_channels, resize_images
    from dlhpc.engine.datasets import for_evaluation
    from dlhpc.optimize import ImageSamples

    splits = load_images(for_evaluation(cfg, spec))
    if splits.test is None:
        raise DataError(f"{cfg.source}: has no test split to check the variants on")
    c, h, w = spec.input.shape

    def samples(x: torch.Tensor, y: torch.Tensor) -> ImageSamples:
        labels = _label_ids([splits.classes[int(i)] for i in y], spec, cfg.source)
        return ImageSamples(convert_channels(resize_images(x, h, w), c).contiguous(), labels)

    test = samples(splits.test.x[:MAX_TEST], splits.test.y[:MAX_TEST])
    if not calibrate:
        return test, None
    g = torch.Generator().manual_seed(0)
    pick = torch.randperm(len(splits.train), generator=g)[:CALIBRATION]
    return test, samples(splits.train.x[pick], splits.train.y[pick])


def _text_samples(cfg: Any, spec: Any, run: Path) -> Any:
    from dlhpc.data.text import encode_for_run, split_records
    from dlhpc.data.text_sources import require_text_files
    from dlhpc.optimize import TokenSamples

    files = require_text_files(cfg.source, cfg.text_column, cfg.label_column, "the run")
    records = []
    for rec in split_records(files, cfg, "test"):
        records.append(rec)
        if len(records) == MAX_TEST:
            break
    if not records:
        raise DataError(f"{cfg.source}: has no test records to check the variants on")
    ids, offsets = encode_for_run(run / spec.input.tokenizer, [t for t, _ in records])
    return TokenSamples(ids, offsets, _label_ids([lb for _, lb in records], spec, cfg.source))


def load_samples(run: Path, source: str | None, calibrate: bool) -> tuple[Any, Any, str | None]:
    """(test samples, calibration samples or None, data name) for ``run``.

    The data settings are the run's own (config.json) with ``source`` swapped in; a bare model
    directory without config.json and without ``--data`` gets synthetic inputs.
    """
    from dlhpc.data import DataConfig
    from dlhpc.engine.rundir import load_config
    from dlhpc.models import TextInput
    from dlhpc.models.artifact import read_spec
    from dlhpc.optimize.samples import synthetic_images, synthetic_tokens

    spec = read_spec(run)
    if (run / "config.json").is_file():
        cfg = load_config(run).data
        cfg = cfg if source is None else dataclasses.replace(cfg, source=source)
    elif source is not None:
        cfg = DataConfig(source)
    elif isinstance(spec.input, TextInput):
        return synthetic_tokens(spec.input.vocab_size, 256), None, None
    else:
        return synthetic_images(spec.input.shape, 256), None, None
    if isinstance(spec.input, TextInput):
        return _text_samples(cfg, spec, run), None, cfg.source
    test, calibration = _image_samples(cfg, spec, calibrate)
    return test, calibration, cfg.source


def _cmd_optimize(a: argparse.Namespace) -> int:
    import torch

    from dlhpc.optimize import MeasureSettings, OptimizeOptions, optimize_run
    from dlhpc.optimize.report import summary_lines

    opts = OptimizeOptions(
        quantize=tuple(dict.fromkeys(a.quantize or ())),
        prune=a.prune,
        prune_structured=a.prune_structured,
        export_onnx=a.export == "onnx",
        threads=a.threads if a.threads is not None else torch.get_num_threads(),
        measure=MEASURE or MeasureSettings(),
    )
    if not a.run.is_dir():
        raise ConfigError(f"{a.run}: no such run directory")
    test, calibration, data = load_samples(a.run, a.data, "static" in opts.quantize)
    result = optimize_run(a.run, opts, test, calibration, data)
    if not a.quiet:
        print("\n".join(summary_lines(result)))
    headline = f"{len(result['variants']) - 1} variant(s) in {a.run / 'optimized'}"
    emit(a, result, headline)
    return 0


COMMANDS = (add_optimize,)
