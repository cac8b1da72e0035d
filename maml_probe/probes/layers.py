"""Layer-wise ablation of adaptation: "freezing only this" and "adapting only this" (Fig 2 left, middle).

Paper Section 3.2: for each layer ``L`` of a meta-trained model,

* **freeze only this** — every parameter of ``L`` (conv/linear weight and bias, and BatchNorm's
  affine parameters) keeps its meta-learned value during adaptation, all other layers adapt;
* **adapt only this** — only the parameters of ``L`` adapt, all other layers keep theirs;

and the post-adaptation query accuracy is recorded. Two reference rows come with them: **no
adaptation** (the pre-adaptation accuracy, ``layer="none"``, ``phase="pre"``) and **full
adaptation** (every layer adapts, ``layer="all"``). With every layer frozen no parameter can move,
so the post-adaptation accuracy *is* the pre-adaptation one.
"""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from tqdm.auto import tqdm

from ..learner import MetaLearner
from ..tasks.base import TaskSource
from .common import adapt_mask_for, check_layers, clone_params, finish, layer_names, run_condition

FREEZE = "freeze only this"
ADAPT = "adapt only this"
NO_ADAPTATION = "no adaptation"
FULL_ADAPTATION = "full adaptation"
CONDITIONS = (FREEZE, ADAPT)


def layer_probe(learner: MetaLearner, source: TaskSource, *, steps: int, num_tasks: int = 100,
                seed: int = 0, layers: Sequence[str] | None = None,
                conditions: Sequence[str] = CONDITIONS, batch_size: int = 25,
                summary: bool = True, progress: bool = True) -> pd.DataFrame:
    """Post-adaptation accuracy with each layer frozen / alone adapting, plus the references.

    Columns (``summary=True``): ``condition``, ``layer``, ``phase``, ``accuracy`` (mean over
    ``num_tasks`` tasks), ``ci95``, ``std``, ``n``; with ``summary=False`` one row per task
    (``task`` instead of the statistics).
    """
    model = learner.model
    all_layers = layer_names(model)
    chosen = check_layers(model, layers if layers is not None else all_layers)
    bad = [c for c in conditions if c not in CONDITIONS]
    if bad:
        raise ValueError(f"unknown conditions {bad}; choose from {list(CONDITIONS)}")
    params = clone_params(learner)
    kw = dict(steps=steps, num_tasks=num_tasks, seed=seed, batch_size=batch_size, params=params)
    jobs = [(FULL_ADAPTATION, "all", None)]
    for layer in chosen:
        others = [x for x in all_layers if x != layer]
        if FREEZE in conditions:
            jobs.append((FREEZE, layer, adapt_mask_for(model, others)))
        if ADAPT in conditions:
            jobs.append((ADAPT, layer, adapt_mask_for(model, [layer])))
    frames = []
    for condition, layer, mask in tqdm(jobs, desc="layer probe", disable=not progress):
        df = run_condition(learner, source, adapt_mask=mask, **kw)
        if condition == FULL_ADAPTATION:
            pre = df[df.phase == "pre"].assign(condition=NO_ADAPTATION, layer="none")
            frames.append(pre)
        frames.append(df[df.phase == "post"].assign(condition=condition, layer=layer))
    rows = pd.concat(frames, ignore_index=True)[["condition", "layer", "phase", "task", "accuracy"]]
    return finish(rows, ["condition", "layer", "phase"], summary)
