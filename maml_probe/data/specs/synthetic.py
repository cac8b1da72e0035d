"""Synthetic binary tasks (paper Sections 3.1 and 5.1, experiment E1 and E9).

Each task is a random direction in ``d`` dimensions (``d = 100`` in the paper) labelling
Gaussian inputs by the side they fall on; tasks are drawn fresh, so there are no files, splits
or downloads (see :mod:`maml_probe.tasks.synthetic`). The task source takes ``dim``,
``support`` and ``query``; ``input_shape`` is the paper's default ``(100,)``. The E1 settings
differ per model and rule and live in :mod:`maml_probe.experiments.e1_synthetic`.
"""
from __future__ import annotations

from ...tasks.synthetic import SyntheticBinaryTasks
from ..spec import DatasetSpec

SPEC = DatasetSpec(
    name="synthetic",
    display_name="Synthetic",
    input_shape=(100,),
    order=0,
    task_source=SyntheticBinaryTasks,
)
