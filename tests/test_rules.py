"""Update rules: reduction to MAML at initialisation, explicit formulas, counts, memory, training."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from maml_probe.losses import task_loss
from maml_probe.maml import adapt, evaluate_batch, task_losses
from maml_probe.models import build_model, count_parameters
from maml_probe.rules import RULE_NAMES, count_rule_parameters, make_rule
from maml_probe.rules.base import UpdateRule
from maml_probe.rules.diagnostics import update_gradient_ratio
from maml_probe.rules.kronecker import from_matrix, kronecker_dims, to_matrix
from maml_probe.tasks.base import TaskBatch
from tests.test_rules_gradcheck import check_directional
from tests.test_rules_gradcheck import setup as gradcheck_setup

ALPHA = 0.4


def small_model(kind: str, dtype=torch.float32):
    torch.manual_seed(0)
    if kind == "lr":
        model = build_model("lr", 3, in_features=6)
    elif kind == "linnet":
        model = build_model("linnet", 3, in_features=6, widths=(5, 4))
    else:
        model = build_model("scnn", 3, variant="omniglot", filters=3)
    return model.to(dtype)


def small_batch(kind: str, tasks: int = 2, n: int = 6, dtype=torch.float32) -> TaskBatch:
    g = torch.Generator().manual_seed(1)
    shape = (6,) if kind in ("lr", "linnet") else (1, 28, 28)
    x = torch.randn(tasks, 2 * n, *shape, generator=g, dtype=dtype)
    y = torch.randint(0, 3, (tasks, 2 * n), generator=g)
    return TaskBatch(x[:, :n], y[:, :n], x[:, n:], y[:, n:])


class ReluSGD(UpdateRule):
    """What KFC computes at initialisation: ``alpha * relu(g)``."""

    def forward(self, grads):
        return {k: self.alpha * torch.relu(g) for k, g in grads.items()}


def adapted_and_metagrad(model, rule, batch, steps):
    a = adapt(model, dict(model.named_parameters()), batch.support_x[0], batch.support_y[0],
              steps=steps, rule=rule)
    losses, _ = task_losses(model, rule, batch, steps=steps)
    grads = torch.autograd.grad(sum(losses), list(model.parameters()))
    return a, grads


def assert_same(model, rule, reference, batch, steps):
    a, ga = adapted_and_metagrad(model, rule, batch, steps)
    b, gb = adapted_and_metagrad(model, reference, batch, steps)
    for k in b.params:
        torch.testing.assert_close(a.params[k], b.params[k], rtol=1e-6, atol=1e-7)
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-7)
    return a, b


# --- reduction to the plain rule at initialisation -------------------------------------------

@pytest.mark.parametrize("kind", ["lr", "linnet", "cnn"])
@pytest.mark.parametrize("name", ["metasgd", "mc"])
def test_non_adaptive_rules_equal_maml_at_init(kind, name):
    model, batch = small_model(kind), small_batch(kind)
    assert_same(model, make_rule(name, model, ALPHA), make_rule("maml", model, ALPHA), batch, 2)


@pytest.mark.parametrize("kind", ["lr", "linnet", "cnn"])
def test_klin_equals_maml_until_its_factors_adapt(kind):
    model, batch = small_model(kind), small_batch(kind)
    klin, maml = make_rule("klin", model, ALPHA), make_rule("maml", model, ALPHA)
    assert_same(model, klin, maml, batch, 1)            # xi is not stepped at t = 0
    a, _ = adapted_and_metagrad(model, klin, batch, 2)  # at t = 1 L, R take their own step ...
    b, _ = adapted_and_metagrad(model, maml, batch, 2)
    assert max((a.params[k] - b.params[k]).abs().max() for k in b.params) > 1e-5  # ... and differ


@pytest.mark.parametrize("kind", ["lr", "cnn"])
@pytest.mark.parametrize("options", [{"layers": 2}, {"layers": 4, "normalize": True},
                                     {"layers": 4, "normalize": True, "factor": "scalar"},
                                     {"layers": 4, "normalize": True, "factor": "none",
                                      "output_bias": True}])
def test_kfc_at_init_is_alpha_relu_g(kind, options):
    model, batch = small_model(kind), small_batch(kind)
    kfc = make_rule("kfc", model, ALPHA, **options)
    a, b = assert_same(model, kfc, ReluSGD(ALPHA), batch, 1)
    sgd, _ = adapted_and_metagrad(model, make_rule("maml", model, ALPHA), batch, 1)
    assert any(not torch.allclose(b.params[k], sgd.params[k]) for k in b.params)  # relu matters


# --- explicit formulas --------------------------------------------------------------------------

def test_klin_is_the_kronecker_product_map():
    torch.manual_seed(0)
    model = build_model("lr", 3, in_features=4, bias=False).double()
    rule = make_rule("klin", model, ALPHA)
    t = rule.transform_for("fc.weight")
    with torch.no_grad():
        t.maps[0].left.copy_(torch.randn(3, 3))
        t.maps[0].right.copy_(torch.randn(4, 4))
    g = torch.randn(3, 4, dtype=torch.float64)
    dense = torch.kron(t.maps[0].left, t.maps[0].right.T.contiguous())    # vec_row(L G R) = (L ⊗ R^T) vec_row(G)
    torch.testing.assert_close(rule({"fc.weight": g})["fc.weight"].flatten(),
                               ALPHA * dense @ g.flatten())


def test_conv_weight_view_is_hw_by_c_shared_across_filters():
    assert kronecker_dims((8, 3, 2, 5)) == (10, 3) and kronecker_dims((7,)) == (7, 1)
    g = torch.randn(8, 3, 2, 5, dtype=torch.float64)
    assert torch.equal(from_matrix(to_matrix(g), g.shape), g)
    assert torch.equal(to_matrix(g)[4], g[4].reshape(3, 10).T)
    conv = torch.nn.Conv2d(3, 8, (2, 5), bias=False).double()
    rule = make_rule("mc", conv, ALPHA)
    t = rule.transform_for("weight")
    with torch.no_grad():
        t.maps[0].left.copy_(torch.randn(10, 10))
        t.maps[0].right.copy_(torch.randn(3, 3))
    out = rule({"weight": g})["weight"]
    for f in range(8):
        expected = ALPHA * t.maps[0].left @ g[f].reshape(3, 10).T @ t.maps[0].right
        torch.testing.assert_close(out[f], expected.T.reshape(3, 2, 5))


@pytest.mark.parametrize("layers,bias", [(1, False), (2, True)])
def test_cfc_equals_dense_low_rank_maps(layers, bias):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Conv2d(2, 5, 3)).double()
    rule = make_rule("cfc", model, ALPHA, rank=2, layers=layers, bias=bias)
    if bias:
        with torch.no_grad():
            for t in rule.transforms.values():
                t.bias.normal_()
    grads = {k: torch.randn_like(p) for k, p in model.named_parameters()}
    out = rule(grads)
    for k, g in grads.items():
        t = rule.transform_for(k)
        rows = g.reshape(5, -1) if g.dim() == 4 else g.reshape(1, -1)
        for row, got in zip(rows, out[k].reshape(rows.shape)):
            x = row
            for i, layer in enumerate(t.maps):
                x = (layer.factor @ layer.factor.T) @ (torch.relu(x) if i else x)
            expected = ALPHA * (x + t.bias if bias else x)
            torch.testing.assert_close(got, expected)


def test_kfc_norm_handling_with_an_elementwise_factor_shared_across_filters():
    """``T(G_f) = ||G|| S ⊙ net(G_f / ||G||)`` for every filter ``f``, one ``S in R^{HW x C}``."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, (2, 5), bias=False).double()
    rule = make_rule("kfc", conv, ALPHA, layers=2, normalize=True)
    t = rule.transform_for("weight")
    assert t.scale.shape == (10, 3)
    with torch.no_grad():
        for p in t.parameters():
            p.copy_(torch.randn_like(p))
    g = torch.randn(4, 3, 2, 5, dtype=torch.float64)
    out = rule({"weight": g})["weight"]
    norm = g.norm()
    (l1, r1), (l2, r2) = [(m.left, m.right) for m in t.maps]
    for f in range(4):
        G = g[f].reshape(3, 10).T / norm                           # n x m = HW x C
        expected = ALPHA * norm * t.scale * (l2 @ torch.relu(l1 @ G @ r1) @ r2)
        torch.testing.assert_close(out[f], expected.T.reshape(3, 2, 5))


def test_kfc_output_bias_reading_adds_b_to_the_last_map_before_rescaling():
    torch.manual_seed(0)
    model = build_model("lr", 3, in_features=4, bias=False).double()
    rule = make_rule("kfc", model, ALPHA, layers=2, normalize=True, factor="none", output_bias=True)
    t = rule.transform_for("fc.weight")
    assert t.scale is None and t.output_bias.shape == (3, 4)
    assert all(m.bias is None for m in t.maps)
    with torch.no_grad():
        for p in t.parameters():
            p.copy_(torch.randn_like(p))
    g = torch.randn(3, 4, dtype=torch.float64)
    net = t.maps[1].left @ torch.relu(t.maps[0].left @ (g / g.norm()) @ t.maps[0].right) @ t.maps[1].right
    torch.testing.assert_close(rule({"fc.weight": g})["fc.weight"],
                               ALPHA * g.norm() * (net + t.output_bias))


def test_cfc_normalize_has_the_step_size_of_maml_in_the_low_rank_direction():
    """``T(g) = s ||g|| net(g / ||g||) / ||net(g / ||g||)||``, so ``||U(g)|| = alpha s ||g||``."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Conv2d(2, 4, 3)).double()
    torch.manual_seed(1)
    plain = make_rule("cfc", model, ALPHA, rank=2)
    torch.manual_seed(1)
    normed = make_rule("cfc", model, ALPHA, rank=2, normalize=True)
    grads = {k: torch.randn_like(p) for k, p in model.named_parameters()}
    u, v = plain(grads), normed(grads)
    for k, g in grads.items():
        torch.testing.assert_close(v[k].norm(), ALPHA * g.norm())
        torch.testing.assert_close(v[k], u[k] * (ALPHA * g.norm() / u[k].norm()))  # same direction
    with torch.no_grad():
        normed.transform_for("0.weight").scale.fill_(3.0)
    torch.testing.assert_close(normed(grads)["0.weight"].norm(), 3 * ALPHA * grads["0.weight"].norm())
    zero = {k: torch.zeros_like(g) for k, g in grads.items()}
    assert all(torch.equal(x, torch.zeros_like(x)) for x in normed(zero).values())


def test_cfc_glorot_init_scale():
    torch.manual_seed(0)
    model = build_model("lr", 1, in_features=4000, bias=False)
    factor = make_rule("cfc", model, ALPHA, rank=10, gain=2.0).transform_for("fc.weight").maps[0].factor
    assert factor.shape == (4000, 10)
    assert abs(factor.std().item() / (2.0 * (2 / 4010) ** 0.5) - 1) < 0.03


# --- parameter counts ---------------------------------------------------------------------------

def test_paper_counts_linear_models():
    syn = build_model("lr", 1, in_features=100, bias=False)
    assert count_rule_parameters(make_rule("klin", syn, 3.33)) == 10_001
    assert count_rule_parameters(make_rule("kfc", syn, 3.9, layers=2)) == 20_002
    omni = build_model("lr", 5, in_features=784, bias=False)
    assert count_rule_parameters(make_rule("klin", omni, 0.9)) == 614_681
    assert count_rule_parameters(make_rule("mc", omni, 0.9)) == 614_681
    assert count_rule_parameters(make_rule("metasgd", omni, 0.9)) == 784 * 5


def paper_dims(shape):
    """``(n, m)`` as A.1.2 says: conv ``N x C x H x W`` -> ``n = HW, m = C`` (shared by the ``N``
    filters), a matrix ``out x in`` -> ``(out, in)``, a vector of ``k`` -> ``(k, 1)``."""
    if len(shape) == 4:
        return shape[2] * shape[3], shape[1]
    return (shape[0], shape[1]) if len(shape) == 2 else (shape[0], 1)


def meta_model(depth, variant):
    with torch.device("meta"):                        # shapes only
        return build_model(depth, 10, variant=variant)


# Table A3, "Optimizer Parameters" (mini-ImageNet KFC printed as 2.60M / 2.63M)
TABLE_A3_KFC = [("omniglot", "scnn", 134_171), ("omniglot", "cnn", 267_451),
                ("cifarfs", "scnn", 35_117), ("cifarfs", "cnn", 69_325),
                ("miniimagenet", "scnn", "2.60M"), ("miniimagenet", "cnn", "2.63M")]
TABLE_A3_CFC = [("omniglot", 8_905, 66_379), ("cifarfs", 4_185, 34_317),
                ("miniimagenet", 42_585, 349_197)]
KFC_A3 = {"layers": 4, "normalize": True, "factor": "elementwise"}   # the experiments' KFC


def as_printed(count, paper):
    """``count`` at the table's precision: ``2_598_701 -> "2.60M"`` when ``paper`` is ``"x.xxM"``."""
    return f"{count / 1e6:.2f}M" if isinstance(paper, str) else count


@pytest.mark.parametrize("variant,depth,paper", TABLE_A3_KFC)
def test_kfc_counts_are_table_a3(variant, depth, paper):
    """Four bias-free maps and one ``n x m`` learnable factor per model parameter, A.1.2."""
    model = meta_model(depth, variant)
    dims = [paper_dims(p.shape) for p in model.parameters()]
    maps = sum(4 * (n * n + m * m) for n, m in dims)
    formula = sum(4 * (n * n + m * m) + n * m for n, m in dims)
    count = count_rule_parameters(make_rule("kfc", model, 0.5, **KFC_A3))
    assert count == formula
    assert as_printed(count, paper) == paper
    # the other reading of the extra n x m tensor: the last map's output bias, no factor
    assert count_rule_parameters(make_rule("kfc", model, 0.5, layers=4, normalize=True,
                                           factor="none", output_bias=True)) == formula
    # a scalar factor, or none at all, misses the table
    assert count_rule_parameters(make_rule("kfc", model, 0.5, layers=4)) == maps
    assert count_rule_parameters(make_rule("kfc", model, 0.5, layers=4, normalize=True,
                                           factor="scalar")) == maps + len(dims)
    assert as_printed(maps + len(dims), paper) != paper
    assert count_rule_parameters(make_rule("metasgd", model, 0.5)) == count_parameters(model)


def test_the_experiments_kfc_is_table_a3s():
    from maml_probe.experiments.settings import RULE_NAME, RULE_OPTIONS

    assert (RULE_NAME["kfc"], RULE_OPTIONS["kfc"]) == ("kfc", KFC_A3)
    model = meta_model("scnn", "omniglot")
    assert count_rule_parameters(make_rule("kfc", model, 0.5, **RULE_OPTIONS["kfc"])) == 134_171


@pytest.mark.parametrize("variant,paper1,paper10", TABLE_A3_CFC)
def test_cfc_counts_are_table_a3(variant, paper1, paper10):
    """``(4 r + 1) sum_p n_p m_p``: four rank-r maps ``L in R^{nm x r}`` and a bias of ``nm``."""
    model = meta_model("scnn", variant)
    dims = [paper_dims(p.shape) for p in model.parameters()]
    D = sum(n * m for n, m in dims)
    cfc1 = count_rule_parameters(make_rule("cfc", model, 0.5, rank=1))
    cfc10 = count_rule_parameters(make_rule("cfc", model, 0.5, rank=10))
    assert (cfc1, cfc10) == (5 * D, 41 * D)
    assert cfc10 == paper10
    if variant == "omniglot":                          # printed 8,905: the digits of 8,095 swapped
        assert paper1 == 8_905 and cfc1 == 8_095 and sorted(str(cfc1)) == sorted(str(paper1))
    else:
        assert cfc1 == paper1
    normed = count_rule_parameters(make_rule("cfc", model, 0.5, rank=1, normalize=True))
    assert normed == 5 * D + len(dims)                # one learnable s per model parameter


# --- update / gradient norm ratio at initialisation ------------------------------------------

def test_update_gradient_ratio_is_alpha_for_maml_and_the_rules_equal_to_it():
    model, batch = small_model("cnn"), small_batch("cnn")
    for name in ("maml", "metasgd", "mc", "klin"):
        df = update_gradient_ratio(model, make_rule(name, model, ALPHA), batch)
        assert len(df) == 2 * len(list(model.parameters()))            # tasks x parameters
        assert set(df["layer"]) == {"C1", "C2", "FC"}
        np.testing.assert_allclose(df["ratio"], ALPHA, rtol=1e-5)
        np.testing.assert_allclose(df["cosine"], 1.0, rtol=1e-5)


def test_update_gradient_ratio_of_kfc_is_that_of_alpha_relu_g():
    """At initialisation KFC computes ``alpha relu(g)``: ratio ``alpha ||relu(g)|| / ||g||``."""
    model, batch = small_model("cnn"), small_batch("cnn")
    df = update_gradient_ratio(model, make_rule("kfc", model, ALPHA, layers=4, normalize=True), batch)
    for t in range(2):
        loss = task_loss(model(batch.support_x[t]), batch.support_y[t])
        grads = torch.autograd.grad(loss, list(model.parameters()))
        rows = df[df["task"] == t].set_index("parameter")
        for (name, _), g in zip(model.named_parameters(), grads):
            expected = float(ALPHA * torch.relu(g).norm() / g.norm())
            assert rows.loc[name, "ratio"] == pytest.approx(expected, rel=1e-5, abs=1e-12)
            if expected > 0:                           # relu(g) = 0: no update, no cosine
                assert rows.loc[name, "cosine"] == pytest.approx(expected / ALPHA, rel=1e-5)
            else:
                assert np.isnan(rows.loc[name, "cosine"])


def test_update_gradient_ratio_shows_the_papers_cfc_starting_small_and_cfc_normalize_at_alpha():
    torch.manual_seed(0)
    model = build_model("scnn", 10, variant="omniglot")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 20, 1, 28, 28, generator=g)
    y = torch.arange(10).repeat(2)[None]
    batch = TaskBatch(x, y, x, y)
    torch.manual_seed(0)
    paper = update_gradient_ratio(model, make_rule("cfc", model, ALPHA, rank=1), batch)
    normed = update_gradient_ratio(model, make_rule("cfc", model, ALPHA, rank=1, normalize=True), batch)
    big = paper["numel"] >= 640                       # second conv weight, FC weight
    assert (paper.loc[big, "ratio"] < 1e-3 * ALPHA).all()
    np.testing.assert_allclose(normed["ratio"], ALPHA, rtol=1e-5)


# --- finite differences through the options the experiments use -----------------------------

# (the output-bias reading runs on the LinNet: on the gradcheck CNN a ReLU input of that
# rule sits within 1e-6 of its kink, where central differences of step 1e-6 cannot agree)
@pytest.mark.parametrize("kind,name,kwargs", [
    ("cnn", "kfc", {"layers": 2, "normalize": True, "factor": "scalar"}),
    ("linnet", "kfc", {"layers": 2, "normalize": True, "factor": "none", "output_bias": True}),
    ("cnn", "cfc", {"rank": 2, "layers": 2, "normalize": True}),
    ("cnn", "cfc", {"rank": 2, "layers": 2})])
@pytest.mark.parametrize("wrt", ["theta", "xi"])
def test_meta_gradient_of_the_rule_options_matches_finite_differences(kind, name, kwargs, wrt):
    model, rule, batch = gradcheck_setup(kind, name, **kwargs)
    check_directional(model, rule, batch, wrt)


# --- inner-loop adaptation of xi, dtypes, checkpoints --------------------------------------------

@pytest.mark.parametrize("name,adapts", [("klin", True), ("kfc", True), ("cfc", True),
                                         ("mc", False), ("metasgd", False)])
def test_xi_moves_in_the_inner_loop_only_when_the_rule_adapts(name, adapts):
    model, batch = small_model("linnet"), small_batch("linnet")
    rule = make_rule(name, model, ALPHA)
    assert rule.adapts is adapts
    a = adapt(model, dict(model.named_parameters()), batch.support_x[0], batch.support_y[0],
              steps=3, rule=rule)
    moved = max((a.rule_params[k] - p).abs().max().item() for k, p in rule.named_parameters())
    assert (moved > 1e-6) is adapts


@pytest.mark.parametrize("name", ["metasgd", "mc", "klin", "kfc", "cfc"])
def test_rules_follow_the_model_dtype_and_round_trip_state_dict(name):
    model = small_model("cnn", torch.float64)
    rule = make_rule(name, model, ALPHA)
    assert all(p.dtype == torch.float64 for p in rule.parameters())
    batch = small_batch("cnn", dtype=torch.float64)
    losses, _ = task_losses(model, rule, batch, steps=2)
    assert losses[0].dtype == torch.float64 and torch.isfinite(losses[0])
    pre, post = evaluate_batch(model, rule, batch, steps=2)    # the no-graph evaluation path
    assert pre.shape == post.shape == (2,)
    with torch.no_grad():
        for p in rule.parameters():
            p.add_(0.01)
    torch.manual_seed(123)
    other = make_rule(name, model, ALPHA)
    other.load_state_dict(rule.state_dict())
    assert all(torch.equal(p, q) for p, q in zip(rule.parameters(), other.parameters()))


# --- memory: the Kronecker product is never materialised ---------------------------------------

class NumelRecorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.max_numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(t, torch.Tensor):
                self.max_numel = max(self.max_numel, t.numel())
        return out


def test_klin_on_4096_square_weight_never_builds_the_kronecker_product():
    n = 4096
    with torch.device("meta"):                        # shapes only: no memory, no FLOPs
        model = torch.nn.Linear(n, n, bias=False)
        rule = make_rule("klin", model, ALPHA)
        g = torch.empty(n, n, requires_grad=True)
    assert count_rule_parameters(rule) == 2 * n * n
    xi = list(rule.parameters())
    with NumelRecorder() as rec:
        u = rule({"weight": g})["weight"]
        torch.autograd.grad((u * u).sum(), [g, *xi], create_graph=True)
    assert 0 < rec.max_numel <= n * n                 # (n*n)^2 would be 2.8e14


def test_kfc_on_a_real_conv_weight_allocates_no_more_than_the_gradient():
    # weight [8, 64, 3, 3]: G is 8 matrices of n x m = 9 x 64; the Kronecker product R^T (x) L
    # would have (9 * 64)^2 = 331,776 entries, far more than the gradient (4,608) or R (4,096)
    conv = torch.nn.Conv2d(64, 8, 3)
    rule = make_rule("kfc", conv, ALPHA, normalize=True)
    g = torch.randn_like(conv.weight, requires_grad=True)
    with NumelRecorder() as rec:
        u = rule({"weight": g})["weight"]
        xi = list(rule.transform_for("weight").parameters())
        torch.autograd.grad(u.square().sum(), [g, *xi], create_graph=True)
    assert (9 * 64) ** 2 > 50 * g.numel()
    assert rec.max_numel <= max(g.numel(), 64 * 64)


# --- every rule trains on synthetic tasks ---------------------------------------------------

def synthetic_source(dim: int):
    try:
        from maml_probe.tasks.synthetic import SyntheticBinaryTasks
        return SyntheticBinaryTasks(dim=dim, support=10, query=30)
    except ImportError:                                # tiny stand-in: w, x ~ N(0, I), y = 1[w.x > 0]
        class Tasks:
            def sample(self, num_tasks, generator):
                w = torch.randn(num_tasks, dim, 1, generator=generator)
                x = torch.randn(num_tasks, 40, dim, generator=generator)
                y = ((x @ w).squeeze(-1) > 0).float()
                return TaskBatch(x[:, :10], y[:, :10], x[:, 10:], y[:, 10:])
        return Tasks()


@pytest.mark.parametrize("name,kwargs", [("maml", {}), ("metasgd", {}), ("mc", {}), ("klin", {}),
                                         ("kfc", {"layers": 2}), ("cfc", {"rank": 2, "layers": 1})])
def test_each_rule_lowers_the_post_adaptation_loss(name, kwargs):
    torch.manual_seed(0)
    source = synthetic_source(8)
    model = build_model("lr", 1, in_features=8, bias=False)
    with torch.no_grad():
        model.fc.weight.mul_(8.0)                      # a poor start that meta-learning must undo
    rule = make_rule(name, model, 0.5, **kwargs)
    test = source.sample(64, torch.Generator().manual_seed(99))

    def held_out_loss():
        return float(torch.stack(task_losses(model, rule, test, steps=2)[0]).mean().detach())

    before = held_out_loss()
    opt = torch.optim.Adam([*model.parameters(), *rule.parameters()], lr=0.03)
    gen = torch.Generator().manual_seed(1)
    for _ in range(30):
        opt.zero_grad()
        losses, _ = task_losses(model, rule, source.sample(8, gen), steps=2)
        torch.stack(losses).mean().backward()
        opt.step()
    assert held_out_loss() < 0.7 * before


# --- bad input ---------------------------------------------------------------------------------

def test_bad_arguments_raise_value_errors_naming_them():
    model = small_model("lr")
    with pytest.raises(ValueError, match="rule"):
        make_rule("adam", model, ALPHA)
    for name in RULE_NAMES:
        for alpha in (0.0, -1.0, float("inf")):
            with pytest.raises(ValueError, match="alpha"):
                make_rule(name, model, alpha)
    for name in ("kfc", "cfc"):
        for layers in (0, -2, 1.5):
            with pytest.raises(ValueError, match="layers"):
                make_rule(name, model, ALPHA, layers=layers)
    for rank in (0, -1, 2.0):
        with pytest.raises(ValueError, match="rank"):
            make_rule("cfc", model, ALPHA, rank=rank)
    with pytest.raises(ValueError, match="gain"):
        make_rule("cfc", model, ALPHA, gain=0.0)
    with pytest.raises(ValueError, match="rank"):
        make_rule("klin", model, ALPHA, rank=3)     # unknown option for this rule
    with pytest.raises(ValueError, match="factor"):
        make_rule("kfc", model, ALPHA, normalize=True, factor="rowwise")
    with pytest.raises(ValueError, match="normalize"):
        make_rule("kfc", model, ALPHA, factor="scalar")
    with pytest.raises(ValueError, match="output_bias"):
        make_rule("kfc", model, ALPHA, bias=True, output_bias=True)
    with pytest.raises(ValueError, match="normalize"):
        make_rule("mc", model, ALPHA, normalize=True)
