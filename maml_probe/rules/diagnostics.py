"""How large an update rule's step is, relative to the gradient, per parameter.

For a task with support loss ``L_T(theta)``, gradient ``g_p = grad_{theta_p} L_T`` of model
parameter ``p`` and the rule's update ``u_p = U_xi(g)_p`` (``theta_p' = theta_p - u_p``), the
table of :func:`update_gradient_ratio` holds

    ratio_p  = ||u_p|| / ||g_p||                  (Frobenius norms)
    cosine_p = <u_p, g_p> / (||u_p|| ||g_p||)

MAML's ``u = alpha g`` has ``ratio = alpha`` and ``cosine = 1``; at initialisation Meta-SGD,
Meta-Curvature and KLin equal it, KFC computes ``alpha relu(g)`` (``ratio = alpha
||relu(g)|| / ||g||``, about ``alpha / sqrt(2)``), and the paper's CFC a random low-rank map
whose ratio is orders of magnitude below ``alpha`` (Glorot factors, A.2.3; see
:mod:`~maml_probe.rules.cholesky`).
"""
from __future__ import annotations

from typing import Any

import pandas as pd
import torch
from torch import nn

from ..losses import task_loss
from ..models import layer_of

COLUMNS = ("task", "parameter", "layer", "shape", "numel", "grad_norm", "update_norm", "ratio",
           "cosine")


def update_gradient_ratio(model: nn.Module, rule: nn.Module, batch: Any) -> pd.DataFrame:
    """``||U(g)|| / ||g||`` and ``cos(U(g), g)`` of ``rule`` for every task and model parameter.

    The gradient is that of each task's support loss at ``model``'s current parameters, and the
    update that of ``rule`` with its current parameters (the first inner step of Algorithm 1,
    where ``xi`` has not yet moved). Nothing is stepped.

    Args:
        model: The model, with the parameters the gradient is taken at.
        rule: An update rule for ``model`` (:func:`~maml_probe.rules.make_rule`).
        batch: Tasks with ``support_x`` ``[T, N, ...]`` and ``support_y`` ``[T, N]`` (a
            :class:`~maml_probe.tasks.base.TaskBatch`).

    Returns:
        One row per task and parameter: ``task``, ``parameter`` (its name in the model),
        ``layer`` (the paper's layer name, e.g. ``C1`` or ``FC``), ``shape``, ``numel``,
        ``grad_norm``, ``update_norm``, ``ratio`` and ``cosine`` (NaN where the gradient or
        the update is zero).
    """
    names = [k for k, p in model.named_parameters() if p.requires_grad]
    params = [p for k, p in model.named_parameters() if p.requires_grad]
    rows = []
    for t in range(len(batch.support_x)):
        loss = task_loss(model(batch.support_x[t]), batch.support_y[t])
        grads = dict(zip(names, torch.autograd.grad(loss, params)))
        with torch.no_grad():
            updates = rule(grads)
        for name in names:
            g, u = grads[name].detach().double(), updates[name].detach().double()
            gn, un = float(torch.linalg.vector_norm(g)), float(torch.linalg.vector_norm(u))
            cos = float((u * g).sum()) / (un * gn) if un > 0 and gn > 0 else float("nan")
            rows.append({"task": t, "parameter": name, "layer": layer_of(model, name),
                         "shape": "x".join(map(str, g.shape)) or "scalar", "numel": g.numel(),
                         "grad_norm": gn, "update_norm": un,
                         "ratio": un / gn if gn > 0 else float("nan"), "cosine": cos})
    return pd.DataFrame(rows, columns=list(COLUMNS))


__all__ = ["COLUMNS", "update_gradient_ratio"]
