"""Shared machinery of the experiments: scale presets, resumable train-and-evaluate, tidy outputs.

Every experiment is a function of a *scale* (``smoke``: seconds on a CPU, for tests; ``cpu``:
the paper's episodes with a short outer loop, about an hour per experiment on a 2-core CPU;
``paper``: the paper's settings, meant for a GPU) plus overrides, and returns tidy DataFrames.

A run directory holds one subdirectory per trained model (its checkpoint) and one CSV per
evaluated model. Running the same call again skips what is finished and resumes what is not:
a model's CSV is only written after its training reached the configured iteration count.

Under ``torchrun`` (:mod:`maml_probe.distributed`) every rank runs the same experiment code:
training and test evaluation share their tasks across the ranks, and rank 0 writes the files.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from ..checkpoint import load_checkpoint
from ..distributed import current_world, evaluate_shared
from ..io import write_csv_atomic, write_json_atomic
from ..stats import summarize
from ..train import (
    NonFiniteLossError,
    TrainConfig,
    TrainResult,
    build_task_source,
    learner_from_config,
    load_learner,
    meta_train,
)
from . import reuse

SCALES = ("smoke", "cpu", "paper")


def check_scale(scale: str) -> str:
    """``scale`` if it is one of :data:`SCALES`, else ``ValueError``."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {list(SCALES)}, got {scale!r}")
    return scale


def slug(label: str) -> str:
    """File-system name of a method label: ``'SCNN w/ KFC' -> 'scnn-w-kfc'``."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


@dataclass
class Trained:
    """A trained method: its label, config, learner, training history and test rows."""

    label: str
    config: TrainConfig
    result: TrainResult | None
    history: pd.DataFrame
    tests: pd.DataFrame
    status: str = "ok"
    checkpoint: Path | None = None

    @property
    def learner(self):
        """The trained learner (read back from the checkpoint when training was skipped)."""
        if self.result is not None:
            return self.result.learner
        if self.checkpoint is None:
            raise ValueError(f"{self.label}: no learner ({self.status})")
        return load_learner(self.checkpoint, device=self.config.device)[0]


def train_and_evaluate(label: str, cfg: TrainConfig, run_dir: str | os.PathLike | None, *,
                       test_tasks: int, test_split: str = "test", test_seed: int = 1234,
                       progress: bool = True, record_divergence: bool = False,
                       reuse_roots: list[Path] | None = None) -> Trained:
    """Meta-train ``cfg`` (resumable under ``run_dir/<slug>``), then score ``test_tasks`` tasks.

    Returns per-task test rows with columns ``method``, ``task``, ``phase``, ``accuracy``; when
    ``run_dir`` is given they are also written to ``run_dir/<slug>/test.csv``, and a second call
    after completion reads them back instead of recomputing. With ``record_divergence``, a run
    whose meta-loss becomes non-finite is returned with ``status="diverged: ..."`` and no test
    rows (tables then show it as missing, never as zero) instead of raising.

    A model that another run has already trained with the same configuration is copied instead
    of trained again (:mod:`.reuse`; ``reuse_roots``: the runs folders to look in, default: the
    one a runner-made ``run_dir`` sits in); the test tasks are scored again here.
    """
    sub = Path(run_dir) / slug(label) if run_dir is not None else None
    world = current_world()
    if sub is not None and (sub / "test.csv").exists() and (sub / "checkpoint.pt").exists():
        state = load_checkpoint(sub / "checkpoint.pt")
        if state["iteration"] >= cfg.iterations and not cfg.differences(state["config"]):
            if world.is_main and state["iteration"] == cfg.iterations:
                reuse.ensure_registered(sub, cfg, label)
            hist = pd.DataFrame(state["history"]).assign(method=label)
            return Trained(label, cfg, None, hist, pd.read_csv(sub / "test.csv"),
                           checkpoint=sub / "checkpoint.pt")
    if sub is not None and world.is_main:
        roots = reuse.default_roots(run_dir) if reuse_roots is None else reuse_roots
        source = reuse.adopt(cfg, sub, label, roots)
        if source is not None and progress:
            print(f"{label}: reusing the finished model {source}", flush=True)
    if world.size > 1:  # the other ranks resume from the copied checkpoint
        torch.distributed.barrier()
    try:
        result = meta_train(cfg, sub, progress=progress)
    except NonFiniteLossError as exc:
        if not record_divergence:
            raise
        empty = pd.DataFrame(columns=["task", "phase", "accuracy", "method"])
        return Trained(label, cfg, None, pd.DataFrame(), empty, status=f"diverged: {exc}")
    source = build_task_source(cfg, test_split, next(result.learner.parameters()).device)
    steps = cfg.steps if cfg.eval_steps is None else cfg.eval_steps
    if sub is not None and world.is_main:
        reuse.ensure_registered(sub, cfg, label)
    mask = result.learner.resolve_mask(cfg.adapt_layers)
    tests = evaluate_shared(result.learner, source, world=world, steps=steps,
                            num_tasks=test_tasks, seed=test_seed, adapt_mask=mask,
                            progress=progress and world.is_main).assign(method=label)
    if sub is not None and world.is_main:
        write_csv_atomic(tests, sub / "test.csv")
    return Trained(label, cfg, result, result.history.assign(method=label), tests,
                   checkpoint=result.checkpoint)


def run_methods(cfgs: dict[str, TrainConfig], run_dir: str | os.PathLike | None, *,
                test_tasks: int, progress: bool = True,
                record_divergence: bool = True) -> dict[str, pd.DataFrame]:
    """Train and test each labelled config; tidy ``tests``, ``summary``, ``history`` and ``methods``.

    ``methods`` has one row per method: ``method``, ``status``, ``model_params``,
    ``optimizer_params`` and ``seconds_per_iteration`` (median over the logged windows of
    this run's training, ``nan`` when it was read back from a finished run).
    """
    trained = [train_and_evaluate(label, cfg, run_dir, test_tasks=test_tasks, progress=progress,
                                  record_divergence=record_divergence)
               for label, cfg in cfgs.items()]
    frames = [t.tests for t in trained if len(t.tests)]
    tests = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["task", "phase", "accuracy", "method"])
    histories = [t.history for t in trained if len(t.history)]
    history = pd.concat(histories, ignore_index=True) if histories else pd.DataFrame()
    rows = []
    for t in trained:
        counts = learner_from_config(t.config).param_counts()
        train_rows = t.history[t.history["split"] == "train"] if len(t.history) else t.history
        spi = (float(train_rows["seconds_per_iteration"].median())
               if "seconds_per_iteration" in train_rows and len(train_rows) else float("nan"))
        rows.append({"dataset": t.config.dataset, "method": t.label, "status": t.status, **counts,
                     "seconds_per_iteration": spi,
                     "meta_batch": t.config.meta_batch,
                     "engine_used": t.result.engine if t.result is not None else ""})
    methods = pd.DataFrame(rows)
    summary = methods[["method", "status"]].merge(summary_table(tests), on="method", how="left") \
        if len(tests) else methods[["method", "status"]]
    return {"tests": tests, "summary": summary, "history": history, "methods": methods}


def cached_table(path: str | os.PathLike | None, compute) -> pd.DataFrame:
    """``compute()`` once: its DataFrame is stored at ``path`` and read back by later calls."""
    if path is not None and Path(path).exists():
        return pd.read_csv(path)
    df = compute()
    if path is not None and current_world().is_main:
        write_csv_atomic(df, path)
    return df


def summary_table(tests: pd.DataFrame, by: tuple[str, ...] = ("method", "phase")) -> pd.DataFrame:
    """Mean accuracy, 95% CI, std and task count per method and phase."""
    return summarize(tests, list(by))


__all__ = ["SCALES", "Trained", "check_scale", "load_learner", "slug", "summary_table",
           "train_and_evaluate", "write_csv_atomic", "write_json_atomic"]
