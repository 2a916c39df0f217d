"""``evaluate_job`` and ``predict_job``: a trained run on new data, images or text.

evaluate_job(Path("runs/cnn-…"), DataConfig("digits"))["test_accuracy"]
predict_job(Path("runs/bag-…"), ["a text to label"])[0]["label"]
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import torch

from dlhpc.data import DataConfig, decode_image_files, load_images
from dlhpc.data.batches import Batches, ImageBatches, TokenBatches
from dlhpc.data.images import convert_channels, resize_images
from dlhpc.data.text import TokenSet, encode_for_run, split_records
from dlhpc.data.text_sources import require_text_files
from dlhpc.engine.datasets import for_evaluation
from dlhpc.engine.evaluate import evaluate, predict_logits
from dlhpc.engine.rundir import LoadedRun, load_run
from dlhpc.errors import DataError
from dlhpc.models import ImageInput, TextInput

CHUNK = 16_384


def _label_ids(labels: list[str], run: LoadedRun, where: str) -> torch.Tensor:
    index = {c: i for i, c in enumerate(run.spec.labels)}
    unknown = sorted({c for c in labels if c not in index})
    if unknown:
        raise DataError(f"{where}: labels {unknown[:5]} are unknown to the run")
    return torch.tensor([index[c] for c in labels], dtype=torch.int64)


def _tokens(run: LoadedRun, texts: list[str], y: torch.Tensor) -> TokenSet:
    assert isinstance(run.spec.input, TextInput)
    ids, offsets = encode_for_run(run.run_dir / run.spec.input.tokenizer, texts)
    return TokenSet(ids, offsets, y, torch.arange(len(texts)))


def _text_test(run: LoadedRun, data: DataConfig) -> Batches:
    files = require_text_files(data.source, data.text_column, data.label_column, "the run")
    texts, labels = [], []
    for text, label in split_records(files, data, "test"):
        texts.append(text)
        labels.append(label)
    if not texts:
        raise DataError(f"{data.source}: has no test records to evaluate on")
    y = _label_ids(labels, run, data.source)
    return TokenBatches(_tokens(run, texts, y), torch.device("cpu"))


def _image_test(run: LoadedRun, data: DataConfig) -> Batches:
    inp = run.spec.input
    assert isinstance(inp, ImageInput)
    splits = load_images(for_evaluation(data, run.spec))
    if splits.test is None:
        raise DataError(f"{data.source}: has no test split to evaluate on")
    y = _label_ids([splits.classes[int(i)] for i in splits.test.y], run, data.source)
    x = convert_channels(resize_images(splits.test.x, inp.height, inp.width), inp.channels)
    return ImageBatches(x, y)


def evaluate_job(run_dir: Path, data: DataConfig, batch_size: int = 1024) -> dict[str, Any]:
    """Accuracy and loss of a trained run on the test split of ``data``."""
    run = load_run(run_dir)
    if isinstance(run.spec.input, TextInput):
        rd = run.config.data
        data = dataclasses.replace(data, text_column=rd.text_column, label_column=rd.label_column)
        test = _text_test(run, data)
    else:
        test = _image_test(run, data)
    r = evaluate(run.model, test, run.spec.num_classes, batch_size)
    per_class = (r.confusion.diag() / r.confusion.sum(1).clamp_min(1)).tolist()
    return {
        "run": str(run_dir),
        "data": data.source,
        "test_samples": r.samples,
        "test_accuracy": r.accuracy,
        "test_loss": r.loss,
        "per_class_accuracy": dict(zip(run.spec.labels, per_class, strict=True)),
    }


def _is_file(item: str, directory: bool = False) -> bool:
    """Whether a text argument names an existing file (``directory``: a directory); the empty
    text names none (``Path("")`` is the working directory)."""
    if not item or len(item) >= 4096 or "\n" in item:  # a text, not a path: no stat
        return False
    try:
        return Path(item).is_dir() if directory else Path(item).is_file()
    except OSError:  # e.g. a text too long for a file name
        return False


def read_text_inputs(inputs: list[str]) -> list[str]:
    """Text lines: ``-`` reads stdin, an existing file gives its lines, anything else is a text."""
    texts: list[str] = []
    for item in inputs:
        if item == "-":
            texts += [line.rstrip("\n") for line in sys.stdin]
        elif _is_file(item, directory=True):  # meant as a path, not as a text
            raise DataError(f"{item}: is a directory; give text files, texts or -")
        elif _is_file(item):
            try:
                texts += Path(item).read_text(encoding="utf-8").splitlines()
            except UnicodeDecodeError as e:
                raise DataError(f"{item}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        else:
            texts.append(item)
    return texts


def _image_batch(run: LoadedRun, inputs: list[str]) -> tuple[list[str], Batches]:
    inp = run.spec.input
    assert isinstance(inp, ImageInput)
    paths = [Path(p) for p in inputs]
    for p in paths:
        if p.is_dir():
            raise DataError(f"{p}: is a directory; give image files")
        if not p.is_file():
            raise DataError(f"{p}: no such file")
    x = torch.from_numpy(decode_image_files(paths, inp.channels, inp.height, inp.width))
    return inputs, ImageBatches(x.permute(0, 3, 1, 2), torch.zeros(len(paths), dtype=torch.int64))


def predict_job(run_dir: Path, inputs: list[str], top_k: int = 1) -> list[dict[str, Any]]:
    """Label and probability for each image file, or for each text line."""
    run = load_run(run_dir)
    if isinstance(run.spec.input, TextInput):
        names = read_text_inputs(inputs)
        data: Batches = TokenBatches(
            _tokens(run, names, torch.zeros(len(names), dtype=torch.int64)), torch.device("cpu")
        )
    else:
        names, data = _image_batch(run, inputs)
    probs = torch.softmax(predict_logits(run.model, data, 256).float(), dim=1)
    k = min(top_k, run.spec.num_classes)
    top_p, top_i = probs.topk(k, dim=1)
    out = []
    for name, ps, ids in zip(names, top_p.tolist(), top_i.tolist(), strict=True):
        labels = [run.spec.labels[i] for i in ids]
        top = [{"label": lb, "probability": p} for lb, p in zip(labels, ps, strict=True)]
        out.append({"input": name, "label": labels[0], "probability": ps[0], "top": top})
    return out


__all__ = ["evaluate_job", "predict_job", "read_text_inputs"]
