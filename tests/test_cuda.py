"""The CUDA paths on a real GPU: float64-exact against the reference loop, for every rule.

These tests skip without CUDA (CI has no GPU); ``benchmarks/gpu_check.sh`` runs them on the GPU
machine first. They check on the device itself, not only on CPU, because the CUDA kernels
(cuDNN convolutions, the native batch norm and its double backward) are other code.
Every recorded path must really be a captured graph here (an eager fallback would pass the
exactness checks trivially), so each test also asserts ``captured``.
"""
import copy

import pytest
import torch

from maml_probe.fast import graphs
from maml_probe.learner import resolve_mask
from maml_probe.maml import meta_backward
from maml_probe.models import ConvNet
from maml_probe.rules import make_rule
from maml_probe.tasks.base import TaskBatch

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

RULES = {"maml": {}, "metasgd": {}, "mc": {}, "klin": {}, "kfc": {"layers": 4, "normalize": True},
         "cfc": {"rank": 2}}
CUDA = torch.device("cuda")


def _setup(rule_name, variant="omniglot", depth=4, ways=5, tasks=4, shots=2, queries=3,
           dtype=torch.float64, filters=8, seed=0):
    torch.manual_seed(seed)
    net = ConvNet(variant, depth, ways, filters=filters).to(CUDA, dtype)
    rule = make_rule(rule_name, net, 0.3, **RULES[rule_name])
    with torch.no_grad():  # move learnable rules off their initialisation (not MAML-equivalent)
        for p in rule.parameters():
            p.add_(0.05 * torch.randn_like(p))
    g = torch.Generator().manual_seed(seed + 1)

    def part(per_class):
        x = torch.randn(tasks, ways * per_class, *net.input_shape, generator=g, dtype=dtype)
        y = torch.arange(ways).repeat_interleave(per_class).repeat(tasks, 1)
        return x.to(CUDA), y.to(CUDA)

    return net, rule, TaskBatch(*part(shots), *part(queries))


def _run(net, rule, batch, impl, steps=2, **kw):
    net.zero_grad(set_to_none=True)
    rule.zero_grad(set_to_none=True)
    loss, acc = meta_backward(net, rule, batch, steps=steps, impl=impl, **kw)
    grads = {f"m.{k}": p.grad for k, p in net.named_parameters()}
    grads.update({f"r.{k}": p.grad for k, p in rule.named_parameters()})
    return loss, acc, {k: None if g is None else g.detach().cpu().clone() for k, g in grads.items()}


def _rel_error(ref, got):
    """Largest |got - ref| over all meta-gradient entries, relative to the largest |ref| entry."""
    assert ref[2].keys() == got[2].keys()
    for k in ref[2]:
        assert (ref[2][k] is None) == (got[2][k] is None), k
    pairs = [(ref[2][k], got[2][k]) for k in ref[2] if ref[2][k] is not None]
    scale = max(float(r.abs().max()) for r, _ in pairs)
    assert scale > 0
    return max(float((g - r).abs().max()) for r, g in pairs) / scale


def _assert_captured(net):
    recs = graphs.recordings(net)
    assert recs and all(r.captured for r in recs), [r.note for r in recs]


@pytest.mark.parametrize("variant,depth", [("omniglot", 4), ("cifarfs", 2), ("miniimagenet", 2)])
@pytest.mark.parametrize("rule_name", list(RULES))
def test_graph_and_batched_equal_the_loop_in_float64(rule_name, variant, depth, monkeypatch):
    monkeypatch.delenv("MAML_PROBE_TASK_CHUNK", raising=False)
    net, rule, batch = _setup(rule_name, variant, depth)
    ref = _run(net, rule, batch, "loop")
    for impl, env in [("auto", {}), ("graph", {"MAML_PROBE_TASK_CHUNK": "3",
                                                "MAML_PROBE_QUERY_CHUNK": "1"}),
                      ("batched", {})]:
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        got = _run(net, rule, batch, impl)
        for k in env:
            monkeypatch.delenv(k)
        assert got[0] == pytest.approx(ref[0], rel=1e-10), impl
        assert got[1] == pytest.approx(ref[1], abs=1e-6), impl
        err = _rel_error(ref, got)
        assert err < 1e-9, f"{impl}: relative error {err:.2e}"
    _assert_captured(net)
    # and the device agrees with the CPU reference loop
    cpu = copy.deepcopy(net).cpu(), copy.deepcopy(rule).cpu()
    cpu_ref = _run(*cpu, batch.to("cpu"), "loop")
    assert _rel_error(cpu_ref, ref) < 1e-9


@pytest.mark.parametrize("first_order", [False, True], ids=["second", "first"])
@pytest.mark.parametrize("rule_name", ["maml", "kfc", "klin"])
def test_masks_and_first_order(rule_name, first_order):
    net, rule, batch = _setup(rule_name, depth=2)
    mask = resolve_mask(net, ["C2", "FC"])
    for kw in ({"first_order": first_order}, {"first_order": first_order, "adapt_mask": mask}):
        ref = _run(net, rule, batch, "loop", **kw)
        got = _run(net, rule, batch, "graph", **kw)
        assert _rel_error(ref, got) < 1e-9, kw
    _assert_captured(net)


@pytest.mark.parametrize("rule_name", ["maml", "kfc", "cfc"])
def test_replayed_training_follows_the_loop(rule_name):
    """Adam steps between replays (parameters change in place), a new batch every iteration."""
    net, rule, _ = _setup(rule_name, depth=2)
    twins = {impl: (copy.deepcopy(net), copy.deepcopy(rule)) for impl in ("loop", "graph")}
    opts = {impl: torch.optim.Adam([*m.parameters(), *r.parameters()], lr=1e-3)
            for impl, (m, r) in twins.items()}
    for it in range(4):
        _, _, batch = _setup(rule_name, depth=2, seed=10 + it)
        for impl, (m, r) in twins.items():
            opts[impl].zero_grad(set_to_none=True)
            meta_backward(m, r, batch, steps=2, impl=impl)
            opts[impl].step()
    _assert_captured(twins["graph"][0])
    assert len(graphs.recordings(twins["graph"][0])) == 1
    for (ka, a), (_, b) in zip(twins["loop"][0].state_dict().items(),
                                twins["graph"][0].state_dict().items()):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12, msg=ka)


@pytest.mark.parametrize("rule_name", ["maml", "kfc"])
def test_strict_fp32_agrees_with_float64(rule_name):
    """Float32 on the device (strict fp32, the default): graph and loop vs the float64 loop."""
    net64, rule64, batch64 = _setup(rule_name, filters=16, tasks=4, shots=5, queries=5)
    ref = _run(net64, rule64, batch64, "loop")
    net32, rule32 = copy.deepcopy(net64).float(), copy.deepcopy(rule64).float()
    batch32 = batch64.to(CUDA, torch.float32)
    errors = {}
    for impl in ("loop", "graph"):
        errors[impl] = _rel_error(ref, _run(net32, rule32, batch32, impl, precision="fp32"))
    errors["graph-tf32"] = _rel_error(ref, _run(net32, rule32, batch32, "graph", precision="tf32"))
    print(f"\nfloat32 vs float64 relative meta-gradient error ({rule_name}): {errors}")
    assert errors["loop"] < 1e-3 and errors["graph"] < 1e-3, errors
    _assert_captured(net32)


def test_chunks_sized_from_a_small_memory_budget_stay_exact(monkeypatch):
    net, rule, batch = _setup("kfc", tasks=6)
    ref = _run(net, rule, batch, "loop")
    monkeypatch.setenv("MAML_PROBE_CUDA_MEMORY_GB", "0.000001")
    got = _run(net, rule, batch, "graph")
    assert _rel_error(ref, got) < 1e-9
    (rec,) = graphs.recordings(net)
    assert rec.captured and rec.chunk == 1 and rec.peak_bytes > 0


def test_meta_training_on_cuda_uses_the_graph_and_checks_for_nan():
    from maml_probe.train import TrainConfig, meta_train

    cfg = TrainConfig(dataset="synthetic", dataset_kwargs={"dim": 20}, model="lr", iterations=30,
                      meta_batch=4, log_every=10, checkpoint_every=30, device="cuda")
    res = meta_train(cfg, progress=False)
    train = res.history[res.history.split == "train"]
    assert len(train) == 3 and train.loss.notna().all()
    assert any(r.captured for r in graphs.recordings(res.learner.model))


def test_an_interrupted_cuda_run_resumes_from_its_checkpoint(tmp_path):
    """A checkpoint loaded onto the GPU (RNG states included) resumes where the run stopped."""
    from maml_probe.train import TrainConfig, meta_train

    cfg = TrainConfig(dataset="synthetic", dataset_kwargs={"dim": 20}, model="lr", iterations=20,
                      meta_batch=4, log_every=10, checkpoint_every=10, device="cuda")
    meta_train(cfg, tmp_path, progress=False)
    resumed = meta_train(cfg.replace(iterations=40), tmp_path, progress=False)
    straight = meta_train(cfg.replace(iterations=40), tmp_path / "straight", progress=False)
    assert resumed.history.iteration.tolist() == straight.history.iteration.tolist() == [10, 20, 30, 40]
    for (k, a), b in zip(resumed.learner.state_dict().items(), straight.learner.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=k)
