"""Image data sets: every source becomes one uint8 tensor ``x (N, C, H, W)`` and ``y (N,)``.

Batches are taken by index from these tensors (``data.batching``): no per-sample Python in the
training loop. Readers (one per format) only produce arrays; shaping, splitting and checks are
shared here::

    from dlhpc.data import DataConfig, load_images
    splits = load_images(DataConfig("digits"))
    splits.train.x.shape   # torch.Size([1437, 1, 28, 28]), uint8
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dlhpc.data.config import DataConfig
from dlhpc.data.readers import RawImages, find_reader
from dlhpc.errors import DataError


@dataclass(frozen=True)
class ImageSet:
    x: torch.Tensor  # (N, C, H, W) uint8
    y: torch.Tensor  # (N,) int64 class ids

    def __post_init__(self) -> None:
        assert self.x.dtype == torch.uint8 and self.x.dim() == 4, (self.x.dtype, self.x.shape)
        assert self.y.dtype == torch.int64 and self.y.shape == (self.x.shape[0],)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.x.shape[1:]
        return int(c), int(h), int(w)


@dataclass(frozen=True)
class ImageSplits:
    train: ImageSet
    test: ImageSet | None
    val: ImageSet | None
    classes: tuple[str, ...]
    source: str

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std of pixel/255 over the training split."""
        x = self.train.x.to(torch.float64).div_(255.0)
        mean = x.mean(dim=(0, 2, 3))
        std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
        return tuple(mean.tolist()), tuple(std.tolist())


def resize_images(x_NCHW: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """uint8 images to ``height × width``, bilinear with antialiasing when shrinking."""
    if tuple(x_NCHW.shape[2:]) == (height, width):
        return x_NCHW
    out = []
    for chunk in torch.split(x_NCHW, 4096):  # bounded float memory for large sets
        f = F.interpolate(chunk.float(), size=(height, width), mode="bilinear",
                          align_corners=False, antialias=True)  # fmt: skip
        out.append(f.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


def convert_channels(x_NCHW: torch.Tensor, channels: int) -> torch.Tensor:
    c = x_NCHW.shape[1]
    if c == channels:
        return x_NCHW
    if channels == 3 and c == 1:
        return x_NCHW.expand(-1, 3, -1, -1).contiguous()
    if channels == 1 and c == 3:  # ITU-R 601 luma, as Pillow's convert("L")
        w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (x_NCHW.float() * w).sum(1, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)
    raise DataError(f"cannot convert {c}-channel images to {channels} channels")


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out): ``fraction`` of every class held out (at least one if possible)."""
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = round(fraction * len(idx))
        k = min(max(k, 1), len(idx) - 1) if len(idx) > 1 else 0
        held.append(idx[:k])
        keep.append(idx[k:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))


def _to_set(x_NHWC: np.ndarray, y: np.ndarray) -> ImageSet:
    x = torch.from_numpy(np.ascontiguousarray(x_NHWC)).permute(0, 3, 1, 2).contiguous()
    return ImageSet(x, torch.from_numpy(y.astype(np.int64)))


def _shape(s: ImageSet, size: tuple[int, int], channels: int) -> ImageSet:
    x = convert_channels(resize_images(s.x, *size), channels)
    return ImageSet(x, s.y)


def load_images(cfg: DataConfig) -> ImageSplits:
    """Read ``cfg.source``, shape every split alike, and carve the held-out splits."""
    reader, path = find_reader(cfg.source)
    raw: RawImages = reader.read(path, cfg)
    if raw.y_train.size == 0:
        raise DataError(f"{cfg.source}: no training images")
    if len(np.unique(raw.y_train)) < 2:
        raise DataError(f"{cfg.source}: training data has only one class ({raw.classes[0]!r})")
    x_tr, y_tr, x_te, y_te = raw.x_train, raw.y_train, raw.x_test, raw.y_test
    if x_te is None or y_te is None:
        keep, held = stratified_split(y_tr, cfg.test_fraction, cfg.seed)
        x_tr, y_tr, x_te, y_te = x_tr[keep], y_tr[keep], x_tr[held], y_tr[held]
    train, test = _to_set(x_tr, y_tr), _to_set(x_te, y_te)
    h, w = train.x.shape[2:] if cfg.image_size is None else (cfg.image_size, cfg.image_size)
    channels = cfg.channels or (3 if raw.color else 1)
    train, test = _shape(train, (h, w), channels), _shape(test, (h, w), channels)
    val = None
    if cfg.val_fraction > 0:
        keep, held = stratified_split(train.y.numpy(), cfg.val_fraction, cfg.seed + 1)
        keep_t, held_t = torch.from_numpy(keep), torch.from_numpy(held)
        val = ImageSet(train.x[held_t], train.y[held_t])
        train = ImageSet(train.x[keep_t], train.y[keep_t])
    return ImageSplits(train, test if len(test) else None, val, raw.classes, cfg.source)
