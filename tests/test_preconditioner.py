"""The learned map against curvature: exact Hessians, HVPs, Krylov steps, and the probe end to end."""
import math

import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from torch.func import functional_call

from maml_probe.learner import MetaLearner, build_learner
from maml_probe.losses import task_loss
from maml_probe.models import ConvNet
from maml_probe.probes import similarity_plots
from maml_probe.probes.preconditioner import (
    analyse_step,
    cosine,
    damped_step,
    exact_curvature,
    flatten,
    gain_correlation,
    ggn_operator,
    hvp_operator,
    krylov_basis,
    learned_map,
    output_hessian,
    preconditioner_probe,
    rule_update,
    summarize_cosines,
    unflatten,
)
from maml_probe.rules import make_rule
from maml_probe.tasks.synthetic import SyntheticBinaryTasks

from .test_probes import TinyImageTasks

D = 12


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _lr(rule="maml", alpha=0.5, seed=0, **kw):
    torch.manual_seed(seed)
    learner = build_learner("lr", rule, dataset="synthetic", input_shape=(D,), num_outputs=1,
                            alpha=alpha, model_kwargs={"bias": False}, rule_kwargs=kw)
    return learner.to(torch.float64)


def _params64(model):
    return {k: v.detach().double() for k, v in model.named_parameters()}


def _task(seed=0, n=30):
    b = SyntheticBinaryTasks(D, n, n, dtype=torch.float64).sample(1, _gen(seed))
    return b.support_x[0], b.support_y[0]


def _tiny_cnn(seed=0):
    torch.manual_seed(seed)
    net = ConvNet("omniglot", 1, 3, filters=2).double()
    x = torch.randn(6, 1, 28, 28, generator=_gen(seed), dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    return net, _params64(net), x, y


# ---------------------------------------------------------------- helpers


def test_flatten_unflatten_round_trip_and_cosine():
    params = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([7.0]), "c": torch.ones(2)}
    flat = flatten(params, ["b", "a"])
    assert flat.tolist() == [7.0, 0, 1, 2, 3, 4, 5]
    back = unflatten(flat, params, ["b", "a"])
    assert torch.equal(back["a"], params["a"]) and set(back) == {"a", "b"}
    with pytest.raises(ValueError, match="entries"):
        unflatten(flat, params, ["a"])
    assert cosine(torch.tensor([1.0, 0]), torch.tensor([3.0, 0])) == pytest.approx(1.0)
    assert cosine(torch.tensor([1.0, 0]), torch.tensor([0.0, -2])) == pytest.approx(0.0)
    assert math.isnan(cosine(torch.zeros(2), torch.ones(2)))


def test_output_hessian_matches_autograd():
    for k in (1, 4):
        z = torch.randn(5, k, generator=_gen(k), dtype=torch.float64)
        y = torch.randint(0, 2, (5,)).double() if k == 1 else torch.randint(0, k, (5,))
        full = torch.func.hessian(lambda t, y=y: task_loss(t, y))(z)  # [5, k, 5, k]
        blocks = torch.stack([full[i, :, i, :] for i in range(5)])
        assert torch.allclose(output_hessian(z), blocks, atol=1e-12)


# ---------------------------------------------------------------- exact curvature


def test_exact_hessian_of_logistic_regression_is_closed_form_and_equals_gauss_newton():
    learner = _lr()
    params = _params64(learner.model)
    x, y = _task()
    h, g = exact_curvature(learner.model, params, ["fc.weight"], x, y)
    p = torch.sigmoid(x @ params["fc.weight"][0])
    closed = x.T @ (x * (p * (1 - p))[:, None]) / len(x)
    assert torch.allclose(h, closed, atol=1e-12)
    assert torch.allclose(g, closed, atol=1e-12)  # linear model: G = H


def test_exact_curvature_of_a_cnn_is_symmetric_and_gauss_newton_is_psd():
    net, params, x, y = _tiny_cnn()
    names = list(params)
    h, g = exact_curvature(net, params, names, x, y)
    n = sum(v.numel() for v in params.values())
    assert h.shape == g.shape == (n, n)
    assert torch.allclose(h, h.T) and torch.linalg.eigvalsh(g).min() > -1e-10
    assert not torch.allclose(h, g, atol=1e-6)  # a ReLU CNN with BatchNorm is not linear
    flat = flatten(params, names)
    grad = torch.func.grad(lambda f: task_loss(functional_call(
        net, unflatten(f, params, names), (x,)), y))
    eye = torch.eye(n, dtype=torch.float64)
    fd = torch.stack([(grad(flat + 1e-6 * e) - grad(flat - 1e-6 * e)) / 2e-6 for e in eye], 1)
    assert torch.allclose(h, fd, atol=1e-7)  # central differences of the gradient


# ---------------------------------------------------------------- matrix-free products


def test_hvp_and_ggn_products_match_the_exact_matrices_on_a_cnn():
    net, params, x, y = _tiny_cnn()
    names = [k for k in params if k != "blocks.0.bn.bias"]  # a masked subset
    h, g = exact_curvature(net, params, names, x, y)
    hv, grad = hvp_operator(net, params, names, x, y)
    gv = ggn_operator(net, params, names, x)
    flat = flatten(params, names)
    loss = lambda f: task_loss(functional_call(net, {**params, **unflatten(f, params, names)}, (x,)), y)
    assert torch.allclose(grad, torch.func.grad(loss)(flat), atol=1e-12)
    for seed in range(3):
        v = torch.randn(len(flat), generator=_gen(seed), dtype=torch.float64)
        assert torch.allclose(hv(v), h @ v, atol=1e-10)
        assert torch.allclose(gv(v), g @ v, atol=1e-10)


def test_krylov_basis_is_orthonormal_and_exact_at_full_dimension():
    a = torch.randn(9, 9, generator=_gen(1), dtype=torch.float64)
    a = a @ a.T + 0.1 * torch.eye(9, dtype=torch.float64)
    v0 = torch.randn(9, generator=_gen(2), dtype=torch.float64)
    q, t = krylov_basis(lambda v: a @ v, v0, 4)
    assert q.shape == (9, 4) and torch.allclose(q.T @ q, torch.eye(4, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(t, q.T @ a @ q, atol=1e-10)
    assert torch.allclose(q[:, 0], v0 / v0.norm())
    q, t = krylov_basis(lambda v: a @ v, v0, 50)
    assert q.shape == (9, 9)
    assert torch.allclose(torch.linalg.eigvalsh(t), torch.linalg.eigvalsh(a), atol=1e-9)
    # invariant subspace: stops early
    q, _ = krylov_basis(lambda v: 2 * v, v0, 5)
    assert q.shape[1] == 1
    with pytest.raises(ValueError, match="zero"):
        krylov_basis(lambda v: v, torch.zeros(3), 2)


def test_damped_step_is_the_damped_saddle_free_newton_step():
    a = torch.randn(6, 6, generator=_gen(3), dtype=torch.float64)
    a = a @ a.T
    g = torch.randn(6, generator=_gen(4), dtype=torch.float64)
    lam, v = torch.linalg.eigh(a)
    delta = 0.01 * float(lam.max())
    expected = torch.linalg.solve(a + delta * torch.eye(6, dtype=torch.float64), g)
    assert torch.allclose(damped_step(lam, v, g, 0.01), expected, atol=1e-10)
    indefinite = torch.diag(torch.tensor([2.0, -4.0], dtype=torch.float64))
    s = damped_step(torch.tensor([2.0, -4.0], dtype=torch.float64), torch.eye(2, dtype=torch.float64),
                    torch.ones(2, dtype=torch.float64), 0.0)
    assert s.tolist() == [0.5, 0.25]  # |lambda|^-1: a descent direction even at a saddle
    assert float(s @ indefinite @ s) != 0


# ---------------------------------------------------------------- learned map


def test_learned_map_of_maml_is_alpha_identity_and_of_klin_is_alpha_l_r_transpose():
    learner = _lr("maml", alpha=0.3)
    params = _params64(learner.model)
    g = torch.randn(D, generator=_gen(5), dtype=torch.float64)
    p = learned_map(learner.rule, {}, g, params, ["fc.weight"])
    assert torch.allclose(p, 0.3 * torch.eye(D, dtype=torch.float64))
    for rule in ("klin", "mc"):
        learner = _lr(rule, alpha=0.3)
        xi = {k: v.detach().double() for k, v in learner.rule.named_parameters()}
        left = next(k for k in xi if k.endswith("left"))
        right = next(k for k in xi if k.endswith("right"))
        xi[left] = torch.tensor([[1.7]], dtype=torch.float64)
        xi[right] = torch.randn(D, D, generator=_gen(6), dtype=torch.float64)
        p = learned_map(learner.rule, xi, g, params, ["fc.weight"])
        assert torch.allclose(p, 0.3 * 1.7 * xi[right].T, atol=1e-12)
        assert torch.allclose(rule_update(learner.rule, xi, g, params, ["fc.weight"]), p @ g, atol=1e-12)


def test_learned_map_of_kfc_reproduces_its_update():
    """KFC with normalisation is positively homogeneous: P(g) g = U(g)."""
    learner = _lr("kfc", alpha=0.3, layers=2, normalize=True)
    params = _params64(learner.model)
    xi = {k: v.detach().double() + 0.05 * torch.randn(v.shape, generator=_gen(7), dtype=torch.float64)
          for k, v in learner.rule.named_parameters()}
    g = torch.randn(D, generator=_gen(8), dtype=torch.float64)
    p = learned_map(learner.rule, xi, g, params, ["fc.weight"])
    assert torch.allclose(p @ g, rule_update(learner.rule, xi, g, params, ["fc.weight"]), atol=1e-10)


# ---------------------------------------------------------------- one step, and the probe


def test_analyse_step_exact_and_matrix_free_agree_at_full_krylov_dimension():
    learner = _lr("mc", alpha=0.5)
    params = _params64(learner.model)
    xi = {k: v.detach().double() for k, v in learner.rule.named_parameters()}
    right = next(k for k in xi if k.endswith("right"))
    xi[right] = xi[right] + 0.2 * torch.randn(D, D, generator=_gen(9), dtype=torch.float64)
    x, y = _task(1)
    cos_e, spec_e = analyse_step(learner.model, learner.rule, params, xi, ["fc.weight"], x, y, exact=True)
    cos_m, spec_m = analyse_step(learner.model, learner.rule, params, xi, ["fc.weight"], x, y,
                                 exact=False, krylov_dim=D)
    assert list(cos_e["reference"]) == ["gradient", "newton", "gauss-newton"]
    assert cos_e["cos_gradient"].iloc[0] == pytest.approx(1.0)
    for col in ("cos_learned", "cos_gradient"):
        assert cos_m[col].tolist() == pytest.approx(cos_e[col].tolist(), abs=1e-7)
    assert spec_m["hessian_eig"].tolist() == pytest.approx(spec_e["hessian_eig"].tolist(), abs=1e-9)
    assert spec_m["learned_gain"].tolist() == pytest.approx(spec_e["learned_gain"].tolist(), abs=1e-7)
    assert spec_m["learned_eig"].tolist() == pytest.approx(spec_e["learned_eig"].tolist(), abs=1e-7)
    assert (spec_e["hessian_eig"].diff().dropna() <= 0).all()  # descending


def test_probe_finds_a_newton_map_when_the_rule_is_one():
    """An MC rule set to (H + delta I)^{-1} of the first task's support loss is Newton on that task."""
    learner = _lr("mc", alpha=1.0)
    source = SyntheticBinaryTasks(D, 30, 30, dtype=torch.float64)
    batch = source.sample(1, _gen(11))
    params = _params64(learner.model)
    h, _ = exact_curvature(learner.model, params, ["fc.weight"], batch.support_x[0], batch.support_y[0])
    lam = torch.linalg.eigvalsh(h)
    inverse = torch.linalg.inv(h + 1e-3 * float(lam.max()) * torch.eye(D, dtype=torch.float64))
    with torch.no_grad():
        transform = learner.rule.transform_for("fc.weight").maps[0]
        transform.right.copy_(inverse)  # P = alpha * l * R^T, R symmetric
    out = preconditioner_probe(learner, source, steps=1, num_tasks=1, seed=11, batch_size=1,
                               method="newton-mc", progress=False)
    cos = out["cosines"].set_index("reference")
    assert cos.loc["newton", "cos_learned"] == pytest.approx(1.0, abs=1e-9)
    assert cos.loc["newton", "cos_gradient"] < 0.999
    corr = gain_correlation(out["spectrum"])
    assert corr["spearman"].iloc[0] == pytest.approx(1.0)


def test_preconditioner_probe_frames_steps_and_maml_baseline():
    learner = _lr("klin", alpha=0.5)
    before = {k: v.clone() for k, v in learner.state_dict().items()}
    out = preconditioner_probe(learner, SyntheticBinaryTasks(D, 20, 20), steps=2, num_tasks=2,
                               method="LR w/ KLin", progress=False)
    cos, spec = out["cosines"], out["spectrum"]
    assert list(cos.columns) == ["method", "task", "step", "reference", "cos_learned",
                                 "cos_gradient", "exact"]
    assert len(cos) == 2 * 2 * 3 and cos["exact"].all()
    assert list(spec.columns) == ["method", "task", "step", "index", "hessian_eig",
                                  "gauss_newton_eig", "learned_gain", "newton_gain", "learned_eig"]
    assert len(spec) == 2 * 2 * D
    assert all(torch.equal(before[k], v) for k, v in learner.state_dict().items())
    maml = preconditioner_probe(_lr("maml"), SyntheticBinaryTasks(D, 20, 20), steps=1, num_tasks=2,
                                method="LR w/ MAML", progress=False)
    assert (maml["cosines"]["cos_learned"] - maml["cosines"]["cos_gradient"]).abs().max() < 1e-12
    assert gain_correlation(maml["spectrum"])["spearman"].isna().all()  # alpha I: no ordering
    summary = summarize_cosines(pd.concat([cos, maml["cosines"]]))
    assert list(summary.columns) == ["method", "step", "reference", "cos_learned", "cos_gradient", "n"]
    assert (summary["n"] == 2).all() and len(summary) == 3 * 2 + 3


def test_preconditioner_probe_on_a_cnn_is_matrix_free_and_respects_the_mask():
    torch.manual_seed(0)
    net = ConvNet("omniglot", 1, 5, filters=3)
    learner = MetaLearner(net, make_rule("kfc", net, 0.4, layers=2, normalize=True))
    out = preconditioner_probe(learner, TinyImageTasks(), steps=2, num_tasks=1, exact_limit=10,
                               krylov_dim=6, method="kfc", progress=False)
    assert not out["cosines"]["exact"].any()
    assert len(out["spectrum"]) == 2 * 6
    assert out["cosines"]["cos_learned"].between(-1, 1).all()
    anil = preconditioner_probe(learner, TinyImageTasks(), steps=1, num_tasks=1, adapt_mask="anil",
                                method="kfc", progress=False)
    assert anil["cosines"]["exact"].all() and len(anil["spectrum"]) == 3 * 5 + 5  # FC only
    with pytest.raises(ValueError, match="steps"):
        preconditioner_probe(learner, TinyImageTasks(), steps=0, progress=False)


def test_preconditioner_plots():
    out = [preconditioner_probe(_lr(r), SyntheticBinaryTasks(D, 20, 20), steps=1, num_tasks=2,
                                method=r, progress=False) for r in ("maml", "mc")]
    cos = pd.concat([o["cosines"] for o in out])
    spec = pd.concat([o["spectrum"] for o in out])
    assert isinstance(similarity_plots.plot_preconditioner_cosines(cos, title="t"), Figure)
    fig = similarity_plots.plot_preconditioner_spectrum(spec)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
