"""The tutorial's CNN (§4.3): Conv32-Pool-Conv64-Pool-Conv64-Dense64-Dense.

Shapes for a 28×28×1 input (N = batch)::

    x      (N, 1, 28, 28)
    conv1  (N, 32, 26, 26) → pool (N, 32, 13, 13)
    conv2  (N, 64, 11, 11) → pool (N, 64, 5, 5)
    conv3  (N, 64, 3, 3)   → flatten (N, 576)
    fc1    (N, 64)         → fc2 (N, classes)

93,322 parameters for 10 classes, the same as the Keras model.
"""

from __future__ import annotations

import torch
from torch import nn

from dlhpc.errors import ConfigError


def cnn_feature_side(side: int) -> int:
    """Side length after conv3 for an input side ``side`` (valid 3×3 convs, 2×2 floor pools)."""
    s = side - 2  # conv1
    s = s // 2  # pool
    s = s - 2  # conv2
    s = s // 2  # pool
    return s - 2  # conv3


MIN_CNN_SIDE = 18  # smallest side with a 1×1 map after conv3


class TutorialCNN(nn.Module):
    def __init__(self, in_channels: int, height: int, width: int, num_classes: int) -> None:
        super().__init__()
        fh, fw = cnn_feature_side(height), cnn_feature_side(width)
        if fh < 1 or fw < 1:
            raise ConfigError(
                f"cnn needs images of at least {MIN_CNN_SIDE}×{MIN_CNN_SIDE} pixels, "
                f"got {height}×{width}; resize them (--image-size) or use --model mlp"
            )
        if num_classes < 2:
            raise ConfigError(f"a classifier needs at least 2 classes, got {num_classes}")
        self.conv1 = nn.Conv2d(in_channels, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.conv3 = nn.Conv2d(64, 64, 3)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(64 * fh * fw, 64)
        self.fc2 = nn.Linear(64, num_classes)
        self.act = nn.ReLU()

    def forward(self, x_NCHW: torch.Tensor) -> torch.Tensor:
        # ReLU after the max-pool: the same values and gradients (max and ReLU commute, both
        # monotone), with the element-wise ReLU and its backward on a quarter of the elements.
        x = self.act(self.pool(self.conv1(x_NCHW)))
        x = self.act(self.pool(self.conv2(x)))
        x = self.act(self.conv3(x))
        x = self.act(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)  # (N, classes) logits
