"""Update rules (meta-optimizers) by name: :func:`make_rule`.

==========  ==============================================  =========================
name        rule                                            xi adapted in inner loop
==========  ==============================================  =========================
``maml``    plain SGD, ``alpha * g``                        (no xi)
==========  ==============================================  =========================
"""
from __future__ import annotations

from typing import Any

from torch import nn

from .base import SGD, PerParameterRule, UpdateRule

RULE_NAMES = ("maml",)


def make_rule(name: str, model: nn.Module, alpha: float, **kwargs: Any) -> UpdateRule:
    """Build update rule ``name`` for the parameters of ``model`` with adaptation rate ``alpha``."""
    if name == "maml":
        if kwargs:
            raise ValueError(f"rule 'maml' takes no options, got {sorted(kwargs)}")
        return SGD(alpha)
    raise ValueError(f"unknown rule name {name!r}: rule must be one of {list(RULE_NAMES)}")


__all__ = ["RULE_NAMES", "SGD", "PerParameterRule", "UpdateRule", "make_rule"]
