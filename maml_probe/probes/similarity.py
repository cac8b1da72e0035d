"""How much adaptation changes each layer's representation: linear CKA (and SVCCA) per layer.

For a trained learner and a test task with support set ``S`` and query inputs ``X_q``, each
layer ``l`` is read twice on the query set: with the meta-learned ``theta_0`` (before
adaptation) and with the adapted ``theta_T`` (after ``steps`` inner steps on ``S``)::

    A_l = f_l(X_q; theta_0),      B_l = f_l(X_q; theta_T),      similarity_l = CKA(A_l, B_l)

``CKA = 1`` means the layer's representation is unchanged up to rotation and scale; smaller
values mean adaptation changed it. Raghu et al. (2019, "Rapid learning or feature reuse?",
ICLR 2020) made this measurement with CCA and found MAML's body almost unchanged (feature
reuse); here the same view is taken of MAML, ANIL/BOIL and each meta-optimizer.

**Linear CKA** (Kornblith et al., 2019, "Similarity of neural network representations
revisited", ICML, Eq. 2 with a linear kernel). With ``X in R^{n x p}`` and ``Y in R^{n x q}``
column-centred (``H = I - 11^T / n``)::

    CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)
              = <K, L>_F / (||K||_F ||L||_F),     K = X X^T,  L = Y Y^T

It lies in ``[0, 1]``, is 1 for identical inputs, and is invariant to orthogonal transforms
and isotropic scaling of either argument (not to arbitrary invertible maps). For one feature on
each side it is the squared Pearson correlation. It is computed in float64 after dividing each
centred matrix by its Frobenius norm, through the ``n x n`` Gram matrices when ``n`` is the
smaller side and through the feature cross-products otherwise (the same number, exactly).

**SVCCA** (Raghu et al., 2017, "SVCCA", NeurIPS): keep the top singular directions of each
centred matrix that explain a fraction ``keep`` of its variance, then average the canonical
correlations of the two reduced matrices. CCA is invariant to any invertible linear map, so with
fewer examples than kept directions every correlation is 1: SVCCA needs ``n`` well above the
kept dimension (use many query examples).

**Layer outputs.** A layer's activation is the output of the smallest module holding all its
parameters (:func:`layer_modules`): for the CNNs the conv block (after BatchNorm, ReLU and
pooling), flattened to ``[n, C*H*W]`` (each unit at each position a feature); for LinNet the
hidden ``nn.Linear``; ``FC`` gives the logits. BatchNorm uses the query batch's statistics as in
evaluation, so the "before" and "after" passes normalise the same batch.
"""
from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence

import pandas as pd
import torch
from torch import Tensor, nn
from torch.func import functional_call
from tqdm.auto import tqdm

from ..learner import MetaLearner
from ..maml import adapt
from ..models import layer_of
from ..stats import summarize
from ..tasks.base import TaskSource, seeded_batches
from .common import check_layers, clone_params, layer_names
from .presets import resolve_adapt_mask

MEASURES = ("cka", "svcca")


def _as_matrix(x: Tensor, name: str) -> Tensor:
    """``x`` as float64 ``[n, features]`` (everything after the first axis flattened)."""
    if not isinstance(x, Tensor):
        x = torch.as_tensor(x)
    if x.dim() == 1:
        x = x[:, None]
    if x.dim() < 1 or x.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 examples (rows), got shape {list(x.shape)}")
    return x.detach().reshape(x.shape[0], -1).to(torch.float64)


def _centered_pair(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    x, y = _as_matrix(x, "x"), _as_matrix(y, "y")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same number of examples, got {x.shape[0]} and "
                         f"{y.shape[0]}")
    return x - x.mean(0, keepdim=True), y - y.mean(0, keepdim=True)


def linear_cka(x: Tensor, y: Tensor) -> float:
    """Linear centred kernel alignment of two representations of the same ``n`` examples.

    ``CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` with ``X``, ``Y`` column-centred
    (Kornblith et al., 2019, Eq. 2, linear kernel); computed in float64 (module doc).

    Args:
        x: ``[n, ...]`` activations (flattened after the first axis), or ``[n]``.
        y: ``[n, ...]`` activations of the same examples, any number of features.

    Returns:
        CKA in ``[0, 1]``; ``nan`` when either representation is constant over the examples.
    """
    x, y = _centered_pair(x, y)
    nx, ny = torch.linalg.matrix_norm(x), torch.linalg.matrix_norm(y)
    if nx == 0 or ny == 0 or not (torch.isfinite(nx) and torch.isfinite(ny)):
        return math.nan
    x, y = x / nx, y / ny
    n, p, q = x.shape[0], x.shape[1], y.shape[1]
    if n * n <= p * q:  # Gram matrices are the smaller objects
        k, m = x @ x.T, y @ y.T
        num = (k * m).sum()
        den = torch.linalg.matrix_norm(k) * torch.linalg.matrix_norm(m)
    else:
        num = torch.linalg.matrix_norm(y.T @ x) ** 2
        den = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    return float(min(num / den, 1.0))


def _basis(x: Tensor, rtol: float) -> Tensor:
    """Orthonormal basis ``[n, r]`` of the column space of a centred ``x`` (numerical rank ``r``)."""
    u, s, _ = torch.linalg.svd(x, full_matrices=False)
    if s.numel() == 0 or s[0] == 0:
        return u[:, :0]
    return u[:, s > rtol * s[0]]


def cca(x: Tensor, y: Tensor, *, rtol: float = 1e-10) -> Tensor:
    """Canonical correlations of two representations of the same ``n`` examples.

    With ``Q_x``, ``Q_y`` orthonormal bases of the centred column spaces, the canonical
    correlations are the singular values of ``Q_x^T Q_y`` (Bjorck & Golub, 1973), in descending
    order; there are ``min(rank X, rank Y)`` of them.

    Args:
        x: ``[n, ...]`` activations.
        y: ``[n, ...]`` activations of the same examples.
        rtol: singular values below ``rtol`` times the largest count as zero (rank cut-off).

    Returns:
        The canonical correlations, float64, in ``[0, 1]``.
    """
    x, y = _centered_pair(x, y)
    qx, qy = _basis(x, rtol), _basis(y, rtol)
    r = min(qx.shape[1], qy.shape[1])
    if r == 0:
        return torch.zeros(0, dtype=torch.float64)
    return torch.linalg.svdvals(qx.T @ qy)[:r].clamp(0.0, 1.0)


def _top_directions(x: Tensor, keep: float) -> Tensor:
    """``U_k S_k``: the centred ``x`` reduced to the singular directions explaining ``keep``."""
    u, s, _ = torch.linalg.svd(x, full_matrices=False)
    var = s ** 2
    if var.sum() == 0:
        return x[:, :0]
    k = int(torch.searchsorted(torch.cumsum(var, 0) / var.sum(), torch.tensor(keep, dtype=var.dtype))) + 1
    k = min(k, s.numel())
    return u[:, :k] * s[:k]


def svcca(x: Tensor, y: Tensor, *, keep: float = 0.99) -> float:
    """SVCCA similarity: mean canonical correlation of the top singular directions (Raghu et al., 2017).

    Each centred representation is reduced to the fewest singular directions that explain a
    fraction ``keep`` of its variance; the result is the mean of :func:`cca` of the two reduced
    matrices. Invariant to orthogonal transforms and isotropic scaling; with ``n`` at most the
    kept dimension every correlation is 1 (module doc).

    Args:
        x: ``[n, ...]`` activations.
        y: ``[n, ...]`` activations of the same examples.
        keep: fraction of variance kept, in ``(0, 1]``.

    Returns:
        The mean canonical correlation in ``[0, 1]``; ``nan`` when either side is constant.
    """
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    x, y = _centered_pair(x, y)
    xr, yr = _top_directions(x, keep), _top_directions(y, keep)
    if xr.shape[1] == 0 or yr.shape[1] == 0:
        return math.nan
    rho = cca(xr, yr)
    return float(rho.mean()) if rho.numel() else math.nan


def layer_modules(model: nn.Module) -> dict[str, str]:
    """``layer name -> submodule path`` whose output is that layer's activation, in forward order.

    The submodule is the smallest one holding every parameter of the layer: ``blocks.0`` for a
    CNN's ``C1`` (conv, BatchNorm, ReLU, pooling), ``hidden.0`` for LinNet's ``H1``, ``fc`` for
    ``FC``.

    Args:
        model: a model of :mod:`maml_probe.models` (or any model whose layers own submodules).

    Returns:
        The module path of each layer.
    """
    paths: dict[str, list[list[str]]] = {}
    for name, _ in model.named_parameters():
        paths.setdefault(layer_of(model, name), []).append(name.split(".")[:-1])
    out = {}
    for layer in layer_names(model):
        prefix = paths[layer][0]
        for p in paths[layer][1:]:
            i = 0
            while i < min(len(prefix), len(p)) and prefix[i] == p[i]:
                i += 1
            prefix = prefix[:i]
        if not prefix:
            raise ValueError(f"layer {layer!r} has parameters in no common submodule; cannot read "
                             f"its activation")
        out[layer] = ".".join(prefix)
    return out


@torch.no_grad()
def layer_activations(model: nn.Module, params: Mapping[str, Tensor], x: Tensor,
                      layers: Sequence[str] | None = None) -> dict[str, Tensor]:
    """Each layer's output when ``model`` runs on ``params`` (forward hooks, functional call).

    Args:
        model: the model (its own parameters are not used).
        params: the parameters to run with, by name (``theta_0`` or an adapted copy).
        x: the inputs ``[n, *input_shape]``.
        layers: which layers (default: all, :func:`layer_modules`).

    Returns:
        ``layer -> activation [n, ...]`` (detached).
    """
    modules = layer_modules(model)
    chosen = check_layers(model, layers) if layers is not None else list(modules)
    acts: dict[str, Tensor] = {}
    handles = []
    try:
        for layer in chosen:
            def hook(_module, _inputs, output, layer=layer):
                acts[layer] = output.detach()
            handles.append(model.get_submodule(modules[layer]).register_forward_hook(hook))
        functional_call(model, dict(params), (x,))
    finally:
        for h in handles:
            h.remove()
    return acts


def _relative_change(before: Mapping[str, Tensor], after: Mapping[str, Tensor],
                     names: Collection[str]) -> float:
    """``||theta_T - theta_0|| / ||theta_0||`` over ``names`` (Frobenius, float64)."""
    d = sum(float(((after[k].double() - before[k].double()) ** 2).sum()) for k in names)
    b = sum(float((before[k].double() ** 2).sum()) for k in names)
    return math.sqrt(d / b) if b > 0 else math.nan


def similarity_probe(learner: MetaLearner, source: TaskSource, *, steps: int, num_tasks: int = 20,
                     seed: int = 0, batch_size: int = 25, layers: Sequence[str] | None = None,
                     adapt_mask: Collection[str] | str | None = None,
                     measures: Sequence[str] = ("cka",), method: str = "", keep: float = 0.99,
                     summary: bool = False, progress: bool = True) -> pd.DataFrame:
    """Similarity of each layer's query-set representation before and after adaptation.

    For every test task and layer ``l``: ``CKA(f_l(X_q; theta_0), f_l(X_q; theta_T))`` (module
    doc), optionally SVCCA, and the layer's relative parameter change
    ``||theta_T,l - theta_0,l||_F / ||theta_0,l||_F``. The tasks are those that
    :func:`maml_probe.evaluation.evaluate` scores with the same ``seed`` and ``batch_size``.
    Adaptation runs graph-free with the learner's rule; the learner is not modified.

    Args:
        learner: the trained learner.
        source: the test task source.
        steps: inner steps per task.
        num_tasks: number of test tasks.
        seed: seed of the test tasks.
        batch_size: tasks drawn per call of ``source.sample``.
        layers: the layers to read (default: all, in forward order).
        adapt_mask: the parameters that adapt: a preset name (``full``, ``anil``, ``boil``),
            parameter names, or ``None`` (all). Layers that do not adapt and lie below every
            adapting layer have ``cka == 1`` exactly.
        measures: ``"cka"`` and/or ``"svcca"``.
        method: label written in the ``method`` column (e.g. ``"SCNN w/ KFC"``).
        keep: variance fraction kept by SVCCA.
        summary: mean, ``ci95``, ``std``, ``n`` per method and layer instead of rows, of ``cka``
            (of ``svcca`` when only that is measured).
        progress: show a progress bar.

    Returns:
        One row per task and layer: ``method``, ``layer``, ``task``, ``cka`` (and ``svcca``),
        ``param_change``; or the summary of ``cka``.
    """
    bad = [m for m in measures if m not in MEASURES]
    if bad or not measures:
        raise ValueError(f"measures must be a non-empty subset of {list(MEASURES)}, got {list(measures)}")
    if num_tasks <= 0:
        raise ValueError(f"num_tasks must be positive, got {num_tasks}")
    model, rule = learner.model, learner.rule
    chosen = check_layers(model, layers) if layers is not None else layer_names(model)
    mask = resolve_adapt_mask(model, adapt_mask)
    params = clone_params(learner)
    by_layer = {layer: [k for k in params if layer_of(model, k) == layer] for layer in chosen}
    rows = []
    bar = tqdm(total=num_tasks, desc="similarity probe", disable=not progress, leave=False)
    for done, batch in seeded_batches(source, num_tasks, seed, batch_size):
        for i in range(len(batch)):
            with torch.enable_grad():
                a = adapt(model, params, batch.support_x[i], batch.support_y[i], steps=steps,
                          rule=rule, adapt_mask=mask, create_graph=False)
            adapted = {k: v.detach() for k, v in a.params.items()}
            pre = layer_activations(model, params, batch.query_x[i], chosen)
            post = layer_activations(model, adapted, batch.query_x[i], chosen)
            for layer in chosen:
                row = {"method": method, "layer": layer, "task": done + i}
                if "cka" in measures:
                    row["cka"] = linear_cka(pre[layer], post[layer])
                if "svcca" in measures:
                    row["svcca"] = svcca(pre[layer], post[layer], keep=keep)
                row["param_change"] = _relative_change(params, adapted, by_layer[layer])
                rows.append(row)
        bar.update(len(batch))
    bar.close()
    df = pd.DataFrame(rows)
    if not summary:
        return df
    return summarize(df, ["method", "layer"], value="cka" if "cka" in measures else "svcca")


__all__ = ["MEASURES", "cca", "layer_activations", "layer_modules", "linear_cka",
           "similarity_probe", "svcca"]
