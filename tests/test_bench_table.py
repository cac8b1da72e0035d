"""The CPU benchmark's table (``benchmarks/bench_maml.py``): ratios, rates and gradient agreement
are computed from the measurements as the table says, and the float64 gradient check of a
worker matches the reference loop (no timing is asserted: speed lives in ``benchmarks/``)."""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_maml", ROOT / "benchmarks" / "bench_maml.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_maml"] = module  # its dataclasses look their module up by name
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("bench_maml", None)


def _worker(label, times, rule="maml", impl="auto", peak_mib=10.0):
    return {"label": label, "rule": rule, "impl": impl, "info": {"choice": "loop"}, "times": times,
            "memory": {"baseline_kib": 0, "peak_kib": int(peak_mib * 1024)}, "error": ""}


def test_table_ratios_rates_and_agreement(bench):
    setting = {"key": "s", "title": "S", "rules": ["maml"]}
    result = {"setting": setting, "device": "cpu", "flops": {"maml": 2e9},
              "agreement": {"auto": {"float64": 1e-15, "float32": 3e-7}, "entries": 42},
              "workers": [_worker("ours auto", [0.5, 0.6, 0.7]),
                          _worker("l2l", [1.0, 1.2, 1.4], impl="l2l"),
                          _worker("l2l+malloc", [0.8, 1.0, 1.2], impl="l2l+malloc")]}
    floors = {"sgemm_gflops": 20.0, "conv_gflops": 10.0, "threads": 1}
    table = bench.render([result], "n/a", floors)
    row = next(line for line in table.splitlines() if line.startswith("| S | ours auto"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # min / median over l2l's, then over l2l+malloc's
    assert cells[4] == "0.50 / 0.50"
    assert cells[5] == "0.62 / 0.60"
    # 2 GFLOP per step over the median 0.6 s = 3.3 GFLOP/s: 17% of sgemm, 33% of conv
    assert cells[6:9] == ["3.3", "17%", "33%"]
    assert "| S | ours auto | 42 | 1.0e-15 | 3.0e-07 |" in table


def test_float64_gradients_match_the_reference_loop(bench):
    from maml_probe.maml import meta_backward
    from maml_probe.models import ConvNet
    from maml_probe.tasks.base import TaskBatch

    torch.manual_seed(0)
    net = ConvNet("omniglot", 2, 3)
    g = torch.Generator().manual_seed(1)
    batch = TaskBatch(torch.randn(2, 3, 1, 28, 28, generator=g), torch.arange(3).repeat(2, 1),
                      torch.randn(2, 6, 1, 28, 28, generator=g), (torch.arange(6) % 3).repeat(2, 1))
    spec = {"steps": 2, "alpha": 0.4, "alphas": {}}
    args = argparse.Namespace(rule="maml")
    ours = bench.float64_grads(net, batch, spec, args, "batched")
    assert all(p.dtype == torch.float32 for p in net.parameters())  # the timed model is untouched
    ref = net.double()
    from maml_probe.rules import make_rule
    meta_backward(ref, make_rule("maml", ref, 0.4), TaskBatch(batch.support_x.double(), batch.support_y,
                  batch.query_x.double(), batch.query_y), steps=2, impl="loop")
    for name, p in ref.named_parameters():
        assert torch.allclose(torch.tensor(ours[name], dtype=torch.float64), p.grad.flatten(),
                              rtol=1e-10, atol=1e-12), name
