"""From a ``DataConfig`` to what the loop trains on: batches on the device and the model spec.

Images and text differ only here; the loop, evaluation and the run directory see ``Batches``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from dlhpc.data import DataConfig, load_images, random_affine
from dlhpc.data.batches import Augment, Batches, ImageBatches, TokenBatches
from dlhpc.data.text import load_text
from dlhpc.data.text_sources import TextFiles, find_text_files, require_text_files
from dlhpc.errors import ConfigError
from dlhpc.models import ImageInput, ModelConfig, ModelSpec, TextInput, text_model_names


@dataclass
class Prepared:
    spec: ModelSpec
    train: Batches
    evals: dict[str, Batches]  # "val" and/or "test"
    augment: Augment | None
    tokenizer_file: Path | None  # text runs: copied into the run directory


def _image_augment(seed: int) -> Augment:
    def augment(
        inputs: tuple[torch.Tensor, ...], step: int, start: int, total: int
    ) -> tuple[torch.Tensor, ...]:
        return (random_affine(inputs[0], seed, step, start, total),)

    return augment


def source_files(data: DataConfig, model: str) -> TextFiles | None:
    """The text files of ``data`` for a text ``model``, None for an image model's source; a
    text model on images, or the other way round, is refused. Reads no samples."""
    files = find_text_files(data.source, data.text_column, data.label_column)
    if model not in text_model_names():
        if files is not None:
            raise ConfigError(f"{model} is an image model, but {data.source} holds text")
        return None
    # says why when not text: missing, or another kind of file
    return files or require_text_files(data.source, data.text_column, data.label_column, model)


def prepare_data(
    data: DataConfig,
    model: ModelConfig,
    device: torch.device,
    seed: int,
    tokenizer: Path | None = None,
) -> Prepared:
    """Load ``data`` for ``model``; refuse a text model on images and the other way round.

    ``tokenizer``: encode text with this one instead of training one (fine-tuning)."""
    files = source_files(data, model.name)
    if files is not None:
        t = load_text(data, files, tokenizer)
        spec = ModelSpec(model, TextInput(t.vocab_size), t.classes)
        evals: dict[str, Batches] = {
            name: TokenBatches(s, device, bucket=False)
            for name, s in (("val", t.val), ("test", t.test))
            if s is not None
        }
        return Prepared(spec, TokenBatches(t.train, device), evals, None, t.tokenizer_file)
    s = load_images(data)
    mean, std = s.channel_stats()
    c, h, w = s.train.image_shape
    spec = ModelSpec(model, ImageInput(c, h, w, mean, std), s.classes)

    def on(x: torch.Tensor, y: torch.Tensor) -> ImageBatches:
        return ImageBatches(x.to(device), y.to(device))

    evals = {n: on(v.x, v.y) for n, v in (("val", s.val), ("test", s.test)) if v is not None}
    augment = _image_augment(seed) if data.augment == "affine" else None
    return Prepared(spec, on(s.train.x, s.train.y), evals, augment, None)


def for_evaluation(data: DataConfig, spec: ModelSpec) -> DataConfig:
    """The data settings to evaluate a run on: its channels for images, no augmentation."""
    if isinstance(spec.input, ImageInput):
        return dataclasses.replace(data, channels=spec.input.channels, augment="none")
    return data
