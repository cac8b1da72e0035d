"""E7 — Table 2: meta-optimizers adapting a small CNN (SCNN, 2 conv layers), with the per-task
upper bound (paper Section 5.3).

Methods: ``SCNN w/ MAML``, ``SCNN w/ MSGD`` (Meta-SGD), ``SCNN w/ MC`` (Meta-Curvature),
``SCNN w/ KFC``, and ``SCNN upper bound`` (the SCNN trained from scratch on each test task,
:mod:`.upper_bound`). Settings per dataset and scale: :mod:`.settings`.
"""
from __future__ import annotations

import os

import pandas as pd

from ..runs import to_results
from ..train import build_task_source
from .common import run_methods, slug, summary_table, write_csv_atomic
from .settings import image_config, method_label, num_test_tasks
from .upper_bound import per_task_upper_bound

METHODS = ("maml", "metasgd", "mc", "kfc")
UPPER_BOUND_STEPS = {"smoke": 5, "cpu": 100, "paper": 500}


def configs(scale: str = "cpu", *, dataset: str = "omniglot", methods=METHODS, model: str = "scnn",
            **kwargs):
    """``label -> TrainConfig`` of ``model`` with each method of ``methods`` on ``dataset``."""
    return {method_label(model, m): image_config(dataset, model, m, scale, **kwargs) for m in methods}


def run(scale: str = "cpu", run_dir: str | os.PathLike | None = None, *, dataset: str = "omniglot",
        methods=METHODS, upper_bound: bool = True, test_tasks: int | None = None,
        progress: bool = True, **kwargs) -> dict[str, pd.DataFrame]:
    """Train and test each method (and the upper bound) on ``dataset``; returns tidy tables and
    ``results`` in the report's format (table 2)."""
    cfgs = configs(scale, dataset=dataset, methods=methods, **kwargs)
    n = test_tasks or num_test_tasks(scale, dataset)
    out = run_methods(cfgs, run_dir, test_tasks=n, progress=progress)
    if upper_bound:
        out = add_upper_bound(out, next(iter(cfgs.values())), scale, run_dir, n, progress)
    out["results"] = to_results(out["summary"].dropna(subset=["accuracy"]), table="2", dataset=dataset)
    return out


def add_upper_bound(out: dict[str, pd.DataFrame], cfg, scale: str, run_dir, num_tasks: int,
                    progress: bool) -> dict[str, pd.DataFrame]:
    """Append the per-task upper bound (cached as ``<run_dir>/scnn-upper-bound.csv``) to ``out``."""
    label = f"{cfg.model.upper()} upper bound"
    path = os.path.join(run_dir, f"{slug(label)}.csv") if run_dir else None
    if path and os.path.exists(path):
        ub = pd.read_csv(path)
    else:
        source = build_task_source(cfg, "test")
        ub = per_task_upper_bound(cfg, source, num_tasks=num_tasks, steps=UPPER_BOUND_STEPS[scale],
                                  progress=progress, label=label)
        if path:
            write_csv_atomic(ub, path)
    tests = pd.concat([out["tests"], ub], ignore_index=True)
    summary = pd.concat([out["summary"], summary_table(ub).assign(status="ok")], ignore_index=True)
    return {**out, "tests": tests, "summary": summary}
