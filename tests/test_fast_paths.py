"""Every fast path of meta_backward gives the reference loop's meta-gradients (float64)."""
import warnings

import pytest
import torch
from torch.func import functional_call

from maml_probe import fast
from maml_probe.fast.allocator import _state as malloc_state
from maml_probe.fast.allocator import tune_malloc
from maml_probe.learner import resolve_mask
from maml_probe.losses import task_loss
from maml_probe.maml import meta_backward
from maml_probe.models import ConvNet, LinNet, LogisticRegression
from maml_probe.rules import make_rule
from maml_probe.tasks.base import TaskBatch

# (impl, tasks per chunk, tasks per query pass): all at once; split query; uneven chunks
PATHS = [("batched", None, None), ("batched", 8, 1), ("batched", 2, 1), ("batched", 2, None),
         ("auto", None, None)]
RULE_KWARGS = {"kfc": {"layers": 2, "normalize": True}, "cfc": {"rank": 2, "layers": 2}}


def _batch(shape, ways, n_support, n_query, tasks=3, seed=0, binary=False):
    g = torch.Generator().manual_seed(seed)

    def x(n):
        return torch.randn(tasks, n, *shape, generator=g, dtype=torch.float64)

    def y(n):
        if binary:
            return torch.randint(0, 2, (tasks, n), generator=g).to(torch.float64)
        return torch.randint(0, ways, (tasks, n), generator=g)

    return TaskBatch(x(n_support), y(n_support), x(n_query), y(n_query))


def _cnn(variant="omniglot", depth=2, ways=3):
    torch.manual_seed(0)
    net = ConvNet(variant, depth, ways, filters=4).double()
    return net, _batch(net.input_shape, ways, 4, 5)


def _meta_grads(model, rule, batch, impl, chunk=None, query_chunk=None, monkeypatch=None, **kw):
    if monkeypatch is not None:
        for name, value in (("MAML_PROBE_TASK_CHUNK", chunk), ("MAML_PROBE_QUERY_CHUNK", query_chunk)):
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, str(value))
    model.zero_grad(set_to_none=True)
    rule.zero_grad(set_to_none=True)
    loss, acc = meta_backward(model, rule, batch, steps=kw.pop("steps", 2), impl=impl, **kw)
    grads = {f"model.{k}": p.grad for k, p in model.named_parameters()}
    grads.update({f"rule.{k}": p.grad for k, p in rule.named_parameters()})
    return loss, acc, {k: (None if g is None else g.clone()) for k, g in grads.items()}


def _assert_same(ref, got):
    loss_r, acc_r, g_r = ref
    loss_g, acc_g, g_g = got
    assert loss_g == pytest.approx(loss_r, rel=1e-12, abs=1e-14)
    assert acc_g == pytest.approx(acc_r, abs=1e-7)
    assert g_r.keys() == g_g.keys()
    scale = max(float(g.abs().max()) for g in g_r.values() if g is not None)
    assert scale > 0
    for k in g_r:
        assert (g_r[k] is None) == (g_g[k] is None), k
        if g_r[k] is not None:
            # conv biases before BatchNorm have an analytic gradient of 0: compare on the global scale
            torch.testing.assert_close(g_g[k], g_r[k], rtol=1e-9, atol=1e-12 * scale, msg=k)


@pytest.mark.parametrize("rule_name", ["maml", "metasgd", "mc", "klin", "kfc", "cfc"])
@pytest.mark.parametrize("path", PATHS, ids=lambda p: "-".join(map(str, p)))
def test_cnn_batchnorm_second_order_every_rule(rule_name, path, monkeypatch):
    net, batch = _cnn()
    rule = make_rule(rule_name, net, 0.3, **RULE_KWARGS.get(rule_name, {}))
    with torch.no_grad():  # move learnable rules off their initialisation (not MAML-equivalent)
        for p in rule.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(3),
                                      dtype=p.dtype))
    ref = _meta_grads(net, rule, batch, "loop")
    impl, chunk, query = path
    _assert_same(ref, _meta_grads(net, rule, batch, impl, chunk, query, monkeypatch))


@pytest.mark.parametrize("first_order", [False, True], ids=["second", "first"])
@pytest.mark.parametrize("masked", [False, True], ids=["all", "mask"])
@pytest.mark.parametrize("rule_name", ["maml", "kfc", "metasgd"])
def test_masks_and_first_order(rule_name, masked, first_order, monkeypatch):
    net, batch = _cnn()
    rule = make_rule(rule_name, net, 0.3, **RULE_KWARGS.get(rule_name, {}))
    mask = resolve_mask(net, ["C2", "FC"]) if masked else None
    kw = dict(adapt_mask=mask, first_order=first_order)
    ref = _meta_grads(net, rule, batch, "loop", **kw)
    for impl, chunk, query in [("batched", None, None), ("batched", 2, 1)]:
        _assert_same(ref, _meta_grads(net, rule, batch, impl, chunk, query, monkeypatch, **kw))


@pytest.mark.parametrize("rule_name", ["maml", "kfc"])
def test_nothing_adapts_is_the_identity_on_every_path(rule_name, monkeypatch):
    net, batch = _cnn()
    rule = make_rule(rule_name, net, 0.3, **RULE_KWARGS.get(rule_name, {}))
    ref = _meta_grads(net, rule, batch, "loop", adapt_mask=set())
    for impl, chunk, query in [("batched", None, None), ("batched", 2, 1)]:
        _assert_same(ref, _meta_grads(net, rule, batch, impl, chunk, query, monkeypatch,
                                      adapt_mask=set()))


@pytest.mark.parametrize("variant,depth", [("cifarfs", 2), ("miniimagenet", 1), ("miniimagenet", 4)])
def test_cnn_variants(variant, depth, monkeypatch):
    torch.manual_seed(0)
    net = ConvNet(variant, depth, 3, filters=3).double()
    batch = _batch(net.input_shape, 3, 3, 3, tasks=2)
    rule = make_rule("maml", net, 0.3)
    ref = _meta_grads(net, rule, batch, "loop", steps=1)
    for impl, chunk, query in [("batched", None, None), ("batched", 2, 1)]:
        _assert_same(ref, _meta_grads(net, rule, batch, impl, chunk, query, monkeypatch, steps=1))


@pytest.mark.parametrize("kind", ["linnet", "linnet_nobias", "lr_binary"])
@pytest.mark.parametrize("rule_name", ["maml", "kfc"])
def test_linear_models(kind, rule_name, monkeypatch):
    torch.manual_seed(0)
    if kind == "lr_binary":
        net, batch = LogisticRegression(6, 1).double(), _batch((6,), 2, 6, 7, binary=True)
    else:
        net = LinNet(6, [5, 4], num_outputs=3, bias=kind == "linnet").double()
        batch = _batch((6,), 3, 6, 7)
    rule = make_rule(rule_name, net, 0.3, **RULE_KWARGS.get(rule_name, {}))
    ref = _meta_grads(net, rule, batch, "loop", steps=3)
    for impl, chunk, query in PATHS:
        _assert_same(ref, _meta_grads(net, rule, batch, impl, chunk, query, monkeypatch, steps=3))


@pytest.mark.parametrize("variant", ["omniglot", "miniimagenet"])
def test_stacked_forward_equals_functional_call(variant):
    torch.manual_seed(0)
    net = ConvNet(variant, 2, 4, filters=3).double()
    forward = fast.stacked_forward(net)
    params = [{k: v + 0.1 * torch.randn_like(v) for k, v in net.named_parameters()} for _ in range(3)]
    stacked = {k: torch.stack([p[k] for p in params]) for k in params[0]}
    x = torch.randn(3, 5, *net.input_shape, dtype=torch.float64)
    out = forward(stacked, x)
    for i in range(3):
        torch.testing.assert_close(out[i], functional_call(net, params[i], (x[i],)), rtol=1e-12, atol=1e-12)


class _Subclassed(ConvNet):
    def forward(self, x):
        return super().forward(x) * 2.0


def test_auto_falls_back_to_the_loop_for_what_it_does_not_support(monkeypatch):
    monkeypatch.delenv("MAML_PROBE_IMPL", raising=False)
    torch.manual_seed(0)
    net = _Subclassed("omniglot", 1, 3, filters=3).double()
    batch = _batch(net.input_shape, 3, 3, 3, tasks=2)
    rule = make_rule("maml", net, 0.3)
    cpu = torch.device("cpu")
    assert fast.choose_impl(net, rule, cpu, loss_fn=task_loss).impl == "loop"
    ref = _meta_grads(net, rule, batch, "loop")
    _assert_same(ref, _meta_grads(net, rule, batch, "auto"))
    with pytest.raises(ValueError, match="does not support"):
        meta_backward(net, rule, batch, steps=1, impl="batched")
    plain, _ = _cnn()

    def custom_loss(logits, labels):
        return task_loss(logits, labels) * 1.0

    assert fast.choose_impl(plain, rule, cpu, loss_fn=custom_loss).impl == "loop"
    assert fast.choose_impl(plain, rule, cpu, loss_fn=task_loss).impl == "batched"


def test_forcing_paths_by_argument_and_environment(monkeypatch):
    net, batch = _cnn()
    rule = make_rule("maml", net, 0.3)
    cpu = torch.device("cpu")
    monkeypatch.setenv("MAML_PROBE_IMPL", "loop")
    assert fast.choose_impl(net, rule, cpu, loss_fn=task_loss).impl == "loop"
    assert fast.choose_impl(net, rule, cpu, loss_fn=task_loss, impl="batched").impl == "batched"
    monkeypatch.setenv("MAML_PROBE_IMPL", "batched")
    monkeypatch.setenv("MAML_PROBE_TASK_CHUNK", "2")
    monkeypatch.setenv("MAML_PROBE_QUERY_CHUNK", "1")
    c = fast.choose_impl(net, rule, cpu, loss_fn=task_loss)
    assert (c.impl, c.chunk, c.query_chunk) == ("batched", 2, 1)
    sub = _Subclassed("omniglot", 1, 3, filters=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert fast.choose_impl(sub, rule, cpu, loss_fn=task_loss).impl == "loop"
    assert any("MAML_PROBE_IMPL=batched" in str(w.message) for w in caught)
    monkeypatch.setenv("MAML_PROBE_IMPL", "vmap")
    with pytest.raises(ValueError, match="MAML_PROBE_IMPL must be one of"):
        fast.choose_impl(net, rule, cpu, loss_fn=task_loss)
    with pytest.raises(ValueError, match="impl must be one of"):
        meta_backward(net, rule, batch, steps=1, impl="fast")
    monkeypatch.setenv("MAML_PROBE_IMPL", "auto")
    monkeypatch.setenv("MAML_PROBE_TASK_CHUNK", "x")
    with pytest.raises(ValueError, match="MAML_PROBE_TASK_CHUNK"):
        fast.choose_impl(net, rule, cpu, loss_fn=task_loss)


def test_auto_per_device_and_cpu_chunk_sizing(monkeypatch):
    for name in ("MAML_PROBE_IMPL", "MAML_PROBE_TASK_CHUNK", "MAML_PROBE_QUERY_CHUNK"):
        monkeypatch.delenv(name, raising=False)
    net, _ = _cnn()
    rule = make_rule("maml", net, 0.3)
    # 5-way 1-shot, 2 steps: 2 tasks stacked (more gain little speed and hold more memory)
    assert fast.cpu_chunk(5, 2, 8) == 2
    assert fast.cpu_chunk(50, 4, 8) == 1      # 10-way 5-shot, 4 steps: one task at a time
    assert fast.cpu_chunk(5, 1, 8) == 4
    assert fast.cpu_chunk(10, 2, 8) == 1
    assert fast.cpu_chunk(1, 1, 3) == 3       # never more than the meta-batch
    # learned rules run under vmap per chunk: larger chunks (KFC 5-way 1-shot, 2 steps: 8 tasks)
    assert fast.cpu_chunk(5, 2, 8, learned_rule=True) == 8
    assert fast.cpu_chunk(50, 4, 8, learned_rule=True) == 1
    kfc = make_rule("kfc", net, 0.3)
    c = fast.choose_impl(net, kfc, torch.device("cpu"), loss_fn=task_loss, support_size=5,
                         steps=2, tasks=8)
    assert (c.impl, c.chunk, c.query_chunk) == ("batched", 8, 1)
    c = fast.choose_impl(net, rule, torch.device("cpu"), loss_fn=task_loss, support_size=5,
                         steps=2, tasks=8)
    assert (c.impl, c.chunk, c.query_chunk) == ("batched", 2, 1)
    # CUDA: the recorded stacked step, tasks per pass measured (None) unless given
    c = fast.choose_impl(net, rule, torch.device("cuda"), loss_fn=task_loss, support_size=50,
                         steps=4, tasks=32)
    assert (c.impl, c.chunk, c.query_chunk) == ("graph", None, None)
    assert fast.choose_impl(net, rule, torch.device("meta"), loss_fn=task_loss).impl == "loop"
    monkeypatch.setenv("MAML_PROBE_TASK_CHUNK", "4")
    c = fast.choose_impl(net, rule, torch.device("cuda"), loss_fn=task_loss)
    assert (c.impl, c.chunk) == ("graph", 4)
    monkeypatch.delenv("MAML_PROBE_TASK_CHUNK")
    monkeypatch.setenv("MAML_PROBE_IMPL", "batched")
    c = fast.choose_impl(net, rule, torch.device("cuda"), loss_fn=task_loss)
    assert (c.impl, c.chunk, c.query_chunk) == ("batched", None, None)


def test_graph_impl_needs_cuda_and_a_supported_model(monkeypatch):
    monkeypatch.delenv("MAML_PROBE_IMPL", raising=False)
    net, batch = _cnn()
    rule = make_rule("maml", net, 0.3)
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        meta_backward(net, rule, batch, steps=1, impl="graph")
    monkeypatch.setenv("MAML_PROBE_IMPL", "graph")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert fast.choose_impl(net, rule, torch.device("cpu"), loss_fn=task_loss).impl == "loop"
    assert any("MAML_PROBE_IMPL=graph" in str(w.message) for w in caught)
    sub = _Subclassed("omniglot", 1, 3, filters=3)
    with pytest.raises(ValueError, match="no task-stacked forward"):
        fast.choose_impl(sub, rule, torch.device("cuda"), loss_fn=task_loss, impl="graph")


def test_steps_are_validated_on_every_path():
    net, batch = _cnn()
    rule = make_rule("maml", net, 0.3)
    for impl in ("loop", "batched"):
        with pytest.raises(ValueError, match="steps"):
            meta_backward(net, rule, batch, steps=-1, impl=impl)


def test_malloc_tuning_is_once_per_process_and_can_be_disabled(monkeypatch):
    saved = dict(malloc_state)
    try:
        malloc_state.update(done=False, applied=False)
        monkeypatch.setenv("MAML_PROBE_MALLOC", "0")
        assert tune_malloc() is False and fast.malloc_tuned() is False
        monkeypatch.setenv("MAML_PROBE_MALLOC", "1")
        assert tune_malloc() is False  # decided once: turning it on later changes nothing
        malloc_state.update(done=False, applied=False)
        monkeypatch.setenv("MAML_PROBE_MALLOC", "1")
        applied = tune_malloc()
        assert isinstance(applied, bool) and fast.malloc_tuned() is applied
    finally:
        malloc_state.clear()
        malloc_state.update(saved)


@pytest.mark.parametrize("rule_name", ["maml", "metasgd"])
def test_split_query_gradient_is_exactly_the_vector_jacobian_product(rule_name):
    """The split query pass hands dL/dtheta_T on bit for bit, as grad_outputs would."""
    from maml_probe.fast import batched

    net, data = _cnn()
    rule = make_rule(rule_name, net, 0.3)
    forward = fast.stacked_forward(net)
    leaves = batched.meta_leaves(net, rule)
    P = batched.adapt_stacked(forward, rule, dict(net.named_parameters()), data.support_x,
                              data.support_y, steps=2)
    got, loss_sum, _ = batched.split_query_gradients(forward, P, data.query_x, data.query_y,
                                                     leaves, query_chunk=1, scale=1 / 3)
    P = batched.adapt_stacked(forward, rule, dict(net.named_parameters()), data.support_x,
                              data.support_y, steps=2)  # the same graph again
    d_P, loss_want = {k: [] for k in P}, 0.0
    for t in range(3):  # the same per-task query passes, then grad_outputs
        Pt = {k: v[t:t + 1].detach().requires_grad_() for k, v in P.items()}
        losses = task_loss(forward(Pt, data.query_x[t:t + 1]), data.query_y[t:t + 1],
                           reduction="per_task")
        for k, g in zip(Pt, torch.autograd.grad(losses.sum() / 3, list(Pt.values()))):
            d_P[k].append(g)
        loss_want += float(losses.sum())
    want = torch.autograd.grad(list(P.values()), leaves, [torch.cat(d_P[k]) for k in P],
                               allow_unused=True)
    assert float(loss_sum) == pytest.approx(loss_want, rel=1e-12)
    for g, w in zip(got, want):
        assert (g is None) == (w is None)
        if g is not None:
            assert torch.equal(g, w)


def test_the_default_cpu_step_does_not_import_sympy():
    """``autograd.grad(..., grad_outputs=...)`` imports sympy (25-30 MiB of peak RSS, ~15 MiB
    kept for good); the split query pass avoids it. A fresh interpreter: other tests may import it."""
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "from maml_probe.maml import meta_backward\n"
        "from maml_probe.models import ConvNet\n"
        "from maml_probe.rules import make_rule\n"
        "from maml_probe.tasks.base import TaskBatch\n"
        "net = ConvNet('omniglot', 2, 3, filters=4)\n"
        "x, y = torch.randn(4, 3, 1, 28, 28), torch.arange(3).repeat(4, 1)\n"
        "meta_backward(net, make_rule('maml', net, 0.3), TaskBatch(x, y, x, y), steps=2,\n"
        "              impl='batched')\n"
        "print('sympy' in sys.modules)\n")
    env = {**__import__("os").environ, "MAML_PROBE_TASK_CHUNK": "2",
           "MAML_PROBE_QUERY_CHUNK": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=300, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"
