"""Seconds per meta-training iteration on 1 process against N processes (torchrun, data-parallel).

    python benchmarks/bench_distributed.py --nproc 2 --iterations 12 --json OUT.json

Trains the same configuration (default: E7's Omniglot SCNN w/ MAML episode on random images of
Omniglot's shape, so no data is needed: 10-way 5-shot, 4 steps, meta-batch 8) with
:func:`maml_probe.train.meta_train`, once in one process and once under ``torchrun`` with
``--nproc`` processes, each process pinned to ``--threads`` threads (default: the machine's
cores divided by the processes, so both runs use the same cores). Reports the median seconds per
iteration after the first two, and the speed-up. Alternates the two runs ``--repeats`` times.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(args: argparse.Namespace) -> None:
    """One training run (inside torchrun or alone); rank 0 prints seconds per iteration."""
    import torch

    sys.path.insert(0, str(ROOT))
    from maml_probe.config import TrainConfig
    from maml_probe.distributed import current_world, init_from_env
    from maml_probe.tasks.base import TaskBatch
    from maml_probe.train import meta_train

    torch.set_num_threads(args.threads)
    init_from_env("cpu")

    class RandomOmniglot:
        """Episodes of random 28x28 images: the cost of a real episode, no data needed."""

        input_shape, num_outputs = (1, 28, 28), args.ways

        def sample(self, n: int, generator: torch.Generator) -> TaskBatch:
            def part(k: int):
                x = torch.rand(n, args.ways * k, 1, 28, 28, generator=generator)
                return x, torch.arange(args.ways).repeat_interleave(k).repeat(n, 1)
            return TaskBatch(*part(args.shots), *part(args.shots))

    cfg = TrainConfig(dataset="omniglot", model=args.model, rule=args.rule, ways=args.ways,
                      shots=args.shots, queries=args.shots, steps=args.steps, alpha=0.5,
                      meta_lr=0.003, outer_optimizer="adam", meta_batch=args.meta_batch,
                      iterations=args.iterations, log_every=1, checkpoint_every=10**6,
                      tune_malloc=True,
                      rule_kwargs={"layers": 4, "normalize": True} if args.rule == "kfc" else {})
    src = RandomOmniglot()
    res = meta_train(cfg, None, progress=False, sources={"train": src})
    if current_world().is_main:
        secs = res.history[res.history.split == "train"].seconds_per_iteration.tolist()[2:]
        print(json.dumps({"seconds_per_iteration": statistics.median(secs)}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--iterations", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--model", default="scnn")
    ap.add_argument("--rule", default="maml")
    ap.add_argument("--ways", type=int, default=10)
    ap.add_argument("--shots", type=int, default=5)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--meta-batch", type=int, default=8)
    ap.add_argument("--json", default=None)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    cores = os.cpu_count() or 1
    flags = [f"--iterations={args.iterations}", f"--model={args.model}", f"--rule={args.rule}",
             f"--ways={args.ways}", f"--shots={args.shots}", f"--steps={args.steps}",
             f"--meta-batch={args.meta_batch}", "--worker"]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(ROOT)}
    one_threads = args.threads * args.nproc if args.threads else cores
    many_threads = args.threads or max(1, cores // args.nproc)
    runs = {"1": [sys.executable, __file__, f"--threads={one_threads}", *flags],
            str(args.nproc): [sys.executable, "-m", "torch.distributed.run", "--standalone",
                              f"--nproc-per-node={args.nproc}", __file__,
                              f"--threads={many_threads}", *flags]}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for key, cmd in runs.items():
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
            line = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
            if out.returncode or not line:
                raise SystemExit(f"{key} process(es) failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
            times[key].append(json.loads(line[-1])["seconds_per_iteration"])
            print(f"{key} process(es): {times[key][-1]:.3f} s/iteration", flush=True)
    one, many = statistics.median(times["1"]), statistics.median(times[str(args.nproc)])
    result = {"machine": f"{cores} cores", "config": vars(args), "threads_one": one_threads,
              "threads_each": many_threads, "seconds_per_iteration": {k: v for k, v in times.items()},
              "median_one": one, "median_many": many, "speedup": one / many}
    print(f"speed-up of {args.nproc} processes over 1: {one / many:.2f}x "
          f"({one:.3f} -> {many:.3f} s/iteration)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
