"""Kronecker-factored meta-optimizers: KLin, Meta-Curvature and KFC (paper Sections 4.2, 4.3, A.1).

**Kronecker-factored linear map** (Eq. 5). The gradient ``g`` of one model parameter is viewed
as a matrix ``G in R^{n x m}`` (or a batch of them, see below) and mapped to

    T(G) = L G R (+ B),        L in R^{n x n},  R in R^{m x m},  B in R^{n x m} (optional)

i.e. ``vec_col(T) = (R^T ⊗ L) vec_col(G)`` and ``vec_row(T) = (L ⊗ R^T) vec_row(G)``. The
``nm x nm`` Kronecker product is never formed: memory is ``O(n^2 + m^2)``, time ``O(nm(n + m))``.
``L`` and ``R`` start as the identity, so ``T(G) = G`` at initialisation (A.1).

**How a parameter becomes G** (:func:`kronecker_dims`, :func:`to_matrix`):

=====================  ============================  =======================================
parameter shape        n x m                         G
=====================  ============================  =======================================
``()`` scalar          1 x 1                         ``g.reshape(1, 1)``
``(k,)`` vector        k x 1                         ``g.reshape(k, 1)`` (a column; ``m=1``)
``(out, in)`` weight   out x in                      ``g`` itself
``(N, C, H, W)`` conv  (H*W) x C, shared by N        ``g.reshape(N, C, H*W).transpose(1, 2)``:
                                                     a batch ``[N, H*W, C]``; ``T(G_f) = L G_f R``
                                                     for every filter ``f`` (batched matmul)
=====================  ============================  =======================================

The conv reading is the paper's (A.1.2: "NxCxHxW, we have m = C, n = HW", shared across the
filters of a layer); higher-rank weights ``(N, C, *k)`` generalise it with ``n = prod(k)``.
Vectors are columns (``n = k, m = 1``); the row reading ``n = 1, m = k`` has the same number of
parameters (``k^2 + 1``) and, at identity initialisation, the same behaviour.

**Rules** (one transform per model parameter, ``U(g_p) = alpha * T_p(g_p)``):

* :func:`klin_rule` - KLin: one linear map, adapted in the inner loop (``adapts=True``; Sec. 4.2).
* :func:`mc_rule` - Meta-Curvature as the paper uses it: KLin that is meta-learned but *not*
  adapted (Sec. 4.3; Park & Oliva's own version uses a 3-factor tensor product for conv layers).
* :func:`kfc_rule` - KFC: ``layers`` Kronecker maps with ReLU between them (Eq. 6-7),

      net(G) = L_h relu( ... relu(L_1 G R_1) ... ) R_h,

  adapted in the inner loop. With identity factors and ``layers >= 2`` it computes
  ``relu(G)`` at initialisation (ReLU is idempotent), so KFC starts as the rule
  ``alpha * relu(g)``, not as MAML. ``layers`` defaults to 4 (Omniglot LR and all CNN
  experiments; the synthetic one uses 2).

**Gradient-norm handling** (A.1.2, ``normalize=True``, used by the non-linear experiments): "the
gradient is initially scaled so as to have unit norm before being fed to the KFC network. Once
the normalized gradient has been processed, it is rescaled by the initial normalizing constant
times a learnable factor (initialized to 1)":

    T(G) = ||G|| * S ⊙ net(G / ||G||),        ||G|| the Frobenius norm of the whole gradient

where the learnable factor ``S`` is (option ``factor``)

* ``"elementwise"`` (default): ``S in R^{n x m}``, one entry per entry of ``G`` and shared
  across the filters of a conv layer like ``L`` and ``R``, initialised to ones;
* ``"scalar"``: ``S in R``, initialised to 1;
* ``"none"``: no factor (``S = 1`` fixed).

With ``S = 1`` and no biases the network is positively homogeneous, so at initialisation
``T(G) = relu(G)`` for every ``factor``; a zero gradient gives a zero update.

**Which reading of A.1.2 (Table A3).** Table A3 counts the KFC parameters of six CNNs. Four
bias-free maps per model parameter hold ``4 (n^2 + m^2)``; the paper's counts exceed this, in
all six models, by exactly ``sum_p n_p m_p`` (mini-ImageNet's at the table's rounding, "2.60M"
and "2.63M"): one extra ``n x m`` tensor per model parameter, shared across filters. Two parts
of A.1.2 could be that tensor: the learnable factor made elementwise, or an output bias ``B``
of the last map (like CFC's ``b``, A.2.3). We take the **elementwise factor**
(``normalize=True, factor="elementwise"``, the experiments' setting) because it is the only
reading consistent with both statements of A.1.2: the learnable factor exists (with the bias
reading it must be dropped to match the counts; a scalar factor beside the bias adds one
parameter per transform, 134,181 for the Omniglot SCNN), and "none of the meta-optimizers use
a bias term" (said again in A.1.1). The other reading stays available as ``normalize=True,
factor="none", output_bias=True`` (same counts; ``T(G) = ||G|| (net(G / ||G||) + B)``, ``B``
starting at 0, so it too is ``relu(G)`` at initialisation). The literal scalar factor
(``factor="scalar"``) counts ``sum_p (4 (n_p^2 + m_p^2) + 1)``, 1.2-2.4 % below the paper.

Counts with ``layers = 4`` for the 10-way CNNs of :mod:`maml_probe.models.cnn` (one transform
for each conv weight and bias, BatchNorm weight and bias, FC weight and bias):

=======================  ==============  ========  ===========  ==============
model (model params)     sum 4(n^2+m^2)  sum n m   ours         paper (A3)
=======================  ==============  ========  ===========  ==============
Omniglot SCNN (38,474)   132,552         1,619     134,171      134,171
Omniglot CNN (112,586)   264,296         3,155     267,451      267,451
CIFAR-FS SCNN (10,602)   34,280          837       35,117       35,117
CIFAR-FS CNN (29,226)    67,720          1,605     69,325       69,325
mini-ImageNet SCNN       2,590,184       8,517     2,598,701    2.60M
(18,282)
mini-ImageNet CNN        2,623,624       9,285     2,632,909    2.63M
(36,906)
=======================  ==============  ========  ===========  ==============

``sum n m`` is also the ``D`` of the CFC counts (:mod:`~maml_probe.rules.cholesky`). The linear
models of A.1.1 use no norm handling: synthetic LR 100 -> 1 has 20,002 (KFC, 2 maps) and 10,001
(KLin) parameters, Omniglot LR 784 -> 5 with 4 maps 2,458,724 ("2.5M"), as the paper says.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import PerParameterRule, check_positive
from .meta_sgd import match_model


def kronecker_dims(shape: torch.Size | tuple[int, ...]) -> tuple[int, int]:
    """``(n, m)`` of the matrix view ``G in R^{n x m}`` of a gradient of this shape (see table)."""
    shape = tuple(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], 1
    if len(shape) == 2:
        return shape[0], shape[1]
    return math.prod(shape[2:]), shape[1]


def to_matrix(g: Tensor) -> Tensor:
    """``G``: ``[n, m]`` for tensors of rank <= 2, ``[N, prod(k), C]`` for ``[N, C, *k]`` weights."""
    if g.dim() <= 2:
        return g.reshape(kronecker_dims(g.shape))
    return g.reshape(g.shape[0], g.shape[1], -1).transpose(1, 2)


def from_matrix(x: Tensor, shape: torch.Size) -> Tensor:
    """Inverse of :func:`to_matrix` for a parameter of ``shape``."""
    if len(shape) <= 2:
        return x.reshape(shape)
    return x.transpose(1, 2).reshape(shape)


class KroneckerLinear(nn.Module):
    """``X -> L X R (+ B)`` on ``[..., n, m]`` inputs; ``L = I_n``, ``R = I_m``, ``B = 0`` at init."""

    def __init__(self, n: int, m: int, bias: bool = False) -> None:
        super().__init__()
        self.left = nn.Parameter(torch.eye(n))
        self.right = nn.Parameter(torch.eye(m))
        self.bias = nn.Parameter(torch.zeros(n, m)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        """``L x R (+ b)``: the Kronecker-factored map ``(R^T kron L) vec(x)``."""
        y = torch.matmul(torch.matmul(self.left, x), self.right)
        return y if self.bias is None else y + self.bias


FACTORS = ("elementwise", "scalar", "none")


class KroneckerTransform(nn.Module):
    """``layers`` Kronecker maps with ReLU between them for one parameter (KLin when ``layers=1``).

    ``normalize=True``: ``T(G) = ||G|| S ⊙ net(G / ||G||)`` with the learnable factor ``S`` of
    shape ``factor`` (A.1.2, module docstring); ``output_bias=True`` adds ``B in R^{n x m}`` to
    the last map's output (``bias=True`` adds one to every map).

    Args:
        shape: Shape of the model parameter whose gradient this transform maps.
        layers: Number of Kronecker maps.
        bias: A bias ``B_i in R^{n x m}`` (zeros) in every map.
        normalize: The gradient-norm handling of A.1.2.
        factor: ``"elementwise"``, ``"scalar"`` or ``"none"``: the learnable factor ``S`` of
            the norm handling; only with ``normalize=True`` (``None``: ``"elementwise"``).
        output_bias: A bias ``B in R^{n x m}`` (zeros) on the last map's output only.

    Raises:
        ValueError: On a non-positive ``layers``, an unknown ``factor``, a ``factor`` without
            ``normalize``, or ``bias`` together with ``output_bias``.
    """

    def __init__(self, shape: torch.Size, layers: int = 1, bias: bool = False,
                 normalize: bool = False, factor: str | None = None,
                 output_bias: bool = False) -> None:
        super().__init__()
        check_positive_int("layers", layers)
        factor = check_factor(factor, normalize)
        if bias and output_bias:
            raise ValueError("bias=True already gives the last map a bias: use bias or output_bias")
        n, m = kronecker_dims(shape)
        self.maps = nn.ModuleList(KroneckerLinear(n, m, bias) for _ in range(layers))
        self.output_bias = nn.Parameter(torch.zeros(n, m)) if output_bias else None
        self.normalize = normalize
        self.scale = None                                  # the learnable factor S
        if normalize and factor != "none":
            self.scale = nn.Parameter(torch.ones((n, m) if factor == "elementwise" else ()))

    def forward(self, g: Tensor) -> Tensor:
        """Apply the stacked Kronecker maps (and the optional norm handling) to ``g``."""
        x = to_matrix(g)
        if self.normalize:
            norm = torch.linalg.vector_norm(x)
            norm = torch.where(norm > 0, norm, torch.ones_like(norm))
            x = x / norm
        for i, layer in enumerate(self.maps):
            x = layer(F.relu(x) if i else x)
        if self.output_bias is not None:
            x = x + self.output_bias
        if self.normalize:
            x = x * norm if self.scale is None else x * (norm * self.scale)
        return from_matrix(x, g.shape)


def check_factor(factor: str | None, normalize: bool) -> str:
    """The learnable factor's kind: ``factor`` checked, ``"elementwise"`` for ``None``.

    Args:
        factor: One of :data:`FACTORS`, or ``None``.
        normalize: Whether the transform uses the gradient-norm handling (A.1.2).

    Returns:
        The factor's kind.

    Raises:
        ValueError: ``factor`` is unknown, or given without ``normalize``.
    """
    if factor is None:
        return "elementwise"
    if factor not in FACTORS:
        raise ValueError(f"factor must be one of {list(FACTORS)}, got {factor!r}")
    if not normalize:
        raise ValueError(f"factor={factor!r} is the norm handling's factor: it needs normalize=True")
    return factor


def check_positive_int(name: str, value: int) -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``value`` is a positive integer."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def kronecker_rule(model: nn.Module, alpha: float, *, layers: int, adapts: bool,
                   bias: bool = False, normalize: bool = False, factor: str | None = None,
                   output_bias: bool = False) -> PerParameterRule:
    """One :class:`KroneckerTransform` per parameter of ``model``: ``U(g_p) = alpha T_p(g_p)``.

    Args:
        model: The model whose parameters the rule updates.
        alpha: Adaptation rate.
        layers: Kronecker maps per transform.
        adapts: Whether the rule's parameters take inner-loop steps (Algorithm 1).
        bias: A bias in every map.
        normalize: The gradient-norm handling of A.1.2.
        factor: The learnable factor of the norm handling (see :class:`KroneckerTransform`).
        output_bias: A bias on the last map's output.

    Returns:
        The rule, on the model's device and dtype.
    """
    check_positive("alpha", alpha)
    check_positive_int("layers", layers)
    check_factor(factor, normalize)
    rule = PerParameterRule(
        {k: p.shape for k, p in model.named_parameters()},
        lambda name, shape: KroneckerTransform(shape, layers=layers, bias=bias, normalize=normalize,
                                               factor=factor, output_bias=output_bias),
        alpha=alpha, adapts=adapts)
    return match_model(rule, model)


def klin_rule(model: nn.Module, alpha: float, *, bias: bool = False) -> PerParameterRule:
    """KLin (Sec. 4.2): ``U(g) = alpha vec(L G R)``, L, R adapted in the inner loop (Algorithm 1).

    Args:
        model: The model whose parameters the rule updates.
        alpha: Adaptation rate.
        bias: Add ``B in R^{n x m}`` (Eq. 5's ``b``; the paper uses none).

    Returns:
        The rule.
    """
    return kronecker_rule(model, alpha, layers=1, adapts=True, bias=bias)


def mc_rule(model: nn.Module, alpha: float, *, bias: bool = False) -> PerParameterRule:
    """Meta-Curvature as in the paper (Sec. 4.3): KLin meta-learned but not adapted.

    Args:
        model: The model whose parameters the rule updates.
        alpha: Adaptation rate.
        bias: Add ``B in R^{n x m}`` (the paper uses none).

    Returns:
        The rule.
    """
    return kronecker_rule(model, alpha, layers=1, adapts=False, bias=bias)


def kfc_rule(model: nn.Module, alpha: float, *, layers: int = 4, normalize: bool = False,
             factor: str | None = None, bias: bool = False,
             output_bias: bool = False) -> PerParameterRule:
    """KFC (Eq. 6-7): ``layers`` Kronecker maps with ReLU between them, adapted in the inner loop.

    The non-linear experiments (A.1.2, Table A3) use ``layers=4, normalize=True,
    factor="elementwise"``: ``U(g) = alpha ||G|| S ⊙ net(G / ||G||)``.

    Args:
        model: The model whose parameters the rule updates.
        alpha: Adaptation rate.
        layers: Kronecker maps per transform (4; the synthetic experiment uses 2).
        normalize: The gradient-norm handling of A.1.2.
        factor: Its learnable factor: ``"elementwise"`` (default with ``normalize``, the
            reading that reproduces Table A3), ``"scalar"`` or ``"none"``.
        bias: A bias in every map (the paper uses none).
        output_bias: A bias on the last map's output (the other reading of Table A3's counts,
            with ``factor="none"``).

    Returns:
        The rule.
    """
    return kronecker_rule(model, alpha, layers=layers, adapts=True, bias=bias, normalize=normalize,
                          factor=factor, output_bias=output_bias)
