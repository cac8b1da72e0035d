"""Where a GPU meta-step spends its time: the operators of one eager stacked step, by GPU time.

    python benchmarks/gpu_profile.py [--settings miniimagenet:cnn:kfc,omniglot:cnn:kfc]

One warm-up step, then one profiled step (``torch.profiler`` with CUDA activity) of the
``batched`` engine (eager, cuDNN's heuristics) at the paper's episode on random inputs; prints
the operators with the most self GPU time, the number of kernels and the GPU-busy time.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--settings", default="miniimagenet:cnn:kfc,omniglot:cnn:kfc,miniimagenet:cnn:maml")
    ap.add_argument("--rows", type=int, default=12)
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile

    from maml_probe.experiments.e11_compute import random_batch
    from maml_probe.experiments.settings import image_config
    from maml_probe.maml import meta_backward
    from maml_probe.train import learner_from_config

    for spec in args.settings.split(","):
        dataset, model, method = spec.split(":")
        cfg = image_config(dataset, model, method, "paper", device=args.device)
        torch.manual_seed(0)
        learner = learner_from_config(cfg).to(args.device)
        batch = random_batch(cfg, learner.model.input_shape, torch.device(args.device))

        def step():
            learner.zero_grad(set_to_none=True)
            meta_backward(learner.model, learner.rule, batch, steps=cfg.steps, impl="batched")
            if torch.cuda.is_available():
                torch.cuda.synchronize()

        step()
        t0 = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            step()
        wall = time.perf_counter() - t0
        events = prof.key_averages()
        attr = "self_device_time_total" if hasattr(events[0], "self_device_time_total") \
            else "self_cuda_time_total"
        kernels = [e for e in prof.events() if str(getattr(e, "device_type", "")).endswith("CUDA")]
        gpu_us = sum(getattr(e, attr) for e in kernels)  # kernels only: ops would count twice
        print(f"\n## {spec}: {len(kernels)} GPU kernels, GPU busy {gpu_us / 1e3:.0f} ms; "
              f"profiled wall {wall * 1e3:.0f} ms (the profiler's own overhead included)")
        print(events.table(sort_by=attr, row_limit=args.rows, max_name_column_width=60))


if __name__ == "__main__":
    main()
