"""Task loss and accuracy for binary (one logit) and multiclass heads, per task or overall.

Logits are ``[N, K]`` for one task or ``[T, N, K]`` for a stack of ``T`` tasks (the
task-stacked forwards of :mod:`maml_probe.models`); labels have the shape of the logits without
their last axis. ``K = 1`` is a binary head (a sigmoid on the single logit), ``K > 1`` a softmax.

``reduction`` says what comes back:

==============  =============================================================================
``"mean"``      the mean over every example (a 0-dim tensor): the task loss ``L_T`` of one task
``"per_task"``  the mean over the examples of each task, ``[T]`` for ``[T, N, K]`` logits: task
                ``k``'s entry equals ``"mean"`` of ``logits[k]``
==============  =============================================================================
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

REDUCTIONS = ("mean", "per_task")


def _check_reduction(reduction: str, logits: Tensor) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {list(REDUCTIONS)}, got {reduction!r}")
    if reduction == "per_task" and logits.dim() != 3:
        raise ValueError(f"reduction='per_task' needs [tasks, examples, outputs] logits, "
                         f"got shape {list(logits.shape)}")


def task_loss(logits: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
    """Cross-entropy of a task's predictions: the loss ``L_T`` of the inner and outer loops.

    Softmax cross-entropy for ``K > 1`` outputs; binary cross-entropy on the single logit when
    ``K = 1`` (labels 0/1 of any dtype).

    Args:
        logits: ``[N, K]`` logits of one task, or ``[T, N, K]`` for ``T`` stacked tasks.
        labels: class indices (``K > 1``) or 0/1 targets (``K = 1``), ``logits.shape[:-1]``.
        reduction: ``"mean"`` over all examples, or ``"per_task"`` (one mean per task).

    Returns:
        A 0-dim tensor (``"mean"``) or a ``[T]`` tensor (``"per_task"``).
    """
    _check_reduction(reduction, logits)
    if logits.shape[-1] == 1:
        logits = logits.squeeze(-1)
        labels = labels.to(logits.dtype)
        if reduction == "mean":
            return F.binary_cross_entropy_with_logits(logits, labels)
        return F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(1)
    K = logits.shape[-1]
    if reduction == "mean":
        if logits.dim() == 2:
            return F.cross_entropy(logits, labels)
        return F.cross_entropy(logits.reshape(-1, K), labels.reshape(-1))
    T, N = logits.shape[:2]
    return F.cross_entropy(logits.reshape(T * N, K), labels.reshape(T * N),
                           reduction="none").view(T, N).mean(1)


@torch.no_grad()
def accuracy(logits: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
    """Fraction of correct predictions (argmax, or ``logit > 0`` for a binary head), in float32.

    A binary head's labels may be ``{0, 1}`` or ``{-1, 1}`` (the positive class is ``> 0``).

    Args:
        logits: ``[N, K]`` logits of one task, or ``[T, N, K]`` for ``T`` stacked tasks.
        labels: as for :func:`task_loss`.
        reduction: ``"mean"`` over all examples, or ``"per_task"`` (one accuracy per task).

    Returns:
        A 0-dim tensor (``"mean"``) or a ``[T]`` tensor (``"per_task"``).
    """
    _check_reduction(reduction, logits)
    if logits.shape[-1] == 1:  # a positive logit predicts the positive class, label 1 of {0, 1}
        correct = ((logits.squeeze(-1) > 0) == (labels > 0)).to(torch.float32)  # or of {-1, 1}
    else:
        correct = (logits.argmax(-1) == labels).to(torch.float32)
    return correct.mean() if reduction == "mean" else correct.mean(1)
