"""Few-shot tasks: the batch structure every source returns, task sources, and a fixed pool.

:mod:`~maml_probe.tasks.base` defines :class:`TaskBatch` and the :class:`TaskSource` protocol;
:mod:`~maml_probe.tasks.synthetic` the synthetic binary tasks of Sections 3.1 and 5.1;
:mod:`~maml_probe.tasks.pool` the fixed pool of training tasks of Appendix A.1.1 / A.1.2
(:class:`TaskPool`, used when ``TrainConfig.task_pool`` is set).
"""
from __future__ import annotations

from .base import TaskBatch, TaskSource, seeded_batches
from .pool import TaskPool, pool_task_seed

__all__ = ["TaskBatch", "TaskPool", "TaskSource", "pool_task_seed", "seeded_batches"]
