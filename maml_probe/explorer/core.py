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
gives them as one tidy frame; :func:`export_history` writes it as CSV or PNG (under ``runs/``,
never into the tracked ``notebooks/`` folder).

:func:`sweep` runs one condition for each value of a knob, e.g. the scaling factors 2^0..2^5 of
Fig A.2 or the noise scales of Fig 2 (right), and gives accuracy against the value.
:func:`layer_similarity` is the CKA probe (:func:`~maml_probe.probes.similarity_probe`): how
much adaptation changes each layer's representation. :func:`chance_level` is the accuracy of
guessing (``1 / ways``), which the explorer draws on every accuracy plot.
"""
from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
from torch import nn

from ..io import atomic_write, write_csv_atomic
from ..learner import MetaLearner
from ..maml import Params
from ..probes import ProbeSetup, adapt_mask_for, layer_names, perturb, scale_params, select_params
from ..probes.common import check_layers, clone_params, run_condition
from ..probes.noise import NOISE_SCALES
from ..probes.presets import check_preset
from ..probes.scaling import SCALE_FACTORS, WHEN
from ..probes.similarity import similarity_probe
from ..runs import RUNS_ROOT, project_dir
from ..stats import summarize
from .render import history_png

#: A transform of a parameter dict (a probe's perturbation with its arguments bound).
Transform = Callable[[Params], Params]

#: Columns of :func:`results_frame`.
RESULT_COLUMNS = ["run", "run_number", "checkpoint", "condition", "phase", "accuracy", "ci95",
                  "std", "n"]

#: What ``pre`` and ``post`` mean for the scaling and the noise (the paper's Fig A.2
#: "pre-/post-adaptation"): the moment the change is applied.
WHEN_LABELS: dict[str, str] = {"pre": "before adaptation", "post": "after adaptation"}
#: The same, spelled out: which parameters the change is applied to.
WHEN_HELP: dict[str, str] = {
    "pre": "before adaptation: applied to the meta-learned initialisation, which is then adapted",
    "post": "after adaptation: applied to the adapted weights, just before the query pass",
}


def chance_level(model: nn.Module) -> float:
    """The accuracy of guessing: ``1 / ways`` (``1 / 2`` for a binary model with one logit).

    Args:
        model: The meta-trained model; its last layer (``FC``) has one output per class, or
            a single logit for binary tasks (E1's synthetic tasks).

    Returns:
        The chance accuracy as a fraction (``0.2`` for 5-way tasks).
    """
    head = layer_names(model)[-1]
    (weight,) = select_params(model, [head], "weight")
    outputs = int(dict(model.named_parameters())[weight].shape[0])
    return 1.0 / (2 if outputs == 1 else outputs)


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
    """One finished run: its number, checkpoint, condition, result frame and wall time.

    ``sweep`` names the sweep the run belongs to (e.g. ``sweep 1: scale_factor``; empty for a
    single run).
    """

    number: int
    checkpoint: str
    condition: Condition
    frame: pd.DataFrame
    seconds: float
    sweep: str = ""


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
HISTORY_COLUMNS = (["run_number", "checkpoint", "sweep", "condition"] + _CONDITION_FIELDS
                   + ["phase", "accuracy", "ci95", "std", "n", "seconds"])


@dataclass
class History:
    """The explorer's finished results, numbered from 1 in the order they finished."""

    results: list[Result] = field(default_factory=list)

    def add(self, checkpoint: str, condition: Condition, frame: pd.DataFrame,
            seconds: float, *, sweep: str = "") -> Result:
        """Record a finished result as the next run.

        Args:
            checkpoint: The checkpoint's label.
            condition: The condition that was scored.
            frame: Its result (:func:`evaluate_condition`).
            seconds: Its wall time.
            sweep: The sweep it belongs to (empty: a single run).

        Returns:
            The recorded :class:`Result`.
        """
        result = Result(len(self.results) + 1, checkpoint, condition, frame, seconds, sweep)
        self.results.append(result)
        return result

    def sweeps(self) -> list[str]:
        """The names of the sweeps in the history, in the order they started.

        Returns:
            Distinct non-empty ``sweep`` labels.
        """
        return list(dict.fromkeys(r.sweep for r in self.results if r.sweep))

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
            The :data:`HISTORY_COLUMNS`: ``run_number``, ``checkpoint``, ``sweep`` (empty for a
            single run), ``condition`` (its description), the :class:`Condition` fields
            (``frozen_layers`` joined by commas), ``phase``, ``accuracy``, ``ci95``, ``std``,
            ``n`` and ``seconds``.
        """
        frames = []
        for res in self.results:
            knobs = asdict(res.condition)
            knobs["frozen_layers"] = ",".join(knobs["frozen_layers"])
            frames.append(res.frame.assign(run_number=res.number, checkpoint=res.checkpoint,
                                           sweep=res.sweep, seconds=res.seconds, **knobs))
        if not frames:
            return pd.DataFrame(columns=HISTORY_COLUMNS)
        return pd.concat(frames, ignore_index=True)[HISTORY_COLUMNS]


# --------------------------------------------------------------------------------------------
# Sweeps: one knob over a list of values
# --------------------------------------------------------------------------------------------

#: The knobs :func:`sweep` can step through, with their default values: the scaling factors
#: 2^0..2^5 of Fig A.2, the noise scales of Fig 2 (right) and the adaptation steps.
SWEEP_VALUES: dict[str, tuple[float, ...]] = {
    "scale_factor": SCALE_FACTORS,
    "noise_scale": NOISE_SCALES,
    "steps": (0.0, 1.0, 2.0, 3.0, 4.0, 5.0),
}
#: How plots and menus name each sweep knob.
SWEEP_LABELS: dict[str, str] = {"scale_factor": "scaling factor", "noise_scale": "noise scale",
                                "steps": "adaptation steps"}
#: Columns of :func:`sweep`.
SWEEP_COLUMNS = ["knob", "value", "condition", "phase", "accuracy", "ci95", "std", "n"]

_POWER = re.compile(r"^\s*([0-9.]+)\s*(?:\^|\*\*)\s*(-?[0-9.]+)\s*$")


def parse_values(text: str) -> tuple[float, ...]:
    """Sweep values typed by hand: numbers separated by commas or spaces; ``2^3`` and ``2**3``
    are powers.

    Args:
        text: e.g. ``"1, 2, 4, 8, 16, 32"`` or ``"2^0 2^1 2^2"``.

    Returns:
        The values, in the order given.

    Raises:
        ValueError: On a token that is not a number, or no value at all.
    """
    out = []
    for token in re.split(r"[,;\s]+", re.sub(r"\s*(\^|\*\*)\s*", r"\1", text.strip())):
        if not token:
            continue
        power = _POWER.match(token)
        try:
            value = float(power[1]) ** float(power[2]) if power else float(token)
        except ValueError:
            raise ValueError(f"not a number: {token!r} (write e.g. 1, 2, 4 or 2^0 2^1 2^2)") from None
        out.append(value)
    if not out:
        raise ValueError("a sweep needs at least one value")
    return tuple(out)


def sweep_conditions(base: Condition, knob: str,
                     values: Sequence[float] | None = None) -> list[Condition]:
    """``base`` with ``knob`` set to each of ``values`` in turn.

    Args:
        base: The condition every other knob is taken from.
        knob: ``scale_factor``, ``noise_scale`` or ``steps`` (:data:`SWEEP_VALUES`).
        values: The values (default: the knob's :data:`SWEEP_VALUES`).

    Returns:
        One condition per value, in order.

    Raises:
        ValueError: On an unknown knob, no value, or a step count that is not a whole number.
    """
    if knob not in SWEEP_VALUES:
        raise ValueError(f"cannot sweep {knob!r}; choose from {list(SWEEP_VALUES)}")
    values = SWEEP_VALUES[knob] if values is None else tuple(values)
    if not values:
        raise ValueError("a sweep needs at least one value")
    out = []
    for v in values:
        if knob == "steps":
            if not _is_number(v) or float(v) != int(v):
                raise ValueError(f"steps must be whole numbers, got {v!r}")
            v = int(v)
        out.append(replace(base, **{knob: v}))
    return out


def sweep(setup: ProbeSetup, base: Condition, knob: str, values: Sequence[float] | None = None,
          *, history: History | None = None, checkpoint: str = "", label: str | None = None,
          progress: Callable[[int, int], None] | None = None,
          should_stop: Callable[[], bool] | None = None) -> pd.DataFrame:
    """Pre- and post-adaptation accuracy of ``base`` with ``knob`` at each of ``values``.

    With ``knob="scale_factor"`` and the default values this is one layer's curve of the
    paper's Fig A.2 (weights x 2^0..2^5, before or after adaptation per ``base.scale_when``);
    with ``noise_scale`` one curve of Fig 2 (right). Every condition is checked before the
    first one runs, and each is scored on the same test tasks (:func:`evaluate_condition`).

    Args:
        setup: The loaded checkpoint.
        base: The condition the other knobs come from (for a scaling sweep its ``scale_layer``
            and ``scale_when``).
        knob: ``scale_factor``, ``noise_scale`` or ``steps``.
        values: The values (default: :data:`SWEEP_VALUES`).
        history: Where each finished value is recorded as a run (also when the sweep is
            cancelled later).
        checkpoint: The checkpoint's label for the history.
        label: The sweep's name in the history (default ``sweep <k>: <knob>``).
        progress: Called as ``progress(done, total)`` with tasks over the whole sweep.
        should_stop: Checked before each batch of tasks; true stops with :class:`Cancelled`.

    Returns:
        The :data:`SWEEP_COLUMNS`: ``knob``, ``value``, ``condition``, ``phase``, ``accuracy``,
        ``ci95``, ``std``, ``n``; one row per value and phase.
    """
    conditions = sweep_conditions(base, knob, values)
    for c in conditions:  # refuse a bad value before anything runs
        plan_condition(setup.learner.model, c, default_steps=setup.steps)
    if label is None:
        label = f"sweep {len(history.sweeps()) + 1 if history is not None else 1}: {knob}"
    total = sum(c.num_tasks for c in conditions)
    frames, done = [], 0
    for c in conditions:
        report = None
        if progress is not None:
            def report(d: int, _t: int, offset: int = done) -> None:
                progress(offset + d, total)
        start = time.perf_counter()
        df = evaluate_condition(setup, c, progress=report, should_stop=should_stop)
        if history is not None:
            history.add(checkpoint, c, df, time.perf_counter() - start, sweep=label)
        frames.append(df.assign(knob=knob, value=float(getattr(c, knob))))
        done += c.num_tasks
    return pd.concat(frames, ignore_index=True)[SWEEP_COLUMNS]


# --------------------------------------------------------------------------------------------
# Representation similarity (CKA) per layer
# --------------------------------------------------------------------------------------------

#: Columns of :func:`layer_similarity`.
SIMILARITY_COLUMNS = ["preset", "layer", "cka", "ci95", "std", "n", "param_change"]


def layer_similarity(setup: ProbeSetup, *, num_tasks: int = 20, seed: int = 0,
                     batch_size: int = 25, preset: str = "full", steps: int | None = None,
                     progress: Callable[[int, int], None] | None = None,
                     should_stop: Callable[[], bool] | None = None) -> pd.DataFrame:
    """Per-layer linear CKA of the query-set representation before vs after adaptation.

    The similarity probe (:func:`~maml_probe.probes.similarity_probe`, beyond the paper; the
    view of Raghu et al.'s "Rapid learning or feature reuse?"): for each test task and layer,
    ``CKA(f_l(X_q; theta_0), f_l(X_q; theta_T))``. 1 means adaptation left the layer's
    representation unchanged (up to rotation and scale); lower means it changed it.

    Args:
        setup: The loaded checkpoint.
        num_tasks: Number of test tasks.
        seed: Seed of the test tasks (the same tasks as :func:`evaluate_condition`'s).
        batch_size: Tasks drawn at once (a progress step).
        preset: Which layers adapt: ``full``, ``anil`` (head only) or ``boil`` (body only),
            as in :mod:`maml_probe.probes.presets`.
        steps: Adaptation steps (``None``: the checkpoint's test steps).
        progress: Called as ``progress(done, total)`` before each batch and at the end.
        should_stop: Checked before each batch; true stops with :class:`Cancelled`.

    Returns:
        The :data:`SIMILARITY_COLUMNS`, one row per layer in forward order: ``preset``,
        ``layer``, ``cka`` (mean over tasks), ``ci95``, ``std``, ``n`` and ``param_change``
        (mean ``||theta_T - theta_0|| / ||theta_0||`` of the layer's parameters).

    Raises:
        ValueError: On an unknown preset (or ``boil`` for a model that is only a head), or no
            tasks.
    """
    preset = check_preset(preset)
    if num_tasks <= 0:
        raise ValueError(f"num_tasks must be positive, got {num_tasks}")
    steps = setup.steps if steps is None else int(steps)
    source = _Watched(setup.source, num_tasks, progress, should_stop)
    rows = similarity_probe(setup.learner, source, steps=steps, num_tasks=num_tasks, seed=seed,
                            batch_size=batch_size, adapt_mask=preset, progress=False)
    if progress is not None:
        progress(num_tasks, num_tasks)
    out = summarize(rows, ["layer"], value="cka")
    out["param_change"] = out["layer"].map(rows.groupby("layer")["param_change"].mean())
    out.insert(0, "preset", preset)
    return out[SIMILARITY_COLUMNS]


# --------------------------------------------------------------------------------------------
# Export of the history
# --------------------------------------------------------------------------------------------

#: The formats :func:`export_history` writes.
EXPORT_FORMATS = ("csv", "png")


def default_export_folder(root: str | Path | None = None) -> Path:
    """Where the explorer writes exported tables and figures: ``<runs>/explorer``.

    Args:
        root: The runs folder (default :data:`maml_probe.runs.RUNS_ROOT`).

    Returns:
        The folder (not created here).
    """
    return Path(root if root is not None else RUNS_ROOT) / "explorer"


def _tracked_notebook_folders() -> set[Path]:
    checkout = Path(__file__).resolve().parents[2]
    return {(checkout / "notebooks").resolve(), (project_dir() / "notebooks").resolve()}


def check_export_folder(folder: str | Path) -> Path:
    """``folder`` if exports may go there: anywhere but the tracked ``notebooks/`` folder.

    Args:
        folder: The folder asked for (``~`` is expanded).

    Returns:
        The folder as a path.

    Raises:
        ValueError: When ``folder`` is empty or lies inside the project's ``notebooks/``.
    """
    if not str(folder).strip():
        raise ValueError("no export folder given")
    path = Path(folder).expanduser()
    resolved = path.resolve()
    for tracked in _tracked_notebook_folders():
        if resolved == tracked or tracked in resolved.parents:
            raise ValueError(f"{path} is inside the tracked notebooks folder {tracked}: exports "
                             f"would end up in git; choose a folder under runs/ (default "
                             f"{default_export_folder()})")
    return path


def export_history(history: History, folder: str | Path | None = None, fmt: str = "csv", *,
                   chance: float | None = None, stem: str | None = None) -> Path:
    """Write the history as a tidy CSV (:meth:`History.frame`) or as a PNG of its accuracies.

    Args:
        history: The explorer's history.
        folder: Where to write (default :func:`default_export_folder`; created when missing;
            never inside the tracked ``notebooks/`` folder).
        fmt: ``csv`` or ``png``.
        chance: The chance accuracy, drawn as a line on the PNG.
        stem: The file name without suffix (default ``explorer-history-<date>-<time>``).

    Returns:
        The path of the written file.

    Raises:
        ValueError: On an unknown format, an empty history or a refused folder.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"fmt must be one of {list(EXPORT_FORMATS)}, got {fmt!r}")
    if not len(history):
        raise ValueError("nothing to export yet: the history is empty")
    out = check_export_folder(default_export_folder() if folder is None else folder)
    stem = stem or f"explorer-history-{datetime.now():%Y%m%d-%H%M%S}"
    path = out / f"{stem}.{fmt}"
    if fmt == "csv":
        return write_csv_atomic(history.frame(), path)
    png = history_png(history.frame(), chance=chance)
    return atomic_write(path, lambda f: f.write(png), binary=True)
