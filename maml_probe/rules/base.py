"""Update rules: the map from a task gradient to a parameter update.

An update rule ``U_xi`` turns the inner-loop gradient ``g_t = grad_theta L_T(theta_t)`` into the
step ``theta_{t+1} = theta_t - U_xi(g_t)``. Its own learnable parameters ``xi`` (an ordinary
``nn.Module`` parameter set) are meta-learned by the outer loop, and, for rules whose
``adapts`` flag is set, also adapted inside the inner loop by Algorithm 1 of the paper::

    xi_{t+1}    = xi_t - alpha * grad_xi L_T(theta_t)       (skipped at t = 0, where it is 0)
    theta_{t+1} = theta_t - U_{xi_{t+1}}(grad_theta L_T(theta_t))

A rule is called functionally by the engine, ``torch.func.functional_call(rule, xi, (grads,))``,
so ``xi`` can be a per-task, differentiable copy of the rule's parameters. Like an optax
gradient transformation it is a small object: it holds parameters (the "state" that is
meta-learned) and maps a dict of gradients to a dict of updates of the same shapes.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn


def _key(param_name: str) -> str:
    """``nn.ModuleDict`` keys cannot contain dots: ``blocks.0.conv.weight -> blocks-0-conv-weight``."""
    return param_name.replace(".", "-")


def check_positive(name: str, value: float) -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``value`` is a finite positive number."""
    if not (isinstance(value, (int, float)) and value > 0 and value != float("inf")):
        raise ValueError(f"{name} must be a positive number, got {value!r}")


class UpdateRule(nn.Module):
    """Base class. ``alpha`` is the adaptation rate; ``adapts`` says whether xi is adapted per task."""

    adapts: bool = False

    def __init__(self, alpha: float) -> None:
        super().__init__()
        check_positive("alpha", alpha)
        self.alpha = float(alpha)

    def forward(self, grads: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Map a dict of gradients to a dict of updates (``theta' = theta - u``)."""
        raise NotImplementedError


class SGD(UpdateRule):
    """MAML's inner loop (Finn et al., 2017): ``U(g) = alpha * g``. No learnable state."""

    def forward(self, grads: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Plain gradient step: ``u = alpha * g`` (MAML)."""
        return {name: self.alpha * g for name, g in grads.items()}


class PerParameterRule(UpdateRule):
    """One transform module per model parameter: ``U(g_p) = alpha * T_p(g_p)``.

    ``make_transform(name, shape)`` builds the transform for parameter ``name``; parameters for
    which it returns ``None`` fall back to plain SGD. With ``scale_by_alpha=False`` the transform
    output is the update itself (Meta-SGD, whose learned step sizes already include alpha).
    """

    def __init__(self, named_shapes: Mapping[str, torch.Size],
                 make_transform: Callable[[str, torch.Size], nn.Module | None],
                 alpha: float, adapts: bool, scale_by_alpha: bool = True) -> None:
        super().__init__(alpha)
        self.adapts = adapts
        self.scale_by_alpha = scale_by_alpha
        transforms = {}
        for name, shape in named_shapes.items():
            t = make_transform(name, torch.Size(shape))
            if t is not None:
                transforms[_key(name)] = t
        self.transforms = nn.ModuleDict(transforms)

    def forward(self, grads: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Per-parameter update ``u = sum_l U_l(g)`` of the wrapped transforms."""
        out = {}
        for name, g in grads.items():
            key = _key(name)
            if key in self.transforms:
                u = self.transforms[key](g)
                out[name] = self.alpha * u if self.scale_by_alpha else u
            else:
                out[name] = self.alpha * g
        return out

    def transform_for(self, param_name: str) -> nn.Module | None:
        """The transform that acts on ``param_name`` (``None`` if it uses plain SGD)."""
        return self.transforms[_key(param_name)] if _key(param_name) in self.transforms else None
