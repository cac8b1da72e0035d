"""E9 — Figure A.1: width (2..256) against depth (1-4 hidden layers) of LinNets on the synthetic
tasks of E1 (same protocol and LinNet learning rates as E1 at each scale).

The driver is :func:`maml_probe.experiments.sweeps.width_sweep` (resumable).
"""
from __future__ import annotations

import os

import pandas as pd

from .e1_synthetic import configs as e1_configs
from .sweeps import width_sweep

GRID = {"smoke": dict(depths=(1, 2), widths=(2, 8), iterations=20, test_tasks=10),
        "cpu": dict(depths=(1, 2, 3, 4), widths=(2, 8, 32, 128), iterations=2000, test_tasks=200),
        "paper": dict(depths=(1, 2, 3, 4), widths=(2, 4, 8, 16, 32, 64, 128, 256),
                      iterations=30000, test_tasks=1000)}


def run(scale: str = "cpu", run_dir: str | os.PathLike | None = None, *, depths=None, widths=None,
        progress: bool = True, **kwargs) -> dict[str, pd.DataFrame]:
    """Meta-train every LinNet of the grid; ``history`` (curves), ``tests`` and ``summary``."""
    grid = GRID[scale]
    kwargs.setdefault("iterations", grid["iterations"])
    base = e1_configs(scale, methods=["LR+LinNet w/ MAML"], **kwargs)["LR+LinNet w/ MAML"]
    return width_sweep(base, run_dir, depths=depths or grid["depths"],
                       widths=widths or grid["widths"], test_tasks=grid["test_tasks"],
                       progress=progress)
