"""Perturbing the head of a meta-trained model before adaptation (Fig 2 right, Section 3.2).

Paper: "C1-C3 are held fixed during adaptation, while C4 and FC are allowed to adapt, and FC is
perturbed with noise", at noise scaling factors ``0, 2^-4 .. 2^1``.

Definition used here. For a noise scale ``s`` and a draw ``k`` the meta-learned initial weight
of the perturbed layer (``FC`` by default) is replaced, before adaptation, by::

    W' = W + s * std(W) * Z_k,      Z_k ~ N(0, I) entrywise, seeded by (noise_seed, k)

with ``std(W)`` the (unbiased) standard deviation of that layer's weight entries, so the scale is
relative to the weights' own spread (the paper does not say; ``relative=False`` uses the absolute
``sigma = s`` instead). Only the weight is perturbed by default; with
``include_bias=True`` the bias gets ``s * std(W) * Z`` too (same ``sigma``, since a few-entry
bias has no meaningful spread of its own). ``Z_k`` is the same for every scale (common random
numbers), so the curve over ``s`` varies the strength of one perturbation; scale 0 leaves the
weights bit-identical and is therefore scored with a single draw.

Adaptation uses ``adapt_layers`` (default: the last two layers, i.e. ``C{d}`` and ``FC`` for a
CNN of depth ``d``; all earlier layers frozen). Each (scale, draw) is scored on the same
``num_tasks`` tasks, pre- and post-adaptation; the summary averages each task over the draws
first, so ``n`` counts tasks and the CI is over tasks.
"""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from ..learner import MetaLearner
from ..maml import Params
from ..stats import summarize
from ..tasks.base import TaskSource
from .common import adapt_mask_for, check_layers, clone_params, layer_names, run_condition, select_params

NOISE_SCALES: tuple[float, ...] = (0.0,) + tuple(2.0 ** k for k in range(-4, 2))


def perturb(params: Params, names: Sequence[str], weight: str, scale: float, draw_seed: int,
            relative: bool = True) -> Params:
    """A copy of ``params`` with ``sigma * Z`` added to each of ``names``, ``Z ~ N(0, I)`` from ``draw_seed``.

    ``sigma = scale * std(params[weight])`` (``relative``) or ``scale``.
    """
    sigma = scale * float(params[weight].std()) if relative else float(scale)
    gen = torch.Generator().manual_seed(draw_seed)
    out = dict(params)
    for name in names:
        v = params[name]
        z = torch.randn(v.shape, generator=gen, dtype=v.dtype).to(v.device)
        out[name] = v + sigma * z
    return out


def noise_probe(learner: MetaLearner, source: TaskSource, *, steps: int,
                scales: Sequence[float] = NOISE_SCALES, draws: int = 5, num_tasks: int = 100,
                seed: int = 0, noise_seed: int = 0, layer: str = "FC",
                adapt_layers: Sequence[str] | None = None, include_bias: bool = False,
                relative: bool = True, batch_size: int = 25, summary: bool = True,
                progress: bool = True) -> pd.DataFrame:
    """Pre- and post-adaptation accuracy with ``layer`` perturbed by noise of each scale (module doc).

    Columns (``summary=True``): ``layer``, ``scale``, ``phase``, ``accuracy``, ``ci95``, ``std``,
    ``n`` (tasks), ``draws``; with ``summary=False`` one row per scale, draw, task and phase.
    """
    model = learner.model
    check_layers(model, [layer])
    if draws < 1:
        raise ValueError(f"draws must be positive, got {draws}")
    if any(s < 0 for s in scales):
        raise ValueError(f"noise scales must be non-negative, got {list(scales)}")
    adapt_layers = list(adapt_layers) if adapt_layers is not None else layer_names(model)[-2:]
    mask = adapt_mask_for(model, adapt_layers)
    weights = [n for n in select_params(model, [layer], "map") if n.endswith("weight")]
    if len(weights) != 1:
        raise ValueError(f"layer {layer} must have exactly one conv/linear weight, found {weights}")
    names = select_params(model, [layer], "map" if include_bias else "weight")
    params = clone_params(learner)
    jobs = [(s, k) for s in scales for k in range(1 if s == 0 else draws)]
    frames = []
    for s, k in tqdm(jobs, desc="noise probe", disable=not progress):
        noisy = perturb(params, names, weights[0], s, noise_seed * 100_003 + k, relative)
        df = run_condition(learner, source, steps=steps, num_tasks=num_tasks, seed=seed,
                           batch_size=batch_size, params=noisy, adapt_mask=mask)
        frames.append(df.assign(layer=layer, scale=float(s), draw=k))
    rows = pd.concat(frames, ignore_index=True)[["layer", "scale", "draw", "phase", "task", "accuracy"]]
    if not summary:
        return rows
    per_task = rows.groupby(["layer", "scale", "phase", "task"], sort=False, as_index=False).agg(
        accuracy=("accuracy", "mean"), draws=("draw", "nunique"))
    out = summarize(per_task, ["layer", "scale", "phase"])
    draws_of = per_task.groupby("scale")["draws"].max()
    return out.assign(draws=out["scale"].map(draws_of).astype(int))
