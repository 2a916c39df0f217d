"""Evaluation: loss, accuracy and the confusion matrix over a whole split, in large batches."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dlhpc.data.batches import Batches


@dataclass(frozen=True)
class EvalResult:
    loss: float
    accuracy: float
    samples: int
    confusion: torch.Tensor  # (classes, classes) int64: rows = true, columns = predicted

    def as_dict(self) -> dict[str, float | int]:
        return {"loss": self.loss, "accuracy": self.accuracy, "samples": self.samples}


@torch.inference_mode()
def predict_logits(model: nn.Module, data: Batches, batch_size: int) -> torch.Tensor:
    """Logits (N, classes) for every record of ``data``, in order, batch by batch."""
    was_training = model.training
    model.eval()
    try:
        idx = torch.arange(len(data), device=data.y.device)
        return torch.cat([model(*data.inputs(i)) for i in torch.split(idx, batch_size)])
    finally:
        model.train(was_training)


@torch.inference_mode()
def evaluate(
    model: nn.Module, data: Batches, num_classes: int, batch_size: int = 1024
) -> EvalResult:
    y = data.y
    logits = predict_logits(model, data, batch_size)
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
