"""Evaluation: loss, accuracy and the confusion matrix over a whole split, in large batches."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dlhpc.data.batches import Batches
from dlhpc.engine.distributed import Dist


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
        idx = torch.arange(len(data), device=data.index_device)
        return torch.cat([model(*data.inputs(i)) for i in torch.split(idx, batch_size)])
    finally:
        model.train(was_training)


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    data: Batches,
    num_classes: int,
    batch_size: int = 1024,
    dist: Dist | None = None,
) -> EvalResult:
    """Loss, accuracy and confusion over ``data``. With ``dist``, each rank evaluates its own
    contiguous part and the sums are all-reduced: every sample counts once, whatever the world
    size, and no padding sample is ever counted."""
    n = len(data)
    device = data.y.device
    part = dist.part(n) if dist is not None else slice(0, n)
    idx = torch.arange(part.start, part.stop, device=data.index_device)
    was_training = model.training
    model.eval()
    sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss sum, correct
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    try:
        for i in torch.split(idx, batch_size):
            logits, y = model(*data.inputs(i)).float(), data.labels(i)
            pred = logits.argmax(1)
            sums[0] += F.cross_entropy(logits, y, reduction="sum")
            sums[1] += (pred == y).sum()
            confusion += torch.bincount(y * num_classes + pred, minlength=num_classes**2)
    finally:
        model.train(was_training)
    if dist is not None:
        dist.all_sum(sums)
        dist.all_sum(confusion)
    loss_sum, correct = sums.tolist()  # one host sync per evaluation
    return EvalResult(
        loss=loss_sum / max(1, n),
        accuracy=correct / max(1, n),
        samples=n,
        confusion=confusion.view(num_classes, num_classes).cpu(),
    )
