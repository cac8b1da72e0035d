"""The functional MAML engine: inner-loop adaptation and meta-gradients over parameter dicts.

Inner loop (Finn et al., 2017, generalised by Algorithm 1 and Eq. 3-4 of the paper). For a task
``T`` with support set ``(x, y)``, starting from the meta-learned ``theta_0`` and ``xi_0``::

    g_t         = grad_theta L_T(theta_t)                    (masked: frozen entries keep theta_0)
    xi_{t+1}    = xi_t - alpha * grad_xi L_T(theta_t)        (only rules with ``adapts``; 0 at t = 0)
    theta_{t+1} = theta_t - U_{xi_{t+1}}(g_t)

The meta-loss is the query loss ``L_T(theta_T)`` averaged over the meta-batch; its gradient with
respect to ``(theta_0, xi_0)`` flows through every inner step (second order) unless
``first_order=True``, where each ``g_t`` and ``grad_xi`` is treated as a constant (FOMAML).

Everything is a pure function of dicts of tensors: the model is run with
``torch.func.functional_call(model, params, x)`` and the rule with
``functional_call(rule, xi, grads)``, so probes can hand in modified parameters without
touching the module. The steps themselves are :func:`maml_probe.inner.adapt`, the one inner
loop that the stacked engine runs too.

:func:`meta_backward` (what training calls) dispatches to a fast path per device
(:mod:`maml_probe.fast`: the tasks of a meta-batch stacked through grouped convolutions and
batched matmuls on CPU, and that stacked step recorded once and replayed as a CUDA graph on
GPUs); ``impl="loop"`` or ``MAML_PROBE_IMPL=loop`` forces the reference loop
below, which the fast paths are tested against.
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

from . import fast as _fast
from . import inner
from .inner import Forward, LossFn, Params, check_steps
from .losses import accuracy, task_loss
from .rules.base import UpdateRule
from .tasks.base import TaskBatch


@dataclass
class Adapted:
    """Result of :func:`adapt`: task-specific parameters and rule state, and the support losses."""

    params: Params
    rule_params: Params
    support_losses: list[float]


def functional_forward(model: nn.Module) -> Forward:
    """``(params, x) -> functional_call(model, params, (x,))``: ``model`` run on given parameters.

    Args:
        model: the module whose ``forward`` is run.

    Returns:
        The :data:`~maml_probe.inner.Forward` of one task.
    """
    def forward(params: Mapping[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(model, params, (x,))

    return forward


def adapt(model: nn.Module, params: Mapping[str, Tensor], x: Tensor, y: Tensor, *,
          steps: int, rule: UpdateRule, rule_params: Mapping[str, Tensor] | None = None,
          adapt_mask: Collection[str] | None = None, first_order: bool = False,
          create_graph: bool = True, loss_fn: LossFn = task_loss) -> Adapted:
    """Adapt ``params`` to one task's support set ``(x, y)`` with ``steps`` steps of ``rule``.

    ``theta_{t+1} = theta_t - U_{xi_{t+1}}(grad_theta L_T(theta_t))``, with ``xi`` stepping too
    for rules that adapt it (Algorithm 1; :func:`maml_probe.inner.adapt` on the model's
    functional forward).

    Args:
        model: the model; only its ``forward`` is used, never its own parameters.
        params: ``theta_0`` by parameter name.
        x: support inputs ``[N, *input_shape]``.
        y: support labels ``[N]``.
        steps: number of inner steps.
        rule: the update rule ``U_xi``.
        rule_params: ``xi_0`` by name (default: the rule's own parameters).
        adapt_mask: names of the parameters that adapt (``None``: all).
        first_order: treat inner gradients as constants (FOMAML).
        create_graph: ``False`` for evaluation: the result is detached from ``params`` and
            ``rule_params`` and no meta-gradient can flow, which keeps memory flat in ``steps``.
        loss_fn: the task loss ``(logits, labels) -> 0-dim loss``.

    Returns:
        :class:`Adapted`: ``theta_T``, ``xi_T`` and the support loss before each step.
    """
    a = inner.adapt(functional_forward(model), rule, params, x, y, steps=steps,
                    rule_params=rule_params, adapt_mask=adapt_mask, first_order=first_order,
                    create_graph=create_graph, loss_fn=loss_fn)
    return Adapted(a.params, a.rule_params, [float(v) for v in a.support_losses])


def task_losses(model: nn.Module, rule: UpdateRule, batch: TaskBatch, *, steps: int,
                params: Mapping[str, Tensor] | None = None,
                rule_params: Mapping[str, Tensor] | None = None,
                adapt_mask: Collection[str] | None = None, first_order: bool = False,
                loss_fn: LossFn = task_loss) -> tuple[list[Tensor], Tensor]:
    """Query losses after adaptation, one per task (with graphs, for meta-gradients), and accuracies.

    Tasks are processed one after another; for memory-lean meta-gradients use
    :func:`meta_backward`, which back-propagates each task as soon as its loss is known.

    Args:
        model: the model.
        rule: the update rule ``U_xi``.
        batch: the meta-batch.
        steps: inner steps per task.
        params: ``theta_0`` (default: the model's parameters).
        rule_params: ``xi_0`` (default: the rule's parameters).
        adapt_mask: names of the parameters that adapt (``None``: all).
        first_order: treat inner gradients as constants (FOMAML).
        loss_fn: the task loss.

    Returns:
        The query loss ``L_T(theta_T)`` of every task (a list of 0-dim tensors with graphs back
        to ``params`` and ``rule_params``) and their query accuracies (``[T]``).
    """
    params = dict(model.named_parameters()) if params is None else params
    losses, accs = [], []
    for i in range(len(batch)):
        a = adapt(model, params, batch.support_x[i], batch.support_y[i], steps=steps, rule=rule,
                  rule_params=rule_params, adapt_mask=adapt_mask, first_order=first_order,
                  loss_fn=loss_fn)
        logits = functional_call(model, a.params, (batch.query_x[i],))
        losses.append(loss_fn(logits, batch.query_y[i]))
        accs.append(accuracy(logits, batch.query_y[i]))
    return losses, torch.stack(accs)


def meta_backward(model: nn.Module, rule: UpdateRule, batch: TaskBatch, *, steps: int,
                  adapt_mask: Collection[str] | None = None, first_order: bool = False,
                  loss_fn: LossFn = task_loss, impl: str | None = None,
                  precision: str | None = None) -> tuple[float, float]:
    """Accumulate the meta-gradient of the mean query loss into ``.grad`` of model and rule.

    ``d/d(theta_0, xi_0) (1/B) sum_T L_T^query(theta_T)`` (Algorithm 1, lines 11-13, before the
    optimiser step), added to ``.grad`` as ``.backward()`` would.

    ``impl`` picks the engine (:mod:`maml_probe.fast`): ``"loop"`` is the reference below (one
    task at a time; each task's graph is freed right after its backward pass, so peak memory is
    that of one task); ``"batched"`` runs the tasks through one stacked pass (same gradients);
    ``"graph"`` replays that stacked pass as a recorded CUDA graph; ``"auto"`` (default, or the
    ``MAML_PROBE_IMPL`` environment variable) picks per device and uses the loop for whatever the
    batched engine does not support.

    Args:
        model: the model; its parameters are ``theta_0``.
        rule: the update rule; its parameters are ``xi_0``.
        batch: the meta-batch of ``B`` tasks.
        steps: inner steps per task.
        adapt_mask: names of the parameters that adapt (``None``: all).
        first_order: treat inner gradients as constants (FOMAML).
        loss_fn: the task loss (a custom one runs on the reference loop).
        impl: ``"auto"``, ``"loop"``, ``"batched"`` or ``"graph"`` (default:
            ``MAML_PROBE_IMPL`` or ``"auto"``).
        precision: float32 arithmetic on CUDA, ``"fp32"`` or ``"tf32"`` (default:
            ``MAML_PROBE_CUDA_PRECISION`` or ``"fp32"``; :mod:`maml_probe.fast.precision`).

    Returns:
        (mean query loss, mean query accuracy) over the meta-batch.
    """
    check_steps(steps)
    device = _device_of(model, batch)
    choice = _fast.choose_impl(model, rule, device, loss_fn=loss_fn, impl=impl,
                               support_size=batch.support_x.shape[1], steps=steps,
                               tasks=len(batch))
    mode = _fast.resolve_precision(precision)
    if choice.impl == "graph":
        return _fast.graphed_meta_backward(model, rule, batch, steps=steps, adapt_mask=adapt_mask,
                                           first_order=first_order, chunk=choice.chunk,
                                           query_chunk=choice.query_chunk, precision=mode)
    with _fast.cuda_precision(mode) if device.type == "cuda" else nullcontext():
        if choice.impl == "batched":
            return _fast.batched_meta_backward(model, rule, batch, steps=steps,
                                               adapt_mask=adapt_mask, first_order=first_order,
                                               loss_fn=loss_fn, chunk=choice.chunk,
                                               query_chunk=choice.query_chunk)
        return _loop_meta_backward(model, rule, batch, steps=steps, adapt_mask=adapt_mask,
                                   first_order=first_order, loss_fn=loss_fn)


def _device_of(model: nn.Module, batch: TaskBatch) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else batch.support_x.device


def _loop_meta_backward(model: nn.Module, rule: UpdateRule, batch: TaskBatch, *, steps: int,
                        adapt_mask: Collection[str] | None = None, first_order: bool = False,
                        loss_fn: LossFn = task_loss) -> tuple[float, float]:
    """The reference engine of :func:`meta_backward`: tasks one after another."""
    total_loss, total_acc, n = 0.0, 0.0, len(batch)
    params = dict(model.named_parameters())
    for i in range(n):
        a = adapt(model, params, batch.support_x[i], batch.support_y[i], steps=steps, rule=rule,
                  adapt_mask=adapt_mask, first_order=first_order, loss_fn=loss_fn)
        logits = functional_call(model, a.params, (batch.query_x[i],))
        loss = loss_fn(logits, batch.query_y[i])
        (loss / n).backward()
        total_loss += float(loss.detach())
        total_acc += float(accuracy(logits, batch.query_y[i]))
    return total_loss / n, total_acc / n


@torch.no_grad()
def _predict(model: nn.Module, params: Mapping[str, Tensor], x: Tensor) -> Tensor:
    return functional_call(model, dict(params), (x,))


def evaluate_batch(model: nn.Module, rule: UpdateRule, batch: TaskBatch, *, steps: int,
                   params: Mapping[str, Tensor] | None = None,
                   rule_params: Mapping[str, Tensor] | None = None,
                   adapt_mask: Collection[str] | None = None,
                   post_transform: Callable[[Params], Params] | None = None,
                   loss_fn: LossFn = task_loss) -> tuple[Tensor, Tensor]:
    """Pre- and post-adaptation query accuracy of each task, as two ``[T]`` tensors.

    Adaptation runs graph-free (``create_graph=False``). On CUDA, float32 runs at the
    precision of :func:`meta_backward` (``MAML_PROBE_CUDA_PRECISION``).

    Args:
        model: the model.
        rule: the update rule.
        batch: the tasks to score.
        steps: inner steps per task.
        params: ``theta_0`` (default: the model's parameters).
        rule_params: ``xi_0`` (default: the rule's parameters).
        adapt_mask: names of the parameters that adapt (``None``: all).
        post_transform: edits the adapted parameters before the query pass (the probes'
            post-adaptation scaling, noise and pruning).
        loss_fn: the task loss of the inner loop.

    Returns:
        (accuracy before adaptation, accuracy after adaptation), each ``[T]``.
    """
    on_cuda = _device_of(model, batch).type == "cuda"
    with _fast.cuda_precision() if on_cuda else nullcontext():
        return _evaluate_batch(model, rule, batch, steps=steps, params=params,
                               rule_params=rule_params, adapt_mask=adapt_mask,
                               post_transform=post_transform, loss_fn=loss_fn)


def _evaluate_batch(model: nn.Module, rule: UpdateRule, batch: TaskBatch, *, steps: int,
                    params: Mapping[str, Tensor] | None,
                    rule_params: Mapping[str, Tensor] | None,
                    adapt_mask: Collection[str] | None,
                    post_transform: Callable[[Params], Params] | None,
                    loss_fn: LossFn) -> tuple[Tensor, Tensor]:
    params = {k: v.detach() for k, v in (params or dict(model.named_parameters())).items()}
    pre, post = [], []
    for i in range(len(batch)):
        xq, yq = batch.query_x[i], batch.query_y[i]
        pre.append(accuracy(_predict(model, params, xq), yq))
        with torch.enable_grad():
            a = adapt(model, params, batch.support_x[i], batch.support_y[i], steps=steps,
                      rule=rule, rule_params=rule_params, adapt_mask=adapt_mask,
                      create_graph=False, loss_fn=loss_fn)
        adapted = {k: v.detach() for k, v in a.params.items()}
        if post_transform is not None:
            adapted = post_transform(adapted)
        post.append(accuracy(_predict(model, adapted, xq), yq))
    return torch.stack(pre), torch.stack(post)
