"""E6 — Figure 3 and Table A2: the number of conv layers (1-4), CNN w/ MAML against CNN w/ KFC.

Omniglot (10-way 5-shot, 4 steps) and CIFAR-FS (10-way 3-shot, 2 steps) at the ``paper`` and
``cpu`` scales (``cpu`` shortens training; ``smoke`` also shrinks the episode; :mod:`.settings`).
Each method uses its paper adaptation rate (the 2-conv MAML model on Omniglot uses the SCNN's
0.8). The driver is :func:`maml_probe.experiments.sweeps.depth_sweep` (resumable).
"""
from __future__ import annotations

import os

import pandas as pd

from ..runs import to_results
from .settings import ALPHA, RULE_OPTIONS, image_config, num_test_tasks
from .sweeps import depth_sweep

DEPTHS = {"smoke": (1, 2), "cpu": (1, 2, 3, 4), "paper": (1, 2, 3, 4)}


def run(scale: str = "cpu", run_dir: str | os.PathLike | None = None, *, dataset: str = "omniglot",
        depths=None, test_tasks: int | None = None, progress: bool = True,
        **kwargs) -> dict[str, pd.DataFrame]:
    """Sweep depths x {MAML, KFC}; ``summary``, ``tests``, ``history`` and ``results`` (Table A2).

    ``test_tasks`` defaults to the scale's (600 at ``cpu`` and ``paper``, A.1.1).
    """
    base = image_config(dataset, "cnn", "maml", scale, **kwargs)
    methods = {"MAML": {"rule": "maml", "alpha": ALPHA[dataset]["cnn"]},
               "KFC": {"rule": "kfc", "rule_kwargs": dict(RULE_OPTIONS["kfc"]),
                       "alpha": ALPHA[dataset]["kfc"]}}
    per_depth = {("MAML", 2): {"alpha": ALPHA[dataset]["scnn"]}}
    out = depth_sweep(base, run_dir, depths=depths or DEPTHS[scale], methods=methods,
                      per_depth=per_depth, test_tasks=test_tasks or num_test_tasks(scale, dataset),
                      progress=progress)
    summary = out["summary"].assign(dataset=dataset)
    post = summary.dropna(subset=["accuracy"]).copy()
    post["method"] = [f"CNN{int(d)} w/ {m}" for d, m in zip(post["depth"], post["method"])]
    out["summary"] = summary
    out["results"] = to_results(post, table="A2", dataset=dataset)
    return out
