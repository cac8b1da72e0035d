"""Shared machinery of the probes: parameter selection, copies, one evaluated condition, summaries.

A probe is a function of a trained :class:`~maml_probe.learner.MetaLearner` and a task source.
Every condition it compares is scored by :func:`maml_probe.evaluation.evaluate` with the same
``seed``, so all conditions see identical test episodes. Probes only ever hand *copies* of the
learner's parameters to the engine (``params=``) or edit adapted copies (``post_transform=``):
the learner itself is never modified.

Parameter *targets* inside a layer (used by scaling and pruning):

==========  =====================================================================================
``map``     weight and bias of the layer's Conv/Linear module (the layer's pre-activation map)
``weight``  the Conv/Linear ``weight`` only
``all``     every parameter of the layer, BatchNorm's affine weight and bias included
==========  =====================================================================================
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn

from ..config import TrainConfig, build_task_source, load_learner
from ..evaluation import evaluate
from ..learner import MetaLearner
from ..maml import Params
from ..models import layer_of
from ..stats import summarize
from ..tasks.base import TaskSource

TARGETS = ("map", "weight", "all")
_MAPS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def layer_names(model: nn.Module) -> list[str]:
    """The model's paper layer names in forward order (``C1..C4, FC``; ``H1.., FC``)."""
    if hasattr(model, "layer_names"):
        return list(model.layer_names())
    seen: list[str] = []
    for name, _ in model.named_parameters():
        layer = layer_of(model, name)
        if layer not in seen:
            seen.append(layer)
    return seen


def check_layers(model: nn.Module, layers: Collection[str]) -> list[str]:
    """``layers`` as a list, or ``ValueError`` naming the unknown ones and the valid ones."""
    known = layer_names(model)
    unknown = [x for x in layers if x not in known]
    if unknown:
        raise ValueError(f"unknown layers {unknown}; the model's layers are {known}")
    return list(layers)


def select_params(model: nn.Module, layers: Collection[str] | None = None,
                  targets: str = "all") -> list[str]:
    """Names of the parameters of ``layers`` (``None``: all layers) that are ``targets`` (module doc)."""
    if targets not in TARGETS:
        raise ValueError(f"targets must be one of {list(TARGETS)}, got {targets!r}")
    if layers is not None:
        check_layers(model, layers)
    out = []
    for name, _ in model.named_parameters():
        if layers is not None and layer_of(model, name) not in layers:
            continue
        owner, _, leaf = name.rpartition(".")
        is_map = isinstance(model.get_submodule(owner), _MAPS)
        if targets == "all" or (is_map and (targets == "map" or leaf == "weight")):
            out.append(name)
    return out


def adapt_mask_for(model: nn.Module, adapt_layers: Collection[str]) -> frozenset[str]:
    """Names of the parameters that adapt when only ``adapt_layers`` adapt (the rest frozen)."""
    return frozenset(select_params(model, check_layers(model, adapt_layers), "all"))


def clone_params(learner: MetaLearner) -> Params:
    """Detached copies of the model's meta-learned initial parameters ``theta_0``."""
    return {k: v.detach().clone() for k, v in learner.model.named_parameters()}


def count_nonzero(params: Mapping[str, Tensor], names: Collection[str] | None = None) -> int:
    """Number of nonzero entries of ``params`` (restricted to ``names`` if given)."""
    return sum(int(torch.count_nonzero(v)) for k, v in params.items() if names is None or k in names)


def run_condition(learner: MetaLearner, source: TaskSource, *, steps: int, num_tasks: int,
                  seed: int, batch_size: int = 25, params: Mapping[str, Tensor] | None = None,
                  adapt_mask: Collection[str] | None = None,
                  post_transform: Callable[[Params], Params] | None = None) -> pd.DataFrame:
    """Per-task ``task``, ``phase``, ``accuracy`` of one condition (:func:`evaluate`).

    An empty ``adapt_mask`` (every layer frozen) is scored with 0 steps: nothing can move, so
    post-adaptation equals pre-adaptation (the engine cannot take a gradient of nothing).
    """
    if adapt_mask is not None and len(adapt_mask) == 0:
        steps = 0
    return evaluate(learner, source, steps=steps, num_tasks=num_tasks, seed=seed,
                    batch_size=batch_size, params=params, adapt_mask=adapt_mask,
                    post_transform=post_transform)


def finish(rows: pd.DataFrame, by: Sequence[str], summary: bool) -> pd.DataFrame:
    """The per-task ``rows`` themselves, or their mean, ``ci95``, ``std``, ``n`` per group of ``by``."""
    return summarize(rows, list(by)) if summary else rows.reset_index(drop=True)


@dataclass
class ProbeSetup:
    """What a probe needs from a checkpoint: the learner, its config, test tasks and step count."""

    learner: MetaLearner
    config: TrainConfig
    source: TaskSource
    steps: int


def load_probe_setup(checkpoint: str | Path, *, split: str = "test",
                     source: TaskSource | None = None,
                     device: str | torch.device = "cpu") -> ProbeSetup:
    """Load a :func:`~maml_probe.train.meta_train` checkpoint for probing.

    ``source`` defaults to the ``split`` task source of the checkpoint's config; ``steps`` is the
    config's ``eval_steps`` (or ``steps``), the number of adaptation steps it was tested with.
    """
    learner, cfg = load_learner(checkpoint, device=device)
    learner.eval()
    device = next(learner.parameters()).device
    src = source if source is not None else build_task_source(cfg, split, device)
    steps = cfg.steps if cfg.eval_steps is None else cfg.eval_steps
    return ProbeSetup(learner, cfg, src, steps)
