"""Cholesky-factored fully-connected meta-optimizer, CFC (paper Section 4.2 and A.2.3, Eq. 8).

A rank-``r`` map ``A = L L^T`` with ``L in R^{n x r}`` acts on a gradient vector ``g in R^n`` as

    T(g) = L (L^T g) (+ b)                                           (Eq. 8)

without forming the ``n x n`` matrix (memory and time ``O(n r)``). CFC chains ``layers`` such
maps with ReLU between them and adds one bias ``b in R^n`` to the output:

    net(g) = L_h L_h^T relu( ... relu(L_1 L_1^T g) ... ) + b

It is adapted in the inner loop (Algorithm 1), like KFC, and ``U(g) = alpha * T(g)`` with
``T = net`` (the paper's CFC).

**Which vector is g.** Dense weights and vectors are flattened whole (``n = numel``); a conv
weight ``[N, C, H, W]`` is read as ``N`` vectors of ``n = C*H*W`` sharing one transform, the
same sharing across filters as KFC (A.1.2).

**Reading of the paper's counts (Table A3).** With the rows above, one transform per model
parameter, ``layers = 4`` and the output bias, a CFC of rank ``r`` has ``(4 r + 1) D``
parameters where ``D = sum_p n_p``; this reproduces the paper:

==================  =====  =============  ==============  ==================
model (10-way)      D      CFC1 (5 D)     CFC10 (41 D)    paper CFC1 / CFC10
==================  =====  =============  ==============  ==================
Omniglot SCNN       1,619  8,095          66,379          8,905 / 66,379
CIFAR-FS SCNN         837  4,185          34,317          4,185 / 34,317
mini-ImageNet SCNN  8,517  42,585         349,197         42,585 / 349,197
==================  =====  =============  ==============  ==================

(Omniglot's ``D = 9 + 576 + 6 * 64 + 640 + 10``.) Five of six counts match; Omniglot CFC1 is
printed as 8,905, which we read as a transposition of 8,095 since CFC10 = 41 D holds there.
``layers=4, bias=True`` are therefore the defaults. The paper's four layers match KFC's four.
(A single per-model ``L in R^{38,474 x r}`` would give 38,474 r parameters and cannot be the
paper's reading.) ``D`` is also the ``sum_p n_p m_p`` of KFC's learnable factor
(:mod:`~maml_probe.rules.kronecker`). The counts leave no room for a norm handling with a
learnable factor, so the paper's CFC has none.

**Initialisation** (A.2.3: "Glorot"): every ``L`` is drawn with
``torch.nn.init.xavier_normal_(L, gain)``, i.e. ``L_ij ~ N(0, gain^2 * 2 / (n + r))`` (PyTorch's
fan-in ``r`` and fan-out ``n`` of an ``[n, r]`` tensor), from the global torch RNG as ``nn.init``
does; seed with ``torch.manual_seed`` before building the rule. ``b`` starts at 0. Since the
identity is not a low-rank ``L L^T``, CFC does *not* reduce to MAML at initialisation.

**It starts adapting almost nothing.** For a fixed ``x`` and Glorot ``L``,
``E ||L L^T x||^2 ~ 4 r gain^4 ||x||^2 / (n + r)``: every map shrinks its input by about
``2 gain^2 sqrt(r / n)`` (and every ReLU by about ``sqrt(2)``), so four stacked maps give
updates of order ``alpha (r / n)^2 ||g||``. Measured with
:func:`maml_probe.rules.diagnostics.update_gradient_ratio` on Omniglot episodes
(``results/rules/``), ``||U|| / ||g||`` at initialisation on the SCNN's FC weight
(``n = 640``) is 4e-7 for rank 1 and 7e-4 for rank 10 (MAML: alpha = 0.8). No single ``gain``
fixes this for all parameters, since ``n`` ranges from 1 to 8,000 within one model.

**Variant that starts at the gradient step's size** (``normalize=True``, not the paper's): the
gradient-norm handling of KFC (A.1.2) plus an output normalisation,

    T(g) = s ||g|| net(g / ||g||) / ||net(g / ||g||)||,       s learnable, initialised to 1,

with norms over the whole parameter's gradient, so ``||U(g)|| = alpha s ||g||``: MAML's step
size at initialisation (ratio ``alpha``), in the direction of the low-rank map. A zero
``net`` output gives a zero update. It adds one parameter per model parameter (CFC1 on the
Omniglot SCNN: 8,095 + 10).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import PerParameterRule, check_positive
from .kronecker import check_positive_int
from .meta_sgd import match_model


def cholesky_rows(shape: torch.Size | tuple[int, ...]) -> tuple[int, int]:
    """``(rows, n)``: the gradient is read as ``rows`` vectors of length ``n`` sharing one map."""
    shape = tuple(shape)
    if len(shape) >= 3:
        return shape[0], math.prod(shape[1:])
    return 1, math.prod(shape)


class CholeskyLinear(nn.Module):
    """``x -> L (L^T x)`` on ``[..., n]`` inputs, ``L in R^{n x r}`` Glorot-normal initialised."""

    def __init__(self, n: int, rank: int, gain: float = 1.0) -> None:
        super().__init__()
        self.factor = nn.Parameter(torch.empty(n, rank))
        nn.init.xavier_normal_(self.factor, gain=gain)

    def forward(self, x: Tensor) -> Tensor:
        """``x L L^T``: a positive semi-definite map of rank ``r``."""
        return (x @ self.factor) @ self.factor.T


class CholeskyTransform(nn.Module):
    """``layers`` Cholesky maps with ReLU between them (+ output bias) for one parameter.

    Args:
        shape: Shape of the model parameter whose gradient this transform maps.
        rank: ``r``, the columns of every ``L``.
        layers: Number of maps.
        bias: The output bias ``b in R^n`` (Eq. 8).
        gain: Glorot gain of every ``L``.
        normalize: Unit-norm input and output, times ``s ||g||`` (module docstring).

    Raises:
        ValueError: On a non-positive ``rank``, ``layers`` or ``gain``.
    """

    def __init__(self, shape: torch.Size, rank: int = 1, layers: int = 4, bias: bool = True,
                 gain: float = 1.0, normalize: bool = False) -> None:
        super().__init__()
        check_positive_int("rank", rank)
        check_positive_int("layers", layers)
        check_positive("gain", gain)
        self.rows, n = cholesky_rows(shape)
        self.maps = nn.ModuleList(CholeskyLinear(n, rank, gain) for _ in range(layers))
        self.bias = nn.Parameter(torch.zeros(n)) if bias else None
        self.scale = nn.Parameter(torch.ones(())) if normalize else None

    def forward(self, g: Tensor) -> Tensor:
        """Apply the stacked rank-r maps to the gradient reshaped as a matrix."""
        x = g.reshape(self.rows, -1)
        if self.scale is not None:
            norm = _safe_norm(x)
            x = x / norm
        for i, layer in enumerate(self.maps):
            x = layer(F.relu(x) if i else x)
        if self.bias is not None:
            x = x + self.bias
        if self.scale is not None:
            x = x * (self.scale * norm / _safe_norm(x))
        return x.reshape(g.shape)


def _safe_norm(x: Tensor) -> Tensor:
    """Frobenius norm of ``x``, or 1 where it is 0 (a zero input then maps to a zero output)."""
    norm = torch.linalg.vector_norm(x)
    return torch.where(norm > 0, norm, torch.ones_like(norm))


def cfc_rule(model: nn.Module, alpha: float, *, rank: int = 1, layers: int = 4, bias: bool = True,
             gain: float = 1.0, normalize: bool = False) -> PerParameterRule:
    """CFC of rank ``rank``: one :class:`CholeskyTransform` per parameter, adapted in the inner loop.

    The paper's CFC1 / CFC10 (A.2.3, Table A3) are ``rank=1`` / ``rank=10`` with the other
    options at their defaults; ``normalize=True`` is the variant that starts at MAML's step size.

    Args:
        model: The model whose parameters the rule updates.
        alpha: Adaptation rate.
        rank: ``r``, the columns of every ``L``.
        layers: Maps per transform.
        bias: The output bias ``b``.
        gain: Glorot gain of every ``L``.
        normalize: Unit-norm input and output, times a learnable ``s ||g||``.

    Returns:
        The rule, on the model's device and dtype.
    """
    check_positive("alpha", alpha)
    check_positive_int("rank", rank)
    check_positive_int("layers", layers)
    check_positive("gain", gain)
    rule = PerParameterRule(
        {k: p.shape for k, p in model.named_parameters()},
        lambda name, shape: CholeskyTransform(shape, rank=rank, layers=layers, bias=bias, gain=gain,
                                              normalize=normalize),
        alpha=alpha, adapts=True)
    return match_model(rule, model)
