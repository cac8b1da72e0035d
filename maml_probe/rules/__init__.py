"""Update rules (meta-optimizers) by name: :func:`make_rule`.

Every rule but ``maml`` holds one transform per model parameter ``p`` (``PerParameterRule``) and
maps the inner-loop gradient ``g_p`` to the update ``alpha * T_p(g_p)`` (Meta-SGD: ``lr_p ⊙ g_p``).
Their parameters ``xi`` are ordinary ``nn.Parameter`` s on the model's device and dtype.

==========  ===============================================  =======  ===========================
name        rule (paper section)                             adapts   options (default)
==========  ===============================================  =======  ===========================
``maml``    plain SGD, ``alpha * g`` (Finn et al., 2017)     (no xi)  --
``metasgd`` ``lr ⊙ g``, ``lr`` per entry, init ``alpha``     no       --
            (Li et al., 2017; Sec. 4.3)
``mc``      Meta-Curvature: ``alpha vec(L G R)``, L, R       no       ``bias`` (False)
            init identity (Park & Oliva, 2019; Sec. 4.3)
``klin``    KLin: ``alpha vec(L G R)`` (Sec. 4.2, Eq. 5)     yes      ``bias`` (False)
``kfc``     KFC: Kronecker maps with ReLU between (Eq. 6-7)  yes      ``layers`` (4),
            and the gradient-norm handling of A.1.2                   ``normalize`` (False),
                                                                      ``factor`` (elementwise),
                                                                      ``bias`` (False),
                                                                      ``output_bias`` (False)
``cfc``     CFC: ``L L^T`` maps, ``L in R^{n x r}``, ReLU    yes      ``rank`` (1), ``layers`` (4),
            between, output bias (A.2.3, Eq. 8)                       ``bias`` (True), ``gain`` (1),
                                                                      ``normalize`` (False)
==========  ===============================================  =======  ===========================

"adapts": ``xi`` also takes the inner-loop step ``xi_{t+1} = xi_t - alpha grad_xi L`` of
Algorithm 1. At initialisation ``metasgd``, ``mc`` and ``klin`` compute MAML's update, ``kfc``
(``layers >= 2``) computes ``alpha * relu(g)``, and ``cfc`` a random low-rank map (with
``normalize=True`` one of MAML's step size). Paper settings: synthetic KFC ``layers=2``;
Omniglot LR KFC ``layers=4``; CNN KFC ``layers=4, normalize=True, factor="elementwise"``;
CFC1/CFC10 ``rank=1`` / ``rank=10`` with the defaults. These reproduce Table A3's counts (see
:mod:`~maml_probe.rules.kronecker` and :mod:`~maml_probe.rules.cholesky`).
:func:`~maml_probe.rules.diagnostics.update_gradient_ratio` measures ``||U(g)|| / ||g||``.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from .base import SGD, PerParameterRule, UpdateRule, check_positive
from .cholesky import CholeskyLinear, CholeskyTransform, cfc_rule
from .kronecker import KroneckerLinear, KroneckerTransform, kfc_rule, klin_rule, mc_rule
from .meta_sgd import StepSizes, meta_sgd_rule

RULE_NAMES = ("maml", "metasgd", "mc", "klin", "kfc", "cfc")

_OPTIONS: dict[str, tuple[str, ...]] = {
    "maml": (), "metasgd": (), "mc": ("bias",), "klin": ("bias",),
    "kfc": ("layers", "normalize", "factor", "bias", "output_bias"),
    "cfc": ("rank", "layers", "bias", "gain", "normalize"),
}


def make_rule(name: str, model: nn.Module, alpha: float, **kwargs: Any) -> UpdateRule:
    """Build update rule ``name`` (one of :data:`RULE_NAMES`) for ``model`` with adaptation rate ``alpha``.

    Args:
        name: The rule (table above).
        model: The model whose parameters the rule updates.
        alpha: Adaptation rate.
        **kwargs: The rule's options (table above).

    Returns:
        The rule, on the model's device and dtype.

    Raises:
        ValueError: On an unknown name or option, a non-positive ``alpha``, ``rank``,
            ``layers`` or ``gain``, or an option value the rule rejects.
    """
    if name not in _OPTIONS:
        raise ValueError(f"unknown rule name {name!r}: rule must be one of {list(RULE_NAMES)}")
    check_positive("alpha", alpha)
    unknown = sorted(set(kwargs) - set(_OPTIONS[name]))
    if unknown:
        raise ValueError(f"rule {name!r} takes options {list(_OPTIONS[name])}, got unknown {unknown}")
    if name == "maml":
        return SGD(alpha)
    if name == "metasgd":
        return meta_sgd_rule(model, alpha)
    builder = {"mc": mc_rule, "klin": klin_rule, "kfc": kfc_rule, "cfc": cfc_rule}[name]
    return builder(model, alpha, **kwargs)


def count_rule_parameters(rule: nn.Module) -> int:
    """Number of scalar meta-optimizer parameters ``xi`` (Table A3's "Optimizer Parameters").

    Args:
        rule: An update rule.

    Returns:
        ``sum of numel`` over the rule's parameters.
    """
    return sum(p.numel() for p in rule.parameters())


__all__ = ["RULE_NAMES", "SGD", "CholeskyLinear", "CholeskyTransform", "KroneckerLinear",
           "KroneckerTransform", "PerParameterRule", "StepSizes", "UpdateRule", "cfc_rule",
           "count_rule_parameters", "kfc_rule", "klin_rule", "make_rule", "mc_rule",
           "meta_sgd_rule"]
