"""What the learned update learned: the meta-optimizer's map against curvature and the Newton step.

A meta-optimizer maps the inner-loop gradient to the update,
``u_t = U_{xi_{t+1}}(g_t)`` (Algorithm 1; Eq. 5 for KLin and Meta-Curvature, Eq. 6-7 for KFC).
Its *learned map* at step ``t`` is the Jacobian ``P_t = dU_{xi_{t+1}}(g) / dg`` at ``g_t`` (for
KLin/MC exactly ``alpha (R^T kron L)`` per parameter, a fixed matrix; for KFC a local linear
map, with ``P_t g_t = u_t`` since KFC is positively homogeneous). ``t = 0`` uses the meta-learned
``xi_0``; later steps use ``xi`` after its inner steps (KLin, KFC adapt it; MC does not).

It is compared with the curvature of the task's support loss ``L`` at ``theta_t``:

* the Hessian ``H = d^2 L / d theta^2``;
* the Gauss-Newton matrix ``G = J^T H_z J`` (``J`` the Jacobian of the logits, ``H_z`` the
  Hessian of the loss in the logits: ``p(1 - p) / N`` for the binary head,
  ``(diag p - p p^T) / N`` per example for softmax; Martens, 2020, "New insights and perspectives
  on the natural gradient method", Sec. 8). For a linear model (logistic regression) ``G = H``;
* the damped (saddle-free) Newton steps ``s_H = V (|Lambda| + delta I)^{-1} V^T g`` with
  ``H = V Lambda V^T`` (Dauphin et al., 2014, "Identifying and attacking the saddle point
  problem", Eq. 10, with Levenberg-Marquardt damping) and ``s_G = (G + delta I)^{-1} g``;
  ``delta = damping * max |eigenvalue|``.

Measurements per task and step:

* **cosines**: ``cos(u_t, r)`` and ``cos(g_t, r)`` for ``r`` in {gradient, Newton, Gauss-Newton}.
  MAML's update is ``alpha g``, so ``cos(g, r)`` is what plain SGD achieves; a learned map that
  approximates the inverse curvature has ``cos(u, s) > cos(g, s)``;
* **spectrum**: the curvature's eigenvalues ``lambda_i`` (descending), the learned map's gain
  along each eigenvector ``v_i^T P v_i``, the Newton gain ``1 / (|lambda_i| + delta)``, and the
  eigenvalues of the learned map's symmetric part. A map that acts like ``H^{-1}`` has gains
  falling as ``lambda_i`` grows (:func:`gain_correlation`: Spearman correlation of learned and
  Newton gains, +1 for a perfect inverse ordering).

**Exact and matrix-free.** With at most ``exact_limit`` adapted parameters (the linear models on
synthetic tasks: ``d = 100``) everything is exact: ``H`` by ``torch.func.hessian``, ``G`` from the
logits' Jacobian, ``P`` by ``torch.func.jacrev``, full eigendecompositions. Larger models (the
CNNs) are matrix-free: Hessian-vector products (double backward), Gauss-Newton-vector products
(``J^T H_z J v`` with the R-operator by double backward), and a Lanczos/Rayleigh-Ritz basis of
the Krylov space ``K_k(A, g)`` with ``k = krylov_dim`` for ``A = H`` and for ``A = G``: the
Newton steps are the Krylov (CG-like, saddle-free) solutions in that space, the spectrum is
the Ritz values, and the learned map is projected on the same basis (``Q^T P Q``, by
Jacobian-vector products of the rule). With ``krylov_dim >= D`` this is exact again.

All quantities are computed in float64 on copies; the learner is never modified.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence

import pandas as pd
import torch
from torch import Tensor, nn
from torch.func import functional_call
from tqdm.auto import tqdm

from ..inner import apply_rule
from ..learner import MetaLearner
from ..losses import task_loss
from ..maml import adapt
from ..rules.base import UpdateRule
from ..tasks.base import TaskSource, seeded_batches
from .presets import resolve_adapt_mask

REFERENCES = ("gradient", "newton", "gauss-newton")
MatVec = Callable[[Tensor], Tensor]


def flatten(params: Mapping[str, Tensor], names: Sequence[str]) -> Tensor:
    """The entries of ``params[names]`` as one vector (in the order of ``names``).

    Args:
        params: tensors by name.
        names: the names to take.

    Returns:
        ``[D]`` with ``D = sum numel``.
    """
    return torch.cat([params[k].reshape(-1) for k in names])


def unflatten(vec: Tensor, like: Mapping[str, Tensor], names: Sequence[str]) -> dict[str, Tensor]:
    """Inverse of :func:`flatten`: views of ``vec`` shaped as ``like[names]`` (differentiable).

    Args:
        vec: ``[D]`` vector.
        like: tensors giving the shapes, by name.
        names: the names, in the order used by :func:`flatten`.

    Returns:
        ``name -> tensor`` for ``names``.
    """
    out, i = {}, 0
    for k in names:
        n = like[k].numel()
        out[k] = vec[i:i + n].view(like[k].shape)
        i += n
    if i != vec.numel():
        raise ValueError(f"vector has {vec.numel()} entries, the parameters {i}")
    return out


def cosine(a: Tensor, b: Tensor) -> float:
    """``a . b / (|a| |b|)`` in float64, clipped to ``[-1, 1]``; ``nan`` if either is zero.

    Args:
        a: a vector.
        b: a vector of the same size.

    Returns:
        The cosine similarity.
    """
    a, b = a.reshape(-1).double(), b.reshape(-1).double()
    na, nb = torch.linalg.vector_norm(a), torch.linalg.vector_norm(b)
    if na == 0 or nb == 0:
        return math.nan
    return float(((a @ b) / (na * nb)).clamp(-1.0, 1.0))


def _loss_of(model: nn.Module, params: Mapping[str, Tensor], names: Sequence[str], x: Tensor,
             y: Tensor) -> Callable[[Tensor], Tensor]:
    """``flat -> L(theta)`` with the ``names`` entries of ``theta`` taken from ``flat``."""
    chosen = set(names)
    fixed = {k: v for k, v in params.items() if k not in chosen}

    def loss(flat: Tensor) -> Tensor:
        return task_loss(functional_call(model, {**fixed, **unflatten(flat, params, names)}, (x,)), y)

    return loss


def _logits_of(model: nn.Module, params: Mapping[str, Tensor], names: Sequence[str],
               x: Tensor) -> Callable[[Tensor], Tensor]:
    chosen = set(names)
    fixed = {k: v for k, v in params.items() if k not in chosen}
    return lambda flat: functional_call(model, {**fixed, **unflatten(flat, params, names)}, (x,))


def output_hessian(logits: Tensor) -> Tensor:
    """``H_z``: Hessian of the mean task loss in the logits, ``[N, K, K]``.

    Binary head (``K = 1``): ``sigma(z)(1 - sigma(z)) / N``; softmax head:
    ``(diag p - p p^T) / N`` per example (:func:`maml_probe.losses.task_loss`).

    Args:
        logits: ``[N, K]`` logits of one task.

    Returns:
        The per-example output Hessians.
    """
    n, k = logits.shape
    if k == 1:
        s = torch.sigmoid(logits)
        return (s * (1 - s) / n).reshape(n, 1, 1)
    p = torch.softmax(logits, -1)
    return (torch.diag_embed(p) - p[:, :, None] * p[:, None, :]) / n


def exact_curvature(model: nn.Module, params: Mapping[str, Tensor], names: Sequence[str],
                    x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Exact Hessian and Gauss-Newton matrix of the support loss over ``names`` (module doc).

    ``H = torch.func.hessian(L)``; ``G = sum_n J_n^T H_z,n J_n`` with ``J`` the logits' Jacobian.
    Models with BatchNorm get ``H`` column by column from double-backward Hessian-vector products
    instead (:func:`hvp_operator`): ``torch.func``'s second derivative through a batch-statistics
    ``batch_norm`` disagrees with finite differences, autograd's does not.

    Args:
        model: the model.
        params: ``theta`` by name (the point of evaluation).
        names: the parameters the matrices are over (the adapted ones), flattened in order.
        x: support inputs.
        y: support labels.

    Returns:
        ``(H, G)``, each ``[D, D]`` and symmetrised.
    """
    flat = flatten(params, names).detach()
    if any(isinstance(m, nn.modules.batchnorm._NormBase) for m in model.modules()):
        hv, _ = hvp_operator(model, params, names, x, y)
        h = torch.stack([hv(e) for e in torch.eye(flat.numel(), dtype=flat.dtype, device=flat.device)], 1)
    else:
        h = torch.func.hessian(_loss_of(model, params, names, x, y))(flat)
    logits_fn = _logits_of(model, params, names, x)
    jac = torch.func.jacrev(logits_fn)(flat)  # [N, K, D]
    hz = output_hessian(logits_fn(flat).detach())
    g = torch.einsum("nkd,nkl,nle->de", jac, hz, jac)
    return (h + h.T) / 2, (g + g.T) / 2


def hvp_operator(model: nn.Module, params: Mapping[str, Tensor], names: Sequence[str], x: Tensor,
                 y: Tensor) -> tuple[MatVec, Tensor]:
    """Hessian-vector products of the support loss (double backward), and the gradient.

    Args:
        model: the model.
        params: ``theta`` by name.
        names: the parameters the Hessian is over.
        x: support inputs.
        y: support labels.

    Returns:
        ``(v -> H v, g)``, ``g = grad L`` over ``names`` (detached).
    """
    flat = flatten(params, names).detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(_loss_of(model, params, names, x, y)(flat), flat,
                                      create_graph=True)

    def hv(v: Tensor) -> Tensor:
        with torch.enable_grad():
            (out,) = torch.autograd.grad(grad, flat, v, retain_graph=True)
        return out.detach()

    return hv, grad.detach()


def ggn_operator(model: nn.Module, params: Mapping[str, Tensor], names: Sequence[str],
                 x: Tensor) -> MatVec:
    """Gauss-Newton-vector products ``G v = J^T H_z J v`` (module doc), matrix-free.

    ``J v`` is the R-operator, obtained by differentiating ``J^T w`` in ``w`` (double backward);
    ``J^T (.)`` is one vector-Jacobian product.

    Args:
        model: the model.
        params: ``theta`` by name.
        names: the parameters ``G`` is over.
        x: support inputs.

    Returns:
        ``v -> G v``.
    """
    flat = flatten(params, names).detach().requires_grad_(True)
    with torch.enable_grad():
        logits = _logits_of(model, params, names, x)(flat)
        w = torch.zeros_like(logits, requires_grad=True)
        (jtw,) = torch.autograd.grad(logits, flat, w, create_graph=True)
    hz = output_hessian(logits.detach())

    def gv(v: Tensor) -> Tensor:
        with torch.enable_grad():
            (jv,) = torch.autograd.grad(jtw, w, v, retain_graph=True)
            hjv = torch.einsum("nkl,nl->nk", hz, jv)
            (out,) = torch.autograd.grad(logits, flat, hjv, retain_graph=True)
        return out.detach()

    return gv


def krylov_basis(matvec: MatVec, v0: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Orthonormal basis of the Krylov space ``K_k(A, v0)`` and the projection ``Q^T A Q``.

    Lanczos with full re-orthogonalisation (twice, Gram-Schmidt); the projected matrix is formed
    from the stored products (Rayleigh-Ritz), so its eigenvalues are Ritz values of ``A``. Stops
    early when the space is invariant.

    Args:
        matvec: ``v -> A v`` for a symmetric ``A``.
        v0: the starting vector (nonzero).
        k: the largest dimension.

    Returns:
        ``(Q [D, m], T [m, m])`` with ``m <= k``, ``T`` symmetric.
    """
    nv = torch.linalg.vector_norm(v0)
    if nv == 0:
        raise ValueError("the Krylov space of a zero vector is empty")
    k = min(k, v0.numel())
    qs, aqs = [v0 / nv], []
    for j in range(k):
        aq = matvec(qs[j])
        aqs.append(aq)
        if j == k - 1:
            break
        q = torch.stack(qs, 1)
        w = aq - q @ (q.T @ aq)
        w = w - q @ (q.T @ w)
        nw = torch.linalg.vector_norm(w)
        if nw <= 1e-10 * torch.linalg.vector_norm(aq) or nw == 0:
            break
        qs.append(w / nw)
    q = torch.stack(qs[:len(aqs)], 1)
    t = q.T @ torch.stack(aqs, 1)
    return q, (t + t.T) / 2


def damped_step(eigvals: Tensor, eigvecs: Tensor, g: Tensor, damping: float) -> Tensor:
    """Saddle-free damped Newton step ``V (|Lambda| + delta I)^{-1} V^T g``, ``delta = damping max|lambda|``.

    Args:
        eigvals: ``[m]`` eigenvalues (or Ritz values) of the curvature.
        eigvecs: ``[D, m]`` orthonormal eigenvectors (or Ritz vectors).
        g: ``[D]`` gradient.
        damping: relative damping (``>= 0``).

    Returns:
        ``[D]`` step (the descent update is ``-step``, like ``u``).
    """
    delta = damping * float(eigvals.abs().max()) if eigvals.numel() else 0.0
    return eigvecs @ ((eigvecs.T @ g) / (eigvals.abs() + delta))


def rule_update(rule: UpdateRule, rule_params: Mapping[str, Tensor], g: Tensor,
                like: Mapping[str, Tensor], names: Sequence[str]) -> Tensor:
    """The rule's update ``U_xi(g)`` of a flat gradient over ``names``, flattened.

    Args:
        rule: the update rule.
        rule_params: its parameters ``xi``.
        g: ``[D]`` gradient over ``names``.
        like: tensors giving the parameter shapes.
        names: the parameter names, in order.

    Returns:
        ``[D]`` update.
    """
    return flatten(apply_rule(rule, rule_params, unflatten(g, like, names)), names)


def learned_map(rule: UpdateRule, rule_params: Mapping[str, Tensor], g: Tensor,
                like: Mapping[str, Tensor], names: Sequence[str]) -> Tensor:
    """The learned map ``P = dU_xi(g)/dg`` at ``g`` as a ``[D, D]`` matrix (``torch.func.jacrev``).

    For MAML ``P = alpha I``; for KLin/MC on a weight ``W in R^{n x m}``,
    ``vec_row(U) = alpha (L kron R^T) vec_row(G)`` (Eq. 5).

    Args:
        rule: the update rule.
        rule_params: its parameters ``xi``.
        g: ``[D]`` gradient over ``names``.
        like: tensors giving the parameter shapes.
        names: the parameter names, in order.

    Returns:
        The Jacobian ``[D, D]`` (rows: update entries, columns: gradient entries).
    """
    return torch.func.jacrev(lambda v: rule_update(rule, rule_params, v, like, names))(g)


def _map_jvp(rule: UpdateRule, rule_params: Mapping[str, Tensor], g: Tensor,
             like: Mapping[str, Tensor], names: Sequence[str]) -> MatVec:
    f = lambda v: rule_update(rule, rule_params, v, like, names)
    return lambda v: torch.func.jvp(f, (g,), (v,))[1]


def _trajectory(model: nn.Module, rule: UpdateRule, params: Mapping[str, Tensor],
                xi: Mapping[str, Tensor], x: Tensor, y: Tensor, steps: int,
                mask: Collection[str] | None) -> list[tuple[dict[str, Tensor], dict[str, Tensor]]]:
    """``[(theta_s, xi_s) for s = 0..steps]`` of the inner loop (graph-free, detached)."""
    out = []
    for s in range(steps + 1):
        with torch.enable_grad():
            a = adapt(model, params, x, y, steps=s, rule=rule, rule_params=xi, adapt_mask=mask,
                      create_graph=False)
        out.append(({k: v.detach() for k, v in a.params.items()},
                    {k: v.detach() for k, v in a.rule_params.items()}))
    return out


def analyse_step(model: nn.Module, rule: UpdateRule, params: Mapping[str, Tensor],
                 rule_params: Mapping[str, Tensor], names: Sequence[str], x: Tensor, y: Tensor, *,
                 damping: float = 1e-3, exact: bool = True,
                 krylov_dim: int = 30) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Compare one inner step's learned update with the curvature at ``theta`` (module doc).

    Args:
        model: the model.
        rule: the update rule.
        params: ``theta_t`` by name (float64).
        rule_params: ``xi_{t+1}``, the rule parameters that step ``t`` applies (float64).
        names: the adapted parameters, in order.
        x: support inputs (float64).
        y: support labels.
        damping: relative damping of the Newton steps.
        exact: full matrices (small models) or matrix-free Krylov (module doc).
        krylov_dim: Krylov dimension of the matrix-free mode.

    Returns:
        ``(cosines, spectrum)``: rows ``reference``, ``cos_learned``, ``cos_gradient`` and rows
        ``index``, ``hessian_eig``, ``gauss_newton_eig``, ``learned_gain``, ``newton_gain``,
        ``learned_eig`` (the module doc defines each).
    """
    if exact:
        flat = flatten(params, names).detach()
        g = torch.func.grad(_loss_of(model, params, names, x, y))(flat)
        h, gn = exact_curvature(model, params, names, x, y)
        lam, v = torch.linalg.eigh(h)
        lam_g, v_g = torch.linalg.eigh(gn)
        p = learned_map(rule, rule_params, g, params, names)
        u = rule_update(rule, rule_params, g, params, names)
        learned_eig = torch.linalg.eigvalsh((p + p.T) / 2)
        gains = torch.einsum("di,de,ei->i", v, p, v)
    else:
        hv, g = hvp_operator(model, params, names, x, y)
        q, t = krylov_basis(hv, g, krylov_dim)
        lam, s = torch.linalg.eigh(t)
        v = q @ s
        q_g, t_g = krylov_basis(ggn_operator(model, params, names, x), g, krylov_dim)
        lam_g, s_g = torch.linalg.eigh(t_g)
        v_g = q_g @ s_g
        u = rule_update(rule, rule_params, g, params, names).detach()
        jvp = _map_jvp(rule, rule_params, g, params, names)
        pv = torch.stack([jvp(v[:, i]) for i in range(v.shape[1])], 1)
        proj = v.T @ pv
        learned_eig = torch.linalg.eigvalsh((proj + proj.T) / 2)
        gains = torch.diagonal(proj)
    s_h = damped_step(lam, v, g, damping)
    s_gn = damped_step(lam_g.clamp_min(0), v_g, g, damping)
    cos_rows = [{"reference": ref, "cos_learned": cosine(u, r), "cos_gradient": cosine(g, r)}
                for ref, r in zip(REFERENCES, (g, s_h, s_gn))]
    order = torch.argsort(lam, descending=True)
    delta = damping * float(lam.abs().max())
    m = len(order)

    def padded(vals: Tensor) -> list[float]:
        vals = torch.sort(vals, descending=True).values.tolist()
        return (vals + [math.nan] * m)[:m]

    spectrum = pd.DataFrame({
        "index": range(m),
        "hessian_eig": lam[order].tolist(),
        "gauss_newton_eig": padded(lam_g),
        "learned_gain": gains[order].tolist(),
        "newton_gain": (1 / (lam[order].abs() + delta)).tolist(),
        "learned_eig": padded(learned_eig),
    })
    return pd.DataFrame(cos_rows), spectrum


def preconditioner_probe(learner: MetaLearner, source: TaskSource, *, steps: int,
                         num_tasks: int = 5, seed: int = 0, batch_size: int = 25,
                         adapt_mask: Collection[str] | str | None = None, method: str = "",
                         damping: float = 1e-3, exact: bool | None = None,
                         exact_limit: int = 2048, krylov_dim: int = 30,
                         progress: bool = True) -> dict[str, pd.DataFrame]:
    """The learned map of every inner step against the support loss's curvature (module doc).

    For each test task the inner loop runs ``steps`` steps from the meta-learned ``theta_0``,
    ``xi_0`` (float64 copies); step ``t`` compares ``u_t = U_{xi_{t+1}}(g_t)`` with the Hessian,
    Gauss-Newton matrix and Newton steps at ``theta_t``. The tasks are those
    :func:`maml_probe.evaluation.evaluate` scores with the same ``seed`` and ``batch_size``.

    Args:
        learner: the trained learner (not modified).
        source: the test task source.
        steps: inner steps per task (at least 1).
        num_tasks: number of test tasks.
        seed: seed of the test tasks.
        batch_size: tasks drawn per call of ``source.sample``.
        adapt_mask: the parameters that adapt (and that the matrices are over): a preset name
            (``full``, ``anil``, ``boil``), parameter names, or ``None`` (all).
        method: label written in the ``method`` column.
        damping: relative damping ``delta / max|lambda|`` of the Newton steps.
        exact: full matrices; default: when at most ``exact_limit`` parameters adapt.
        exact_limit: the largest number of adapted parameters handled exactly by default.
        krylov_dim: Krylov dimension of the matrix-free mode.
        progress: show a progress bar.

    Returns:
        ``{"cosines": ..., "spectrum": ...}``: per task and step, ``cosines`` has ``method``,
        ``task``, ``step``, ``reference``, ``cos_learned``, ``cos_gradient``, ``exact``;
        ``spectrum`` has ``method``, ``task``, ``step``, ``index``, ``hessian_eig``,
        ``gauss_newton_eig``, ``learned_gain``, ``newton_gain``, ``learned_eig``.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if num_tasks <= 0:
        raise ValueError(f"num_tasks must be positive, got {num_tasks}")
    if damping < 0:
        raise ValueError(f"damping must be non-negative, got {damping}")
    model, rule = learner.model, learner.rule
    mask = resolve_adapt_mask(model, adapt_mask)
    params = {k: v.detach().to(torch.float64) for k, v in model.named_parameters()}
    xi = {k: v.detach().to(torch.float64) for k, v in rule.named_parameters()}
    names = [k for k in params if mask is None or k in mask]
    if not names:
        raise ValueError("no parameter adapts: the learned map is empty")
    size = sum(params[k].numel() for k in names)
    exact = size <= exact_limit if exact is None else exact
    cos_frames, spec_frames = [], []
    bar = tqdm(total=num_tasks, desc="preconditioner probe", disable=not progress, leave=False)
    for done, batch in seeded_batches(source, num_tasks, seed, batch_size):
        for i in range(len(batch)):
            x = batch.support_x[i].to(torch.float64)
            y = batch.support_y[i]
            y = y.to(torch.float64) if y.is_floating_point() else y
            traj = _trajectory(model, rule, params, xi, x, y, steps, mask)
            for t in range(steps):
                theta_t, xi_next = traj[t][0], traj[t + 1][1]
                cos, spec = analyse_step(model, rule, theta_t, xi_next, names, x, y,
                                         damping=damping, exact=exact, krylov_dim=krylov_dim)
                key = {"method": method, "task": done + i, "step": t}
                cos_frames.append(cos.assign(**key, exact=exact))
                spec_frames.append(spec.assign(**key))
        bar.update(len(batch))
    bar.close()
    first = ["method", "task", "step"]
    cosines = pd.concat(cos_frames, ignore_index=True)
    spectrum = pd.concat(spec_frames, ignore_index=True)
    cosines = cosines[first + [c for c in cosines.columns if c not in first]]
    spectrum = spectrum[first + [c for c in spectrum.columns if c not in first]]
    return {"cosines": cosines, "spectrum": spectrum}


def _flat(values: pd.Series) -> bool:
    """Whether ``values`` are constant up to rounding (no ordering to correlate)."""
    spread = float(values.max() - values.min())
    return not spread > 1e-9 * float(values.abs().max())


def gain_correlation(spectrum: pd.DataFrame) -> pd.DataFrame:
    """Spearman correlation of the learned gains with the Newton gains, per method, task and step.

    ``+1``: the learned map ranks the curvature directions exactly as ``H^{-1}`` does (largest
    step along the flattest direction); ``0``: no relation (an isotropic map such as MAML's
    ``alpha I`` has constant gains, and gives ``nan``); ``-1``: the opposite ordering.

    Args:
        spectrum: the ``spectrum`` frame of :func:`preconditioner_probe`.

    Returns:
        Columns ``method``, ``task``, ``step``, ``spearman``.
    """
    rows = []
    for (method, task, step), part in spectrum.groupby(["method", "task", "step"], sort=False):
        a, b = part["learned_gain"], part["newton_gain"]
        rho = math.nan if _flat(a) or _flat(b) else float(a.rank().corr(b.rank()))
        rows.append({"method": method, "task": task, "step": step, "spearman": rho})
    return pd.DataFrame(rows)


def summarize_cosines(cosines: pd.DataFrame) -> pd.DataFrame:
    """Mean of ``cos_learned`` and ``cos_gradient`` per method, step and reference, with ``n`` tasks.

    Args:
        cosines: the ``cosines`` frame of :func:`preconditioner_probe`.

    Returns:
        Columns ``method``, ``step``, ``reference``, ``cos_learned``, ``cos_gradient``, ``n``.
    """
    g = cosines.groupby(["method", "step", "reference"], sort=False)
    out = g[["cos_learned", "cos_gradient"]].mean()
    out["n"] = g.size()
    return out.reset_index()


__all__ = ["REFERENCES", "analyse_step", "cosine", "damped_step", "exact_curvature", "flatten",
           "gain_correlation", "ggn_operator", "hvp_operator", "krylov_basis", "learned_map",
           "output_hessian", "preconditioner_probe", "rule_update", "summarize_cosines", "unflatten"]
