"""Task-batched meta-gradients: Algorithm 1 for all tasks of a meta-batch in one stacked pass.

Same mathematics as :func:`maml_probe.maml.meta_backward` (the reference per-task loop), with
every tensor carrying a leading task dimension:

* ``theta`` is stacked by ``expand`` (no copy); task ``k``'s inner gradient is slice ``k`` of
  ``grad(sum_k L_k, theta_stacked)`` because task ``k``'s loss depends on slice ``k`` only. One
  ``autograd.grad`` call per inner step serves all tasks (the loop makes ``T``).
* the model runs through :func:`~maml_probe.fast.forward.stacked_forward` (grouped convolutions,
  batched matmuls);
* the update rule: plain SGD is elementwise and acts on the stack directly; any other rule runs
  under ``torch.func.vmap`` over tasks, with ``xi`` shared (``adapts=False``) or stacked per
  task (``adapts=True``: xi takes its own inner step per task, Algorithm 1);
* the meta-loss ``(1/B) sum_k L_k^query`` is back-propagated once per chunk of tasks.

``chunk`` bounds memory: tasks are processed ``chunk`` at a time (the graph of one chunk is
alive at once; the reference loop is ``chunk=1`` in memory terms). ``query_chunk`` runs the
query passes of a chunk a few tasks at a time, each differentiated with respect to the adapted
parameters only, and then back-propagates the accumulated ``dL/dtheta_T`` once through the
stacked inner loops (see :func:`batched_meta_backward`).
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from ..losses import accuracy, task_loss
from ..rules.base import SGD, UpdateRule
from ..tasks.base import TaskBatch
from .forward import StackedForward, stacked_forward

LossFn = Callable[[Tensor, Tensor], Tensor]


def unsupported_reason(model: nn.Module, rule: UpdateRule, loss_fn: LossFn) -> str | None:
    """Why the batched engine cannot run this combination (``None``: it can)."""
    if stacked_forward(model) is None:
        return f"no task-stacked forward for {type(model).__name__}"
    if any(True for _ in model.buffers()):
        return "model has buffers"
    if loss_fn is not task_loss:
        return "custom loss_fn"
    if not isinstance(rule, UpdateRule):
        return "rule is not an UpdateRule"
    return None


def per_task_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """:func:`~maml_probe.losses.task_loss` of every task: ``[T, N, K]`` logits -> ``[T]``."""
    if logits.shape[-1] == 1:
        return F.binary_cross_entropy_with_logits(
            logits.squeeze(-1), labels.to(logits.dtype), reduction="none").mean(1)
    T, N, K = logits.shape
    return F.cross_entropy(logits.reshape(T * N, K), labels.reshape(T * N),
                           reduction="none").view(T, N).mean(1)


def per_task_accuracy(logits: Tensor, labels: Tensor) -> Tensor:
    """Accuracy of each task of a ``[T, N, K]`` stack of logits."""
    return accuracy(logits, labels, dim=1)


def _apply_rule(rule: UpdateRule, xi: Mapping[str, Tensor], xi_stacked: bool,
                grads: dict[str, Tensor]) -> dict[str, Tensor]:
    """Per-task updates ``U_{xi_k}(g_k)`` for stacked gradients ``g`` (``[T, *shape]``)."""
    if type(rule) is SGD:
        return rule(grads)
    if not xi:
        return torch.func.vmap(rule)(grads)

    def one(xi_k: dict[str, Tensor], g_k: dict[str, Tensor]) -> dict[str, Tensor]:
        return functional_call(rule, xi_k, (g_k,))

    return torch.func.vmap(one, in_dims=(0 if xi_stacked else None, 0))(dict(xi), grads)


def _adapt_stacked(forward: StackedForward, params: Mapping[str, Tensor], x: Tensor, y: Tensor, *,
                   steps: int, rule: UpdateRule, rule_params: Mapping[str, Tensor],
                   names: list[str], first_order: bool) -> dict[str, Tensor]:
    T = x.shape[0]
    P = {k: v.unsqueeze(0).expand(T, *v.shape) for k, v in params.items()}
    xi_names = list(rule_params) if rule.adapts else []
    xi_stacked = bool(xi_names)
    XI = {k: (v.unsqueeze(0).expand(T, *v.shape) if xi_stacked else v)
          for k, v in rule_params.items()}
    higher = not first_order
    for t in range(steps):
        loss = per_task_loss(forward(P, x), y).sum()
        adapt_xi = xi_stacked and t > 0
        inputs = [P[k] for k in names] + ([XI[k] for k in xi_names] if adapt_xi else [])
        grads = torch.autograd.grad(loss, inputs, create_graph=higher,
                                    retain_graph=higher or adapt_xi,  # see maml.adapt
                                    allow_unused=True, materialize_grads=True)
        g_theta = dict(zip(names, grads[:len(names)]))
        if adapt_xi:
            XI = {**XI, **{k: XI[k] - rule.alpha * g for k, g in zip(xi_names, grads[len(names):])}}
        updates = _apply_rule(rule, XI, xi_stacked, g_theta)
        P = {**P, **{k: P[k] - updates[k] for k in names}}
    return P


def batched_meta_backward(model: nn.Module, rule: UpdateRule, batch: TaskBatch, *, steps: int,
                          adapt_mask: Collection[str] | None = None, first_order: bool = False,
                          loss_fn: LossFn = task_loss, chunk: int | None = None,
                          query_chunk: int | None = None) -> tuple[float, float]:
    """:func:`maml_probe.maml.meta_backward` with the tasks stacked ``chunk`` at a time.

    ``chunk`` (default: all tasks) tasks are adapted together in one stacked inner loop.
    ``query_chunk`` (default: ``chunk``) splits their query pass: with ``query_chunk < chunk``
    the query loss of ``query_chunk`` tasks at a time is differentiated with respect to the
    (detached) adapted parameters ``theta_T`` only, and one backward pass then carries the
    accumulated ``dL/dtheta_T`` through the stacked inner loop. Same gradient (chain rule); the
    query pass, usually the largest activations, is alive for ``query_chunk`` tasks only, and with
    ``query_chunk=1`` its convolutions are ordinary (ungrouped) ones.
    """
    reason = unsupported_reason(model, rule, loss_fn)
    if reason is not None:
        raise ValueError(f"the batched engine does not support this setting: {reason}")
    forward = stacked_forward(model)
    params = dict(model.named_parameters())
    rule_params = dict(rule.named_parameters())
    names = [k for k in params if adapt_mask is None or k in adapt_mask]
    n = len(batch)
    chunk = n if not chunk or chunk <= 0 else min(int(chunk), n)
    total_loss = total_acc = 0.0
    for s in range(0, n, chunk):
        sl = slice(s, min(s + chunk, n))
        c = sl.stop - sl.start
        P = _adapt_stacked(forward, params, batch.support_x[sl], batch.support_y[sl],
                           steps=steps, rule=rule, rule_params=rule_params, names=names,
                           first_order=first_order)
        qx, qy = batch.query_x[sl], batch.query_y[sl]
        qc = c if not query_chunk or query_chunk <= 0 else min(int(query_chunk), c)
        if qc >= c:
            logits = forward(P, qx)
            losses = per_task_loss(logits, qy)
            (losses.sum() / n).backward()
            total_loss += float(losses.detach().sum())
            total_acc += float(per_task_accuracy(logits, qy).sum())
            continue
        diff = [k for k, v in P.items() if v.requires_grad]
        grads: dict[str, list[Tensor]] = {k: [] for k in diff}
        for j in range(0, c, qc):
            Pj = {k: (v[j:j + qc].detach().requires_grad_(k in grads)) for k, v in P.items()}
            logits = forward(Pj, qx[j:j + qc])
            losses = per_task_loss(logits, qy[j:j + qc])
            for k, g in zip(diff, torch.autograd.grad(losses.sum() / n, [Pj[k] for k in diff],
                                                       allow_unused=True, materialize_grads=True)):
                grads[k].append(g)
            total_loss += float(losses.detach().sum())
            total_acc += float(per_task_accuracy(logits, qy[j:j + qc]).sum())
        torch.autograd.backward([P[k] for k in diff], [torch.cat(grads[k]) for k in diff])
    return total_loss / n, total_acc / n
