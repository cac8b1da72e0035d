"""Table 2's upper bound: a fresh model trained on each test task's support set, scored on its query set.

Known answers: on a task whose query set is its support set the trained model scores 1.0; on one
whose query labels are the support labels flipped it scores 0.0; with 0 training steps a task's
score is that of the model initialised from ``seed + task``. And the tasks are the ones
:func:`maml_probe.evaluation.evaluate` scores with the same seed.
"""
import torch

from maml_probe.evaluation import evaluate
from maml_probe.experiments.upper_bound import per_task_upper_bound
from maml_probe.losses import accuracy
from maml_probe.tasks.base import TaskBatch
from maml_probe.train import TrainConfig, learner_from_config

DIM = 4


class KnownTasks:
    """Linearly separable binary tasks; odd-numbered tasks (in draw order) have flipped query labels.

    Each task draws a direction ``w`` and 16 points with ``|w . x| >= 0.5`` (a margin, so logistic
    regression fits them exactly); the query inputs are the support inputs.
    """

    input_shape, num_outputs = (DIM,), 1

    def __init__(self):
        self.drawn = 0
        self.batches = []

    def sample(self, num_tasks, generator):
        xs, ys, qys = [], [], []
        for _ in range(num_tasks):
            w = torch.randn(DIM, generator=generator)
            w = w / w.norm()
            x = torch.randn(16, DIM, generator=generator)
            x = x + (0.5 * torch.sign(x @ w))[:, None] * w       # push every point off the boundary
            y = (x @ w > 0).float()
            xs.append(x)
            ys.append(y)
            qys.append(1 - y if self.drawn % 2 else y)
            self.drawn += 1
        x, y = torch.stack(xs), torch.stack(ys)
        batch = TaskBatch(x, y, x.clone(), torch.stack(qys))
        self.batches.append(batch)
        return batch


CFG = TrainConfig(dataset="synthetic", dataset_kwargs={"dim": DIM}, model="lr", device="cpu")


def test_upper_bound_fits_each_task_and_scores_its_query_set():
    """Catches: scoring the support set (flipped tasks would score 1), scoring the untrained or
    the meta-learned model (chance), too few optimiser steps taken, rows out of task order."""
    df = per_task_upper_bound(CFG, KnownTasks(), num_tasks=30, steps=150, lr=0.1, progress=False,
                              label="SCNN upper bound")
    assert list(df.columns) == ["method", "task", "phase", "accuracy"]
    assert list(df["task"]) == list(range(30)) and set(df["method"]) == {"SCNN upper bound"}
    assert set(df["phase"]) == {"post"}
    expected = [0.0 if t % 2 else 1.0 for t in range(30)]
    assert list(df["accuracy"]) == expected


def test_each_task_starts_from_its_own_seeded_initialisation():
    """Catches: one model trained on task after task, a seed set once for all tasks."""
    src = KnownTasks()
    df = per_task_upper_bound(CFG, src, num_tasks=3, steps=0, seed=77, progress=False)
    batch = src.batches[0]
    for t in range(3):
        torch.manual_seed(77 + t)
        model = learner_from_config(CFG).model
        with torch.no_grad():
            want = float(accuracy(model(batch.query_x[t]), batch.query_y[t]))
        assert df["accuracy"].iloc[t] == want, t
    assert df["accuracy"].nunique() > 1                     # the three initialisations differ


def test_upper_bound_scores_the_tasks_that_evaluate_scores():
    """Catches: a different task seed or a different batching of the draws (30 tasks: 25 + 5),
    which would compare the upper bound with the methods on other tasks."""
    a, b = KnownTasks(), KnownTasks()
    per_task_upper_bound(CFG, a, num_tasks=30, steps=0, seed=5, progress=False)
    torch.manual_seed(0)
    evaluate(learner_from_config(CFG), b, steps=0, num_tasks=30, seed=5)
    assert len(a.batches) == len(b.batches) == 2
    for u, v in zip(a.batches, b.batches):
        assert torch.equal(u.support_x, v.support_x) and torch.equal(u.query_y, v.query_y)
