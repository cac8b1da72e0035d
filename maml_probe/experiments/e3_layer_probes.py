"""E3-E5 — how the layers of a MAML-trained CNN divide modelling from adaptation
(paper Section 3.2, Figure 2 and Figure A.2).

One 4-conv CNN is meta-trained with MAML on ``dataset`` (settings: :mod:`.settings`), then
probed on the same test tasks (:mod:`maml_probe.probes`):

- **E3** "freeze only this" / "adapt only this" per layer (Fig 2 left, middle);
- **E4** Gaussian noise on FC with C1-C3 frozen, scales 0, 2^-4 .. 2^1 of ``std(W_FC)``
  (Fig 2 right);
- **E5** one layer's weights multiplied by 2^0 .. 2^5 before or after adaptation (Fig A.2).

Each probe's table is cached in the run directory, so an interrupted run resumes where it
stopped.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..probes import layer_probe, noise_probe, scaling_probe
from ..train import build_task_source
from .common import cached_table, train_and_evaluate
from .settings import image_config, num_test_tasks

PROBES = ("layers", "noise", "scaling")
PROBE_TASKS = {"smoke": 4, "cpu": 100, "paper": 100}
NOISE_DRAWS = {"smoke": 1, "cpu": 3, "paper": 5}


def run(scale: str = "cpu", run_dir: str | os.PathLike | None = None, *, dataset: str = "omniglot",
        probes=PROBES, probe_tasks: int | None = None, progress: bool = True,
        **kwargs) -> dict[str, pd.DataFrame]:
    """Meta-train the CNN, then run each probe of ``probes``; returns one tidy table per probe
    plus ``history`` and ``tests`` of the trained model."""
    cfg = image_config(dataset, "cnn", "maml", scale, **kwargs)
    trained = train_and_evaluate("CNN w/ MAML", cfg, run_dir, test_tasks=num_test_tasks(scale, dataset),
                                 progress=progress)
    learner = trained.learner
    source = build_task_source(cfg, "test", next(learner.parameters()).device)
    steps = cfg.steps if cfg.eval_steps is None else cfg.eval_steps
    common = dict(steps=steps, num_tasks=probe_tasks or PROBE_TASKS[scale], progress=progress)

    def path(name: str) -> Path | None:
        return Path(run_dir) / f"{name}.csv" if run_dir is not None else None

    out = {"history": trained.history, "tests": trained.tests}
    if "layers" in probes:
        out["layers"] = cached_table(path("layers"), lambda: layer_probe(learner, source, **common))
    if "noise" in probes:
        out["noise"] = cached_table(path("noise"), lambda: noise_probe(
            learner, source, draws=NOISE_DRAWS[scale], **common))
    if "scaling" in probes:
        out["scaling"] = cached_table(path("scaling"), lambda: scaling_probe(learner, source, **common))
    for name in PROBES:
        if name in out:
            out[name] = out[name].assign(dataset=dataset)
    return out
