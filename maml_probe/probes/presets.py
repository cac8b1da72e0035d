"""Named adaptation presets: which layers take inner-loop steps (MAML, ANIL, BOIL).

The inner loop of Algorithm 1 can be restricted to some layers (the others keep their
meta-learned ``theta_0`` during adaptation, while the outer loop still meta-learns every
parameter). Three restrictions have names in the literature:

========  ===========================================  =========================================
preset    layers that adapt                            reference
========  ===========================================  =========================================
``full``  every layer (plain MAML)                     Finn et al., 2017
``anil``  the head only (``FC``): "Almost No Inner     Raghu et al., 2019, "Rapid learning or
          Loop"                                        feature reuse?" (ICLR 2020)
``boil``  the body only (every layer but ``FC``):      Oh et al., 2021, "BOIL: Towards
          "Body Only update in Inner Loop"             representation change for few-shot
                                                       learning" (ICLR 2021)
========  ===========================================  =========================================

With ``theta`` split into body ``phi`` and head ``w``, one inner step of each preset is::

    full:  (phi, w) <- (phi, w) - U(grad_phi L, grad_w L)
    anil:  w <- w - U(grad_w L)              (phi = phi_0)
    boil:  phi <- phi - U(grad_phi L)        (w = w_0)

Where a preset is used:

* **training**: :func:`with_preset` returns a :class:`~maml_probe.config.TrainConfig` whose
  ``adapt_layers`` are the preset's layers (``meta_train`` then masks the inner loop);
* **probes and evaluation**: :func:`preset_mask` gives the parameter names to pass as
  ``adapt_mask`` (:func:`maml_probe.evaluation.evaluate`,
  :func:`maml_probe.probes.common.run_condition`,
  :func:`maml_probe.probes.similarity.similarity_probe`, ...), :func:`preset_layers` the layer
  names for probes that take ``adapt_layers`` (:func:`~maml_probe.probes.noise.noise_probe`);
* **comparison**: :func:`preset_probe` scores one trained learner with each preset at test time
  (ANIL's "feature reuse" test: a MAML model adapted in the head only).

A model whose only layer is the head (logistic regression) has no body: ``boil`` is refused
for it.
"""
from __future__ import annotations

from collections.abc import Collection, Sequence

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from ..config import TrainConfig, learner_from_config
from ..learner import MetaLearner
from ..tasks.base import TaskSource
from .common import adapt_mask_for, clone_params, finish, layer_names, run_condition

HEAD = "FC"
#: The named presets, in the order tables and figures show them.
PRESETS: tuple[str, ...] = ("full", "anil", "boil")
#: How tables label each preset.
PRESET_LABELS: dict[str, str] = {"full": "MAML (full)", "anil": "ANIL (head only)",
                                 "boil": "BOIL (body only)"}


def check_preset(name: str) -> str:
    """``name`` if it is one of :data:`PRESETS`, else ``ValueError`` listing them.

    Args:
        name: a preset name (``full``, ``anil`` or ``boil``; case-insensitive).

    Returns:
        The preset name, lower-case.
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in PRESETS:
        raise ValueError(f"unknown adaptation preset {name!r}; choose from {list(PRESETS)}")
    return key


def preset_layers(name: str, model: nn.Module) -> list[str]:
    """The paper layer names that adapt under preset ``name`` for ``model``.

    ``full``: every layer; ``anil``: ``["FC"]``; ``boil``: every layer except ``FC`` (module doc).

    Args:
        name: ``full``, ``anil`` or ``boil``.
        model: the model (``ConvNet``: ``C1..Cd, FC``; ``LinNet``: ``H1..Hk, FC``; LR: ``FC``).

    Returns:
        The adapting layers, in forward order.

    Raises:
        ValueError: the preset is unknown, or the model has no head (``anil``) or no body
            (``boil``).
    """
    name = check_preset(name)
    layers = layer_names(model)
    if name == "full":
        return layers
    if HEAD not in layers:
        raise ValueError(f"preset {name!r} needs a head layer {HEAD!r}; the model's layers are {layers}")
    if name == "anil":
        return [HEAD]
    body = [x for x in layers if x != HEAD]
    if not body:
        raise ValueError(f"preset 'boil' adapts the body, but the model's only layer is {HEAD!r}")
    return body


def preset_mask(name: str, model: nn.Module) -> frozenset[str]:
    """Names of ``model``'s parameters that adapt under preset ``name`` (an ``adapt_mask``).

    Args:
        name: ``full``, ``anil`` or ``boil``.
        model: the model.

    Returns:
        The parameter names of :func:`preset_layers` (every parameter of each layer, BatchNorm's
        affine weight and bias included).
    """
    return adapt_mask_for(model, preset_layers(name, model))


def with_preset(cfg: TrainConfig, name: str) -> TrainConfig:
    """A copy of ``cfg`` whose inner loop adapts only the layers of preset ``name``.

    ``full`` sets ``adapt_layers=None`` (every parameter adapts, as a default config does);
    ``anil`` and ``boil`` set the layer names, which ``meta_train`` turns into the inner-loop
    mask. The model is built once to read its layer names; the global RNG is left untouched, so
    a run seeded afterwards initialises exactly as without the preset.

    Args:
        cfg: the run's configuration.
        name: ``full``, ``anil`` or ``boil``.

    Returns:
        The configuration with ``adapt_layers`` set.
    """
    name = check_preset(name)
    if name == "full":
        return cfg.replace(adapt_layers=None)
    with torch.random.fork_rng(devices=[]):
        model = learner_from_config(cfg).model
    return cfg.replace(adapt_layers=preset_layers(name, model))


def resolve_adapt_mask(model: nn.Module, adapt_mask: Collection[str] | str | None) -> frozenset[str] | None:
    """An ``adapt_mask`` given as a preset name (``full``/``anil``/``boil``) or parameter names.

    Args:
        model: the model.
        adapt_mask: a preset name (module doc), parameter names, or
            ``None`` (every parameter adapts).

    Returns:
        The parameter names that adapt, or ``None`` for all.
    """
    if adapt_mask is None:
        return None
    if isinstance(adapt_mask, str):
        return None if adapt_mask.lower() == "full" else preset_mask(adapt_mask, model)
    return frozenset(adapt_mask)


def preset_probe(learner: MetaLearner, source: TaskSource, *, steps: int,
                 presets: Sequence[str] = PRESETS, num_tasks: int = 100, seed: int = 0,
                 batch_size: int = 25, summary: bool = True, progress: bool = True) -> pd.DataFrame:
    """Post-adaptation accuracy of one trained learner adapted under each preset at test time.

    All presets are scored on the same ``num_tasks`` tasks (same ``seed``); the pre-adaptation
    accuracy comes with them as ``preset="none"``, ``phase="pre"``. A MAML-trained model that
    keeps its accuracy under ``anil`` reuses its features (Raghu et al., 2019); one that keeps
    it under ``boil`` changes its representation instead (Oh et al., 2021).

    Args:
        learner: the trained learner (not modified).
        source: the test task source.
        steps: inner steps per task.
        presets: the presets to score (:data:`PRESETS`).
        num_tasks: number of test tasks.
        seed: seed of the test tasks.
        batch_size: tasks per evaluation batch.
        summary: mean, ``ci95``, ``std``, ``n`` per preset and phase; ``False``: one row per task.
        progress: show a progress bar.

    Returns:
        Columns ``preset``, ``phase``, ``accuracy`` (+ ``ci95``, ``std``, ``n``, or ``task``).
    """
    chosen = [check_preset(p) for p in presets]
    model = learner.model
    masks = {p: (None if p == "full" else preset_mask(p, model)) for p in chosen}
    params = clone_params(learner)
    frames = []
    for i, (preset, mask) in enumerate(tqdm(masks.items(), desc="preset probe", disable=not progress)):
        df = run_condition(learner, source, steps=steps, num_tasks=num_tasks, seed=seed,
                           batch_size=batch_size, params=params, adapt_mask=mask)
        if i == 0:
            frames.append(df[df.phase == "pre"].assign(preset="none"))
        frames.append(df[df.phase == "post"].assign(preset=preset))
    rows = pd.concat(frames, ignore_index=True)[["preset", "phase", "task", "accuracy"]]
    return finish(rows, ["preset", "phase"], summary)


__all__ = ["HEAD", "PRESETS", "PRESET_LABELS", "check_preset", "preset_layers", "preset_mask",
           "preset_probe", "resolve_adapt_mask", "with_preset"]
