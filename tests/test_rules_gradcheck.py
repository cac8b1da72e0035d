"""Second-order meta-gradients through adaptive rules equal central finite differences (float64).

The meta-loss is the summed query loss after ``STEPS`` inner steps of Algorithm 1, in which the
rule's own parameters ``xi`` are stepped too (from ``t = 1`` on), so the derivative runs through
the inner-loop adaptation of both theta and xi. The rule parameters are first moved off their
identity initialisation so that no path is trivially the identity.
"""
from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from maml_probe.losses import task_loss
from maml_probe.maml import adapt, meta_backward, task_losses
from maml_probe.models import build_model
from maml_probe.rules import make_rule
from maml_probe.tasks.base import TaskBatch

STEPS = 3
EPS = 1e-6


def setup(kind: str, name: str, **kwargs):
    torch.manual_seed(0)
    if kind == "lr":
        model, shape = build_model("lr", 3, in_features=5), (5,)
    elif kind == "linnet":
        model, shape = build_model("linnet", 3, in_features=5, widths=(4,)), (5,)
    else:
        model, shape = build_model("scnn", 3, variant="omniglot", filters=2), (1, 28, 28)
    model = model.double()
    rule = make_rule(name, model, 0.3, **kwargs)
    with torch.no_grad():
        for p in rule.parameters():
            p.add_(0.1 * torch.randn_like(p))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 8, *shape, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (2, 8), generator=g)
    return model, rule, TaskBatch(x[:, :4], y[:, :4], x[:, 4:], y[:, 4:])


def meta_loss(model, rule, batch, theta, xi):
    losses, _ = task_losses(model, rule, batch, steps=STEPS, params=theta, rule_params=xi)
    return sum(losses)


def check_directional(model, rule, batch, wrt: str):
    theta = {k: p.detach().clone().requires_grad_(True) for k, p in model.named_parameters()}
    xi = {k: p.detach().clone().requires_grad_(True) for k, p in rule.named_parameters()}
    target = theta if wrt == "theta" else xi
    g = torch.Generator().manual_seed(7)
    direction = {k: torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in target.items()}
    grads = torch.autograd.grad(meta_loss(model, rule, batch, theta, xi), list(target.values()))
    analytic = sum((gr * direction[k]).sum() for k, gr in zip(target, grads)).item()

    def shifted(sign):
        moved = {k: (v + sign * EPS * direction[k]).detach().requires_grad_(True)
                 for k, v in target.items()}
        args = (moved, xi) if wrt == "theta" else (theta, moved)
        return meta_loss(model, rule, batch, *args).item()

    numeric = (shifted(+1) - shifted(-1)) / (2 * EPS)
    assert abs(analytic) > 1e-3
    assert abs(analytic - numeric) / abs(analytic) < 1e-6, (analytic, numeric)


CASES = [("lr", "klin", {}), ("linnet", "klin", {}), ("cnn", "klin", {}),
         ("lr", "kfc", {"layers": 2}), ("linnet", "kfc", {"layers": 3, "normalize": True}),
         ("cnn", "kfc", {"layers": 2, "normalize": True})]


@pytest.mark.parametrize("kind,name,kwargs", CASES)
@pytest.mark.parametrize("wrt", ["theta", "xi"])
def test_meta_gradient_matches_finite_differences(kind, name, kwargs, wrt):
    model, rule, batch = setup(kind, name, **kwargs)
    assert rule.adapts
    check_directional(model, rule, batch, wrt)


def test_xi_adaptation_is_part_of_the_meta_gradient():
    """The xi-gradient with adaptation differs from the one of the same rule not adapting xi."""
    model, rule, batch = setup("linnet", "klin")
    xi = dict(rule.named_parameters())
    a = adapt(model, dict(model.named_parameters()), batch.support_x[0], batch.support_y[0],
              steps=STEPS, rule=rule)
    assert any(not torch.equal(a.rule_params[k], xi[k]) for k in xi)
    with_adapt = torch.autograd.grad(sum(task_losses(model, rule, batch, steps=STEPS)[0]), list(xi.values()))
    rule.adapts = False
    without = torch.autograd.grad(sum(task_losses(model, rule, batch, steps=STEPS)[0]), list(xi.values()))
    assert max((u - v).abs().max().item() for u, v in zip(with_adapt, without)) > 1e-6


def first_order_reference(model, rule, batch, steps):
    """FOMAML with an adapted rule, written out: every inner gradient is a constant.

    One task's inner loop (graph-free) records ``g_t = grad_theta L(theta_t)`` and the rule
    state ``xi_{t+1} = xi_t - alpha grad_xi L(theta_t)`` (``t >= 1``; ``grad_xi`` through
    ``theta_t = theta_{t-1} - U_{xi_t}(g_{t-1})``). With those constants,
    ``theta_T = theta_0 - sum_t U_{xi_0 + (xi_{t+1} - xi_0)}(g_t)`` is a function of
    ``(theta_0, xi_0)`` whose Jacobian is the first-order one; the meta-gradient is the gradient
    of the mean query loss through it.
    """
    theta0 = {k: p.detach().clone().requires_grad_(True) for k, p in model.named_parameters()}
    xi0 = {k: p.detach().clone().requires_grad_(True) for k, p in rule.named_parameters()}

    def update(xi, g):
        return functional_call(rule, xi, (g,))

    total = 0.0
    for i in range(len(batch)):
        x, y = batch.support_x[i], batch.support_y[i]
        theta = {k: v.detach() for k, v in theta0.items()}
        xi = {k: v.detach() for k, v in xi0.items()}
        record = []
        prev_theta = prev_g = None
        for t in range(steps):
            xi_leaf = {k: v.detach().requires_grad_(True) for k, v in xi.items()}
            theta_t = {k: v.detach().requires_grad_(True) for k, v in theta.items()}
            if t > 0:  # theta_t as a function of xi_t, for the xi-gradient
                u = update(xi_leaf, prev_g)
                theta_t_graph = {k: prev_theta[k] - u[k] for k in theta}
            loss = task_loss(functional_call(model, theta_t, (x,)), y)
            g = dict(zip(theta_t, torch.autograd.grad(loss, list(theta_t.values()))))
            if t > 0:
                loss_xi = task_loss(functional_call(model, theta_t_graph, (x,)), y)
                g_xi = torch.autograd.grad(loss_xi, list(xi_leaf.values()))
                xi = {k: xi[k] - rule.alpha * gx for k, gx in zip(xi, g_xi)}
            record.append(({k: v.detach() for k, v in xi.items()}, g))
            prev_theta, prev_g = theta, g
            theta = {k: theta[k] - update(xi, g)[k].detach() for k in theta}
        # rebuild theta_T from (theta_0, xi_0) with the recorded constants
        theta_T = dict(theta0)
        for xi_t, g in record:
            shifted = {k: xi0[k] + (xi_t[k] - xi0[k].detach()) for k in xi0}
            u = update(shifted, g)
            theta_T = {k: theta_T[k] - u[k] for k in theta_T}
        total = total + task_loss(functional_call(model, theta_T, (batch.query_x[i],)), batch.query_y[i])
    mean = total / len(batch)
    grads = torch.autograd.grad(mean, [*theta0.values(), *xi0.values()])
    return dict(zip([*theta0, *("xi." + k for k in xi0)], grads)), mean.item()


@pytest.mark.parametrize("kind,name,kwargs", [("lr", "klin", {}), ("linnet", "kfc", {"layers": 2}),
                                              ("cnn", "klin", {})])
@pytest.mark.parametrize("impl", ["loop", "batched"])
def test_first_order_meta_gradient_with_an_adapted_rule_is_the_fomaml_formula(kind, name, kwargs, impl):
    """Catches: a first-order path that still differentiates through the inner gradients
    (second order), one that drops the rule's share (xi gets no or a zero gradient), one that
    forgets the xi adaptation (xi_{t+1} = xi_0), and a fast path that disagrees with the loop."""
    model, rule, batch = setup(kind, name, **kwargs)
    assert rule.adapts
    expected, expected_loss = first_order_reference(model, rule, batch, STEPS)
    model.zero_grad(set_to_none=True)
    rule.zero_grad(set_to_none=True)
    loss, _ = meta_backward(model, rule, batch, steps=STEPS, first_order=True, impl=impl)
    got = {**{k: p.grad for k, p in model.named_parameters()},
           **{"xi." + k: p.grad for k, p in rule.named_parameters()}}
    assert loss == pytest.approx(expected_loss, rel=1e-10)
    for k, e in expected.items():
        assert got[k] is not None, k
        torch.testing.assert_close(got[k], e, rtol=1e-8, atol=1e-11, msg=k)
    assert max(float(v.abs().max()) for k, v in expected.items() if k.startswith("xi.")) > 1e-4
    # and it is not the second-order gradient
    theta = {k: p.detach().clone().requires_grad_(True) for k, p in model.named_parameters()}
    xi = {k: p.detach().clone().requires_grad_(True) for k, p in rule.named_parameters()}
    second = torch.autograd.grad(meta_loss(model, rule, batch, theta, xi) / len(batch),
                                 [*theta.values(), *xi.values()])
    assert max(float((s - e).abs().max()) for s, e in zip(second, expected.values())) > 1e-6
