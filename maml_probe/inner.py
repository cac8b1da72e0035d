"""The inner loop of Algorithm 1, written once: adaptation of theta (and xi) to a support set.

For a task ``T`` with support set ``(x, y)``, starting from the meta-learned ``theta_0`` and
``xi_0`` (paper Section 4.1, Eq. 3-4, and Algorithm 1; Finn et al., 2017 for plain SGD)::

    g_t         = grad_theta L_T(theta_t)                    (masked: frozen entries keep theta_0)
    xi_{t+1}    = xi_t - alpha * grad_xi L_T(theta_t)        (only rules with ``adapts``; 0 at t = 0)
    theta_{t+1} = theta_t - U_{xi_{t+1}}(g_t)

:func:`adapt` runs these steps for any *forward function* ``(params, x) -> logits`` and any
*rule application* ``(rule, xi, grads) -> updates``, which is what lets one loop serve both engines
of :func:`maml_probe.maml.meta_backward`:

* the reference engine (:func:`maml_probe.maml.adapt`) passes the model's functional forward
  (``functional_call(model, params, (x,))``), one task's parameters and :func:`apply_rule`;
* the stacked engine (:mod:`maml_probe.fast.batched`) passes the model's task-stacked forward
  (:mod:`maml_probe.models.stacked`), parameters with a leading task dimension, the rule mapped
  over tasks (:func:`~maml_probe.fast.batched.apply_rule_stacked`) and a per-task loss. The
  gradient of the *sum* of the task losses with respect to the stacked parameters is every
  task's own gradient, since task ``k``'s loss depends on slice ``k`` only.
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import NamedTuple

import torch
from torch import Tensor
from torch.func import functional_call

from .losses import task_loss
from .rules.base import UpdateRule

Params = dict[str, Tensor]
#: ``(params, x) -> logits``: a model run on given parameters (one task's, or a stack of tasks').
Forward = Callable[[Mapping[str, Tensor], Tensor], Tensor]
#: ``(rule, xi, grads) -> updates``: the update ``U_xi(g)`` for every entry of ``grads``.
ApplyRule = Callable[[UpdateRule, Mapping[str, Tensor], dict[str, Tensor]], dict[str, Tensor]]
#: ``(logits, labels) -> loss``: one loss, or one per task (their sum is differentiated).
LossFn = Callable[[Tensor, Tensor], Tensor]


class Adaptation(NamedTuple):
    """What :func:`adapt` returns.

    ``params`` and ``rule_params`` are ``theta_T`` and ``xi_T`` (frozen entries are the input
    tensors themselves); ``support_losses[t]`` is the support loss ``L_T(theta_t)`` before step
    ``t``, detached (per task for a per-task loss).
    """

    params: Params
    rule_params: Params
    support_losses: list[Tensor]


def check_steps(steps: int) -> None:
    """Raise a ``ValueError`` unless ``steps`` is a non-negative ``int``.

    Args:
        steps: the number of inner steps.
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")


def apply_rule(rule: UpdateRule, xi: Mapping[str, Tensor], grads: dict[str, Tensor]) -> dict[str, Tensor]:
    """The update ``U_xi(g)`` of one task: ``rule`` called on the parameters ``xi``.

    Args:
        rule: the update rule (its own parameters are replaced by ``xi``).
        xi: the rule parameters to use (empty for a rule without parameters).
        grads: gradients by model parameter name.

    Returns:
        The updates, by the same names.
    """
    return functional_call(rule, dict(xi), (grads,)) if xi else rule(grads)


def adapt(forward: Forward, rule: UpdateRule, params: Mapping[str, Tensor], x: Tensor, y: Tensor,
          *, steps: int, rule_params: Mapping[str, Tensor] | None = None,
          apply_rule: ApplyRule = apply_rule, adapt_mask: Collection[str] | None = None,
          first_order: bool = False, create_graph: bool = True,
          loss_fn: LossFn = task_loss) -> Adaptation:
    """``steps`` inner steps ``theta_{t+1} = theta_t - U_{xi_{t+1}}(grad L_T(theta_t))`` (Algorithm 1).

    With ``create_graph=True`` the result stays differentiable with respect to ``params`` and
    ``rule_params`` (second order: through every inner gradient; ``first_order=True``: each
    ``g_t`` and ``grad_xi`` is a constant, FOMAML). ``create_graph=False`` is for evaluation:
    the result is detached from the inputs and no meta-gradient can flow, which keeps memory
    flat in ``steps``.

    Args:
        forward: ``(params, x) -> logits``; called with ``params`` updated in place of the input.
        rule: the update rule ``U_xi``; its ``alpha`` is also the step size of ``xi``, and its
            ``adapts`` flag says whether ``xi`` takes inner steps.
        params: ``theta_0`` by name (stacked ``[T, *shape]`` for a stacked ``forward``).
        x: support inputs, as ``forward`` expects them.
        y: support labels.
        steps: number of inner steps (0: nothing adapts).
        rule_params: ``xi_0`` by name (stacked when it adapts and ``forward`` is stacked);
            default: the rule's own parameters.
        apply_rule: how ``rule`` maps gradients to updates (:func:`apply_rule` for one task).
        adapt_mask: names of the parameters that adapt (``None``: all); the others keep
            ``theta_0`` (the very same tensors).
        first_order: treat the inner gradients as constants.
        create_graph: keep the graph back to ``params`` and ``rule_params``.
        loss_fn: ``(logits, y) -> loss``, one loss or one per task; the inner gradient is that
            of their sum.

    Returns:
        :class:`Adaptation`: ``theta_T``, ``xi_T`` and the support loss before each step.
    """
    check_steps(steps)
    params = dict(params)
    rule_params = dict(rule_params) if rule_params is not None else dict(rule.named_parameters())
    names = [k for k in params if adapt_mask is None or k in adapt_mask]
    xi_names = list(rule_params) if rule.adapts else []
    higher = create_graph and not first_order
    if not create_graph:
        # Evaluation: fresh leaves, so gradients exist without a graph back to the meta-parameters.
        params = {k: (v.detach().requires_grad_(k in names)) for k, v in params.items()}
        rule_params = {k: v.detach().requires_grad_(k in xi_names) for k, v in rule_params.items()}
    losses: list[Tensor] = []
    for t in range(steps):
        loss = loss_fn(forward(params, x), y)
        losses.append(loss.detach())
        adapt_xi = bool(xi_names) and t > 0
        inputs = [params[k] for k in names] + ([rule_params[k] for k in xi_names] if adapt_xi else [])
        if not inputs:  # everything frozen: nothing adapts, the step is the identity
            continue
        # retain_graph: in first-order training the xi-gradient (t > 0) runs back through the
        # rule's previous update, which the meta-gradient needs again later.
        grads = torch.autograd.grad(loss if loss.dim() == 0 else loss.sum(), inputs,
                                    create_graph=higher,
                                    retain_graph=higher or (create_graph and adapt_xi),
                                    allow_unused=True, materialize_grads=True)
        g_theta = dict(zip(names, grads[:len(names)]))
        if adapt_xi:
            g_xi = grads[len(names):]
            rule_params = {**rule_params, **{k: rule_params[k] - rule.alpha * g
                                              for k, g in zip(xi_names, g_xi)}}
            if not create_graph:
                rule_params = {k: v.detach().requires_grad_(k in xi_names)
                               for k, v in rule_params.items()}
        updates = apply_rule(rule, rule_params, g_theta)
        if create_graph:
            new = {k: params[k] - updates[k] for k in names}
        else:
            # One step deep: theta_{t+1} depends on xi_{t+1} only (what the next xi-gradient needs).
            new = {k: params[k].detach() - updates[k] for k in names}
            new = {k: v if v.requires_grad else v.requires_grad_(True) for k, v in new.items()}
        params = {**params, **new}
    return Adaptation(params, rule_params, losses)


__all__ = ["Adaptation", "ApplyRule", "Forward", "LossFn", "Params", "adapt", "apply_rule",
           "check_steps"]
