"""Index batching: the order of an epoch is a pure function of (seed, epoch).

That makes resuming exact (recompute the order, skip the steps already done) and lets every
rank of a distributed job agree on the order without communicating.
"""

from __future__ import annotations

import torch


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> torch.Tensor:
    """A permutation of ``range(n)`` (int64) for ``epoch``."""
    if not shuffle:
        return torch.arange(n)
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def batch_slices(n: int, batch_size: int, drop_last: bool = False) -> list[slice]:
    """Slices of an order into batches; the last may be short unless ``drop_last``."""
    stop = n - n % batch_size if drop_last else n
    return [slice(i, min(i + batch_size, stop)) for i in range(0, stop, batch_size)]


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor on ``device``; to CUDA through pinned memory, so the host does not wait
    for the GPU to finish its queue (a plain ``.to("cuda")`` synchronises the stream)."""
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)
