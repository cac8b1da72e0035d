"""The recorded-step machinery of the CUDA path, exercised on CPU (where a recording runs eagerly).

What is checked here holds for the real CUDA graphs too (``tests/test_cuda.py`` repeats the
exactness checks on a GPU): one recording per (model, rule, parameter storage, episode shape,
settings), inputs copied into static buffers, outputs added into ``.grad`` like ``.backward()``,
nothing kept alive after the model is gone.
"""
import gc

import pytest
import torch

from maml_probe.fast import graphs
from maml_probe.fast.batched import accumulate_into_grad
from maml_probe.fast.precision import cuda_precision, resolve_precision
from maml_probe.learner import resolve_mask
from maml_probe.maml import meta_backward
from maml_probe.models import ConvNet
from maml_probe.rules import make_rule
from maml_probe.tasks.base import TaskBatch


def _net(seed=0):
    torch.manual_seed(seed)
    return ConvNet("omniglot", 2, 3, filters=4).double()


def _batch(tasks=3, seed=0, n_support=4, n_query=5):
    g = torch.Generator().manual_seed(seed)
    x = lambda n: torch.randn(tasks, n, 1, 28, 28, generator=g, dtype=torch.float64)  # noqa: E731
    y = lambda n: torch.randint(0, 3, (tasks, n), generator=g)  # noqa: E731
    return TaskBatch(x(n_support), y(n_support), x(n_query), y(n_query))


def _grads(net, rule):
    out = {f"m.{k}": p.grad for k, p in net.named_parameters()}
    out.update({f"r.{k}": p.grad for k, p in rule.named_parameters()})
    return {k: None if g is None else g.clone() for k, g in out.items()}


def _reference(net, rule, batch, **kw):
    """The loop's meta-gradient and (loss, acc), without touching the caller's .grad."""
    saved = {id(p): p.grad for p in [*net.parameters(), *rule.parameters()]}
    for p in [*net.parameters(), *rule.parameters()]:
        p.grad = None
    la = meta_backward(net, rule, batch, steps=2, impl="loop", **kw)
    ref = _grads(net, rule)
    for p in [*net.parameters(), *rule.parameters()]:
        p.grad = saved[id(p)]
    return la, ref


def _close(got, ref):
    assert got.keys() == ref.keys()
    for k in ref:
        assert (got[k] is None) == (ref[k] is None), k
        if ref[k] is not None:
            torch.testing.assert_close(got[k], ref[k], rtol=1e-9, atol=1e-12, msg=k)


def _step(net, rule, batch, **kw):
    return graphs.graphed_meta_backward(net, rule, batch, steps=2, **kw)


def _same(got, ref):
    """(loss, accuracy) pairs: the loss to float64 rounding, accuracy (float32 per task) to 1e-6."""
    assert got[0] == pytest.approx(ref[0], rel=1e-12)
    assert got[1] == pytest.approx(ref[1], abs=1e-6)


@pytest.mark.parametrize("rule_name", ["maml", "kfc"])
def test_replays_follow_new_batches_and_in_place_parameter_updates(rule_name):
    net = _net()
    rule = make_rule(rule_name, net, 0.3, **({"layers": 2, "normalize": True}
                                             if rule_name == "kfc" else {}))
    a, b = _batch(seed=1), _batch(seed=2)
    la, ref_a = _reference(net, rule, a)
    _same(_step(net, rule, a), la)
    _close(_grads(net, rule), ref_a)
    # an optimiser step changes the parameters in place: same recording, new values
    with torch.no_grad():
        for p in [*net.parameters(), *rule.parameters()]:
            p.add_(0.01 * torch.randn_like(p))
    net.zero_grad(set_to_none=True)
    rule.zero_grad(set_to_none=True)
    lb, ref_b = _reference(net, rule, b)
    _same(_step(net, rule, b), lb)
    _close(_grads(net, rule), ref_b)
    assert len(graphs.recordings(net)) == 1
    # without zero_grad the meta-gradient accumulates, as .backward() does
    _step(net, rule, b)
    _close(_grads(net, rule), {k: None if g is None else 2 * g for k, g in ref_b.items()})


def test_the_callers_batch_is_copied_not_aliased():
    net, rule = _net(), None
    rule = make_rule("maml", net, 0.3)
    a = _batch(seed=3)
    _step(net, rule, a)
    rec = graphs.recordings(net)[0]
    assert rec.static.support_x.data_ptr() != a.support_x.data_ptr()
    a.support_x.zero_()                                 # the caller reuses its buffer
    torch.testing.assert_close(rec.static.support_x, _batch(seed=3).support_x)


def test_new_storage_rule_shape_or_settings_record_anew_and_old_ones_are_capped():
    net = _net()
    rule = make_rule("maml", net, 0.3)
    batch = _batch()
    _step(net, rule, batch)
    _step(net, rule, batch)
    assert len(graphs.recordings(net)) == 1
    with torch.no_grad():                               # parameters replaced, not updated in place
        for p in net.parameters():
            p.data = p.data.clone()
    net.zero_grad(set_to_none=True)
    _, ref = _reference(net, rule, batch)
    _step(net, rule, batch)
    _close(_grads(net, rule), ref)
    assert len(graphs.recordings(net)) == 2
    rule2 = make_rule("maml", net, 0.5)                 # alpha is baked into a recording
    _step(net, rule2, batch)
    assert len(graphs.recordings(net)) == 3
    _step(net, rule, batch, first_order=True)
    _step(net, rule, _batch(tasks=2))
    assert len(graphs.recordings(net)) == graphs.MAX_RECORDINGS_PER_MODEL


def test_recordings_do_not_keep_their_model_alive():
    net = _net()
    rule = make_rule("kfc", net, 0.3, layers=2)
    _step(net, rule, _batch())
    assert len(graphs.recordings(net)) == 1
    ref = __import__("weakref").ref(net)
    del net
    gc.collect()
    assert ref() is None
    assert all(m is not None for m in list(graphs._recordings.keys()))


def test_masks_and_chunks_match_the_loop():
    net = _net()
    rule = make_rule("metasgd", net, 0.3)
    batch = _batch(tasks=5)
    mask = resolve_mask(net, ["C2", "FC"])
    la, ref = _reference(net, rule, batch, adapt_mask=mask)
    _same(_step(net, rule, batch, adapt_mask=mask, chunk=2, query_chunk=1), la)
    _close(_grads(net, rule), ref)
    graphs.clear_recordings(net)
    assert graphs.recordings(net) == []


def test_chunk_sizing_and_memory_budget(monkeypatch):
    assert graphs.chunk_for(100, 32, 10_000) == 32
    assert graphs.chunk_for(1000, 32, 10_000) == 8          # 10,000 / (1.25 * 1,000)
    assert graphs.chunk_for(10**9, 32, 10) == 1
    assert graphs.chunk_for(0, 5, 10) == 5
    monkeypatch.setenv("MAML_PROBE_CUDA_MEMORY_GB", "16")
    assert graphs.memory_budget(torch.device("cpu")) == 16 * 2**30
    for bad in ("x", "0", "-2"):
        monkeypatch.setenv("MAML_PROBE_CUDA_MEMORY_GB", bad)
        with pytest.raises(ValueError, match="MAML_PROBE_CUDA_MEMORY_GB"):
            graphs.memory_budget(torch.device("cpu"))


def test_accumulate_copies_when_asked():
    p = torch.nn.Parameter(torch.zeros(3))
    g = torch.ones(3)
    accumulate_into_grad([p], (g,), copy=True)
    g.fill_(5.0)                                            # the next replay overwrites g
    assert torch.equal(p.grad, torch.ones(3))
    accumulate_into_grad([p], (g,), copy=True)
    assert torch.equal(p.grad, torch.full((3,), 6.0))
    q = torch.nn.Parameter(torch.zeros(2))
    accumulate_into_grad([q], (None,))
    assert q.grad is None


def test_precision_policy_is_explicit_and_restored(monkeypatch):
    monkeypatch.delenv("MAML_PROBE_CUDA_PRECISION", raising=False)
    assert resolve_precision() == "fp32"
    monkeypatch.setenv("MAML_PROBE_CUDA_PRECISION", "TF32")
    assert resolve_precision() == "tf32"
    monkeypatch.setenv("MAML_PROBE_CUDA_PRECISION", "bf16")
    with pytest.raises(ValueError, match="MAML_PROBE_CUDA_PRECISION must be one of"):
        resolve_precision()
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("half")

    def flags():
        if hasattr(torch.backends.cudnn, "conv") and \
                hasattr(torch.backends.cudnn.conv, "fp32_precision"):
            return (torch.backends.cuda.matmul.fp32_precision,
                    torch.backends.cudnn.conv.fp32_precision)
        return (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)

    before = flags()
    with cuda_precision("fp32"):
        inside = flags()
        assert inside in (("ieee", "ieee"), (False, False))
    assert flags() == before
    with cuda_precision("tf32"):
        assert flags() in (("tf32", "tf32"), (True, True))
    assert flags() == before


class _FakeCuda:
    """Stand-ins for the torch.cuda calls of a capture, so its failure handling runs on CPU."""

    def __init__(self, monkeypatch, capture_error=None):
        import contextlib

        class Stream:
            def __init__(self, *a, **k):
                pass

            def wait_stream(self, other):
                pass

        class Graph:
            replays = 0

            def replay(self):
                Graph.replays += 1

        @contextlib.contextmanager
        def graph(g, *a, **k):
            if capture_error is not None:
                raise capture_error
            yield

        for name, value in {"Stream": Stream, "current_stream": lambda *a: Stream(),
                            "stream": lambda s: contextlib.nullcontext(),
                            "synchronize": lambda *a: None, "empty_cache": lambda: None,
                            "CUDAGraph": Graph, "graph": graph}.items():
            monkeypatch.setattr(graphs.torch.cuda, name, value)


def _static_and_run(results):
    """A meta-step whose successive calls return ``results`` (to stage a disagreeing replay)."""
    from maml_probe.fast.batched import MetaGradients
    calls = iter(results)

    def run(_batch):
        v = next(calls)
        return MetaGradients((torch.full((3,), v),), torch.tensor(v), torch.tensor(1.0))

    return _batch(tasks=1), run


def test_a_failed_capture_falls_back_to_eager_steps_with_a_warning(monkeypatch):
    _FakeCuda(monkeypatch, capture_error=RuntimeError("operation not permitted when capturing"))
    rule = make_rule("maml", _net(), 0.3)
    static, run = _static_and_run([1.0] * 8)
    with pytest.warns(UserWarning, match="could not be recorded as a CUDA graph.*not permitted"):
        rec = graphs._capture(rule, static, run, 1, 0, torch.device("cpu"))
    assert not rec.captured and "capture failed" in rec.note
    assert float(rec(static).loss_sum) == 1.0       # eager from now on


def test_a_replay_that_disagrees_with_the_eager_step_is_not_used(monkeypatch):
    _FakeCuda(monkeypatch)
    rule = make_rule("maml", _net(), 0.3)
    # two warm-ups give 1.0, the "recorded" step 2.0: both attempts (autotuner on, off) disagree
    static, run = _static_and_run([1.0, 1.0, 2.0, 1.0, 1.0, 2.0, 5.0])
    with pytest.warns(UserWarning, match="replay disagreed"):
        rec = graphs._capture(rule, static, run, 1, 0, torch.device("cpu"))
    assert not rec.captured and "disagreed" in rec.note
    # and a replay that agrees is kept as the recording
    static, run = _static_and_run([1.0, 1.0, 1.0])
    rec = graphs._capture(rule, static, run, 1, 0, torch.device("cpu"))
    assert rec.captured and rec.note == "CUDA graph"


def test_the_replay_check_tolerates_rounding_but_not_wrong_memory():
    from maml_probe.fast.batched import MetaGradients

    def mg(grad, loss, dtype=torch.float32):
        return MetaGradients((torch.tensor([1.0, grad], dtype=dtype), None),
                             torch.tensor(loss, dtype=dtype), torch.tensor(1.0))

    ref = mg(0.5, 2.0)
    assert graphs._disagreement(mg(0.53, 2.0), ref) == ""               # another conv algorithm
    assert "gradient error" in graphs._disagreement(mg(0.8, 2.0), ref)  # order-one difference
    assert "loss error" in graphs._disagreement(mg(0.5, 2.1), ref)      # other inputs
    assert graphs._disagreement(mg(float("nan"), 2.0), ref) != ""
    assert graphs._disagreement(mg(0.8, 2.0), ref, noise=0.1) == ""     # as noisy as eager itself
    ref64 = mg(0.5, 2.0, torch.float64)
    assert graphs._disagreement(mg(0.5 + 1e-12, 2.0, torch.float64), ref64) == ""
    assert graphs._disagreement(mg(0.5 + 1e-6, 2.0, torch.float64), ref64) != ""
    none_grads = MetaGradients((None, None), torch.tensor(2.0), torch.tensor(1.0))
    assert "gradient error inf" in graphs._disagreement(none_grads, ref)
