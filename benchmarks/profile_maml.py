"""Where a meta-step's time goes (the evidence behind BENCHMARKS.md's notes).

    python benchmarks/profile_maml.py [--setting cnn-5w1s] [--rule maml|kfc] [--repeats 5]

For each engine (``loop`` without allocator tuning, ``loop`` with it, ``auto``) it prints:

* the unprofiled meta-step time (min over repeats) with user/system CPU time and minor page
  faults per step (``getrusage``);
* the *floor* every implementation pays: the query set's plain first-order forward + backward
  at fixed parameters (8 x one training step on ``ways * queries`` images), timed alone;
* a torch.profiler breakdown of op self-time into convolution kernels (mkldnn forward and
  ``convolution_backward``), batch norm, matmuls and everything else, plus the number of op
  calls (a proxy for dispatcher/autograd/Python overhead, which the profiler itself inflates).

Runs in one process, so compare fractions and ratios, not absolute numbers, across machines.
The allocator rows need a fresh process each: run with ``--engine`` to profile one engine alone.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from bench_maml import KFC_KWARGS, SETTINGS  # noqa: E402

from maml_probe import fast  # noqa: E402
from maml_probe.maml import meta_backward  # noqa: E402
from maml_probe.models import ConvNet  # noqa: E402
from maml_probe.rules import make_rule  # noqa: E402
from maml_probe.tasks.base import TaskBatch  # noqa: E402

CATEGORIES = {
    "convolution kernels": ("mkldnn_convolution", "convolution_backward", "slow_conv", "cudnn"),
    "batch norm": ("batch_norm",),
    "matmul": ("aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm"),
}


def build(setting: str, rule_name: str):
    s = SETTINGS[setting]
    torch.manual_seed(0)
    net = ConvNet(s.variant, s.depth, s.ways)
    g = torch.Generator().manual_seed(1)
    ns, nq = s.ways * s.shots, s.ways * s.queries
    batch = TaskBatch(torch.randn(s.tasks, ns, *net.input_shape, generator=g),
                      (torch.arange(ns) % s.ways).repeat(s.tasks, 1),
                      torch.randn(s.tasks, nq, *net.input_shape, generator=g),
                      (torch.arange(nq) % s.ways).repeat(s.tasks, 1))
    rule = make_rule(rule_name, net, s.alpha, **(KFC_KWARGS if rule_name == "kfc" else {}))
    return s, net, rule, batch


def timed(fn, repeats: int) -> dict:
    fn()
    best = None
    for _ in range(repeats):
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        fn()
        t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        row = {"wall": t1 - t0, "user": r1.ru_utime - r0.ru_utime, "sys": r1.ru_stime - r0.ru_stime,
               "faults": r1.ru_minflt - r0.ru_minflt}
        if best is None or row["wall"] < best["wall"]:
            best = row
    return best


def breakdown(fn) -> tuple[dict, int, float]:
    from torch.profiler import ProfilerActivity, profile
    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    out = {k: 0.0 for k in CATEGORIES}
    calls = 0
    for e in events:
        if e.key.startswith("aten::"):
            calls += e.count
        for k, pats in CATEGORIES.items():
            if any(p in e.key for p in pats):
                out[k] += e.self_cpu_time_total
                break
    out["other ops"] = total - sum(out.values())
    return {k: v / total for k, v in out.items()}, calls, total / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--setting", default="cnn-5w1s", choices=[k for k in SETTINGS if k != "kfc"])
    ap.add_argument("--rule", default="maml", choices=["maml", "kfc"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--engine", default="all", choices=["all", "loop", "loop+malloc", "auto"])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    s, net, rule, batch = build(args.setting, args.rule)
    print(f"{s.title}, rule {args.rule}; torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    def step(impl):
        def run():
            net.zero_grad(set_to_none=True)
            rule.zero_grad(set_to_none=True)
            meta_backward(net, rule, batch, steps=s.steps, impl=impl)
        return run

    params = list(net.parameters())

    def query_floor():
        for i in range(len(batch)):
            loss = F.cross_entropy(net(batch.query_x[i]), batch.query_y[i])
            torch.autograd.grad(loss, params)

    engines = ["loop", "loop+malloc", "auto"] if args.engine == "all" else [args.engine]
    os.environ["MAML_PROBE_MALLOC"] = "0"
    rows = []
    for name in engines:
        if name != "loop":
            os.environ["MAML_PROBE_MALLOC"] = "1"
            fast.tune_malloc(force=True)
        fn = step("loop" if name.startswith("loop") else "auto")
        rows.append((name, timed(fn, args.repeats), *breakdown(fn)))
    floor = timed(query_floor, args.repeats)
    print(f"\nquery-set first-order forward+backward alone at fixed parameters (every engine's "
          f"floor): {floor['wall'] * 1e3:.0f} ms")
    print("\n| engine | meta-step ms | user+sys CPU ms | sys ms | minor faults | query floor share "
          "| " + " | ".join(list(CATEGORIES) + ["other ops"]) + " | aten op calls |")
    print("|---" * (8 + len(CATEGORIES)) + "|")
    for name, t, frac, calls, _ in rows:
        print(f"| {name} | {t['wall'] * 1e3:.0f} | {(t['user'] + t['sys']) * 1e3:.0f} | "
              f"{t['sys'] * 1e3:.0f} | {t['faults']} | {floor['wall'] / t['wall']:.0%} | "
              + " | ".join(f"{frac[k]:.0%}" for k in list(CATEGORIES) + ["other ops"])
              + f" | {calls} |")


if __name__ == "__main__":
    main()
