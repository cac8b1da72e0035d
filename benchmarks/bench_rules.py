"""Time per meta-batch of every update rule relative to MAML (the paper's Table A3 "Time" column).

One measurement is one call of :func:`maml_probe.maml.meta_backward` (inner loop, query loss and
the second-order meta-gradient of every task of the meta-batch) and nothing else: no data
loading, no outer optimizer step. Inputs are random tensors of the dataset's shape. Each rule
gets ``--warmup`` untimed calls, then ``--repeats`` timed ones, taken round-robin over the rules
so that a change in machine load hits all of them alike; the table gives the min and median and
their ratios to MAML's, all from the same process.

Defaults are the paper's Omniglot setting (A.1.2): SCNN, 10-way 5-shot (5 query images per
class), 4 inner steps, meta-batch 32. Example::

    PYTHONPATH=. python benchmarks/bench_rules.py --meta-batch 8 --repeats 3
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from maml_probe.maml import meta_backward
from maml_probe.models import build_model, count_parameters
from maml_probe.rules import count_rule_parameters, make_rule
from maml_probe.tasks.base import TaskBatch

RULES: list[tuple[str, str, dict]] = [
    ("MAML", "maml", {}), ("MSGD", "metasgd", {}), ("MC", "mc", {}), ("KLin", "klin", {}),
    ("KFC", "kfc", {"layers": 4, "normalize": True}),
    ("CFC1", "cfc", {"rank": 1}), ("CFC10", "cfc", {"rank": 10}),
]


def random_batch(model: torch.nn.Module, tasks: int, ways: int, shots: int, queries: int,
                 device: torch.device) -> TaskBatch:
    g = torch.Generator().manual_seed(0)
    shape = model.input_shape

    def part(k: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(tasks, ways * k, *shape, generator=g)
        y = torch.arange(ways).repeat_interleave(k).expand(tasks, -1).contiguous()
        return x.to(device), y.to(device)

    return TaskBatch(*part(shots), *part(queries))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_once(model, rule, batch, steps: int, device) -> float:
    """Seconds for one :func:`meta_backward` over the whole meta-batch."""
    model.zero_grad(set_to_none=True)
    rule.zero_grad(set_to_none=True)
    sync(device)
    start = time.perf_counter()
    meta_backward(model, rule, batch, steps=steps)
    sync(device)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", default="omniglot", choices=["omniglot", "cifarfs", "miniimagenet"])
    p.add_argument("--model", default="scnn", choices=["scnn", "cnn"])
    p.add_argument("--ways", type=int, default=10)
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--queries", type=int, default=5)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--meta-batch", type=int, default=32)
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--rules", default=",".join(label for label, _, _ in RULES),
                   help="comma-separated subset of the labels")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    wanted = args.rules.split(",")

    torch.manual_seed(0)
    model = build_model(args.model, args.ways, variant=args.variant).to(device)
    batch = random_batch(model, args.meta_batch, args.ways, args.shots, args.queries, device)
    name = device.type if device.type != "cuda" else torch.cuda.get_device_name(device)
    print(f"{args.model.upper()} {args.variant}, {count_parameters(model):,} params; {args.ways}-way "
          f"{args.shots}-shot, {args.queries} queries/class, {args.steps} steps, meta-batch "
          f"{args.meta_batch}; device {name}, {torch.get_num_threads()} threads; "
          f"{args.warmup} warm-up + {args.repeats} timed calls of meta_backward per rule\n")
    rules = {label: make_rule(rule_name, model, args.alpha, **kwargs)
             for label, rule_name, kwargs in RULES if label in wanted}
    times: dict[str, list[float]] = {label: [] for label in rules}
    for i in range(args.warmup + args.repeats):      # round-robin: load changes hit every rule
        for label, rule in rules.items():
            t = time_once(model, rule, batch, args.steps, device)
            if i >= args.warmup:
                times[label].append(t)
    base = (min(times["MAML"]), statistics.median(times["MAML"])) if "MAML" in times else None
    rows = [(label, count_rule_parameters(rules[label]), min(t), statistics.median(t))
            for label, t in times.items()]
    print("| rule | optimizer params | min s | median s | min / MAML | median / MAML |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, n, lo, med in rows:
        ratios = f"{lo / base[0]:.2f} | {med / base[1]:.2f}" if base else "- | -"
        print(f"| {label} | {n:,} | {lo:.3f} | {med:.3f} | {ratios} |")


if __name__ == "__main__":
    main()
