"""Evaluation on held-out tasks: pre- and post-adaptation accuracy per task, as a tidy DataFrame."""
from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

import pandas as pd
from torch import Tensor
from tqdm.auto import tqdm

from .learner import MetaLearner
from .maml import Params, evaluate_batch
from .stats import summarize
from .tasks.base import TaskSource, seeded_batches


def evaluate(learner: MetaLearner, source: TaskSource, *, steps: int, num_tasks: int = 100,
             seed: int = 0, batch_size: int = 25, params: Mapping[str, Tensor] | None = None,
             adapt_mask: Collection[str] | None = None,
             post_transform: Callable[[Params], Params] | None = None,
             progress: bool = False) -> pd.DataFrame:
    """Adapt to ``num_tasks`` test tasks and score them; one row per task and phase.

    The tasks depend only on ``seed`` (a private generator), so every call with the same seed
    scores the same tasks: conditions of a probe are compared on identical episodes.
    Columns: ``task``, ``phase`` (``pre``/``post``), ``accuracy``.
    """
    rows = []
    bar = tqdm(total=num_tasks, desc="evaluate", disable=not progress, leave=False)
    for done, batch in seeded_batches(source, num_tasks, seed, batch_size):
        pre, post = evaluate_batch(learner.model, learner.rule, batch, steps=steps, params=params,
                                   adapt_mask=adapt_mask, post_transform=post_transform)
        for i in range(len(batch)):
            rows.append({"task": done + i, "phase": "pre", "accuracy": float(pre[i])})
            rows.append({"task": done + i, "phase": "post", "accuracy": float(post[i])})
        bar.update(len(batch))
    bar.close()
    return pd.DataFrame(rows)


def evaluate_summary(learner: MetaLearner, source: TaskSource, **kwargs) -> pd.DataFrame:
    """:func:`evaluate` summarised per phase: ``phase``, ``accuracy`` (mean), ``ci95``, ``std``, ``n``."""
    return summarize(evaluate(learner, source, **kwargs), ["phase"])
