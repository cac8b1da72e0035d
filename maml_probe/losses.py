"""Task loss and accuracy for binary (one logit) and multiclass heads."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def task_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy; binary cross-entropy on the single logit when ``logits`` is ``[N, 1]``."""
    if logits.shape[-1] == 1:
        return F.binary_cross_entropy_with_logits(logits.squeeze(-1), labels.to(logits.dtype))
    return F.cross_entropy(logits, labels)


@torch.no_grad()
def accuracy(logits: Tensor, labels: Tensor, dim: int | None = None) -> Tensor:
    """Fraction of correct predictions: overall (0-dim), or along ``dim`` (e.g. per task)."""
    if logits.shape[-1] == 1:
        pred = (logits.squeeze(-1) > 0).to(labels.dtype)
    else:
        pred = logits.argmax(-1)
    correct = (pred == labels).to(torch.float32)
    return correct.mean() if dim is None else correct.mean(dim)
