"""A larger 28×28 digit set for throughput runs: digits' training split, randomly transformed.

    python benchmarks/digits_augmented.py /tmp/digits30k.npz --n 30000

Writes a Keras-style .npz (x_train, y_train, x_test, y_test; uint8 28×28): ``n`` training
images, each a random affine copy (dlhpc's own ``random_affine``, seed 0) of one of digits' 1,438
training images, and digits' 359 held-out test images unchanged. The built-in ``digits`` is too
small to keep a GPU busy for more than a few milliseconds per epoch; this set is not MNIST and
its accuracy is not comparable with MNIST's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from dlhpc.data import DataConfig, load_images, random_affine


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--n", type=int, default=30_000)
    a = p.parse_args()
    s = load_images(DataConfig("digits", augment="none"))
    assert s.test is not None
    g = torch.Generator().manual_seed(0)
    pick = torch.randint(0, len(s.train), (a.n,), generator=g)
    x = torch.cat(
        [random_affine(s.train.x[i], 0, k) for k, i in enumerate(torch.split(pick, 4096))]
    )
    np.savez(
        a.out,
        x_train=x.round().clamp(0, 255).to(torch.uint8)[:, 0].numpy(),
        y_train=s.train.y[pick].numpy(),
        x_test=s.test.x[:, 0].numpy(),
        y_test=s.test.y.numpy(),
    )
    print(f"{a.out}: {a.n} training, {len(s.test)} test images")


if __name__ == "__main__":
    main()
