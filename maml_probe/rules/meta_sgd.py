"""Meta-SGD (Li et al., 2017): a meta-learned step size for every parameter entry.

For each model parameter ``theta_p`` the rule holds a tensor ``lr_p`` of the same shape and

    U(g_p) = lr_p ⊙ g_p                                       (paper Section 4.3, "MSGD")

``lr_p`` starts at the adaptation rate ``alpha`` everywhere, so at initialisation Meta-SGD *is*
MAML's ``alpha * g``. Because the learned step sizes already play the role of ``alpha`` the
output is not scaled by ``alpha`` again (``scale_by_alpha=False``). The step sizes are
meta-learned by the outer loop only: Meta-SGD does not adapt them per task (``adapts=False``).
Li et al. initialise ``lr`` at random in ``[0.005, 0.1]``; we start from ``alpha`` so that the
rule reduces exactly to MAML (the choice the paper's comparison assumes, Section 4.3).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import PerParameterRule


class StepSizes(nn.Module):
    """Per-entry step sizes for one parameter: ``T(g) = lr ⊙ g`` with ``lr`` initialised to ``alpha``."""

    def __init__(self, shape: torch.Size, alpha: float) -> None:
        super().__init__()
        self.lr = nn.Parameter(torch.full(tuple(shape), float(alpha)))

    def forward(self, g: Tensor) -> Tensor:
        """Elementwise learned step: ``u = lr * g`` (Meta-SGD)."""
        return self.lr * g


def meta_sgd_rule(model: nn.Module, alpha: float) -> PerParameterRule:
    """Meta-SGD for every parameter of ``model``: ``numel(model)`` step sizes, not adapted."""
    rule = PerParameterRule({k: p.shape for k, p in model.named_parameters()},
                            lambda name, shape: StepSizes(shape, alpha),
                            alpha=alpha, adapts=False, scale_by_alpha=False)
    return match_model(rule, model)


def match_model(rule: nn.Module, model: nn.Module) -> nn.Module:
    """Put ``rule``'s parameters on the device and floating dtype of ``model``'s parameters."""
    p = next(model.parameters(), None)
    return rule if p is None else rule.to(device=p.device, dtype=p.dtype)
