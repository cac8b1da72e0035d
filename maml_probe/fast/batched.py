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
* the meta-loss ``(1/B) sum_k L_k^query`` is differentiated once per chunk of tasks, with
  respect to the model's and the rule's parameters (:func:`stacked_meta_gradients` returns the
  gradients as tensors and reads nothing back to the host, so a CUDA graph can record it).

``chunk`` bounds memory: tasks are processed ``chunk`` at a time (the graph of one chunk is
alive at once; the reference loop is ``chunk=1`` in memory terms). ``query_chunk`` runs the
query passes of a chunk a few tasks at a time, each differentiated with respect to the adapted
parameters only, and then back-propagates the accumulated ``dL/dtheta_T`` once through the
stacked inner loops (see :func:`stacked_meta_gradients`).
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import NamedTuple

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


class MetaGradients(NamedTuple):
    """One meta-step's result as device tensors (no host synchronisation needed to produce it).

    ``grads[i]`` is ``d/d leaves[i] (1/B) sum_T L_T^query`` (``None`` where the meta-loss does not
    depend on that leaf, as ``.backward()`` would leave its ``.grad``); ``loss_sum`` and
    ``acc_sum`` are sums over the meta-batch's tasks (0-dim tensors).
    """

    grads: tuple[Tensor | None, ...]
    loss_sum: Tensor
    acc_sum: Tensor


def meta_leaves(model: nn.Module, rule: UpdateRule) -> list[Tensor]:
    """The tensors a meta-step differentiates: the model's, then the rule's trainable parameters."""
    return [p for p in (*model.parameters(), *rule.parameters()) if p.requires_grad]


def stacked_meta_gradients(model: nn.Module, rule: UpdateRule, batch: TaskBatch, *, steps: int,
                           adapt_mask: Collection[str] | None = None, first_order: bool = False,
                           chunk: int | None = None,
                           query_chunk: int | None = None) -> MetaGradients:
    """The meta-gradient of the mean query loss w.r.t. :func:`meta_leaves`, tasks stacked.

    ``chunk`` (default: all tasks) tasks are adapted together in one stacked inner loop.
    ``query_chunk`` (default: ``chunk``) splits their query pass: with ``query_chunk < chunk``
    the query loss of ``query_chunk`` tasks at a time is differentiated with respect to the
    (detached) adapted parameters ``theta_T`` only, and one backward pass then carries the
    accumulated ``dL/dtheta_T`` through the stacked inner loop. Same gradient (chain rule); the
    query pass, usually the largest activations, is alive for ``query_chunk`` tasks only, and with
    ``query_chunk=1`` its convolutions are ordinary (ungrouped) ones.

    Nothing here reads a value back to the host, so the whole function can be recorded as one
    CUDA graph (:mod:`maml_probe.fast.graphs`).
    """
    forward = stacked_forward(model)
    if forward is None:
        raise ValueError(f"the batched engine does not support this setting: "
                         f"{unsupported_reason(model, rule, task_loss)}")
    params = dict(model.named_parameters())
    rule_params = dict(rule.named_parameters())
    names = [k for k in params if adapt_mask is None or k in adapt_mask]
    leaves = meta_leaves(model, rule)
    n = len(batch)
    chunk = n if not chunk or chunk <= 0 else min(int(chunk), n)
    total: list[Tensor | None] = [None] * len(leaves)
    loss_sum = acc_sum = None

    def add(grads: tuple[Tensor | None, ...]) -> None:
        for i, g in enumerate(grads):
            if g is not None:
                total[i] = g if total[i] is None else total[i] + g

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
            add(torch.autograd.grad(losses.sum() / n, leaves, allow_unused=True))
            part_loss, part_acc = losses.detach().sum(), per_task_accuracy(logits, qy).sum()
        else:
            diff = [k for k, v in P.items() if v.requires_grad]
            d_theta: dict[str, list[Tensor]] = {k: [] for k in diff}
            part_loss = part_acc = 0
            for j in range(0, c, qc):
                Pj = {k: (v[j:j + qc].detach().requires_grad_(k in d_theta)) for k, v in P.items()}
                logits = forward(Pj, qx[j:j + qc])
                losses = per_task_loss(logits, qy[j:j + qc])
                for k, g in zip(diff, torch.autograd.grad(losses.sum() / n, [Pj[k] for k in diff],
                                                           allow_unused=True,
                                                           materialize_grads=True)):
                    d_theta[k].append(g)
                part_loss = part_loss + losses.detach().sum()
                part_acc = part_acc + per_task_accuracy(logits, qy[j:j + qc]).sum()
            add(torch.autograd.grad([P[k] for k in diff], leaves,
                                    [torch.cat(d_theta[k]) for k in diff], allow_unused=True))
        loss_sum = part_loss if loss_sum is None else loss_sum + part_loss
        acc_sum = part_acc if acc_sum is None else acc_sum + part_acc
    return MetaGradients(tuple(total), loss_sum, acc_sum)


def accumulate_into_grad(leaves: list[Tensor], grads: tuple[Tensor | None, ...], *,
                         copy: bool = False) -> None:
    """``leaf.grad += g`` for every non-``None`` ``g`` (``leaf.grad = g`` where it is ``None``).

    ``copy=True`` never keeps a reference to ``g`` (needed when ``g`` lives in a buffer that the
    next meta-step overwrites, as the outputs of a replayed CUDA graph do).
    """
    with torch.no_grad():
        for p, g in zip(leaves, grads):
            if g is None:
                continue
            if p.grad is None:
                p.grad = g.clone(memory_format=torch.contiguous_format) if copy or \
                    not g.is_contiguous() else g
            else:
                p.grad.add_(g)


def batched_meta_backward(model: nn.Module, rule: UpdateRule, batch: TaskBatch, *, steps: int,
                          adapt_mask: Collection[str] | None = None, first_order: bool = False,
                          loss_fn: LossFn = task_loss, chunk: int | None = None,
                          query_chunk: int | None = None) -> tuple[float, float]:
    """:func:`maml_probe.maml.meta_backward` with the tasks stacked ``chunk`` at a time.

    Accumulates :func:`stacked_meta_gradients` into ``.grad`` and returns (mean query loss,
    mean query accuracy).
    """
    reason = unsupported_reason(model, rule, loss_fn)
    if reason is not None:
        raise ValueError(f"the batched engine does not support this setting: {reason}")
    out = stacked_meta_gradients(model, rule, batch, steps=steps, adapt_mask=adapt_mask,
                                 first_order=first_order, chunk=chunk, query_chunk=query_chunk)
    accumulate_into_grad(meta_leaves(model, rule), out.grads)
    n = len(batch)
    return float(out.loss_sum) / n, float(out.acc_sum) / n
