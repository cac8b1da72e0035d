"""The "upper bound" of Table 2: the model trained from scratch on each test task to convergence.

For every test task a freshly initialised model (same architecture as the meta-learned one,
a seed per task) is trained on the task's support set alone with Adam (full batch, ``lr``) for
``steps`` steps, which drives the support loss to ~0 for the paper's small support sets; its
accuracy on the query set is the task's score. No meta-learning is involved: this measures what
the architecture can represent on a task, not how fast it adapts.
"""
from __future__ import annotations

import pandas as pd
import torch
from torch.func import functional_call
from tqdm.auto import tqdm

from ..losses import accuracy, task_loss
from ..tasks.base import TaskSource, seeded_batches
from ..train import TrainConfig, learner_from_config


def per_task_upper_bound(cfg: TrainConfig, source: TaskSource, *, num_tasks: int, seed: int = 1234,
                         steps: int = 100, lr: float = 0.01, progress: bool = True,
                         label: str = "upper bound") -> pd.DataFrame:
    """Query accuracy of ``cfg``'s model trained per task; rows ``method``, ``task``, ``phase``, ``accuracy``.

    Uses the same task seed as :func:`maml_probe.evaluation.evaluate`, so the tasks are the ones
    the meta-learned methods are scored on.
    """
    rows = []
    bar = tqdm(total=num_tasks, desc=label, disable=not progress, leave=False)
    for first, batch in seeded_batches(source, num_tasks, seed):
        for i in range(len(batch)):
            done = first + i
            torch.manual_seed(seed + done)
            model = learner_from_config(cfg).model.to(batch.support_x.device, batch.support_x.dtype)
            opt = torch.optim.Adam(model.parameters(), lr=lr)
            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                task_loss(model(batch.support_x[i]), batch.support_y[i]).backward()
                opt.step()
            with torch.no_grad():
                acc = accuracy(functional_call(model, dict(model.named_parameters()),
                                               (batch.query_x[i],)), batch.query_y[i])
            rows.append({"method": label, "task": done, "phase": "post", "accuracy": float(acc)})
            bar.update(1)
    bar.close()
    return pd.DataFrame(rows)
