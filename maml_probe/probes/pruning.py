"""Magnitude pruning of a meta-trained model before or after adaptation (Fig A.3, Table A1 PRUNE).

Paper A.2.3: "we study the effect of post-adaptation pruning ... pruning weights smaller than a
predefined threshold", down to as many parameters as the 2-layer SCNN (thresholds 0.30 /
0.5 / 0.075 for Omniglot / CIFAR-FS / mini-ImageNet).

Definitions used here.

* **What is pruned** (``targets``, default ``"weight"``): the ``weight`` tensors of the Conv and
  Linear modules of every layer; entries with ``|w| < threshold`` become exactly 0. Biases and
  BatchNorm's affine parameters are kept (zeroing a BN scale silences a whole channel, which is
  not magnitude pruning of weights). ``targets="map"`` adds the Conv/Linear biases, ``"all"``
  prunes every parameter.
* **What is counted**: ``nonzero`` is the number of nonzero entries over *all* model parameters
  of the model that scores the query set (pruned tensors plus the kept ones), i.e. the quantity
  compared with the SCNN's parameter count (38,474 for the Omniglot 10-way SCNN);
  ``nonzero_pruned`` counts the pruned tensors only. Post-adaptation the count is measured per
  task (adapted weights differ per task) and averaged.
* ``when="post"`` (the paper's protocol): adapt the unpruned model, prune the adapted weights,
  score the query set. ``when="pre"``: prune the meta-learned initialisation, then adapt with the
  pruned entries **masked**: the update rule is wrapped so that their updates are multiplied by 0,
  so they stay exactly zero through every inner step (the pruned model really is the smaller
  model during adaptation too).
* :func:`threshold_for_count` finds the threshold that leaves ``target`` nonzero parameters in
  the meta-learned initialisation (exact unless several weights tie at the threshold).
* :func:`choose_threshold` picks Table A1's PRUNE threshold: ``"scnn-size"`` (that computed
  threshold, for the SCNN's count), ``"paper"`` (the paper's own 0.30 / 0.5 / 0.075,
  :data:`maml_probe.paper.PRUNE_THRESHOLDS`, which fit the paper's trained weights, not
  necessarily ours) or a number.
"""
from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence

import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..learner import MetaLearner
from ..maml import Params
from ..models import ConvNet, count_parameters
from ..paper import PRUNE_THRESHOLDS
from ..rules.base import UpdateRule
from ..tasks.base import TaskSource
from .common import clone_params, count_nonzero, finish, run_condition, select_params
from .scaling import check_when


def prune(params: Params, names: Collection[str], threshold: float) -> Params:
    """A copy of ``params`` with entries of ``names`` whose magnitude is below ``threshold`` zeroed."""
    return {k: (v.masked_fill(v.abs() < threshold, 0.0) if k in names else v)
            for k, v in params.items()}


def threshold_for_count(params: Mapping[str, Tensor], target: int, names: Collection[str]) -> float:
    """Threshold at which pruning ``names`` leaves ``target`` nonzero entries in all of ``params``.

    Keeps the ``k = target - (nonzero outside names)`` largest-magnitude entries of ``names``:
    the threshold is the ``k``-th largest magnitude (entries tied with it are kept too, so the
    count can exceed ``target`` only by ties). ``k <= 0`` gives ``inf`` (prune all of
    ``names``); a ``target`` above the current count gives 0 (prune nothing).
    """
    fixed = count_nonzero(params) - count_nonzero(params, names)
    k = int(target) - fixed
    mags = torch.cat([params[n].detach().abs().flatten() for n in names]).double()
    mags = mags[mags > 0]
    if k <= 0:
        return math.inf
    if k >= mags.numel():
        return 0.0
    return float(torch.topk(mags, k).values[-1])


#: The named ways :func:`choose_threshold` picks a threshold (a positive number is the third).
THRESHOLD_RULES = ("scnn-size", "paper")


def threshold_rule(choice: str | float | None, dataset: str) -> str:
    """Check a PRUNE threshold choice and name how it picks the threshold (before any training).

    Args:
        choice: ``"scnn-size"`` (or ``None``), ``"paper"``, or a positive finite number.
        dataset: the dataset the CNN is trained on (``"paper"`` needs one of
            :data:`maml_probe.paper.PRUNE_THRESHOLDS`).

    Returns:
        ``"scnn-size"``, ``"paper"`` or ``"value"`` (a number given).

    Raises:
        ValueError: an unknown choice, ``"paper"`` for a dataset the paper gives no threshold
            for, or a number that is not positive and finite.
    """
    if choice is None or (isinstance(choice, str) and choice == "scnn-size"):
        return "scnn-size"
    if isinstance(choice, str) and choice == "paper":
        if dataset not in PRUNE_THRESHOLDS:
            raise ValueError(f"prune_threshold='paper': the paper gives thresholds for "
                             f"{sorted(PRUNE_THRESHOLDS)} only, not {dataset!r}")
        return "paper"
    if isinstance(choice, (int, float)) and not isinstance(choice, bool) and 0 < choice < math.inf:
        return "value"
    raise ValueError(f"prune_threshold must be one of {list(THRESHOLD_RULES)} or a positive "
                     f"number, got {choice!r}")


def choose_threshold(choice: str | float | None, params: Mapping[str, Tensor],
                     names: Collection[str], target: int, dataset: str) -> tuple[float, str]:
    """The PRUNE threshold of Table A1 / Figure A.3 (Appendix A.2.3) and how it was chosen.

    Args:
        choice: ``"scnn-size"`` (or ``None``): :func:`threshold_for_count` on ``params`` for
            ``target`` nonzero parameters; ``"paper"``: the paper's threshold for ``dataset``
            (:data:`maml_probe.paper.PRUNE_THRESHOLDS`); a positive number: that threshold.
        params: the meta-learned parameters (only ``"scnn-size"`` reads them).
        names: the parameters that pruning zeroes.
        target: the nonzero count to reach (the SCNN's, :func:`scnn_parameter_count`).
        dataset: the dataset the CNN is trained on.

    Returns:
        ``(threshold, rule)``, ``rule`` as :func:`threshold_rule` names it.

    Raises:
        ValueError: as :func:`threshold_rule`.
    """
    rule = threshold_rule(choice, dataset)
    if rule == "scnn-size":
        return threshold_for_count(params, target, names), rule
    if rule == "paper":
        return float(PRUNE_THRESHOLDS[dataset]), rule
    return float(choice), rule


def scnn_parameter_count(model: nn.Module, depth: int = 2) -> int:
    """Parameter count of the paper's SCNN (``depth`` conv blocks) matching a :class:`ConvNet`.

    Same variant, filters and head size as ``model``: 38,474 for the Omniglot 10-way CNN.
    """
    if not isinstance(model, ConvNet):
        raise TypeError(f"scnn_parameter_count needs a ConvNet, got {type(model).__name__}")
    small = ConvNet(model.variant, depth, model.fc.out_features,
                    filters=model.blocks[0].conv.out_channels)
    return count_parameters(small)


class MaskedRule(UpdateRule):
    """``rule`` with its updates multiplied by fixed 0/1 ``keep`` masks (pruned entries never move)."""

    def __init__(self, rule: UpdateRule, keep: Mapping[str, Tensor]) -> None:
        super().__init__(rule.alpha)
        self.inner = rule
        self.adapts = rule.adapts
        self._keep = dict(keep)

    def forward(self, grads: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The inner rule's updates with pruned entries set to zero, so they stay pruned."""
        out = self.inner(grads)
        return {k: (u * self._keep[k] if k in self._keep else u) for k, u in out.items()}


def pruning_probe(learner: MetaLearner, source: TaskSource, *, steps: int,
                  thresholds: Sequence[float], when: str | Sequence[str] = "post",
                  targets: str = "weight", num_tasks: int = 100, seed: int = 0,
                  batch_size: int = 25, summary: bool = True, progress: bool = True) -> pd.DataFrame:
    """Post-adaptation accuracy and nonzero-parameter count for each pruning threshold (module doc).

    Columns (``summary=True``): ``threshold``, ``when``, ``phase`` (``post``), ``accuracy``,
    ``ci95``, ``std``, ``n``, ``nonzero`` and ``nonzero_pruned`` (means over tasks), ``total``
    (model parameter count); with ``summary=False`` one row per task with its counts.
    """
    model = learner.model
    whens = check_when(when)
    if any(not (t >= 0) for t in thresholds):
        raise ValueError(f"thresholds must be non-negative, got {list(thresholds)}")
    names = frozenset(select_params(model, None, targets))
    params = clone_params(learner)
    total = count_parameters(model)
    frames = []
    for w, t in tqdm([(w, t) for w in whens for t in thresholds], desc="pruning probe",
                     disable=not progress):
        counts: list[tuple[int, int]] = []

        def record(p: Params, t: float = t, w: str = w,
                   counts: list[tuple[int, int]] = counts) -> Params:
            p = prune(p, names, t) if w == "post" else p
            counts.append((count_nonzero(p), count_nonzero(p, names)))
            return p

        kw = dict(steps=steps, num_tasks=num_tasks, seed=seed, batch_size=batch_size,
                  post_transform=record)
        if w == "post":
            df = run_condition(learner, source, params=params, **kw)
        else:
            init = prune(params, names, t)
            keep = {k: (init[k] != 0).to(init[k].dtype) for k in names}
            masked = MetaLearner(model, MaskedRule(learner.rule, keep))
            df = run_condition(masked, source, params=init, **kw)
        post = df[df.phase == "post"].reset_index(drop=True)
        post["nonzero"] = [c[0] for c in counts]
        post["nonzero_pruned"] = [c[1] for c in counts]
        frames.append(post.assign(threshold=float(t), when=w))
    rows = pd.concat(frames, ignore_index=True)[
        ["threshold", "when", "phase", "task", "accuracy", "nonzero", "nonzero_pruned"]]
    if not summary:
        return rows.assign(total=total)
    by = ["threshold", "when", "phase"]
    out = finish(rows, by, True)
    means = rows.groupby(by, sort=False, as_index=False)[["nonzero", "nonzero_pruned"]].mean()
    return out.merge(means, on=by, how="left").assign(total=total)
