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
    grid = affine_grid(theta, x_NCHW.shape[2], x_NCHW.shape[3])
    return F.grid_sample(x_NCHW.float(), grid, mode="bilinear", align_corners=False)


def affine_grid(theta_N23: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``F.affine_grid(theta, (N, C, H, W), align_corners=False)`` (to float rounding), written
    as broadcast products: PyTorch builds it as N batched (H·W × 3) @ (3 × 2) matrix products,
    6× slower on the CPU (1.3 ms vs 0.22 ms for 64 images at 28×28, one thread) — as long as
    the grid_sample that follows, and ≈ 8% of a DDP rank's step before this."""
    dev, dt = theta_N23.device, theta_N23.dtype
    xs_W = (torch.arange(width, device=dev, dtype=dt) * 2 + 1) / width - 1  # pixel centres
    ys_H = (torch.arange(height, device=dev, dtype=dt) * 2 + 1) / height - 1
    t = theta_N23[:, :, :, None, None]  # (N, 2, 3, 1, 1): rows give x', y'
    grid_N2HW = t[:, :, 0] * xs_W + t[:, :, 1] * ys_H[:, None] + t[:, :, 2]
    return grid_N2HW.permute(0, 2, 3, 1)  # (N, H, W, 2)
