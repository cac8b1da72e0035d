"""maml_probe: reproduce, probe and extend "Decoupling Adaptation from Modeling with
Meta-Optimizers for Meta Learning" (Arnold, Iqbal & Sha).

The public API, importable from the package itself::

    from maml_probe import build_model, make_rule, meta_backward, TaskBatch

=========================  ======================================================================
name                       what
=========================  ======================================================================
``build_model``            a model of the paper: ``lr``, ``linnet``, ``cnn``, ``scnn``
``make_rule``              an update rule: ``maml``, ``metasgd``, ``mc``, ``klin``, ``kfc``, ``cfc``
``TaskBatch``              a meta-batch of tasks (support and query sets, task-stacked)
``adapt``                  the inner loop on a parameter dict (Algorithm 1, lines 5-9)
``meta_backward``          the meta-gradient of a meta-batch into ``.grad`` (lines 4-11)
``evaluate_batch``         pre- and post-adaptation accuracy of a meta-batch
``MetaLearner``            a model and its rule as one module; ``build_learner`` makes one
``TrainConfig``            everything that defines a meta-training run
``meta_train``             the outer loop with checkpoints and exact resume; ``meta_step`` is one
                           meta-batch of it
``load_learner``           a trained learner and its config from a checkpoint
``evaluate``               per-task test accuracies of a learner on a task source
``build_task_source``      the task sampler of a config and split
``get_spec``               a dataset's facts (files, shapes, the paper's episodes and rates)
``RunDir``                 a run folder and its ``record.json``
=========================  ======================================================================

Names are imported on first use, so ``import maml_probe`` stays cheap.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

from ._version import __version__

_EXPORTS = {
    "build_model": "models", "make_rule": "rules", "TaskBatch": "tasks.base",
    "adapt": "maml", "meta_backward": "maml", "evaluate_batch": "maml",
    "MetaLearner": "learner", "build_learner": "learner",
    "TrainConfig": "config", "build_task_source": "config", "load_learner": "config",
    "meta_train": "train", "meta_step": "train", "evaluate": "evaluation",
    "get_spec": "data.registry", "RunDir": "io",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'maml_probe' has no attribute {name!r}")
    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
