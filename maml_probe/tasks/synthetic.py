"""Synthetic linearly separable binary tasks (paper Sections 3.1 and 5.1, experiment E1).

A task is a direction ``w ~ N(0, I_d)``; its examples are ``x ~ N(0, I_d)`` labelled
``y = 1[w . x > 0]`` (the paper's ``sign(w . x)`` mapped to ``{0, 1}``). Every task is drawn
fresh, so meta-training never sees the same task twice and "test tasks" are simply new draws
from a separate generator.

**Protocol (the paper does not state it).** Each task has ``support`` examples for adaptation
and ``query`` examples for evaluation, both drawn i.i.d. as above. Defaults: ``d = 100``,
``support = 100``, ``query = 100``. How many support points a task has bounds what a single
gradient step can achieve: from K points, one step of any linear rule ``theta_1 = theta_0 -
A g`` can at best align ``theta_1`` with the least-squares-like direction that the K points
reveal. :func:`one_step_ceiling` measures that bound by simulation so runs can report it beside
their accuracy.
"""
from __future__ import annotations

import math

import torch

from ..rules.base import check_positive
from .base import TaskBatch


class SyntheticBinaryTasks:
    """Task source for ``d``-dimensional binary tasks with ``support``/``query`` examples each."""

    num_outputs = 1

    def __init__(self, dim: int = 100, support: int = 100, query: int = 100,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> None:
        for name, value in (("dim", dim), ("support", support), ("query", query)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.dim, self.support, self.query = dim, support, query
        self.input_shape = (dim,)
        self.dtype, self.device = dtype, torch.device(device)

    def sample(self, num_tasks: int, generator: torch.Generator) -> TaskBatch:
        """Draw ``num_tasks`` tasks; all randomness comes from ``generator`` (on the CPU)."""
        if num_tasks <= 0:
            raise ValueError(f"num_tasks must be positive, got {num_tasks}")
        n = self.support + self.query
        w = torch.randn(num_tasks, self.dim, 1, generator=generator, dtype=torch.float64)
        x = torch.randn(num_tasks, n, self.dim, generator=generator, dtype=torch.float64)
        y = ((x @ w).squeeze(-1) > 0).to(self.dtype)
        x = x.to(self.dtype)
        batch = TaskBatch(x[:, :self.support], y[:, :self.support],
                          x[:, self.support:], y[:, self.support:])
        return batch.to(self.device)


def one_step_ceiling(dim: int = 100, support: int = 100, num_tasks: int = 2000,
                     seed: int = 0) -> float:
    """Expected accuracy of the best isotropic one-step learner from ``support`` points.

    Starting from ``theta_0 = 0`` the logistic gradient is ``-(1/K) sum (y_i - 1/2) x_i``, so one
    step of ``theta_1 = -A g`` with ``A = c I`` points along ``m = sum (2 y_i - 1) x_i``. Because
    the task prior is isotropic, no fixed linear preconditioner beats this direction on average;
    its accuracy on fresh points is ``1 - angle(m, w) / pi``. Returns the mean over tasks.
    """
    check_positive("support", support)
    g = torch.Generator().manual_seed(seed)
    chunk = max(1, 4_000_000 // (support * dim))  # bound memory: ~32 MB of float64 per chunk
    accs = []
    for start in range(0, num_tasks, chunk):
        n = min(chunk, num_tasks - start)
        w = torch.randn(n, dim, generator=g, dtype=torch.float64)
        x = torch.randn(n, support, dim, generator=g, dtype=torch.float64)
        s = torch.sign(torch.einsum("tkd,td->tk", x, w))
        m = torch.einsum("tk,tkd->td", s, x)
        cos = torch.nn.functional.cosine_similarity(m, w, dim=1).clamp(-1, 1)
        accs.append(1 - torch.arccos(cos) / math.pi)
    return float(torch.cat(accs).mean())
