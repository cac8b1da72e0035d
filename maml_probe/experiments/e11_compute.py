"""E11 — Table A3: parameters of model and meta-optimizer and time per meta-batch.

For each dataset and each of CNN/SCNN with MAML, KFC, CFC1 and CFC10 (the rows of Table A3),
count parameters and time one full meta-gradient step (adaptation of every task of the
meta-batch and the backward pass; the outer optimizer's step excluded) on random inputs of the
paper's episode shapes, so no dataset is needed. The timing is the median over ``repeats``
after one warm-up step, on this machine's device. Accuracies for the table come from the E7 and
E8 runs through the report (:mod:`maml_probe.report`).
"""
from __future__ import annotations

import statistics
import time

import pandas as pd
import torch
from tqdm.auto import tqdm

from ..config import DTYPES, TrainConfig, learner_from_config
from ..data.registry import paper_datasets
from ..device import resolve_device
from ..fast import choose_impl, tune_malloc
from ..losses import task_loss
from ..maml import meta_backward
from ..tasks.base import TaskBatch
from .settings import image_config, method_label

ROWS = [("cnn", "maml"), ("cnn", "kfc"), ("scnn", "maml"), ("scnn", "kfc"), ("scnn", "cfc1"),
        ("scnn", "cfc10")]
#: The datasets of Table A3, in the paper's order (those whose spec has paper settings).
DATASETS = paper_datasets()
REPEATS = {"smoke": 1, "cpu": 2, "paper": 5}


def random_batch(cfg: TrainConfig, input_shape: tuple[int, ...], device: torch.device) -> TaskBatch:
    """A meta-batch of random images with balanced labels in ``cfg``'s episode shape."""
    g = torch.Generator().manual_seed(0)
    def part(per_class: int):
        x = torch.rand(cfg.meta_batch, cfg.ways * per_class, *input_shape, generator=g)
        y = torch.arange(cfg.ways).repeat_interleave(per_class).repeat(cfg.meta_batch, 1)
        return x.to(device, DTYPES[cfg.dtype]), y.to(device)
    sx, sy = part(cfg.shots)
    qx, qy = part(cfg.queries)
    return TaskBatch(sx, sy, qx, qy)


def time_meta_step(cfg: TrainConfig, repeats: int = 3) -> float:
    """Median seconds of one meta-gradient step of ``cfg`` (after a warm-up step).

    Runs ``cfg.engine`` and, like a training run, tunes the allocator first when
    ``cfg.tune_malloc`` asks for it.
    """
    device = resolve_device(cfg.device)
    if cfg.tune_malloc and device.type == "cpu":
        tune_malloc()
    torch.manual_seed(cfg.seed)
    learner = learner_from_config(cfg).to(device, DTYPES[cfg.dtype])
    model = learner.model
    batch = random_batch(cfg, model.input_shape, device)
    times = []
    for i in range(repeats + 1):
        learner.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        meta_backward(model, learner.rule, batch, steps=cfg.steps, first_order=cfg.first_order,
                      impl=cfg.engine)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def engine_used(cfg: TrainConfig, learner) -> str:
    """The engine :func:`~maml_probe.maml.meta_backward` runs for ``cfg`` (``auto`` resolved)."""
    device = resolve_device(cfg.device)
    choice = choose_impl(learner.model.to(device), learner.rule.to(device), device,
                         loss_fn=task_loss, impl=cfg.engine, support_size=cfg.ways * cfg.shots,
                         steps=cfg.steps, tasks=cfg.meta_batch)
    return choice.impl


def run(scale: str = "cpu", run_dir=None, *, datasets=DATASETS, rows=ROWS, device: str = "auto",
        progress: bool = True, **overrides) -> dict[str, pd.DataFrame]:
    """``methods``: dataset, method, model_params, optimizer_params, seconds_per_iteration,
    meta_batch, ways, shots, steps (the paper's episodes at ``paper`` and ``cpu`` scale; tiny
    ones at ``smoke``)."""
    episode_scale = "smoke" if scale == "smoke" else "paper"
    out = []
    jobs = [(d, m, r) for d in datasets for m, r in rows]
    for dataset, model, rule in tqdm(jobs, desc="time per meta-batch", disable=not progress):
        cfg = image_config(dataset, model, rule, episode_scale, device=device, **overrides)
        learner = learner_from_config(cfg)
        out.append({"dataset": dataset, "method": method_label(model, rule),
                    **learner.param_counts(),
                    "seconds_per_iteration": time_meta_step(cfg, REPEATS[scale]),
                    "meta_batch": cfg.meta_batch, "ways": cfg.ways, "shots": cfg.shots,
                    "steps": cfg.steps, "engine": cfg.engine,
                    "engine_used": engine_used(cfg, learner), "status": "ok"})
    return {"methods": pd.DataFrame(out)}
