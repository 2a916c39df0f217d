"""Batch augmentation on the training device, vectorized over the batch (no per-sample Python).

``random_affine``: a small random rotation, scale and shift per image, the classic augmentation
for handwritten digits. It costs one ``grid_sample`` per batch and, on the built-in digits, lifts
the tutorial CNN's test accuracy from ~96% to ~98% (see the README's defaults).

Randomness comes from a generator seeded by (seed, step), never from the global RNG: resumed
and distributed runs draw exactly the same transforms as an uninterrupted single process.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dlhpc.data.batching import to_device

AUGMENTS = ("none", "affine")
MAX_ROTATE = 0.2  # radians, ≈ 11°
MAX_SCALE = 0.1  # ±10%
MAX_SHIFT = 0.07  # of the image side, ≈ 2 pixels at 28


def random_affine(
    x_NCHW: torch.Tensor, seed: int, step: int, start: int = 0, total: int | None = None
) -> torch.Tensor:
    """Randomly rotated/scaled/shifted copies of raw pixels; float32 0–255, same shape.

    The draws are made for the whole global batch (``total`` rows) and rows ``start…`` are
    used, so a rank's part of a batch gets the transforms one process would give it.
    """
    n = x_NCHW.shape[0]
    total = n if total is None else total
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    u = (torch.rand(total, 4, generator=g) * 2 - 1)[start : start + n]  # (N, 4) in [-1, 1)
    angle, scale = u[:, 0] * MAX_ROTATE, 1 + u[:, 1] * MAX_SCALE
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack(
        [
            torch.stack([cos, -sin, u[:, 2] * 2 * MAX_SHIFT], 1),
            torch.stack([sin, cos, u[:, 3] * 2 * MAX_SHIFT], 1),
        ],
        1,
    )  # (N, 2, 3); fmt: skip
    theta = to_device(theta, x_NCHW.device)
    grid = F.affine_grid(theta, list(x_NCHW.shape), align_corners=False)
    return F.grid_sample(x_NCHW.float(), grid, mode="bilinear", align_corners=False)
