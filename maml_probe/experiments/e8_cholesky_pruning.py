"""E8 and E10 — Table A1 and Figure A.3: Cholesky-factored meta-optimizers and pruning.

- **E8** (Table A1): the SCNN with MAML, CFC1 (rank 1), CFC10 (rank 10) and KFC, and the
  4-conv CNN w/ MAML *pruned to the SCNN's size* ("PRUNE"): adapt, then zero every conv/linear
  weight whose magnitude is below the threshold that leaves as many nonzero parameters as the
  SCNN has (:func:`maml_probe.probes.threshold_for_count`, computed on the meta-learned weights).
  Beside the paper's CFC1 and CFC10, **CFC1n** (not in the paper; ``cfc10n`` on request):
  the paper's Glorot-initialised maps shrink the first updates to 1e-8 - 1e-2 of the
  gradient's norm (rank 1; ``results/rules/``), so the paper's CFC starts adapting almost
  nothing. CFC1n is CFC1 with ``normalize=True``, ``T(g) = s ||g|| net(g/||g||) /
  ||net(g/||g||)||`` with ``s`` learnable from 1 (A.2.3 architecture, A.1.2's norm handling
  plus an output normalisation; :mod:`maml_probe.rules.cholesky`): it starts with MAML's step
  size ``alpha ||g||`` in the low-rank map's direction.
- **E10** (Fig A.3): post-adaptation accuracy of that CNN over a sweep of thresholds.

**The PRUNE threshold** (``prune_threshold``; :func:`maml_probe.probes.pruning.choose_threshold`).
The paper's thresholds that reach the SCNN's size (0.30 Omniglot, 0.5 CIFAR-FS, 0.075
mini-ImageNet; Fig A.3, :data:`maml_probe.paper.PRUNE_THRESHOLDS`) depend on its trained weights,
so by default (``"scnn-size"``) ours is computed on our weights; ``"paper"`` applies the paper's
value instead, and a number applies that threshold. The E10 sweep is centred on the threshold
used, and Table A1's PRUNE row records it (``threshold``, ``threshold_rule``), the resulting
post-adaptation nonzero parameter count (``nonzero``, mean over the test tasks), the SCNN's count
(``target_nonzero``) and the CNN's (``total``).

Training options go through ``**kwargs`` to
:func:`~maml_probe.experiments.settings.image_config`, which applies any ``TrainConfig`` field
last, e.g. ``task_pool=20000`` (a fixed pool of training tasks, Appendix A.1.1 / A.1.2).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..distributed import current_world
from ..probes import pruning_probe, scnn_parameter_count, select_params
from ..probes.pruning import choose_threshold, threshold_rule
from ..runs import to_results
from ..train import build_task_source
from .common import cached_table, run_methods, train_and_evaluate, write_csv_atomic
from .settings import image_config, method_label, num_test_tasks

METHODS = ("maml", "cfc1", "cfc10", "cfc1n", "kfc")
PRUNE_LABEL = "CNN pruned to SCNN size"


def threshold_grid(target: float, points: int = 9) -> list[float]:
    """Thresholds from 0 to 4x ``target`` (log-spaced above it), always containing ``target``."""
    grid = {0.0, float(target)}
    grid.update(float(x) for x in np.geomspace(target / 8, target * 4, points))
    return sorted(grid)


def run(scale: str = "cpu", run_dir: str | os.PathLike | None = None, *, dataset: str = "omniglot",
        methods=METHODS, prune: bool = True, prune_threshold: str | float | None = "scnn-size",
        progress: bool = True, **kwargs) -> dict[str, pd.DataFrame]:
    """Train the SCNN methods and the pruned CNN (Table A1, Fig A.3).

    Args:
        scale: ``smoke``, ``cpu`` or ``paper``.
        run_dir: The run folder (``None``: nothing is written or read back).
        dataset: ``omniglot``, ``cifarfs`` or ``miniimagenet``.
        methods: SCNN methods of :data:`~maml_probe.experiments.settings.RULE_OPTIONS`
            (default :data:`METHODS`: MAML, CFC1, CFC10, CFC1n, KFC).
        prune: Also train the 4-conv CNN w/ MAML and run the pruning probe (E10).
        prune_threshold: The PRUNE row's threshold: ``"scnn-size"`` (default; ``None`` too)
            computes the one that leaves the SCNN's parameter count in our meta-learned CNN,
            ``"paper"`` takes the paper's (0.30 / 0.5 / 0.075, Fig A.3), a positive number is
            used as given (module docstring). Checked before anything is trained.
        progress: Show progress bars.
        **kwargs: Passed to :func:`~maml_probe.experiments.settings.image_config`: its own
            arguments (``data_root``, ``cache_dir``, ``seed``, ``device``, ``depth``) and any
            ``TrainConfig`` field, e.g. ``task_pool=20000`` (Appendix A.1.1's fixed pool of
            training tasks) or ``iterations``.

    Returns:
        ``summary``, ``tests``, ``history``, ``methods``, ``pruning`` (E10 sweep, with
        ``prune``) and ``results`` (Table A1 rows; the PRUNE row with its threshold and counts).
    """
    if prune:
        threshold_rule(prune_threshold, dataset)  # a bad choice fails before any training
    n = num_test_tasks(scale, dataset)
    cfgs = {method_label("scnn", m): image_config(dataset, "scnn", m, scale, **kwargs) for m in methods}
    out = run_methods(cfgs, run_dir, test_tasks=n, progress=progress)
    results = to_results(out["summary"].dropna(subset=["accuracy"]), table="A1", dataset=dataset)
    if prune:
        cnn_cfg = image_config(dataset, "cnn", "maml", scale, **kwargs)
        trained = train_and_evaluate("CNN w/ MAML", cnn_cfg, run_dir, test_tasks=n, progress=progress)
        learner = trained.learner
        params = {k: v.detach() for k, v in learner.model.named_parameters()}
        target = scnn_parameter_count(learner.model)
        threshold, rule = choose_threshold(prune_threshold, params, select_params(
            learner.model, None, "weight"), target, dataset)
        source = build_task_source(cnn_cfg, "test", next(learner.parameters()).device)
        steps = cnn_cfg.steps if cnn_cfg.eval_steps is None else cnn_cfg.eval_steps
        path = Path(run_dir) / "pruning.csv" if run_dir is not None else None

        def sweep_probe() -> pd.DataFrame:
            return pruning_probe(learner, source, steps=steps, thresholds=threshold_grid(threshold),
                                 when="post", num_tasks=n, progress=progress)

        sweep = cached_table(path, sweep_probe)
        if not np.isclose(sweep["threshold"], threshold).any():  # stored for another threshold
            sweep = sweep_probe()
            if path is not None and current_world().is_main:
                write_csv_atomic(sweep, path)
        sweep = sweep.assign(dataset=dataset, target_nonzero=target, threshold_rule=rule,
                             is_target=np.isclose(sweep["threshold"], threshold))
        out["pruning"] = sweep
        at = sweep[sweep["is_target"]].iloc[0]
        results = pd.concat([results, pd.DataFrame([{
            "table": "A1", "dataset": dataset, "method": PRUNE_LABEL, "accuracy": 100 * at["accuracy"],
            "ci95": 100 * at["ci95"], "n": at["n"], "threshold": threshold, "threshold_rule": rule,
            "nonzero": at["nonzero"], "target_nonzero": target, "total": at["total"]}])],
            ignore_index=True)
    out["results"] = results
    return out
