"""Task-batched meta-gradients: Algorithm 1 for all tasks of a meta-batch in one stacked pass.

Same mathematics as :func:`maml_probe.maml.meta_backward` (the reference per-task loop), run by
the same inner loop (:func:`maml_probe.inner.adapt`) on tensors that carry a leading task
dimension:

* ``theta`` is stacked by ``expand`` (no copy; :func:`stack_tasks`); task ``k``'s inner gradient
  is slice ``k`` of ``grad(sum_k L_k, theta_stacked)`` because task ``k``'s loss depends on slice
  ``k`` only. One ``autograd.grad`` call per inner step serves all tasks (the loop makes ``T``).
* the model runs through the task-stacked forward it provides
  (:func:`maml_probe.models.stacked_forward`: grouped convolutions, batched matmuls), and the
  loss is :func:`~maml_probe.losses.task_loss` with ``reduction="per_task"``;
* the update rule (:func:`apply_rule_stacked`): plain SGD is elementwise and acts on the stack
  directly; any other rule runs under ``torch.func.vmap`` over tasks, with ``xi`` shared
  (``adapts=False``) or stacked per task (``adapts=True``: xi takes its own inner step per task,
  Algorithm 1);
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
from functools import partial
from typing import NamedTuple

import torch
from torch import Tensor, nn

from .. import inner
from ..losses import accuracy, task_loss
from ..models.stacked import stacked_forward
from ..rules.base import SGD, UpdateRule
from ..tasks.base import TaskBatch

LossFn = Callable[[Tensor, Tensor], Tensor]
_per_task_loss = partial(task_loss, reduction="per_task")


def unsupported_reason(model: nn.Module, rule: UpdateRule, loss_fn: LossFn) -> str | None:
    """Why the batched engine cannot run this combination.

    Args:
        model: the model (it must provide a task-stacked forward and hold no buffers).
        rule: the update rule (an :class:`~maml_probe.rules.base.UpdateRule`).
        loss_fn: the task loss (only :func:`~maml_probe.losses.task_loss`).

    Returns:
        The reason, or ``None`` if the batched engine can run it.
    """
    if stacked_forward(model) is None:
        return f"no task-stacked forward for {type(model).__name__}"
    if any(True for _ in model.buffers()):
        return "model has buffers"
    if loss_fn is not task_loss:
        return "custom loss_fn"
    if not isinstance(rule, UpdateRule):
        return "rule is not an UpdateRule"
    return None


def stack_tasks(tensors: Mapping[str, Tensor], tasks: int) -> dict[str, Tensor]:
    """Every tensor repeated over a new leading task dimension: ``[tasks, *shape]`` views.

    Args:
        tensors: tensors by name.
        tasks: the size of the task dimension.

    Returns:
        ``expand`` views (no copy; their gradient is the sum over tasks).
    """
    return {k: v.unsqueeze(0).expand(tasks, *v.shape) for k, v in tensors.items()}


def maps_rule_over_tasks(rule: UpdateRule) -> bool:
    """Whether :func:`apply_rule_stacked` runs ``rule`` under ``torch.func.vmap`` over the tasks
    (every rule but plain SGD, which acts on the stack directly)."""
    return type(rule) is not SGD


def apply_rule_stacked(rule: UpdateRule, xi: Mapping[str, Tensor],
                       grads: dict[str, Tensor]) -> dict[str, Tensor]:
    """Per-task updates ``U_{xi_k}(g_k)`` for task-stacked gradients ``g`` (``[T, *shape]``).

    :func:`maml_probe.inner.apply_rule` mapped over tasks with ``torch.func.vmap`` (plain SGD,
    being elementwise, acts on the stack directly).

    Args:
        rule: the update rule.
        xi: its parameters: stacked ``[T, *shape]`` when ``rule.adapts`` (each task has its own
            adapted ``xi``), else shared by all tasks.
        grads: stacked gradients by model parameter name.

    Returns:
        Stacked updates, by the same names.
    """
    if not maps_rule_over_tasks(rule):
        return rule(grads)
    if not xi:
        return torch.func.vmap(rule)(grads)
    return torch.func.vmap(partial(inner.apply_rule, rule),
                           in_dims=(0 if rule.adapts else None, 0))(dict(xi), grads)


def adapt_stacked(forward: inner.Forward, rule: UpdateRule, params: Mapping[str, Tensor],
                  x: Tensor, y: Tensor, *, steps: int, adapt_mask: Collection[str] | None = None,
                  first_order: bool = False) -> dict[str, Tensor]:
    """``theta_T`` of every task of a stack: :func:`maml_probe.inner.adapt` on stacked tensors.

    Args:
        forward: the model's task-stacked forward.
        rule: the update rule (its own parameters are ``xi_0``).
        params: ``theta_0`` by name (unstacked; every task starts from it).
        x: support inputs ``[T, N, *input_shape]``.
        y: support labels ``[T, N]``.
        steps: inner steps.
        adapt_mask: names of the parameters that adapt (``None``: all).
        first_order: treat inner gradients as constants (FOMAML).

    Returns:
        The adapted parameters, stacked ``[T, *shape]``, differentiable w.r.t. ``params`` and
        the rule's parameters.
    """
    T = x.shape[0]
    xi = dict(rule.named_parameters())
    a = inner.adapt(forward, rule, stack_tasks(params, T), x, y, steps=steps,
                    rule_params=stack_tasks(xi, T) if rule.adapts else xi,
                    apply_rule=apply_rule_stacked, adapt_mask=adapt_mask,
                    first_order=first_order, loss_fn=_per_task_loss)
    return a.params


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
    """The tensors a meta-step differentiates: the model's, then the rule's trainable parameters.

    Args:
        model: the model (``theta_0``).
        rule: the update rule (``xi_0``).

    Returns:
        The parameters with ``requires_grad``, model first.
    """
    return [p for p in (*model.parameters(), *rule.parameters()) if p.requires_grad]


def split_query_gradients(forward: inner.Forward, P: Mapping[str, Tensor], qx: Tensor,
                          qy: Tensor, leaves: list[Tensor], *, query_chunk: int,
                          scale: float) -> tuple[tuple[Tensor | None, ...], Tensor, Tensor]:
    """``d/d leaves`` of ``scale * sum_k L_k^query(P_k)``, the query pass ``query_chunk`` tasks at a time.

    Each group of tasks is differentiated with respect to its (detached) slice of ``P`` only; its
    ``dL/dP`` is copied into one buffer per parameter, allocated before the first query pass, and
    one backward pass then carries it through ``P``'s graph (the stacked inner loop). Nothing
    that outlives a query pass is allocated during it, so each pass reuses the heap blocks its
    predecessor freed (measured, Omniglot CNN 5-way 1-shot: per-task gradient lists growing
    between the passes fragmented glibc's heap, +8-9 MiB peak RSS at 2 and 4 stacked tasks).
    The backward is that of the scalar ``sum_k <P_k, dL/dP_k>`` (a ``dot`` hands on
    ``1.0 * dL/dP`` exactly, so the gradient is bit for bit the one ``grad_outputs`` gives):
    ``autograd.grad`` with ``grad_outputs`` imports sympy (via
    ``torch.fx.experimental.symbolic_shapes``), which cost 25-30 MiB of peak RSS on the first
    meta-step (~15 MiB of heap and the modules' code, kept for good).

    Args:
        forward: the task-stacked forward.
        P: the stacked adapted parameters ``[T, *shape]`` (their graph leads to ``leaves``).
        qx: query inputs ``[T, N, *input_shape]``.
        qy: query labels ``[T, N]``.
        leaves: the tensors to differentiate (:func:`meta_leaves`).
        query_chunk: tasks per query pass.
        scale: the factor of the summed query loss (``1 / B``).

    Returns:
        (gradients w.r.t. ``leaves``, sum of the query losses, sum of the query accuracies).
    """
    diff = [k for k, v in P.items() if v.requires_grad]
    d_P = {k: torch.empty_like(P[k], memory_format=torch.contiguous_format) for k in diff}
    loss_sum = next(iter(P.values())).new_zeros(())
    acc_sum = qx.new_zeros((), dtype=torch.float32)
    for j in range(0, qx.shape[0], query_chunk):
        part = slice(j, j + query_chunk)
        Pj = {k: v[part].detach().requires_grad_(k in d_P) for k, v in P.items()}
        logits = forward(Pj, qx[part])
        losses = _per_task_loss(logits, qy[part])
        grads = torch.autograd.grad(losses.sum() * scale, [Pj[k] for k in diff],
                                    allow_unused=True, materialize_grads=True)
        for k, g in zip(diff, grads):
            d_P[k][part].copy_(g)
        loss_sum.add_(losses.detach().sum())
        acc_sum.add_(accuracy(logits, qy[part], reduction="per_task").sum())
        del logits, losses, grads
    if not diff:
        return (None,) * len(leaves), loss_sum, acc_sum
    inner_product = torch.stack([torch.dot(P[k].flatten(), d_P[k].flatten()) for k in diff]).sum()
    return torch.autograd.grad(inner_product, leaves, allow_unused=True), loss_sum, acc_sum


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

    Args:
        model: a model with a task-stacked forward (:func:`unsupported_reason`).
        rule: the update rule.
        batch: the meta-batch of ``B`` tasks.
        steps: inner steps per task.
        adapt_mask: names of the parameters that adapt (``None``: all).
        first_order: treat inner gradients as constants (FOMAML).
        chunk: tasks per stacked inner loop (``None`` or ``<= 0``: all).
        query_chunk: tasks per query pass (``None`` or ``<= 0``: the whole chunk).

    Returns:
        :class:`MetaGradients`: ``d/d leaves (1/B) sum_T L_T^query``, and the sums of the query
        losses and accuracies.
    """
    forward = stacked_forward(model)
    if forward is None:
        raise ValueError(f"the batched engine does not support this setting: "
                         f"{unsupported_reason(model, rule, task_loss)}")
    params = dict(model.named_parameters())
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
        P = adapt_stacked(forward, rule, params, batch.support_x[sl], batch.support_y[sl],
                          steps=steps, adapt_mask=adapt_mask, first_order=first_order)
        qx, qy = batch.query_x[sl], batch.query_y[sl]
        qc = c if not query_chunk or query_chunk <= 0 else min(int(query_chunk), c)
        if qc >= c:
            logits = forward(P, qx)
            losses = _per_task_loss(logits, qy)
            add(torch.autograd.grad(losses.sum() / n, leaves, allow_unused=True))
            part_loss = losses.detach().sum()
            part_acc = accuracy(logits, qy, reduction="per_task").sum()
        else:
            grads, part_loss, part_acc = split_query_gradients(forward, P, qx, qy, leaves,
                                                               query_chunk=qc, scale=1 / n)
            add(grads)
        loss_sum = part_loss if loss_sum is None else loss_sum + part_loss
        acc_sum = part_acc if acc_sum is None else acc_sum + part_acc
    return MetaGradients(tuple(total), loss_sum, acc_sum)


def accumulate_into_grad(leaves: list[Tensor], grads: tuple[Tensor | None, ...], *,
                         copy: bool = False) -> None:
    """``leaf.grad += g`` for every non-``None`` ``g`` (``leaf.grad = g`` where it is ``None``).

    Args:
        leaves: the parameters (:func:`meta_leaves`).
        grads: their gradients, ``None`` where there is none.
        copy: never keep a reference to ``g`` (needed when ``g`` lives in a buffer that the next
            meta-step overwrites, as the outputs of a replayed CUDA graph do).
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

    Accumulates :func:`stacked_meta_gradients` into ``.grad``.

    Args:
        model: the model (with a task-stacked forward).
        rule: the update rule.
        batch: the meta-batch.
        steps: inner steps per task.
        adapt_mask: names of the parameters that adapt (``None``: all).
        first_order: treat inner gradients as constants (FOMAML).
        loss_fn: must be :func:`~maml_probe.losses.task_loss` (else ``ValueError``).
        chunk: tasks per stacked inner loop (``None``: all).
        query_chunk: tasks per query pass (``None``: the whole chunk).

    Returns:
        (mean query loss, mean query accuracy).
    """
    reason = unsupported_reason(model, rule, loss_fn)
    if reason is not None:
        raise ValueError(f"the batched engine does not support this setting: {reason}")
    out = stacked_meta_gradients(model, rule, batch, steps=steps, adapt_mask=adapt_mask,
                                 first_order=first_order, chunk=chunk, query_chunk=query_chunk)
    accumulate_into_grad(meta_leaves(model, rule), out.grads)
    n = len(batch)
    return float(out.loss_sum) / n, float(out.acc_sum) / n
