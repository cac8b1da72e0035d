"""Synthetic linearly separable binary tasks (paper Sections 3.1 and 5.1, experiment E1).

A task is a direction ``w ~ N(0, I_d)``; its examples are ``x ~ N(0, I_d)`` labelled by the
side of the boundary ``w . x = 0`` they fall on. Every task is drawn fresh, so meta-training
never sees the same task twice and "test tasks" are simply new draws from a separate generator.

**Labels** (``labels=``). Appendix A.1.1 labels each point "from {-1, 1} based on the sign of
``w^T x``" and trains on "the binary cross-entropy". Two encodings are offered:

==========  ==============================  =================================================
``"01"``    ``y = 1[w . x > 0]``            the default: the usual BCE targets
``"pm1"``   ``y = sign(w . x) in {-1, 1}``  the paper's words, fed unchanged to the same BCE
==========  ==============================  =================================================

With logit ``z``, BCE-with-logits is ``l(z, y) = softplus(z) - y z``. For ``y = -1`` it is
``softplus(z) + z``, which goes to ``-inf`` as ``z -> -inf``: the loss is unbounded below and
its gradient ``sigmoid(z) - y = sigmoid(z) + 1`` never vanishes. Equivalently, ``l_pm1(z, y) =
l_01(z, y01) + z 1[y = -1]``: the ``{-1, 1}`` reading adds the mean logit of the negative
points to the ``{0, 1}`` loss. ``"pm1"`` implements exactly that formula, so a bias on the model
is pushed down at a rate of about ``sigmoid(z) - mean(y) > 0`` per step; accuracy is the same
under both encodings (:func:`label_accuracy`: a point is right when ``z > 0`` exactly when its
label is positive).

**Points per task.** Each task has ``support`` adaptation points and ``query`` evaluation
(held-out) points, drawn i.i.d. together; A.1.1 gives ``1,000`` points per task
(``support + query = 1000``) but not how they split, so the split is a parameter. Defaults:
``d = 100``, ``support = 100``, ``query = 100``. How many adaptation points a task has bounds
what a single gradient step can achieve: :func:`one_step_ceiling` measures that bound by
simulation, on held-out points and on the adaptation points themselves.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import TaskBatch

#: Label encodings of :class:`SyntheticBinaryTasks` (see the module docstring).
LABELS = ("01", "pm1")
#: Where :func:`one_step_ceiling` scores the adapted direction.
CEILING_POINTS = ("held-out", "adaptation")


def _check_labels(labels: str) -> None:
    if labels not in LABELS:
        raise ValueError(f"labels must be one of {list(LABELS)}, got {labels!r}")


def _check_positive_int(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


class SyntheticBinaryTasks:
    """Task source for ``d``-dimensional binary tasks with ``support``/``query`` points each.

    Args:
        dim: input dimension ``d`` (the paper's 100).
        support: adaptation points per task.
        query: evaluation (held-out) points per task; ``support + query`` is the number of
            points per task (1,000 in Appendix A.1.1).
        labels: ``"01"`` (``{0, 1}`` targets) or ``"pm1"`` (``{-1, 1}``, A.1.1's wording).
        dtype: dtype of inputs and labels.
        device: where batches are returned.
    """

    num_outputs = 1

    def __init__(self, dim: int = 100, support: int = 100, query: int = 100, labels: str = "01",
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> None:
        for name, value in (("dim", dim), ("support", support), ("query", query)):
            _check_positive_int(name, value)
        _check_labels(labels)
        self.dim, self.support, self.query, self.labels = dim, support, query, labels
        self.input_shape = (dim,)
        self.dtype, self.device = dtype, torch.device(device)

    @property
    def points(self) -> int:
        """Points per task, ``support + query``."""
        return self.support + self.query

    def sample(self, num_tasks: int, generator: torch.Generator) -> TaskBatch:
        """Draw ``num_tasks`` tasks; all randomness comes from ``generator`` (on the CPU).

        Args:
            num_tasks: tasks to draw.
            generator: the CPU generator every random number comes from (the label encoding
                does not change which tasks and points are drawn).

        Returns:
            A :class:`TaskBatch` with labels ``1[w . x > 0]`` (``"01"``) or ``sign(w . x)``
            (``"pm1"``), in ``dtype``.
        """
        if num_tasks <= 0:
            raise ValueError(f"num_tasks must be positive, got {num_tasks}")
        n = self.points
        w = torch.randn(num_tasks, self.dim, 1, generator=generator, dtype=torch.float64)
        x = torch.randn(num_tasks, n, self.dim, generator=generator, dtype=torch.float64)
        positive = (x @ w).squeeze(-1) > 0
        y = positive.to(self.dtype)
        if self.labels == "pm1":
            y = 2 * y - 1
        x = x.to(self.dtype)
        batch = TaskBatch(x[:, :self.support], y[:, :self.support],
                          x[:, self.support:], y[:, self.support:])
        return batch.to(self.device)


@torch.no_grad()
def label_accuracy(logits: Tensor, labels: Tensor) -> Tensor:
    """Accuracy of a one-logit head under either label encoding of :data:`LABELS`.

    A point is classified right when ``z > 0`` exactly when its label is positive, so
    ``{0, 1}`` and ``{-1, 1}`` labels of the same points give the same accuracy.

    Args:
        logits: ``[..., N, 1]`` logits.
        labels: ``[..., N]`` labels in ``{0, 1}`` or ``{-1, 1}``.

    Returns:
        The fraction right over the last ``N`` axis (float32), shape ``logits.shape[:-2]``.
    """
    pred = logits.squeeze(-1) > 0
    return (pred == (labels > 0)).to(torch.float32).mean(-1)


def one_step_ceiling(dim: int = 100, support: int = 100, num_tasks: int = 2000,
                     seed: int = 0, *, labels: str = "01", points: str = "held-out") -> float:
    """Expected accuracy of the best isotropic one-step learner from ``support`` points.

    Starting from ``theta_0 = 0`` (no bias) the logistic gradient is ``g = (1/K) sum
    (sigmoid(0) - y_i) x_i``, so one step ``theta_1 = -A g`` with ``A = c I`` points along
    ``m = sum (y_i - 1/2) x_i``: ``m = (1/2) sum s_i x_i`` with ``{0, 1}`` labels and ``m = sum
    (s_i - 1/2) x_i`` with ``{-1, 1}`` labels (``s_i = sign(w . x_i)``; the extra ``-(1/2) sum
    x_i`` carries no information about ``w``). Because the task prior is isotropic, no fixed
    linear preconditioner beats this direction on average.

    Args:
        dim: input dimension ``d``.
        support: adaptation points ``K`` per task.
        num_tasks: simulated tasks.
        seed: seeds the simulation.
        labels: ``"01"`` or ``"pm1"``: which gradient direction (above).
        points: ``"held-out"``: the accuracy on fresh points, ``1 - angle(m, w) / pi`` (exact
            for infinitely many held-out points, unbiased for any finite number);
            ``"adaptation"``: the fraction of the ``K`` adaptation points themselves with
            ``sign(m . x_i) = s_i`` (higher: each point's own term ``s_i |x_i|^2`` helps it).

    Returns:
        The mean accuracy over ``num_tasks`` tasks.
    """
    _check_positive_int("support", support)
    _check_labels(labels)
    if points not in CEILING_POINTS:
        raise ValueError(f"points must be one of {list(CEILING_POINTS)}, got {points!r}")
    offset = 0.5 if labels == "pm1" else 0.0
    g = torch.Generator().manual_seed(seed)
    chunk = max(1, 4_000_000 // (support * dim))  # bound memory: ~32 MB of float64 per chunk
    accs = []
    for start in range(0, num_tasks, chunk):
        n = min(chunk, num_tasks - start)
        w = torch.randn(n, dim, generator=g, dtype=torch.float64)
        x = torch.randn(n, support, dim, generator=g, dtype=torch.float64)
        s = torch.sign(torch.einsum("tkd,td->tk", x, w))
        m = torch.einsum("tk,tkd->td", s - offset, x)
        if points == "held-out":
            cos = torch.nn.functional.cosine_similarity(m, w, dim=1).clamp(-1, 1)
            accs.append(1 - torch.arccos(cos) / math.pi)
        else:
            own = torch.sign(torch.einsum("tkd,td->tk", x, m))
            accs.append((own == s).to(torch.float64).mean(1))
    return float(torch.cat(accs).mean())
