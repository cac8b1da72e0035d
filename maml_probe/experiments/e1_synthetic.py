"""E1 — Figure 1 and Table 1 (synthetic row): shallow models fail to meta-learn, LinNet and
meta-optimizers fix them (paper Sections 3.1 and 5.1, Appendix A.1.1).

Methods (paper settings: plain SGD outer loop, meta-batch 1, one adaptation step, no
optimizer biases, 30,000 iterations):

=====================  =====================================  ========  =========
label                  model / rule                           alpha     meta lr
=====================  =====================================  ========  =========
``LR w/ MAML``         logistic regression, SGD               0.5       0.01
``LR+LinNet w/ MAML``  LinNet, 3 hidden layers of 64          1.9       1.9
``LR w/ KLin``         logistic regression, KLin (10,001)     3.33      3.33
``LR w/ KFC``          logistic regression, KFC 1 hidden      3.9       3.9
=====================  =====================================  ========  =========

Choices the paper leaves open, each a parameter of :func:`configs` (defaults first):

* **points per task**: ``support`` adaptation and ``query`` held-out points, 100 and 100 by
  default. A.1.1 draws 1,000 points per task without saying how they split; ``points=1000``
  keeps ``support`` for adaptation and holds out the other ``points - support``.
* **labels**: ``"01"`` (``{0, 1}`` BCE targets) or ``"pm1"``: A.1.1's ``{-1, 1}`` fed to the
  same binary cross-entropy, which is then unbounded below (:mod:`maml_probe.tasks.synthetic`).
* **lr_bias**: a bias on the model (``False``; A.1.1 only says the *meta-optimizers* have
  none). For LinNet it puts a bias on every layer, so the collapsed affine map has one, as
  logistic regression with a bias does.

Test accuracy is measured on fresh tasks from a separate seed, on the held-out points (the
``tests`` table, as every experiment) and on the adaptation points (``adaptation_tests``), by
:func:`evaluate_points`. The ``cpu`` and ``smoke`` scales lower the meta
learning rate of LinNet, KLin and KFC to 0.1 (adaptation rates kept) because the paper's 1.9 /
3.33 / 3.9 diverge in this protocol within 20-500 iterations (measured on CPU; the ``paper``
scale keeps them and reports the divergence). :func:`measure_reading` trains one configuration
and returns one row of the readings table (``benchmarks/e1_readings.py``).
"""
from __future__ import annotations

import math
import os
import re
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from torch.func import functional_call

from ..maml import adapt
from ..runs import to_results
from ..tasks.base import seeded_batches
from ..tasks.synthetic import LABELS, label_accuracy, one_step_ceiling
from ..train import (
    NonFiniteLossError,
    TrainConfig,
    build_task_source,
    load_learner,
    meta_train,
)
from .common import check_scale, run_methods, slug, summary_table

METHODS: dict[str, dict] = {
    "LR w/ MAML": dict(model="lr", model_kwargs={"bias": False}, rule="maml", alpha=0.5, meta_lr=0.01),
    "LR+LinNet w/ MAML": dict(model="linnet", model_kwargs={"widths": [64, 64, 64], "bias": False},
                              rule="maml", alpha=1.9, meta_lr=1.9),
    "LR w/ KLin": dict(model="lr", model_kwargs={"bias": False}, rule="klin", alpha=3.33, meta_lr=3.33),
    "LR w/ KFC": dict(model="lr", model_kwargs={"bias": False}, rule="kfc",
                      rule_kwargs={"layers": 2}, alpha=3.9, meta_lr=3.9),
}

SCALE_SETTINGS: dict[str, dict] = {
    "smoke": dict(iterations=40, test_tasks=20, log_every=10),
    "cpu": dict(iterations=5000, test_tasks=500, log_every=100),
    "paper": dict(iterations=30000, test_tasks=1000, log_every=250),
}
CPU_OVERRIDES = {"LR+LinNet w/ MAML": {"meta_lr": 0.1}, "LR w/ KLin": {"meta_lr": 0.1},
                 "LR w/ KFC": {"meta_lr": 0.1}}
#: Points per task in Appendix A.1.1 (``support + query``).
PAPER_POINTS = 1000
#: Phases of :func:`evaluate_points`: before/after adaptation, on held-out / adaptation points.
PHASES = ("pre", "post", "pre_support", "post_support")
_DEFAULT_QUERY = 100


def split_points(points: int, support: int) -> tuple[int, int]:
    """``(support, query)`` of a task with ``points`` points, ``support`` of them for adaptation.

    Args:
        points: points per task (A.1.1: 1,000).
        support: adaptation points; the other ``points - support`` are held out.

    Returns:
        ``(support, points - support)``.
    """
    for name, value in (("points", points), ("support", support)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if support >= points:
        raise ValueError(f"support ({support}) must be below points ({points}): "
                         f"some points must be held out")
    return support, points - support


def configs(scale: str = "cpu", *, dim: int = 100, support: int = 100, query: int = _DEFAULT_QUERY,
            points: int | None = None, labels: str = "01", lr_bias: bool = False,
            seed: int = 0, device: str = "auto", methods: list[str] | None = None,
            **overrides) -> dict[str, TrainConfig]:
    """The :class:`TrainConfig` of each method at ``scale``.

    Args:
        scale: ``smoke``, ``cpu`` or ``paper``.
        dim: input dimension ``d``.
        support: adaptation points per task.
        query: held-out points per task (ignored when ``points`` is given, unless it
            contradicts it).
        points: points per task (A.1.1: 1,000); the held-out points are then
            ``points - support`` (:func:`split_points`). ``None``: ``support + query``.
        labels: ``"01"`` or ``"pm1"`` (:mod:`maml_probe.tasks.synthetic`).
        lr_bias: give the model a bias (every layer of LinNet).
        seed: the training seed.
        device: ``auto``, ``cpu``, ``cuda``...
        methods: labels of :data:`METHODS` to configure (``None``: all four).
        **overrides: any :class:`TrainConfig` field, applied to every method.

    Returns:
        The configs by method label.
    """
    check_scale(scale)
    if labels not in LABELS:
        raise ValueError(f"labels must be one of {list(LABELS)}, got {labels!r}")
    if not isinstance(lr_bias, bool):
        raise ValueError(f"lr_bias must be True or False, got {lr_bias!r}")
    if points is not None:
        held_out = split_points(points, support)[1]
        if query not in (_DEFAULT_QUERY, held_out):
            raise ValueError(f"query={query} contradicts points={points} with support={support} "
                             f"(which hold out {held_out}); give one of them")
        query = held_out
    settings = SCALE_SETTINGS[scale]
    chosen = methods or list(METHODS)
    unknown = [m for m in chosen if m not in METHODS]
    if unknown:
        raise ValueError(f"methods has unknown entries {unknown}; choose from {list(METHODS)}")
    data = {"dim": dim, "support": support, "query": query}
    if labels != "01":  # the default stays out, so runs made before the option still resume
        data["labels"] = labels
    out = {}
    for label in chosen:
        spec = dict(METHODS[label])
        spec["model_kwargs"] = {**spec["model_kwargs"], "bias": lr_bias}
        if scale != "paper":
            spec.update(CPU_OVERRIDES.get(label, {}))
        out[label] = TrainConfig(
            tune_malloc=True,
            dataset="synthetic", dataset_kwargs=dict(data),
            steps=1, outer_optimizer="sgd", meta_batch=1, iterations=settings["iterations"],
            log_every=settings["log_every"], checkpoint_every=max(settings["iterations"] // 10, 1),
            seed=seed, device=device, **spec).replace(**overrides)
    return out


def evaluate_points(learner, source, *, steps: int = 1, num_tasks: int = 100, seed: int = 1234,
                    batch_size: int = 25, adapt_mask=None) -> pd.DataFrame:
    """Adapt to ``num_tasks`` test tasks; accuracy on the held-out and on the adaptation points.

    Tasks are drawn ``batch_size`` at a time from a generator seeded with ``seed``, as
    :func:`maml_probe.evaluation.evaluate` draws them, so the same seed scores the same tasks.
    Accuracy is :func:`~maml_probe.tasks.synthetic.label_accuracy` (right under both label
    encodings). Each task adapts once on its support (adaptation) points, ``theta_1 = theta_0 -
    U(grad L_support(theta_0))``; ``theta_0`` is scored as ``pre``, ``theta_1`` as ``post``.

    Args:
        learner: the trained :class:`~maml_probe.learner.MetaLearner`.
        source: the test task source.
        steps: adaptation steps per task.
        num_tasks: test tasks.
        seed: seeds the tasks.
        batch_size: tasks drawn at a time.
        adapt_mask: parameter names that adapt (``None``: all).

    Returns:
        One row per task and phase: ``task``, ``phase`` (``pre``/``post`` on the held-out
        points, ``pre_support``/``post_support`` on the adaptation points), ``accuracy``.
    """
    if num_tasks <= 0:
        raise ValueError(f"num_tasks must be positive, got {num_tasks}")
    model, rule = learner.model, learner.rule
    theta0 = {k: v.detach() for k, v in model.named_parameters()}
    rows = []
    for done, batch in seeded_batches(source, num_tasks, seed, batch_size):
        for i in range(len(batch)):
            xs, ys, xq, yq = batch.support_x[i], batch.support_y[i], batch.query_x[i], batch.query_y[i]
            with torch.enable_grad():
                adapted = adapt(model, theta0, xs, ys, steps=steps, rule=rule,
                                adapt_mask=adapt_mask, create_graph=False).params
            with torch.no_grad():
                scores = {}
                for phase, params in (("", theta0), ("post", adapted)):
                    name = phase or "pre"
                    scores[name] = label_accuracy(functional_call(model, params, (xq,)), yq)
                    scores[f"{name}_support"] = label_accuracy(functional_call(model, params, (xs,)), ys)
            rows += [{"task": done + i, "phase": p, "accuracy": float(scores[p])} for p in PHASES]
    return pd.DataFrame(rows)


def run(scale: str = "cpu", run_dir: str | os.PathLike | None = None, *,
        test_tasks: int | None = None, progress: bool = True, **kwargs) -> dict[str, pd.DataFrame]:
    """Train and test every method of :func:`configs` (``kwargs``) at ``scale``.

    Args:
        scale: ``smoke``, ``cpu`` or ``paper``.
        run_dir: the run folder (checkpoints; a rerun resumes). ``None``: a temporary one.
        test_tasks: test tasks per method (default: the scale's).
        progress: show progress bars.
        **kwargs: :func:`configs` options and :class:`TrainConfig` overrides.

    Returns:
        ``tests`` (per task and phase ``pre``/``post``, accuracy on the held-out points) and
        its ``summary``; ``adaptation_tests`` and ``adaptation_summary``, the same on the
        adaptation points (:func:`evaluate_points`, absent when no method trained);
        ``history``, ``methods``, ``results`` (report format, Table 1, held-out) and
        ``ceiling`` (:func:`one_step_ceiling` for this protocol, on the held-out points and on
        the adaptation points, column ``points``).
    """
    cfgs = configs(scale, **kwargs)
    n_test = test_tasks or SCALE_SETTINGS[scale]["test_tasks"]
    with tempfile.TemporaryDirectory(prefix="e1-") as scratch:
        folder = Path(run_dir) if run_dir is not None else Path(scratch)
        out = run_methods(cfgs, folder, test_tasks=n_test, progress=progress)
        status = dict(zip(out["methods"]["method"], out["methods"]["status"]))
        frames = []
        for label, cfg in cfgs.items():
            checkpoint = folder / slug(label) / "checkpoint.pt"
            if status.get(label) != "ok" or not checkpoint.exists():
                continue
            learner, _ = load_learner(checkpoint, device=cfg.device)
            source = build_task_source(cfg, "test", next(learner.parameters()).device)
            steps = cfg.steps if cfg.eval_steps is None else cfg.eval_steps
            frames.append(evaluate_points(learner, source, steps=steps, num_tasks=n_test,
                                          adapt_mask=learner.resolve_mask(cfg.adapt_layers))
                          .assign(method=label))
    if frames:  # replaces the held-out rows of run_methods: same tasks, label-encoding-proof
        rows = pd.concat(frames, ignore_index=True)
        support = rows["phase"].str.endswith("_support")
        out["tests"] = rows[~support].reset_index(drop=True)
        out["adaptation_tests"] = rows[support].assign(
            phase=rows.loc[support, "phase"].str.removesuffix("_support")).reset_index(drop=True)
        status = out["methods"][["method", "status"]]
        out["summary"] = status.merge(summary_table(out["tests"]), on="method", how="left")
        out["adaptation_summary"] = status.merge(summary_table(out["adaptation_tests"]),
                                                 on="method", how="left")
    data = next(iter(cfgs.values())).dataset_kwargs
    labels = data.get("labels", "01")
    out["ceiling"] = pd.DataFrame([
        {"dim": data["dim"], "support": data["support"], "labels": labels, "points": where,
         "accuracy": one_step_ceiling(data["dim"], data["support"], labels=labels, points=where)}
        for where in ("held-out", "adaptation")])
    out["results"] = to_results(out["summary"].dropna(subset=["accuracy"]), table="1",
                                dataset="synthetic")
    return out


def ceiling_curve(dim: int = 100, supports=(10, 30, 100, 300, 1000, 3000), num_tasks: int = 300,
                  seed: int = 0, *, labels: str = "01", points: str = "held-out") -> pd.DataFrame:
    """One-step accuracy ceiling against the number of adaptation points.

    Answers the paper's open question for this protocol: how many adaptation points a task
    needs before one step can reach Table 1's 99%.

    Args:
        dim: input dimension ``d``.
        supports: adaptation point counts ``K``.
        num_tasks: simulated tasks per ``K``.
        seed: seeds the simulation.
        labels: ``"01"`` or ``"pm1"`` (:func:`one_step_ceiling`).
        points: ``"held-out"`` or ``"adaptation"``: where the step is scored.

    Returns:
        Columns ``dim``, ``support``, ``labels``, ``points``, ``accuracy``.
    """
    return pd.DataFrame([{"dim": dim, "support": k, "labels": labels, "points": points,
                          "accuracy": one_step_ceiling(dim, k, num_tasks=num_tasks, seed=seed,
                                                       labels=labels, points=points)}
                         for k in supports])


_DIVERGED_AT = re.compile(r"at iteration (\d+)")


def measure_reading(cfg: TrainConfig, *, test_tasks: int = 1000, test_seed: int = 1234) -> dict:
    """Meta-train ``cfg`` once (no checkpoints) and score it: one row of the readings table.

    A run whose meta-loss or meta-gradient becomes non-finite stops there
    (:class:`~maml_probe.train.NonFiniteLossError`); its row records the iteration and has no
    accuracy.

    Args:
        cfg: a config of :func:`configs`.
        test_tasks: test tasks scored by :func:`evaluate_points`.
        test_seed: seeds the test tasks (every row with the same seed scores the same tasks).

    Returns:
        ``iterations`` (asked), ``diverged_at`` (``nan`` if it did not), for each phase of
        :data:`PHASES` the mean accuracy (``acc_<phase>``) and its std over tasks
        (``std_<phase>``), ``logit_at_origin`` (the meta-learned model's output at ``x = 0``:
        its effective bias, 0 without one), ``final_loss`` (mean meta-loss of the last logging
        window), ``test_tasks`` and ``seconds`` (training and testing).
    """
    start = time.perf_counter()
    row: dict = {"iterations": cfg.iterations, "diverged_at": math.nan,
                 **{f"{k}_{p}": math.nan for p in PHASES for k in ("acc", "std")},
                 "logit_at_origin": math.nan, "final_loss": math.nan, "test_tasks": test_tasks}
    try:
        result = meta_train(cfg, None, progress=False)
    except NonFiniteLossError as exc:
        found = _DIVERGED_AT.search(str(exc))
        row["diverged_at"] = int(found.group(1)) if found else -1
        return {**row, "seconds": time.perf_counter() - start}
    learner = result.learner
    source = build_task_source(cfg, "test", next(learner.parameters()).device)
    tests = evaluate_points(learner, source, steps=cfg.steps, num_tasks=test_tasks, seed=test_seed,
                            adapt_mask=learner.resolve_mask(cfg.adapt_layers))
    for phase, group in tests.groupby("phase"):
        row[f"acc_{phase}"] = float(group["accuracy"].mean())
        row[f"std_{phase}"] = float(group["accuracy"].std(ddof=1)) if len(group) > 1 else math.nan
    dim = cfg.dataset_kwargs.get("dim", 100)
    param = next(learner.model.parameters())
    with torch.no_grad():
        row["logit_at_origin"] = float(learner.model(torch.zeros(1, dim, dtype=param.dtype,
                                                                 device=param.device)).squeeze())
    train = result.history[result.history["split"] == "train"]
    if len(train):
        row["final_loss"] = float(train["loss"].iloc[-1])
    return {**row, "seconds": time.perf_counter() - start}
