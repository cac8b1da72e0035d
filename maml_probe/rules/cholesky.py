"""Cholesky-factored fully-connected meta-optimizer, CFC (paper Section 4.2 and A.2.3, Eq. 8).

A rank-``r`` map ``A = L L^T`` with ``L in R^{n x r}`` acts on a gradient vector ``g in R^n`` as

    T(g) = L (L^T g) (+ b)                                           (Eq. 8)

without forming the ``n x n`` matrix (memory and time ``O(n r)``). CFC chains ``layers`` such
maps with ReLU between them and adds one bias ``b in R^n`` to the output:

    T(g) = L_h L_h^T relu( ... relu(L_1 L_1^T g) ... ) + b

It is adapted in the inner loop (Algorithm 1), like KFC, and ``U(g) = alpha * T(g)``.

**Which vector is g.** Dense weights and vectors are flattened whole (``n = numel``); a conv
weight ``[N, C, H, W]`` is read as ``N`` vectors of ``n = C*H*W`` sharing one transform, the
same sharing across filters as KFC (A.1.2).

**Reading of the paper's counts (Table A3).** With the rows above, one transform per model
parameter, ``layers = 4`` and the output bias, a CFC of rank ``r`` has ``D (4 r + 1)``
parameters where ``D = sum_p n_p``; this reproduces the paper exactly:

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
paper's reading.) Unlike KFC, the counts leave no room for the learnable norm factor, so CFC has
no ``normalize`` option.

**Initialisation** (A.2.3: "Glorot"): every ``L`` is drawn with
``torch.nn.init.xavier_normal_(L, gain)``, i.e. ``L_ij ~ N(0, gain^2 * 2 / (n + r))`` (PyTorch's
fan-in ``r`` and fan-out ``n`` of an ``[n, r]`` tensor), from the global torch RNG as ``nn.init``
does; seed with ``torch.manual_seed`` before building the rule. ``b`` starts at 0. Since the
identity is not a low-rank ``L L^T``, CFC does *not* reduce to MAML at initialisation.
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
        return (x @ self.factor) @ self.factor.T


class CholeskyTransform(nn.Module):
    """``layers`` Cholesky maps with ReLU between them (+ output bias) for one parameter."""

    def __init__(self, shape: torch.Size, rank: int = 1, layers: int = 4, bias: bool = True,
                 gain: float = 1.0) -> None:
        super().__init__()
        check_positive_int("rank", rank)
        check_positive_int("layers", layers)
        check_positive("gain", gain)
        self.rows, n = cholesky_rows(shape)
        self.maps = nn.ModuleList(CholeskyLinear(n, rank, gain) for _ in range(layers))
        self.bias = nn.Parameter(torch.zeros(n)) if bias else None

    def forward(self, g: Tensor) -> Tensor:
        x = g.reshape(self.rows, -1)
        for i, layer in enumerate(self.maps):
            x = layer(F.relu(x) if i else x)
        if self.bias is not None:
            x = x + self.bias
        return x.reshape(g.shape)


def cfc_rule(model: nn.Module, alpha: float, *, rank: int = 1, layers: int = 4, bias: bool = True,
             gain: float = 1.0) -> PerParameterRule:
    """CFC of rank ``rank``: one :class:`CholeskyTransform` per parameter, adapted in the inner loop."""
    check_positive("alpha", alpha)
    check_positive_int("rank", rank)
    check_positive_int("layers", layers)
    check_positive("gain", gain)
    rule = PerParameterRule(
        {k: p.shape for k, p in model.named_parameters()},
        lambda name, shape: CholeskyTransform(shape, rank=rank, layers=layers, bias=bias, gain=gain),
        alpha=alpha, adapts=True)
    return match_model(rule, model)
