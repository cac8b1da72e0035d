"""Interactive explorer of a meta-trained checkpoint: freeze layers, scale weights, add noise (issue #7).

The explorer is the layer probes of :mod:`maml_probe.probes` with the knobs in widgets. One
*condition* is a choice of

- which layers adapt and which stay frozen at their meta-learned values (as in
  :func:`~maml_probe.probes.layer_probe`; every layer frozen is scored with 0 steps, so its
  post-adaptation accuracy *is* the pre-adaptation one);
- one layer's conv/linear weight and bias multiplied by a factor, either before adaptation (the
  initial parameters) or after it (the adapted ones, just before the query pass), as in
  :func:`~maml_probe.probes.scaling_probe` with ``targets="map"``;
- Gaussian noise on the last layer's (``FC``) weight, ``s * std(W) * Z`` with one seeded draw
  ``Z`` (draw 0 of :func:`~maml_probe.probes.noise_probe`), added before or after adaptation;
- the number of adaptation steps, test tasks and the task seed.

When scaling and noise apply at the same moment, the scaling comes first and the noise's
``std(W)`` is that of the weights at that moment (scaled, and for ``post`` adapted): each is the
probe's own transform applied at the chosen time. :func:`explore_once` scores one condition on
the same test tasks the probes use (same ``seed`` and ``batch_size``, so a condition that a probe
also covers gives exactly that probe's numbers) and returns a tidy frame.

:class:`Explorer` (or :func:`build_explorer`) puts it in ipywidgets for JupyterLab:

- a checkpoint menu over ``runs/**/checkpoint.pt`` (:func:`find_checkpoints`), or, when there is
  none, a button that trains the smoke-scale E1 LinNet (:func:`train_smoke_model`, no data needed);
- per-layer *adapt / freeze* toggles, the scaling layer, factor and moment, the FC noise scale and
  moment, the number of steps, test tasks and seed;
- *Run*, *Cancel* and *update on change*; a progress bar per batch of tasks and a status line;
- a table and a seaborn bar plot of pre- and post-adaptation accuracy (95% CI over tasks) of the
  current result next to the previous one.

Runs go to a background thread, so the notebook stays responsive. **Queue policy**: a request
made while a run is going (a click on *Run*, or a changed control) is queued — only the latest
one is kept, replacing an older queued one — and starts when the current run ends; the status
line says ``queued: <condition>``. *Cancel* stops the current run between two batches of tasks
(and drops the queued one); the status line says ``cancelled: <condition>``, and the table keeps
the last finished results. ``blocking=True`` runs every request in the calling thread instead
(for scripts and tests).
"""
from __future__ import annotations

import io
import math
import re
import threading
import time
import traceback
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field
from html import escape, unescape
from pathlib import Path
from typing import Any

import pandas as pd

from . import runs
from .probes import (ProbeSetup, adapt_mask_for, layer_names, load_probe_setup, perturb,
                     scale_params, select_params)
from .probes.common import check_layers, clone_params, run_condition
from .stats import summarize

WHEN = ("pre", "post")
SMOKE_EXPERIMENT = "E1"
SMOKE_RUN = "smoke-explorer"
SMOKE_METHOD = "LR+LinNet w/ MAML"
_PREFIX = "maml-explorer"


class Cancelled(Exception):
    """A run stopped by :meth:`Explorer.cancel` (raised between two batches of tasks)."""


# --------------------------------------------------------------------------------------------
# Pure part: checkpoints and one condition
# --------------------------------------------------------------------------------------------

def find_checkpoints(root: str | Path | None = None) -> list[Path]:
    """Every ``checkpoint.pt`` under ``root`` (default :data:`maml_probe.runs.RUNS_ROOT`), sorted."""
    root = Path(root) if root is not None else Path(runs.RUNS_ROOT)
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("checkpoint.pt") if p.is_file())


def checkpoint_label(path: str | Path, root: str | Path | None = None) -> str:
    """``runs/E1/smoke/lr-linnet-w-maml/checkpoint.pt`` -> ``E1/smoke/lr-linnet-w-maml``."""
    path = Path(path)
    folder = path.parent if path.name == "checkpoint.pt" else path
    if root is not None:
        try:
            return folder.resolve().relative_to(Path(root).resolve()).as_posix() or folder.name
        except ValueError:
            pass
    return folder.as_posix()


def _fmt(x: float) -> str:
    return f"{x:.4g}"


@dataclass(frozen=True)
class Settings:
    """One condition of the explorer (the keyword arguments of :func:`explore_once`)."""

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
        """Short human description, e.g. ``frozen H1,H2 · H1×4 pre · FC noise 0.5 post · 1 step``."""
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


def _check_when(name: str, value: str) -> str:
    if value not in WHEN:
        raise ValueError(f"{name} must be 'pre' or 'post', got {value!r}")
    return value


def explore_once(setup: ProbeSetup, *, frozen_layers: Collection[str] = (),
                 scale_layer: str | None = None, scale_factor: float = 1.0,
                 scale_when: str = "pre", noise_scale: float = 0.0, noise_when: str = "pre",
                 noise_layer: str | None = None, noise_seed: int = 0, steps: int | None = None,
                 num_tasks: int = 100, seed: int = 0, batch_size: int = 25,
                 progress: Callable[[int, int], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> pd.DataFrame:
    """Pre- and post-adaptation accuracy of one condition (module doc) on ``num_tasks`` test tasks.

    Returns a tidy frame with one row per ``phase`` (``pre``, ``post``): ``condition`` (a short
    description), ``phase``, ``accuracy`` (mean over tasks), ``ci95``, ``std``, ``n``.
    ``steps=None`` uses the checkpoint's number of test steps. ``progress(done, total)`` is called
    before each batch of ``batch_size`` tasks and once at the end; ``should_stop()`` is checked
    before each batch and, when true, stops with :class:`Cancelled`. The learner is never modified.
    """
    learner, model = setup.learner, setup.learner.model
    layers = layer_names(model)
    frozen = check_layers(model, list(frozen_layers))
    _check_when("scale_when", scale_when)
    _check_when("noise_when", noise_when)
    if not (isinstance(scale_factor, (int, float)) and math.isfinite(scale_factor)):
        raise ValueError(f"scale_factor must be a finite number, got {scale_factor!r}")
    if not (isinstance(noise_scale, (int, float)) and math.isfinite(noise_scale)) or noise_scale < 0:
        raise ValueError(f"noise_scale must be a non-negative number, got {noise_scale!r}")
    if num_tasks <= 0:
        raise ValueError(f"num_tasks must be positive, got {num_tasks}")
    steps = setup.steps if steps is None else int(steps)
    if steps < 0:
        raise ValueError(f"steps must be non-negative, got {steps}")
    settings = Settings(tuple(frozen), scale_layer, float(scale_factor), scale_when,
                        float(noise_scale), noise_when, noise_layer, noise_seed, steps,
                        num_tasks, seed, batch_size)

    # adaptation mask: None (everything adapts, like evaluate) unless some layer is frozen;
    # every layer frozen gives an empty mask, which run_condition scores with 0 steps
    mask = adapt_mask_for(model, [x for x in layers if x not in frozen]) if frozen else None

    pre_ops: list[Callable] = []
    post_ops: list[Callable] = []
    if scale_factor != 1:
        if scale_layer is None:
            raise ValueError("scale_factor != 1 needs a scale_layer")
        check_layers(model, [scale_layer])
        names = frozenset(select_params(model, [scale_layer], "map"))
        op = (lambda p, n=names, c=float(scale_factor): scale_params(p, n, c))
        (pre_ops if scale_when == "pre" else post_ops).append(op)
    if noise_scale > 0:
        layer = noise_layer or layers[-1]
        check_layers(model, [layer])
        weights = [n for n in select_params(model, [layer], "map") if n.endswith("weight")]
        if len(weights) != 1:
            raise ValueError(f"layer {layer} must have exactly one conv/linear weight, found {weights}")
        op = (lambda p, w=weights[0], s=float(noise_scale), k=noise_seed * 100_003:
              perturb(p, [w], w, s, k, relative=True))
        (pre_ops if noise_when == "pre" else post_ops).append(op)

    params = clone_params(learner)
    for op in pre_ops:
        params = op(params)

    def post_transform(p):
        for op in post_ops:
            p = op(p)
        return p

    source = _Watched(setup.source, num_tasks, progress, should_stop)
    rows = run_condition(learner, source, steps=steps, num_tasks=num_tasks, seed=seed,
                         batch_size=batch_size, params=params, adapt_mask=mask,
                         post_transform=post_transform if post_ops else None)
    if progress is not None:
        progress(num_tasks, num_tasks)
    out = summarize(rows, ["phase"])
    out.insert(0, "condition", settings.describe(layers))
    return out


def train_smoke_model(root: str | Path | None = None, *, progress: bool = False,
                      device: str = "cpu") -> Path:
    """Train the smoke-scale E1 LinNet (40 iterations on synthetic tasks, no data; seconds).

    The run goes to ``<root>/E1/smoke-explorer/`` (``root`` defaults to
    :data:`maml_probe.runs.RUNS_ROOT`) with its ``record.json``; returns the checkpoint path.
    """
    from .experiments import e1_synthetic
    from .experiments.common import slug

    root = Path(root) if root is not None else Path(runs.RUNS_ROOT)
    run_dir = root / SMOKE_EXPERIMENT / SMOKE_RUN
    start = time.perf_counter()
    e1_synthetic.run("smoke", run_dir, methods=[SMOKE_METHOD], progress=progress, device=device)
    runs.write_record(run_dir, experiment=SMOKE_EXPERIMENT, scale="smoke", status="ok",
                      parameters={"methods": [SMOKE_METHOD], "scale": "smoke",
                                  "run_dir": str(run_dir)},
                      purpose="trained by the explorer (maml_probe.explorer.train_smoke_model)",
                      wall_time_s=round(time.perf_counter() - start, 2))
    return run_dir / slug(SMOKE_METHOD) / "checkpoint.pt"


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------

@dataclass
class Result:
    """One finished run of the explorer."""

    number: int
    checkpoint: str
    settings: Settings
    frame: pd.DataFrame
    seconds: float


def results_frame(current: Result | None, previous: Result | None) -> pd.DataFrame:
    """Tidy rows of the current and previous results with a ``run`` column (``current``/``previous``)."""
    frames = []
    for label, res in (("current", current), ("previous", previous)):
        if res is not None:
            frames.append(res.frame.assign(run=label, run_number=res.number,
                                           checkpoint=res.checkpoint))
    if not frames:
        return pd.DataFrame(columns=["run", "run_number", "checkpoint", "condition", "phase",
                                     "accuracy", "ci95", "std", "n"])
    df = pd.concat(frames, ignore_index=True)
    return df[["run", "run_number", "checkpoint", "condition", "phase", "accuracy", "ci95", "std", "n"]]


def _pct(acc: float, ci: float) -> str:
    ci_text = "" if ci is None or (isinstance(ci, float) and math.isnan(ci)) else f" ± {100 * ci:.1f}"
    return f"{100 * acc:.1f}%{ci_text}"


def results_html(df: pd.DataFrame) -> str:
    """The results table (one row per run, pre and post side by side) as HTML."""
    if df.empty:
        return f"<div class='{_PREFIX}-results'><i>No result yet: press Run.</i></div>"
    head = ("<tr><th>run</th><th>checkpoint</th><th>condition</th><th>pre-adaptation</th>"
            "<th>post-adaptation</th><th>post − pre</th><th>tasks</th></tr>")
    body = []
    for (run, number), g in df.groupby(["run", "run_number"], sort=False):
        by = {r.phase: r for r in g.itertuples()}
        pre, post = by.get("pre"), by.get("post")
        delta = f"{100 * (post.accuracy - pre.accuracy):+.1f}" if pre and post else ""
        weight = "bold" if run == "current" else "normal"
        body.append(
            f"<tr style='font-weight:{weight}'><td>{run} (#{number})</td>"
            f"<td>{escape(str(g['checkpoint'].iloc[0]))}</td>"
            f"<td>{escape(str(g['condition'].iloc[0]))}</td>"
            f"<td>{_pct(pre.accuracy, pre.ci95) if pre else ''}</td>"
            f"<td>{_pct(post.accuracy, post.ci95) if post else ''}</td>"
            f"<td>{delta}</td><td>{int(g['n'].iloc[0])}</td></tr>")
    style = ("border-collapse:collapse;font-size:13px;"
             "font-family:var(--jp-ui-font-family, sans-serif)")
    cell = "padding:3px 8px;border-bottom:1px solid #ccc;text-align:left"
    return (f"<style>.{_PREFIX}-table td, .{_PREFIX}-table th {{{cell}}}</style>"
            f"<table class='{_PREFIX}-table {_PREFIX}-results' style='{style}'>"
            f"<thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"
            "<div style='font-size:11px;color:#666'>mean accuracy over test tasks ± 95% CI; "
            "the same tasks in every run of a checkpoint</div>")


def results_png(df: pd.DataFrame, title: str | None = None) -> bytes:
    """Seaborn bar plot of pre/post accuracy, previous vs current (error bars: ``ci95``), as PNG."""
    import seaborn as sns
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 3.0), dpi=100)
    ax = fig.subplots()
    if df.empty:
        ax.text(0.5, 0.5, "no result yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        plot = df.assign(phase=pd.Categorical(df["phase"], ["pre", "post"]),
                         run=[f"{r} (#{n})" for r, n in zip(df["run"], df["run_number"])])
        hue_order = [lbl for lbl in dict.fromkeys(plot.sort_values("run_number")["run"])]
        colors = {h: ("#1f77b4" if h.startswith("current") else "#b0b0b0") for h in hue_order}
        sns.barplot(plot, x="phase", y="accuracy", hue="run", hue_order=hue_order,
                    order=["pre", "post"], palette=colors, errorbar=None, ax=ax)
        for container, hue in zip(ax.containers, hue_order):
            part = plot[plot["run"] == hue].set_index("phase")
            for bar, phase in zip(container, ["pre", "post"]):
                if phase in part.index and not math.isnan(float(part.loc[phase, "ci95"])):
                    ax.errorbar(bar.get_x() + bar.get_width() / 2, float(part.loc[phase, "accuracy"]),
                                yerr=float(part.loc[phase, "ci95"]), color="black", capsize=3, lw=1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("")
        ax.set_ylabel("accuracy")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        if title:
            ax.set_title(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# Widgets
# --------------------------------------------------------------------------------------------

@dataclass
class _Request:
    setup: ProbeSetup
    checkpoint: str
    settings: Settings
    layers: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return self.settings.describe(self.layers, self.setup.steps)


class Explorer:
    """The explorer's widgets (``.widget``) wired to :func:`explore_once` (module doc).

    ``root``: where to look for checkpoints (default :data:`maml_probe.runs.RUNS_ROOT`);
    ``checkpoint``: the one to open first (a path, or a label of the menu); ``setup``: probe a
    ready :class:`~maml_probe.probes.ProbeSetup` instead of a checkpoint file (tests, custom
    task sources). ``blocking=True`` runs in the calling thread; ``auto_run`` re-runs after
    every change of a control (and once when a checkpoint is opened).
    """

    def __init__(self, root: str | Path | None = None, checkpoint: str | Path | None = None, *,
                 setup: ProbeSetup | None = None, blocking: bool = False, auto_run: bool = True,
                 device: str = "cpu", num_tasks: int = 100, seed: int = 0, batch_size: int = 25,
                 train_fn: Callable[[Path], Any] | None = None) -> None:
        import ipywidgets as w

        self._w = w
        self.root = Path(root) if root is not None else Path(runs.RUNS_ROOT)
        self.blocking = blocking
        self.device = device
        self.batch_size = batch_size
        self.train_fn = train_fn or (lambda r: train_smoke_model(r, device=device))
        self.setup: ProbeSetup | None = None
        self.checkpoint_name = ""
        self.current: Result | None = None
        self.previous: Result | None = None
        self.history: list[str] = []       # status lines, oldest first (for tests and debugging)
        self._runs = 0
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._busy = False
        self._pending: _Request | None = None
        self._thread: threading.Thread | None = None
        self._quiet = False                 # suppress auto-runs while the code sets controls

        # ---- controls shared by both views
        self.progress = w.IntProgress(value=0, min=0, max=num_tasks, description="tasks",
                                      layout=w.Layout(width="260px"))
        self.status = w.HTML(value="", layout=w.Layout(min_width="300px"))
        self.status.add_class(f"{_PREFIX}-status")

        # ---- main view
        self.checkpoint = w.Dropdown(description="checkpoint", options=[],
                                     layout=w.Layout(width="520px"),
                                     style={"description_width": "80px"})
        self.refresh_button = w.Button(description="Refresh", icon="refresh",
                                       tooltip="look for new checkpoints",
                                       layout=w.Layout(width="100px"))
        self.info = w.HTML()
        self.layer_toggles: dict[str, Any] = {}
        self.layers_box = w.VBox()
        self.scale_layer = w.Dropdown(description="scale layer", options=[],
                                      layout=w.Layout(width="190px"),
                                      style={"description_width": "80px"})
        self.scale_factor = w.FloatLogSlider(value=1.0, base=2, min=-3, max=5, step=0.5,
                                             description="factor", continuous_update=False,
                                             readout_format=".3",
                                             layout=w.Layout(width="360px"))
        self.scale_factor.add_class(f"{_PREFIX}-scale")
        self.scale_when = w.ToggleButtons(options=list(WHEN), value="pre",
                                          tooltips=["before adaptation", "after adaptation"],
                                          style={"button_width": "52px"})
        self.noise_scale = w.FloatSlider(value=0.0, min=0.0, max=2.0, step=0.0625,
                                         description="FC noise", continuous_update=False,
                                         readout_format=".4", layout=w.Layout(width="360px"))
        self.noise_scale.add_class(f"{_PREFIX}-noise")
        self.noise_when = w.ToggleButtons(options=list(WHEN), value="pre",
                                          tooltips=["before adaptation", "after adaptation"],
                                          style={"button_width": "52px"})
        self.steps = w.IntSlider(value=1, min=0, max=10, description="steps",
                                 continuous_update=False, layout=w.Layout(width="300px"))
        self.num_tasks = w.BoundedIntText(value=num_tasks, min=1, max=5000, step=25,
                                          description="test tasks", layout=w.Layout(width="190px"),
                                          style={"description_width": "70px"})
        self.seed = w.BoundedIntText(value=seed, min=0, max=2**31 - 1, description="seed",
                                     layout=w.Layout(width="150px"),
                                     style={"description_width": "40px"})
        self.run_button = w.Button(description="Run", icon="play", button_style="primary",
                                   tooltip="evaluate the condition (queued if a run is going)")
        self.run_button.add_class(f"{_PREFIX}-run")
        self.cancel_button = w.Button(description="Cancel", icon="stop",
                                      tooltip="stop the current run and drop the queued one")
        self.auto_run = w.Checkbox(value=auto_run, description="update on change", indent=False,
                                   layout=w.Layout(width="150px"))
        self.auto_run.add_class(f"{_PREFIX}-auto")
        self.table = w.HTML(value=results_html(results_frame(None, None)))
        self.table.add_class(f"{_PREFIX}-table-box")
        self.plot = w.Image(format="png", value=results_png(results_frame(None, None)),
                            layout=w.Layout(width="600px"))

        def section(title):
            return w.HTML(f"<b>{title}</b>")

        self.main_view = w.VBox([
            w.HBox([self.checkpoint, self.refresh_button]),
            self.info,
            w.HBox([
                w.VBox([section("Layers (adapt / freeze)"), self.layers_box],
                       layout=w.Layout(margin="0 24px 0 0")),
                w.VBox([section("Weight scaling"), self.scale_layer, self.scale_factor,
                        self.scale_when,
                        section("Noise on FC (× std of its weights)"), self.noise_scale,
                        self.noise_when,
                        section("Evaluation"), self.steps, w.HBox([self.num_tasks, self.seed])]),
            ]),
            w.HBox([self.run_button, self.cancel_button, self.auto_run, self.progress],
                   layout=w.Layout(align_items="center")),
            self.status,
            w.HBox([self.table, self.plot], layout=w.Layout(align_items="flex-start",
                                                            flex_flow="row wrap")),
        ])

        # ---- "no checkpoint" view
        self.empty_message = w.HTML()
        self.empty_message.add_class(f"{_PREFIX}-empty")
        self.train_button = w.Button(description="Train smoke-scale model", icon="cogs",
                                     button_style="warning", layout=w.Layout(width="240px"),
                                     tooltip=f"{SMOKE_EXPERIMENT} {SMOKE_METHOD}, scale smoke")
        self.train_button.add_class(f"{_PREFIX}-train")
        self.empty_view = w.VBox([self.empty_message, self.train_button,
                                  w.HBox([self.progress, self.status],
                                         layout=w.Layout(align_items="center"))])

        self.widget = w.VBox(layout=w.Layout(padding="4px"))
        self.widget.add_class(_PREFIX)
        self.widget.explorer = self

        # ---- wiring
        self.run_button.on_click(lambda _: self.run())
        self.cancel_button.on_click(lambda _: self.cancel())
        self.refresh_button.on_click(lambda _: self.refresh())
        self.train_button.on_click(lambda _: self.train())
        self.checkpoint.observe(self._on_checkpoint, "value")
        for ctl in (self.scale_layer, self.scale_factor, self.scale_when, self.noise_scale,
                    self.noise_when, self.steps, self.num_tasks, self.seed):
            ctl.observe(self._on_change, "value")

        if setup is not None:
            self._show_main()
            self._open_setup(setup, "(given setup)")
        else:
            self.refresh(select=checkpoint)

    # ------------------------------------------------------------------ views and checkpoints
    def _ipython_display_(self):  # pragma: no cover - display hook
        from IPython.display import display

        display(self.widget)

    def _show_main(self) -> None:
        self.widget.children = [self.main_view]

    def _show_empty(self) -> None:
        self.empty_message.value = (
            f"<b>No checkpoint found under <code>{escape(str(self.root))}</code>.</b><br>"
            "Train the paper's models with the experiment notebooks (e.g. "
            "<code>maml-probe run E3 --scale cpu</code>), or train the smoke-scale model here: "
            f"{SMOKE_EXPERIMENT}'s {escape(SMOKE_METHOD)} on synthetic tasks, no data needed, "
            "a few seconds on a CPU.")
        self.widget.children = [self.empty_view]

    def refresh(self, select: str | Path | None = None) -> list[Path]:
        """Look for checkpoints under ``root`` again; open ``select`` (or keep the current one)."""
        found = find_checkpoints(self.root)
        options = [(checkpoint_label(p, self.root), str(p)) for p in found]
        if select is not None:
            target = _match_checkpoint(select, options, self.root)
            if target is None:
                path = Path(select)
                if not path.exists():
                    raise FileNotFoundError(f"checkpoint {select} not found (looked under {self.root})")
                target = str(path)
                options.append((checkpoint_label(path, self.root), target))
        else:
            current = self.checkpoint.value
            if current is not None and current not in [v for _, v in options] and Path(current).exists():
                options.append((checkpoint_label(current, self.root), current))
            target = current if current in [v for _, v in options] else (
                options[0][1] if options else None)
        if not options:
            self._show_empty()
            self._set_status("no checkpoint", "info")
            return found
        self._show_main()
        keep = select is None and self.setup is not None and target == self.checkpoint.value
        with self._suppressed():
            self.checkpoint.options = options
            self.checkpoint.value = target if keep else None
        if keep:
            self._set_status(f"{len(options)} checkpoint(s) under {escape(str(self.root))}", "info")
        else:
            self.checkpoint.value = target  # fires _on_checkpoint, which opens it
        return found

    def _on_checkpoint(self, change) -> None:
        if self._quiet or change["new"] is None:
            return
        path = Path(change["new"])
        label = checkpoint_label(path, self.root)
        self._set_status(f"loading {escape(label)}…", "info")
        try:
            setup = load_probe_setup(path, device=self.device)
        except Exception as exc:  # a broken or foreign checkpoint: say so, keep the UI
            self._set_status(f"could not open {escape(label)}: {escape(str(exc))}", "danger")
            return
        self._open_setup(setup, label)

    def _open_setup(self, setup: ProbeSetup, label: str) -> None:
        w = self._w
        self.setup, self.checkpoint_name = setup, label
        model = setup.learner.model
        layers = layer_names(model)
        cfg = setup.config
        mask = setup.learner.resolve_mask(getattr(cfg, "adapt_layers", None))
        frozen = [] if mask is None else [
            x for x in layers if not set(select_params(model, [x])) & set(mask)]
        with self._suppressed():
            self.layer_toggles = {}
            rows = []
            for layer in layers:
                t = w.ToggleButtons(options=["adapt", "freeze"],
                                    value="freeze" if layer in frozen else "adapt",
                                    tooltips=[f"{layer} adapts", f"{layer} keeps its meta-learned "
                                              "value during adaptation"],
                                    layout=w.Layout(width="auto"), style={"button_width": "62px"})
                t.add_class(f"{_PREFIX}-layer-{layer}")
                t.observe(self._on_change, "value")
                self.layer_toggles[layer] = t
                rows.append(w.HBox([w.HTML(f"<b>{escape(layer)}</b>",
                                           layout=w.Layout(width="36px")), t],
                                   layout=w.Layout(align_items="center")))
            self.layers_box.children = rows
            self.scale_layer.options = layers
            self.scale_layer.value = layers[0]
            self.scale_factor.value = 1.0
            self.noise_scale.value = 0.0
            self.noise_scale.description = f"{layers[-1]} noise"
            self.steps.max = max(10, 2 * setup.steps)
            self.steps.value = setup.steps
        n_params = sum(p.numel() for p in model.parameters())
        rule = type(setup.learner.rule).__name__
        self.info.value = (
            f"<span style='font-size:12px'>{escape(cfg.model)} ({', '.join(layers)}; "
            f"{n_params:,} parameters) · rule {escape(cfg.rule)} ({escape(rule)}, α={cfg.alpha:g})"
            f" · {escape(cfg.dataset)}"
            + (f" {cfg.ways}-way {cfg.shots}-shot" if cfg.dataset != "synthetic" else "")
            + f" · trained {cfg.iterations} iterations · tested with {setup.steps} step(s)</span>")
        self._set_status(f"opened {escape(label)}", "info")
        if self.auto_run.value:
            self.run()

    # ------------------------------------------------------------------ settings and runs
    def settings(self) -> Settings:
        """The condition the controls describe now."""
        frozen = tuple(x for x, t in self.layer_toggles.items() if t.value == "freeze")
        return Settings(frozen_layers=frozen, scale_layer=self.scale_layer.value,
                        scale_factor=float(self.scale_factor.value),
                        scale_when=self.scale_when.value,
                        noise_scale=float(self.noise_scale.value), noise_when=self.noise_when.value,
                        steps=int(self.steps.value), num_tasks=int(self.num_tasks.value),
                        seed=int(self.seed.value), batch_size=self.batch_size)

    def _on_change(self, change) -> None:
        if not self._quiet and self.auto_run.value and self.setup is not None:
            self.run()

    def run(self) -> None:
        """Evaluate the current settings (queued behind a running evaluation; module doc)."""
        if self.setup is None:
            self._set_status("no checkpoint open", "warning")
            return
        req = _Request(self.setup, self.checkpoint_name, self.settings(),
                       layer_names(self.setup.learner.model))
        if self.blocking:
            self._execute(req)
            return
        with self._lock:
            if self._busy:
                replaced = self._pending is not None
                self._pending = req
                self._set_status(f"queued: {escape(req.describe())} (starts when the current run "
                                 f"ends{'; replaces the earlier queued request' if replaced else ''})",
                                 "queued")
                return
            self._busy = True
        self._thread = threading.Thread(target=self._worker, args=(req,), daemon=True,
                                        name="maml-explorer")
        self._thread.start()

    def cancel(self) -> None:
        """Stop the current run between two batches of tasks and drop the queued request."""
        with self._lock:
            dropped = self._pending is not None
            self._pending = None
            if not self._busy:
                self._set_status("nothing to cancel", "info")
                return
            self._cancel.set()
        self._set_status("cancelling… (stops after the current batch of tasks"
                         + ("; queued request dropped)" if dropped else ")"), "warning")

    @property
    def running(self) -> bool:
        """Whether a run is going or queued."""
        return self._busy

    def wait(self, timeout: float = 60.0) -> bool:
        """Block until no run is going or queued (``False`` if ``timeout`` passed first)."""
        end = time.monotonic() + timeout
        while self._busy and time.monotonic() < end:
            t = self._thread
            if t is not None:
                t.join(timeout=0.05)
            else:
                time.sleep(0.01)
        return not self._busy

    def _worker(self, req: _Request | None) -> None:
        try:
            while req is not None:
                self._execute(req)
                with self._lock:
                    req, self._pending = self._pending, None
                    if req is None:
                        self._busy = False
        except BaseException:  # never leave the explorer "busy" forever
            with self._lock:
                self._busy = False
            raise

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.max = total
        self.progress.value = done

    def _execute(self, req: _Request) -> None:
        self._cancel.clear()
        what = escape(req.describe())
        self.progress.description = "tasks"
        self.progress.bar_style = "info"
        self.progress.max = req.settings.num_tasks
        self.progress.value = 0
        self._set_status(f"running: {what}…", "running")
        start = time.perf_counter()
        try:
            df = explore_once(req.setup, **asdict(req.settings), progress=self._on_progress,
                              should_stop=self._cancel.is_set)
        except Cancelled as exc:
            self.progress.bar_style = "warning"
            self._set_status(f"cancelled: {what} ({exc}); the table keeps the last results",
                             "cancelled")
            return
        except Exception as exc:
            self.progress.bar_style = "danger"
            self._set_status(f"error: {escape(type(exc).__name__)}: {escape(str(exc))}", "error",
                             detail=traceback.format_exc())
            return
        seconds = time.perf_counter() - start
        self._runs += 1
        self.previous, self.current = self.current, Result(self._runs, req.checkpoint,
                                                           req.settings, df, seconds)
        self._render()
        self.progress.bar_style = "success"
        self._set_status(f"done (#{self._runs}): {what} in {seconds:.1f} s", "done")

    def results(self) -> pd.DataFrame:
        """Tidy current and previous results (:func:`results_frame`)."""
        return results_frame(self.current, self.previous)

    def _render(self) -> None:
        df = self.results()
        self.table.value = results_html(df)
        title = self.current.frame["condition"].iloc[0] if self.current is not None else None
        self.plot.value = results_png(df, title)

    # ------------------------------------------------------------------ training
    def train(self) -> None:
        """Train the smoke-scale model into ``root`` (background unless blocking), then open it."""
        if self._busy:
            self._set_status("busy: wait for the current job", "warning")
            return
        self.train_button.disabled = True
        self.progress.description = "training"
        self.progress.bar_style = "info"
        self.progress.max, self.progress.value = 1, 0
        self._set_status(f"training the smoke-scale model ({escape(SMOKE_METHOD)}) into "
                         f"{escape(str(self.root))}…", "running")

        def job():
            try:
                path = self.train_fn(self.root)
            except Exception as exc:
                self.progress.bar_style = "danger"
                self._set_status(f"training failed: {escape(type(exc).__name__)}: "
                                 f"{escape(str(exc))}", "error", detail=traceback.format_exc())
                self.train_button.disabled = False
                return
            finally:
                with self._lock:
                    self._busy = False
            self.progress.value = 1
            self.progress.bar_style = "success"
            self.train_button.disabled = False
            self.refresh(select=path)

        with self._lock:
            self._busy = True
        if self.blocking:
            job()
        else:
            self._thread = threading.Thread(target=job, daemon=True, name="maml-explorer-train")
            self._thread.start()

    # ------------------------------------------------------------------ helpers
    def _set_status(self, text: str, kind: str, detail: str | None = None) -> None:
        colors = {"running": "#1f77b4", "queued": "#9467bd", "done": "#2ca02c",
                  "cancelled": "#ff7f0e", "error": "#d62728", "danger": "#d62728",
                  "warning": "#ff7f0e", "info": "#555"}
        html = f"<span style='color:{colors.get(kind, '#555')}'>{text}</span>"
        if detail:
            html += f"<details><summary>traceback</summary><pre>{escape(detail)}</pre></details>"
        self.status.value = html
        self.history.append(_strip_tags(text))

    def status_text(self) -> str:
        """The status line as plain text."""
        return self.history[-1] if self.history else ""

    class _Quiet:
        def __init__(self, owner: "Explorer") -> None:
            self.owner, self.before = owner, False

        def __enter__(self):
            self.before, self.owner._quiet = self.owner._quiet, True

        def __exit__(self, *exc):
            self.owner._quiet = self.before

    def _suppressed(self) -> "Explorer._Quiet":
        return Explorer._Quiet(self)

    def set(self, **values: Any) -> None:
        """Set several controls at once with a single auto-run (``frozen_layers``, ``scale_layer``,
        ``scale_factor``, ``scale_when``, ``noise_scale``, ``noise_when``, ``steps``,
        ``num_tasks``, ``seed``)."""
        with self._suppressed():
            for key, value in values.items():
                if key == "frozen_layers":
                    check_layers(self.setup.learner.model, list(value))
                    for layer, t in self.layer_toggles.items():
                        t.value = "freeze" if layer in value else "adapt"
                elif key in ("scale_layer", "scale_factor", "scale_when", "noise_scale",
                             "noise_when", "steps", "num_tasks", "seed"):
                    getattr(self, key).value = value
                else:
                    raise TypeError(f"unknown control {key!r}")
        if self.auto_run.value and self.setup is not None:
            self.run()


def _strip_tags(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", "", html))


def _match_checkpoint(select, options, root) -> str | None:
    """The option value that ``select`` (a path, or a menu label) names, if any."""
    text = str(select)
    for label, value in options:
        if text in (label, value):
            return value
    path = Path(select)
    candidates = [path, Path(root) / path]
    if path.suffix != ".pt":
        candidates += [path / "checkpoint.pt", Path(root) / path / "checkpoint.pt"]
    for cand in candidates:
        if cand.exists():
            for _, value in options:
                if Path(value).resolve() == cand.resolve():
                    return value
    return None


def build_explorer(root: str | Path | None = None, checkpoint: str | Path | None = None,
                   **kwargs: Any):
    """The explorer widget for checkpoints under ``root`` (default ``runs/``), opening ``checkpoint``.

    Returns the ``ipywidgets`` container (its ``.explorer`` attribute is the :class:`Explorer`);
    ``kwargs`` go to :class:`Explorer`.
    """
    return Explorer(root, checkpoint, **kwargs).widget
