"""Evaluation: loss, accuracy and the confusion matrix over a whole split, in large batches."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class EvalResult:
    loss: float
    accuracy: float
    samples: int
    confusion: torch.Tensor  # (classes, classes) int64: rows = true, columns = predicted

    def as_dict(self) -> dict[str, float | int]:
        return {"loss": self.loss, "accuracy": self.accuracy, "samples": self.samples}


@torch.inference_mode()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Logits (N, classes) for ``x`` on the model's device, batch by batch."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(xb) for xb in torch.split(x, batch_size)])
    finally:
        model.train(was_training)


@torch.inference_mode()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int, batch_size: int = 1024
) -> EvalResult:
    logits = predict_logits(model, x, batch_size)
    loss = F.cross_entropy(logits.float(), y, reduction="sum")
    pred = logits.argmax(1)
    confusion = torch.bincount(y * num_classes + pred, minlength=num_classes**2)
    n = int(y.numel())
    correct = int((pred == y).sum())  # one host sync per evaluation
    return EvalResult(
        loss=float(loss) / max(1, n),
        accuracy=correct / max(1, n),
        samples=n,
        confusion=confusion.view(num_classes, num_classes).cpu(),
    )
