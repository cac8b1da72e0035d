"""The explorer without widgets: a condition, its evaluation on a checkpoint, a history of results.

A :class:`Condition` is what the user sets, one knob of each layer probe of
:mod:`maml_probe.probes` (paper Section 3.2 and Appendix A.2):

- which layers adapt and which stay frozen at their meta-learned values (as in
  :func:`~maml_probe.probes.layer_probe`; every layer frozen is scored with 0 steps, so nothing
  moves during adaptation);
- one layer's conv/linear weight and bias multiplied by a factor, either before adaptation (the
  initial parameters) or after it (the adapted ones, just before the query pass), as in
  :func:`~maml_probe.probes.scaling_probe` with ``targets="map"``;
- Gaussian noise on the last layer's (``FC``) weight, ``s * std(W) * Z`` with one seeded draw
  ``Z`` (draw 0 of :func:`~maml_probe.probes.noise_probe`), added before or after adaptation;
- the number of adaptation steps, test tasks and the task seed.

:func:`plan_condition` turns a condition into a :class:`Plan` for a model: the adaptation mask
and two lists of parameter transforms, ``pre`` (applied to the meta-learned initial parameters)
and ``post`` (applied to the adapted parameters), each one a probe's own function
(:func:`~maml_probe.probes.scale_params`, :func:`~maml_probe.probes.perturb`) with its arguments
bound. When scaling and noise apply at the same moment the scaling comes first, so the noise's
``std(W)`` is that of the weights at that moment (scaled, and for ``post`` adapted).

:func:`evaluate_condition` (or :func:`explore_once`, its keyword form) scores a condition on the
test tasks the probes use (same ``seed`` and ``batch_size``, so a condition that a probe also
covers gives exactly that probe's numbers). :class:`History` keeps every finished result and
gives them as one tidy frame.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from functools import partial
from typing import Any

import pandas as pd
from torch import nn

from ..learner import MetaLearner
from ..maml import Params
from ..probes import ProbeSetup, adapt_mask_for, layer_names, perturb, scale_params, select_params
from ..probes.common import check_layers, clone_params, run_condition
from ..probes.scaling import WHEN
from ..stats import summarize

#: A transform of a parameter dict (a probe's perturbation with its arguments bound).
Transform = Callable[[Params], Params]

#: Columns of :func:`results_frame`.
RESULT_COLUMNS = ["run", "run_number", "checkpoint", "condition", "phase", "accuracy", "ci95",
                  "std", "n"]


class Cancelled(Exception):
    """A run stopped by its ``should_stop`` callback (raised between two batches of tasks)."""


def _fmt(x: float) -> str:
    return f"{x:.4g}"


@dataclass(frozen=True)
class Condition:
    """One condition of the explorer: the knobs of the layer probes (module doc).

    Attributes:
        frozen_layers: Layers that keep their meta-learned values during adaptation.
        scale_layer: The layer whose conv/linear weight and bias are scaled.
        scale_factor: The scaling factor (1: no scaling).
        scale_when: ``"pre"`` (scale the initial parameters) or ``"post"`` (the adapted ones).
        noise_scale: Noise strength ``s`` relative to ``std(W)`` (0: no noise).
        noise_when: ``"pre"`` or ``"post"`` adaptation.
        noise_layer: The perturbed layer (``None``: the last one, ``FC``).
        noise_seed: Seed of the noise draw (the noise probe's ``noise_seed``).
        steps: Adaptation steps (``None``: the checkpoint's test steps).
        num_tasks: Number of test tasks.
        seed: Seed of the test tasks.
        batch_size: Tasks evaluated at once.
    """

    frozen_layers: tuple[str, ...] = ()
    scale_layer: str | None = None
    scale_factor: float = 1.0
    scale_when: str = "pre"
    noise_scale: float = 0.0
    noise_when: str = "pre"
    noise_layer: str | None = None
    noise_seed: int = 0
    steps: int | None = None
    num_tasks: int = 100
    seed: int = 0
    batch_size: int = 25

    def describe(self, layers: Sequence[str] | None = None, steps: int | None = None) -> str:
        """A short description, e.g. ``frozen H1,H2 · H1×4 pre · FC noise 0.5 post · 1 step``.

        Args:
            layers: The model's layers, to say "all frozen" and to name the default noise layer.
            steps: The step count to show when the condition's ``steps`` is ``None``.

        Returns:
            The description, parts joined by `` · ``.
        """
        parts = []
        if self.frozen_layers:
            if layers is not None and set(self.frozen_layers) >= set(layers):
                parts.append("all frozen")
            else:
                parts.append("frozen " + ",".join(self.frozen_layers))
        else:
            parts.append("all adapt")
        if self.scale_factor != 1 and self.scale_layer is not None:
            parts.append(f"{self.scale_layer}×{_fmt(self.scale_factor)} {self.scale_when}")
        if self.noise_scale > 0:
            layer = self.noise_layer or (layers[-1] if layers else "FC")
            parts.append(f"{layer} noise {_fmt(self.noise_scale)} {self.noise_when}")
        n = self.steps if self.steps is not None else steps
        if n is not None:
            parts.append(f"{n} step{'' if n == 1 else 's'}")
        return " · ".join(parts)


#: The explorer's former name of :class:`Condition`.
Settings = Condition


# --------------------------------------------------------------------------------------------
# A condition as transforms built from the probes
# --------------------------------------------------------------------------------------------

def scaling_transform(model: nn.Module, layer: str, factor: float) -> Transform:
    """The scaling probe's transform: ``layer``'s conv/linear weight and bias times ``factor``.

    Args:
        model: The model whose parameter names are used.
        layer: A paper layer name (``C1``, ``H2``, ``FC``).
        factor: The scaling factor.

    Returns:
        :func:`~maml_probe.probes.scale_params` with the layer's ``map`` parameters bound.
    """
    check_layers(model, [layer])
    names = frozenset(select_params(model, [layer], "map"))
    return partial(scale_params, names=names, factor=float(factor))


def noise_transform(model: nn.Module, layer: str, scale: float, noise_seed: int = 0) -> Transform:
    """The noise probe's transform: ``scale * std(W) * Z`` added to ``layer``'s weight ``W``.

    ``Z`` is draw 0 of :func:`~maml_probe.probes.noise_probe` with the same ``noise_seed``.

    Args:
        model: The model whose parameter names are used.
        layer: A paper layer name with exactly one conv/linear weight.
        scale: The noise strength relative to the weight's standard deviation.
        noise_seed: The noise probe's ``noise_seed``.

    Returns:
        :func:`~maml_probe.probes.perturb` with the weight, scale and draw seed bound.
    """
    check_layers(model, [layer])
    weights = select_params(model, [layer], "weight")
    if len(weights) != 1:
        raise ValueError(f"layer {layer} must have exactly one conv/linear weight, found {weights}")
    # draw k of noise_probe is seeded by noise_seed * 100_003 + k; the explorer uses draw 0
    return partial(perturb, names=[weights[0]], weight=weights[0], scale=float(scale),
                   draw_seed=noise_seed * 100_003, relative=True)


def apply_transforms(params: Params, transforms: Sequence[Transform]) -> Params:
    """``params`` passed through ``transforms`` in order (``params`` itself is not modified).

    Args:
        params: A parameter dict.
        transforms: Transforms of a :class:`Plan`.

    Returns:
        The transformed parameter dict.
    """
    for transform in transforms:
        params = transform(params)
    return params


@dataclass(frozen=True)
class Plan:
    """A condition made concrete for one model: what adapts and what is done to the parameters.

    Attributes:
        condition: The checked condition, ``steps`` filled in.
        adapt_mask: Names of the parameters that adapt (``None``: all; empty: none, 0 steps).
        pre: Transforms of the meta-learned initial parameters, in order.
        post: Transforms of the adapted parameters before the query pass, in order.
    """

    condition: Condition
    adapt_mask: frozenset[str] | None
    pre: tuple[Transform, ...] = ()
    post: tuple[Transform, ...] = ()

    def initial_params(self, learner: MetaLearner) -> Params:
        """Copies of the learner's initial parameters with the ``pre`` transforms applied.

        Args:
            learner: The meta-trained learner (not modified).

        Returns:
            The parameters adaptation starts from.
        """
        return apply_transforms(clone_params(learner), self.pre)

    def post_transform(self) -> Transform | None:
        """The ``post`` transforms as one function (``None`` when there are none).

        Returns:
            A function of the adapted parameters, for :func:`~maml_probe.evaluation.evaluate`.
        """
        if not self.post:
            return None
        return partial(apply_transforms, transforms=self.post)


def _check_when(name: str, value: str) -> str:
    if value not in WHEN:
        raise ValueError(f"{name} must be 'pre' or 'post', got {value!r}")
    return value


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def plan_condition(model: nn.Module, condition: Condition, *, default_steps: int) -> Plan:
    """Check ``condition`` against ``model`` and build its :class:`Plan`.

    Args:
        model: The meta-trained model (only its parameter names and layers are used).
        condition: The condition to plan.
        default_steps: The steps used when ``condition.steps`` is ``None``.

    Returns:
        The plan: adaptation mask and pre/post transforms.

    Raises:
        ValueError: On an unknown layer, a ``when`` other than pre/post, a non-finite scale
            factor, a negative noise scale, no tasks, negative steps, or a scale factor
            without a layer.
    """
    c = condition
    layers = layer_names(model)
    frozen = tuple(check_layers(model, list(c.frozen_layers)))
    _check_when("scale_when", c.scale_when)
    _check_when("noise_when", c.noise_when)
    if not _is_number(c.scale_factor):
        raise ValueError(f"scale_factor must be a finite number, got {c.scale_factor!r}")
    if not _is_number(c.noise_scale) or c.noise_scale < 0:
        raise ValueError(f"noise_scale must be a non-negative number, got {c.noise_scale!r}")
    if c.num_tasks <= 0:
        raise ValueError(f"num_tasks must be positive, got {c.num_tasks}")
    steps = default_steps if c.steps is None else int(c.steps)
    if steps < 0:
        raise ValueError(f"steps must be non-negative, got {steps}")
    checked = replace(c, frozen_layers=frozen, scale_factor=float(c.scale_factor),
                      noise_scale=float(c.noise_scale), steps=steps)

    # None (everything adapts, like evaluate) unless some layer is frozen; every layer frozen
    # gives an empty mask, which run_condition scores with 0 steps
    mask = adapt_mask_for(model, [x for x in layers if x not in frozen]) if frozen else None
    ops: dict[str, list[Transform]] = {"pre": [], "post": []}
    if checked.scale_factor != 1:
        if c.scale_layer is None:
            raise ValueError("scale_factor != 1 needs a scale_layer")
        ops[c.scale_when].append(scaling_transform(model, c.scale_layer, checked.scale_factor))
    if checked.noise_scale > 0:
        ops[c.noise_when].append(noise_transform(model, c.noise_layer or layers[-1],
                                                 checked.noise_scale, c.noise_seed))
    return Plan(checked, mask, tuple(ops["pre"]), tuple(ops["post"]))


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------

class _Watched:
    """A task source that reports progress and honours a stop flag before each batch of tasks.

    It draws exactly what the wrapped source draws (same generator, same batch sizes), so
    results are identical to an unwatched evaluation.
    """

    def __init__(self, source, total: int, progress: Callable[[int, int], None] | None,
                 should_stop: Callable[[], bool] | None) -> None:
        self._source, self._total = source, total
        self._progress, self._should_stop = progress, should_stop
        self.done = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)

    def sample(self, num_tasks: int, generator):
        if self._should_stop is not None and self._should_stop():
            raise Cancelled(f"cancelled after {self.done} of {self._total} tasks")
        if self._progress is not None:
            self._progress(self.done, self._total)
        batch = self._source.sample(num_tasks, generator)
        self.done += num_tasks
        return batch


def evaluate_condition(setup: ProbeSetup, condition: Condition, *,
                       progress: Callable[[int, int], None] | None = None,
                       should_stop: Callable[[], bool] | None = None) -> pd.DataFrame:
    """Pre- and post-adaptation accuracy of one condition on its test tasks.

    The learner is never modified.

    Args:
        setup: The loaded checkpoint (:func:`~maml_probe.probes.load_probe_setup`).
        condition: The condition to score.
        progress: Called as ``progress(done, total)`` before each batch of tasks and once at
            the end.
        should_stop: Checked before each batch; when it returns true the run stops with
            :class:`Cancelled`.

    Returns:
        A tidy frame with one row per ``phase`` (``pre``, ``post``): ``condition`` (a short
        description), ``phase``, ``accuracy`` (mean over tasks), ``ci95``, ``std``, ``n``.
    """
    learner = setup.learner
    plan = plan_condition(learner.model, condition, default_steps=setup.steps)
    c = plan.condition
    source = _Watched(setup.source, c.num_tasks, progress, should_stop)
    rows = run_condition(learner, source, steps=c.steps, num_tasks=c.num_tasks, seed=c.seed,
                         batch_size=c.batch_size, params=plan.initial_params(learner),
                         adapt_mask=plan.adapt_mask, post_transform=plan.post_transform())
    if progress is not None:
        progress(c.num_tasks, c.num_tasks)
    out = summarize(rows, ["phase"])
    out.insert(0, "condition", c.describe(layer_names(learner.model)))
    return out


def explore_once(setup: ProbeSetup, *, frozen_layers: Collection[str] = (),
                 scale_layer: str | None = None, scale_factor: float = 1.0,
                 scale_when: str = "pre", noise_scale: float = 0.0, noise_when: str = "pre",
                 noise_layer: str | None = None, noise_seed: int = 0, steps: int | None = None,
                 num_tasks: int = 100, seed: int = 0, batch_size: int = 25,
                 progress: Callable[[int, int], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> pd.DataFrame:
    """:func:`evaluate_condition` with the :class:`Condition` fields given as keywords.

    Args:
        setup: The loaded checkpoint.
        frozen_layers: See :class:`Condition`, as are the other condition keywords.
        scale_layer: See :class:`Condition`.
        scale_factor: See :class:`Condition`.
        scale_when: See :class:`Condition`.
        noise_scale: See :class:`Condition`.
        noise_when: See :class:`Condition`.
        noise_layer: See :class:`Condition`.
        noise_seed: See :class:`Condition`.
        steps: See :class:`Condition`.
        num_tasks: See :class:`Condition`.
        seed: See :class:`Condition`.
        batch_size: See :class:`Condition`.
        progress: See :func:`evaluate_condition`.
        should_stop: See :func:`evaluate_condition`.

    Returns:
        The frame of :func:`evaluate_condition`.
    """
    condition = Condition(tuple(frozen_layers), scale_layer, scale_factor, scale_when,
                          noise_scale, noise_when, noise_layer, noise_seed, steps, num_tasks,
                          seed, batch_size)
    return evaluate_condition(setup, condition, progress=progress, should_stop=should_stop)


def config_frozen_layers(setup: ProbeSetup) -> list[str]:
    """The layers that the checkpoint's own config kept frozen (not in ``adapt_layers``).

    Args:
        setup: The loaded checkpoint.

    Returns:
        Layer names in forward order; empty when every layer adapted.
    """
    model = setup.learner.model
    mask = setup.learner.resolve_mask(getattr(setup.config, "adapt_layers", None))
    if mask is None:
        return []
    return [x for x in layer_names(model) if not set(select_params(model, [x])) & set(mask)]


# --------------------------------------------------------------------------------------------
# History of results
# --------------------------------------------------------------------------------------------

@dataclass
class Result:
    """One finished run: its number, checkpoint, condition, result frame and wall time."""

    number: int
    checkpoint: str
    condition: Condition
    frame: pd.DataFrame
    seconds: float


def results_frame(current: Result | None, previous: Result | None) -> pd.DataFrame:
    """Tidy rows of the current and previous results, side by side for the table and the plot.

    Args:
        current: The latest result, if any.
        previous: The one before it, if any.

    Returns:
        The :data:`RESULT_COLUMNS`: ``run`` (``current``/``previous``), ``run_number``,
        ``checkpoint`` and the result frame's columns; current rows first.
    """
    frames = []
    for label, res in (("current", current), ("previous", previous)):
        if res is not None:
            frames.append(res.frame.assign(run=label, run_number=res.number,
                                           checkpoint=res.checkpoint))
    if not frames:
        return pd.DataFrame(columns=RESULT_COLUMNS)
    return pd.concat(frames, ignore_index=True)[RESULT_COLUMNS]


_CONDITION_FIELDS = [f.name for f in fields(Condition)]
HISTORY_COLUMNS = (["run_number", "checkpoint", "condition"] + _CONDITION_FIELDS
                   + ["phase", "accuracy", "ci95", "std", "n", "seconds"])


@dataclass
class History:
    """The explorer's finished results, numbered from 1 in the order they finished."""

    results: list[Result] = field(default_factory=list)

    def add(self, checkpoint: str, condition: Condition, frame: pd.DataFrame,
            seconds: float) -> Result:
        """Record a finished result as the next run.

        Args:
            checkpoint: The checkpoint's label.
            condition: The condition that was scored.
            frame: Its result (:func:`evaluate_condition`).
            seconds: Its wall time.

        Returns:
            The recorded :class:`Result`.
        """
        result = Result(len(self.results) + 1, checkpoint, condition, frame, seconds)
        self.results.append(result)
        return result

    def __len__(self) -> int:
        return len(self.results)

    @property
    def current(self) -> Result | None:
        """The latest result."""
        return self.results[-1] if self.results else None

    @property
    def previous(self) -> Result | None:
        """The result before the latest one."""
        return self.results[-2] if len(self.results) > 1 else None

    def compare(self) -> pd.DataFrame:
        """The current and previous results (:func:`results_frame`).

        Returns:
            Their tidy rows.
        """
        return results_frame(self.current, self.previous)

    def frame(self) -> pd.DataFrame:
        """Every result as one tidy frame: one row per run and phase.

        Returns:
            The :data:`HISTORY_COLUMNS`: ``run_number``, ``checkpoint``, ``condition`` (its
            description), the :class:`Condition` fields (``frozen_layers`` joined by commas),
            ``phase``, ``accuracy``, ``ci95``, ``std``, ``n`` and ``seconds``.
        """
        frames = []
        for res in self.results:
            knobs = asdict(res.condition)
            knobs["frozen_layers"] = ",".join(knobs["frozen_layers"])
            frames.append(res.frame.assign(run_number=res.number, checkpoint=res.checkpoint,
                                           seconds=res.seconds, **knobs))
        if not frames:
            return pd.DataFrame(columns=HISTORY_COLUMNS)
        return pd.concat(frames, ignore_index=True)[HISTORY_COLUMNS]
