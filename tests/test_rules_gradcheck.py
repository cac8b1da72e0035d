"""Second-order meta-gradients through adaptive rules equal central finite differences (float64).

The meta-loss is the summed query loss after ``STEPS`` inner steps of Algorithm 1, in which the
rule's own parameters ``xi`` are stepped too (from ``t = 1`` on), so the derivative runs through
the inner-loop adaptation of both theta and xi. The rule parameters are first moved off their
identity initialisation so that no path is trivially the identity.
"""
from __future__ import annotations

import pytest
import torch

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


def test_first_order_meta_gradient_with_an_adapted_rule_runs():
    model, rule, batch = setup("lr", "klin")
    meta_backward(model, rule, batch, steps=2, first_order=True)
    assert all(p.grad is not None for p in rule.parameters())
