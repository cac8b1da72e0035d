"""Model-family sweeps: CNN depth (Fig 3, Table A2) and LinNet depth x width (Fig A.1).

Both drivers turn a *base* :class:`~maml_probe.train.TrainConfig` into one config per member of
the family and meta-train each through
:func:`maml_probe.experiments.common.train_and_evaluate`, so a run directory makes them
resumable (finished members are read back, interrupted ones resume from their checkpoint) and a
diverging member is recorded (``status``) instead of stopping the sweep.

* **Depth** (Section 5.2): ``model="cnn"`` with ``model_kwargs["depth"] = 1..4`` conv blocks, for
  each method of ``methods`` (label -> config overrides; default MAML and KFC with the paper's
  4-layer, gradient-normalising KFC). Paper settings: Omniglot 10-way 5-shot, 4 steps, meta lr
  0.003, adaptation 0.5 (SCNN w/ MAML 0.8: pass ``per_depth={("MAML", 2): {"alpha": 0.8}}``);
  CIFAR-FS 10-way 3-shot, 2 steps, 0.003 / 0.7 (KFC 0.5).
* **Width** (Appendix A.2.1): ``model="linnet"`` with ``depth`` hidden layers of ``width`` units
  (``widths=[width] * depth``), on the synthetic binary tasks of E1 (base: E1's LinNet config).

Outputs (tidy, one frame each): ``history`` (the training curves: ``iteration``, ``split``,
``phase``, ``accuracy``, ``ci95``, ``loss`` per member), ``tests`` (per test task), ``summary``
(mean test accuracy, ``ci95``, ``std``, ``n`` per member and phase) — each with the sweep's
key columns (``method``, ``depth``; or ``depth``, ``width``) and ``label``.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from ..config import TrainConfig
from ..stats import summarize
from .common import train_and_evaluate

DEPTH_METHODS: dict[str, dict[str, Any]] = {
    "MAML": {"rule": "maml"},
    "KFC": {"rule": "kfc", "rule_kwargs": {"layers": 4, "normalize": True}},
}
DEPTHS = (1, 2, 3, 4)
WIDTHS = (2, 4, 8, 16, 32, 64, 128, 256)


def depth_configs(base: TrainConfig, *, depths: Sequence[int] = DEPTHS,
                  methods: Mapping[str, Mapping[str, Any]] | None = None,
                  per_depth: Mapping[tuple[str, int], Mapping[str, Any]] | None = None,
                  ) -> dict[str, tuple[dict[str, Any], TrainConfig]]:
    """``label -> (keys, config)`` for CNNs of each depth and method; labels ``"CNN-2 w/ KFC"``."""
    methods = DEPTH_METHODS if methods is None else methods
    out = {}
    for method, overrides in methods.items():
        for d in depths:
            extra = dict((per_depth or {}).get((method, d), {}))
            cfg = base.replace(model="cnn", **{**overrides, **extra})
            cfg = cfg.replace(model_kwargs={**cfg.model_kwargs, "depth": int(d)}).validate()
            out[f"CNN-{d} w/ {method}"] = ({"method": method, "depth": int(d)}, cfg)
    return out


def width_configs(base: TrainConfig, *, depths: Sequence[int] = DEPTHS,
                  widths: Sequence[int] = WIDTHS) -> dict[str, tuple[dict[str, Any], TrainConfig]]:
    """``label -> (keys, config)`` for LinNets of each depth (hidden layers) and width."""
    out = {}
    for d in depths:
        for w in widths:
            cfg = base.replace(model="linnet",
                               model_kwargs={**base.model_kwargs, "widths": [int(w)] * int(d)})
            out[f"LinNet {d}x{w}"] = ({"depth": int(d), "width": int(w)}, cfg.validate())
    return out


def run_sweep(members: Mapping[str, tuple[dict[str, Any], TrainConfig]],
              run_dir: str | os.PathLike | None, *, test_tasks: int = 100, test_split: str = "test",
              test_seed: int = 1234, progress: bool = True) -> dict[str, pd.DataFrame]:
    """Train and test every member (resumable under ``run_dir``); ``history``, ``tests``, ``summary``."""
    hist, tests, status = [], [], []
    for label, (keys, cfg) in tqdm(members.items(), desc="sweep", disable=not progress):
        t = train_and_evaluate(label, cfg, run_dir, test_tasks=test_tasks, test_split=test_split,
                               test_seed=test_seed, progress=False, record_divergence=True)
        status.append({"label": label, **keys, "status": t.status})
        if len(t.history):
            hist.append(t.history.drop(columns=["method"], errors="ignore").assign(label=label, **keys))
        if len(t.tests):
            tests.append(t.tests.drop(columns=["method"], errors="ignore").assign(label=label, **keys))
    history = pd.concat(hist, ignore_index=True) if hist else pd.DataFrame()
    tests_df = pd.concat(tests, ignore_index=True) if tests else pd.DataFrame()
    summary = pd.DataFrame(status)
    if len(tests_df):
        summary = summary.merge(summarize(tests_df, ["label", "phase"]), on="label", how="left")
    return {"history": history, "tests": tests_df, "summary": summary}


def depth_sweep(base: TrainConfig, run_dir: str | os.PathLike | None, *,
                depths: Sequence[int] = DEPTHS, methods: Mapping[str, Mapping[str, Any]] | None = None,
                per_depth: Mapping[tuple[str, int], Mapping[str, Any]] | None = None,
                test_tasks: int = 100, progress: bool = True, **kw: Any) -> dict[str, pd.DataFrame]:
    """Fig 3 / Table A2: meta-train CNNs of each depth with each method; curves and test accuracy."""
    members = depth_configs(base, depths=depths, methods=methods, per_depth=per_depth)
    return run_sweep(members, run_dir, test_tasks=test_tasks, progress=progress, **kw)


def width_sweep(base: TrainConfig, run_dir: str | os.PathLike | None, *,
                depths: Sequence[int] = DEPTHS, widths: Sequence[int] = WIDTHS,
                test_tasks: int = 100, progress: bool = True, **kw: Any) -> dict[str, pd.DataFrame]:
    """Fig A.1: meta-train LinNets of each depth and width; curves and test accuracy."""
    members = width_configs(base, depths=depths, widths=widths)
    return run_sweep(members, run_dir, test_tasks=test_tasks, progress=progress, **kw)
