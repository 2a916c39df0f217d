"""Model inputs with labels, in the two forms a model takes: uint8 pixels or CSR token ids.

The optimize layer sees data only through these (it may not import ``data/``): the caller loads
a split and hands it over. Every transform and check here slices contiguous records::

    s = ImageSamples(x_NCHW, y_N)             # x uint8 (N, C, H, W), y int64 (N,)
    model(*s.inputs(0, 8))                     # eager PyTorch: a tuple of tensors
    session.run(None, feeds(s, 0, 8))          # ONNX Runtime: {input name: ndarray}

    t = TokenSamples(ids_T, offsets_N1, y_N)   # record i is ids[offsets[i]:offsets[i+1]]

Shape legend: N records, T tokens in all, C/H/W image channels and sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

IMAGE_INPUTS = ("pixels",)  # uint8 (N, C, H, W)
TEXT_INPUTS = ("ids", "offsets")  # int64 (T,), int64 (N+1,)
OUTPUT = "logits"  # float32 (N, classes)


class Samples(Protocol):
    """Labelled model inputs, sliced by record range."""

    @property
    def y(self) -> torch.Tensor: ...  # (N,) int64 class ids; -1 where unknown

    @property
    def input_names(self) -> tuple[str, ...]: ...

    def __len__(self) -> int: ...

    def inputs(self, start: int, stop: int) -> tuple[torch.Tensor, ...]: ...

    def tiled(self, n: int) -> Samples: ...  # exactly n records, repeating from the start


def feeds(s: Samples, start: int, stop: int) -> dict[str, np.ndarray]:
    """Records ``start:stop`` as ONNX Runtime feeds, ``{input name: array}``."""
    return {k: v.numpy() for k, v in zip(s.input_names, s.inputs(start, stop), strict=True)}


def _repeat_index(n_have: int, n: int) -> torch.Tensor:
    if n_have == 0:
        raise ValueError("cannot tile an empty set of samples")
    return torch.arange(n) % n_have


@dataclass(frozen=True)
class ImageSamples:
    x: torch.Tensor  # (N, C, H, W) uint8
    y: torch.Tensor  # (N,) int64

    def __post_init__(self) -> None:
        if self.x.dtype != torch.uint8 or self.x.dim() != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {self.x.dtype} {self.x.shape}"
            )

    @property
    def input_names(self) -> tuple[str, ...]:
        return IMAGE_INPUTS

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def inputs(self, start: int, stop: int) -> tuple[torch.Tensor, ...]:
        return (self.x[start:stop].contiguous(),)

    def tiled(self, n: int) -> ImageSamples:
        idx = _repeat_index(len(self), n)
        return ImageSamples(self.x[idx], self.y[idx])


@dataclass(frozen=True)
class TokenSamples:
    ids: torch.Tensor  # (T,) int64
    offsets: torch.Tensor  # (N+1,) int64, offsets[0] = 0
    y: torch.Tensor  # (N,) int64

    def __post_init__(self) -> None:
        if self.ids.dtype != torch.int64 or self.offsets.dtype != torch.int64:
            raise ValueError("token ids and offsets must be int64")
        if self.offsets.numel() != self.y.numel() + 1:
            raise ValueError("offsets must hold one entry more than there are labels")

    @property
    def input_names(self) -> tuple[str, ...]:
        return TEXT_INPUTS

    def __len__(self) -> int:
        return int(self.y.numel())

    def inputs(self, start: int, stop: int) -> tuple[torch.Tensor, ...]:
        lo, hi = int(self.offsets[start]), int(self.offsets[stop])
        return self.ids[lo:hi].contiguous(), self.offsets[start : stop + 1] - lo

    def tiled(self, n: int) -> TokenSamples:
        idx = _repeat_index(len(self), n)
        starts, stops = self.offsets[idx], self.offsets[idx + 1]
        lengths = stops - starts
        offsets = torch.zeros(n + 1, dtype=torch.int64)
        torch.cumsum(lengths, 0, out=offsets[1:])
        # Token t of new record r reads ids[starts[r] + (t - offsets[r])].
        row = torch.repeat_interleave(torch.arange(n), lengths)
        pos = torch.arange(int(offsets[-1])) - offsets[row] + starts[row]
        return TokenSamples(self.ids[pos], offsets, self.y[idx])


def synthetic_images(shape: tuple[int, int, int], n: int, seed: int = 0) -> ImageSamples:
    """Random pixels, unlabelled (y = -1): enough for parity and timing, not for accuracy."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)
    return ImageSamples(x, torch.full((n,), -1, dtype=torch.int64))


def synthetic_tokens(vocab_size: int, n: int, max_len: int = 40, seed: int = 0) -> TokenSamples:
    """Random token ids (2 … vocab-1) of random lengths 0 … max_len, unlabelled."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, max_len + 1, (n,), generator=g)
    lengths[0] = max(int(lengths[0]), 1)
    offsets = torch.zeros(n + 1, dtype=torch.int64)
    torch.cumsum(lengths, 0, out=offsets[1:])
    ids = torch.randint(2, max(vocab_size, 3), (int(offsets[-1]),), generator=g)
    return TokenSamples(ids, offsets, torch.full((n,), -1, dtype=torch.int64))


def has_labels(s: Samples) -> bool:
    return len(s) > 0 and bool((s.y >= 0).all())
