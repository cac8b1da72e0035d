"""The explorer's ipywidgets UI for JupyterLab: controls, a results table and plot, background runs.

:class:`Explorer` (or :func:`build_explorer`) is a thin layer over
:mod:`~maml_probe.explorer.core` (the condition and its evaluation) and
:mod:`~maml_probe.explorer.render` (table and plot):

- a checkpoint menu over ``runs/**/checkpoint.pt``, or, when there is none, a button that trains
  the smoke-scale E1 LinNet (no data needed);
- per-layer *adapt / freeze* toggles, the scaling layer, factor and moment, the FC noise scale and
  moment, the number of steps, test tasks and seed;
- *Run*, *Cancel* and *update on change*; a progress bar per batch of tasks and a status line;
- a table and a bar plot of pre- and post-adaptation accuracy (95% CI over tasks) of the current
  result next to the previous one.

Runs go to a background thread, so the notebook stays responsive. **Queue policy**: a request
made while a run is going (a click on *Run*, or a changed control) is queued (only the latest
one is kept, replacing an older queued one) and starts when the current run ends; the status
line says ``queued: <condition>``. *Cancel* stops the current run between two batches of tasks
(and drops the queued one); the status line says ``cancelled: <condition>``, and the table keeps
the last finished results. ``blocking=True`` runs every request in the calling thread instead
(for scripts and tests).
"""
from __future__ import annotations

import re
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape, unescape
from pathlib import Path
from typing import Any

import pandas as pd

from .. import runs
from ..probes import ProbeSetup, layer_names, load_probe_setup
from ..probes.common import check_layers
from .checkpoints import (
    SMOKE_EXPERIMENT,
    SMOKE_METHOD,
    checkpoint_label,
    find_checkpoints,
    match_checkpoint,
    train_smoke_model,
)
from .core import WHEN, Cancelled, Condition, History, Result, config_frozen_layers, evaluate_condition
from .render import CSS_PREFIX as _PREFIX
from .render import results_html, results_png


@dataclass
class _Request:
    """A run asked for: the condition on a checkpoint."""

    setup: ProbeSetup
    checkpoint: str
    condition: Condition
    layers: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return self.condition.describe(self.layers, self.setup.steps)


class Explorer:
    """The explorer's widgets (``.widget``), wired to :func:`.core.evaluate_condition`.

    See the module doc for the controls and the queue policy. Every finished result is kept in
    :attr:`runs` (a :class:`~maml_probe.explorer.core.History`); :attr:`history` holds the status
    lines as plain text, oldest first.

    Args:
        root: Where to look for checkpoints (default :data:`maml_probe.runs.RUNS_ROOT`).
        checkpoint: The one to open first (a path, or a label of the menu).
        setup: A ready :class:`~maml_probe.probes.ProbeSetup` to probe instead of a checkpoint
            file (tests, custom task sources).
        blocking: Run in the calling thread instead of a background one.
        auto_run: Re-run after every change of a control (and once when a checkpoint opens).
        device: The torch device checkpoints are loaded on.
        num_tasks: The initial number of test tasks.
        seed: The initial task seed.
        batch_size: Tasks evaluated at once (a progress step).
        train_fn: What the *Train* button calls with ``root`` (default: the smoke-scale model).
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
        self.runs = History()               # finished results
        self.history: list[str] = []       # status lines, oldest first (for tests and debugging)
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
        self.table = w.HTML(value=results_html(self.runs.compare()))
        self.table.add_class(f"{_PREFIX}-table-box")
        self.plot = w.Image(format="png", value=results_png(self.runs.compare()),
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
        """Look for checkpoints under ``root`` again; open ``select`` (or keep the current one).

        Args:
            select: The checkpoint to open: a path, its folder or a menu label (``None``: keep
                the open one, or open the first found).

        Returns:
            The checkpoints found under ``root``.

        Raises:
            FileNotFoundError: When ``select`` names no checkpoint.
        """
        found = find_checkpoints(self.root)
        options = [(checkpoint_label(p, self.root), str(p)) for p in found]
        if select is not None:
            target = match_checkpoint(select, options, self.root)
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
        layers = layer_names(setup.learner.model)
        frozen = config_frozen_layers(setup)
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
        self.info.value = _setup_info(setup)
        self._set_status(f"opened {escape(label)}", "info")
        if self.auto_run.value:
            self.run()

    # ------------------------------------------------------------------ settings and runs
    def settings(self) -> Condition:
        """The condition the controls describe now.

        Returns:
            The :class:`~maml_probe.explorer.core.Condition` of the current control values.
        """
        frozen = tuple(x for x, t in self.layer_toggles.items() if t.value == "freeze")
        return Condition(frozen_layers=frozen, scale_layer=self.scale_layer.value,
                         scale_factor=float(self.scale_factor.value),
                         scale_when=self.scale_when.value,
                         noise_scale=float(self.noise_scale.value),
                         noise_when=self.noise_when.value, steps=int(self.steps.value),
                         num_tasks=int(self.num_tasks.value), seed=int(self.seed.value),
                         batch_size=self.batch_size)

    def _on_change(self, change) -> None:
        if not self._quiet and self.auto_run.value and self.setup is not None:
            self.run()

    def run(self) -> None:
        """Evaluate the current condition (queued behind a running evaluation; module doc)."""
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
        """Block until no run is going or queued.

        Args:
            timeout: The longest wait in seconds.

        Returns:
            Whether the explorer is idle (``False``: ``timeout`` passed first).
        """
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
        self.progress.max = req.condition.num_tasks
        self.progress.value = 0
        self._set_status(f"running: {what}…", "running")
        start = time.perf_counter()
        try:
            df = evaluate_condition(req.setup, req.condition, progress=self._on_progress,
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
        result = self.runs.add(req.checkpoint, req.condition, df, seconds)
        self._render()
        self.progress.bar_style = "success"
        self._set_status(f"done (#{result.number}): {what} in {seconds:.1f} s", "done")

    @property
    def current(self) -> Result | None:
        """The latest finished result."""
        return self.runs.current

    @property
    def previous(self) -> Result | None:
        """The finished result before the latest one."""
        return self.runs.previous

    def results(self) -> pd.DataFrame:
        """Tidy current and previous results.

        Returns:
            :func:`~maml_probe.explorer.core.results_frame` of :attr:`current` and :attr:`previous`.
        """
        return self.runs.compare()

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
        """The status line as plain text.

        Returns:
            The latest status line without markup (empty before the first one).
        """
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
        """Set several controls at once, with a single auto-run after all of them.

        Args:
            **values: New values of ``frozen_layers`` (the layers to freeze; the others adapt),
                ``scale_layer``, ``scale_factor``, ``scale_when``, ``noise_scale``,
                ``noise_when``, ``steps``, ``num_tasks`` or ``seed``.

        Raises:
            TypeError: On an unknown control.
            ValueError: On an unknown layer in ``frozen_layers``.
        """
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


def _setup_info(setup: ProbeSetup) -> str:
    """One line on the open checkpoint: model, layers, rule, dataset, training and test steps."""
    cfg, model = setup.config, setup.learner.model
    n_params = sum(p.numel() for p in model.parameters())
    rule = type(setup.learner.rule).__name__
    return (f"<span style='font-size:12px'>{escape(cfg.model)} ({', '.join(layer_names(model))}; "
            f"{n_params:,} parameters) · rule {escape(cfg.rule)} ({escape(rule)}, α={cfg.alpha:g})"
            f" · {escape(cfg.dataset)}"
            + (f" {cfg.ways}-way {cfg.shots}-shot" if cfg.dataset != "synthetic" else "")
            + f" · trained {cfg.iterations} iterations · tested with {setup.steps} step(s)</span>")


def build_explorer(root: str | Path | None = None, checkpoint: str | Path | None = None,
                   **kwargs: Any) -> Any:
    """The explorer widget for checkpoints under ``root`` (default ``runs/``), opening ``checkpoint``.

    Args:
        root: Where to look for checkpoints.
        checkpoint: The one to open first (a path, or its label in the menu).
        **kwargs: Further arguments of :class:`Explorer`.

    Returns:
        The ``ipywidgets`` container to display; its ``.explorer`` attribute is the
        :class:`Explorer`.
    """
    return Explorer(root, checkpoint, **kwargs).widget
