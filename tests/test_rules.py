"""Update rules: reduction to MAML at initialisation, explicit formulas, counts, memory, training."""
from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from maml_probe.maml import adapt, evaluate_batch, task_losses
from maml_probe.models import build_model, count_parameters
from maml_probe.rules import RULE_NAMES, count_rule_parameters, make_rule
from maml_probe.rules.base import UpdateRule
from maml_probe.rules.kronecker import from_matrix, kronecker_dims, to_matrix
from maml_probe.tasks.base import TaskBatch

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
@pytest.mark.parametrize("layers,normalize", [(2, False), (4, True)])
def test_kfc_at_init_is_alpha_relu_g(kind, layers, normalize):
    model, batch = small_model(kind), small_batch(kind)
    kfc = make_rule("kfc", model, ALPHA, layers=layers, normalize=normalize)
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


@pytest.mark.parametrize("variant,cfc1,cfc10", [("omniglot", 8_095, 66_379),   # paper: 8,905 (typo)
                                                ("cifarfs", 4_185, 34_317),
                                                ("miniimagenet", 42_585, 349_197)])
def test_cfc_counts_match_table_a3(variant, cfc1, cfc10):
    with torch.device("meta"):
        model = build_model("scnn", 10, variant=variant)
        assert count_rule_parameters(make_rule("cfc", model, 0.5, rank=1)) == cfc1
        assert count_rule_parameters(make_rule("cfc", model, 0.5, rank=10)) == cfc10


@pytest.mark.parametrize("variant,depth,ours", [("omniglot", "scnn", 132_552), ("omniglot", "cnn", 264_296),
                                                ("cifarfs", "scnn", 34_280), ("cifarfs", "cnn", 67_720),
                                                ("miniimagenet", "scnn", 2_590_184),
                                                ("miniimagenet", "cnn", 2_623_624)])
def test_kfc_counts_of_the_docstring_table(variant, depth, ours):
    with torch.device("meta"):
        model = build_model(depth, 10, variant=variant)
        assert count_rule_parameters(make_rule("kfc", model, 0.5, layers=4)) == ours
        n_transforms = len(list(model.parameters()))
        assert count_rule_parameters(make_rule("kfc", model, 0.5, normalize=True)) == ours + n_transforms
        assert count_rule_parameters(make_rule("metasgd", model, 0.5)) == count_parameters(model)


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
