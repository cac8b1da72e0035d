"""Peak GPU memory of the paper's settings, and whether they fit a card of a given size.

    python benchmarks/gpu_memory.py --card-gib 16 --json OUT.json

For each setting (default: mini-ImageNet at the paper's episode, 10-way 1-shot, 15 queries per
class, 5 steps, 4 tasks; CNN and SCNN with MAML, KFC and CFC10), the process is limited to the
memory a ``--card-gib`` card leaves for tensors (``torch.cuda.set_per_process_memory_fraction``;
one GiB is kept aside for the CUDA context), and ``meta_backward`` runs with its defaults: the
recorded CUDA-graph step, tasks per pass sized from the measured memory of one task. Reported:
the chunk chosen, one task's peak, the step's peak allocated and reserved memory, and seconds per
meta-batch (median of 3 replays). Inputs are random images of the right shape.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SETTINGS = [("miniimagenet", "cnn", "maml"), ("miniimagenet", "cnn", "kfc"),
            ("miniimagenet", "scnn", "maml"), ("miniimagenet", "scnn", "kfc"),
            ("miniimagenet", "scnn", "cfc10"), ("omniglot", "cnn", "kfc")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--card-gib", type=float, default=16.0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import torch

    from maml_probe import fast
    from maml_probe.experiments.e11_compute import random_batch
    from maml_probe.experiments.settings import image_config
    from maml_probe.maml import meta_backward
    from maml_probe.train import learner_from_config

    dev = torch.device("cuda", torch.cuda.current_device())
    total = torch.cuda.get_device_properties(dev).total_memory
    limit = (args.card_gib - 1.0) * 2**30
    torch.cuda.set_per_process_memory_fraction(min(1.0, limit / total), dev)
    out = {"gpu": torch.cuda.get_device_name(dev), "torch": torch.__version__,
           "card_gib": args.card_gib, "tensor_limit_gib": round(limit / 2**30, 2), "rows": []}
    for dataset, model, method in SETTINGS:
        cfg = image_config(dataset, model, method, "paper", device="cuda")
        row = {"dataset": dataset, "model": model, "method": method, "ways": cfg.ways,
               "shots": cfg.shots, "queries": cfg.queries, "steps": cfg.steps,
               "tasks": cfg.meta_batch}
        learner = batch = None
        try:
            torch.manual_seed(0)
            learner = learner_from_config(cfg).to(dev)
            batch = random_batch(cfg, learner.model.input_shape, dev)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(dev)
            times = []
            for i in range(4):
                learner.zero_grad(set_to_none=True)
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                meta_backward(learner.model, learner.rule, batch, steps=cfg.steps)
                torch.cuda.synchronize()
                if i:
                    times.append(time.perf_counter() - t0)
            (rec,) = fast.graphs.describe(learner.model)
            row.update(status="ok", seconds=statistics.median(times), **rec,
                       peak_allocated_gib=round(torch.cuda.max_memory_allocated(dev) / 2**30, 2),
                       peak_reserved_gib=round(torch.cuda.max_memory_reserved(dev) / 2**30, 2))
        except Exception as err:  # noqa: BLE001 - report and go on
            row.update(status=f"{type(err).__name__}: {str(err)[-300:]}")
        finally:
            fast.clear_recordings()
            learner = batch = None
            torch.cuda.empty_cache()
        print(json.dumps(row), flush=True)
        out["rows"].append(row)
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
