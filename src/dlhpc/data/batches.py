"""Data sets that hand the training loop model inputs by index: ``model(*ds.inputs(idx))``.

The loop knows one protocol (``Batches``); images and token sequences implement it without any
per-sample Python: an image batch is one index gather, a text batch one vectorized CSR gather.

Shapes::

    images:  x (N, C, H, W) uint8 → inputs(idx) = (x[idx],)
    text:    ids (T,) offsets (M+1,) → inputs(idx) = (ids_b (T_b,) int64, offsets_b (B+1,) int64)

Index tensors (``order``, ``idx``) live on ``index_device``: the training device for images (the
data set is resident there), the host for text (the corpus stays memory-mapped; a batch is
gathered on the host and copied from pinned memory without waiting). The loop never reads a
device index back on the host, so no training step synchronises with the GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from dlhpc.data.batching import epoch_order, to_device
from dlhpc.data.text import TokenSet

BUCKET_BATCHES = 64  # length-sort windows of this many batches: little padding, still random


class Batches(Protocol):
    @property
    def y(self) -> torch.Tensor: ...  # (N,) int64 class ids, on the training device

    @property
    def index_device(self) -> torch.device: ...  # where ``order`` and ``idx`` live

    def __len__(self) -> int: ...

    def order(self, seed: int, epoch: int, batch_size: int) -> torch.Tensor: ...

    def inputs(self, idx: torch.Tensor) -> tuple[torch.Tensor, ...]: ...

    def labels(self, idx: torch.Tensor) -> torch.Tensor: ...  # on the training device


@dataclass
class ImageBatches:
    x: torch.Tensor  # (N, C, H, W) uint8 on the device
    y: torch.Tensor  # (N,) int64 on the device

    @property
    def index_device(self) -> torch.device:
        return self.y.device

    def __len__(self) -> int:
        return int(self.y.numel())

    def order(self, seed: int, epoch: int, batch_size: int) -> torch.Tensor:
        return epoch_order(len(self), seed, epoch).to(self.y.device)

    def inputs(self, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (self.x[idx],)

    def labels(self, idx: torch.Tensor) -> torch.Tensor:
        return self.y[idx]


def gather_ragged(
    ids: torch.Tensor, offsets: torch.Tensor, rows: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Records ``rows`` of a CSR corpus as a CSR batch, in one vectorized gather."""
    starts = offsets[rows]
    lengths = offsets[rows + 1] - starts
    out_off = torch.zeros(len(rows) + 1, dtype=torch.int64)
    torch.cumsum(lengths, 0, out=out_off[1:])
    total = int(out_off[-1])
    # position of token j of the batch in the corpus: its record's start + its place in it
    shift = torch.repeat_interleave(starts - out_off[:-1], lengths, output_size=total)
    pos = torch.arange(total, dtype=torch.int64) + shift
    return ids[pos].to(torch.int64), out_off


@dataclass
class TokenBatches:
    """Token records; the corpus stays memory-mapped on the host, batches go to ``device``."""

    tokens: TokenSet
    device: torch.device
    bucket: bool = True  # length-bucketed order: similar lengths share a batch

    def __post_init__(self) -> None:
        self._y_host = self.tokens.y
        self._y = self._y_host.to(self.device)

    @property
    def y(self) -> torch.Tensor:
        return self._y

    @property
    def index_device(self) -> torch.device:
        return torch.device("cpu")

    def __len__(self) -> int:
        return len(self.tokens)

    def order(self, seed: int, epoch: int, batch_size: int) -> torch.Tensor:
        perm = epoch_order(len(self), seed, epoch)
        if not self.bucket or len(self) <= batch_size:
            return perm
        # Sort each window of BUCKET_BATCHES batches by length, cut it into batches, then
        # shuffle the full batches (the short last batch stays last).
        lengths = self.tokens.lengths[perm]
        window = torch.arange(len(perm)) // (batch_size * BUCKET_BATCHES)
        key = window * (int(lengths.max()) + 1) + lengths
        sorted_perm = perm[torch.argsort(key, stable=True)]
        full = len(perm) // batch_size * batch_size
        g = torch.Generator().manual_seed(seed * 7_919 + epoch)
        batch_order = torch.randperm(full // batch_size, generator=g)
        body = sorted_perm[:full].view(-1, batch_size)[batch_order].reshape(-1)
        return torch.cat([body, sorted_perm[full:]])

    def inputs(self, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        rows = self.tokens.rows[idx]
        ids, offsets = gather_ragged(self.tokens.ids, self.tokens.offsets, rows)
        return to_device(ids, self.device), to_device(offsets, self.device)

    def labels(self, idx: torch.Tensor) -> torch.Tensor:
        return to_device(self._y_host[idx], self.device)


# (inputs, global step, first row of this rank's part, global batch size) → inputs
Augment = Callable[[tuple[torch.Tensor, ...], int, int, int], tuple[torch.Tensor, ...]]
