"""The explorer's ipywidgets UI for JupyterLab: controls, tables and plots, background runs.

:class:`Explorer` (or :func:`build_explorer`) is a thin layer over
:mod:`~maml_probe.explorer.core` (conditions, sweeps, CKA, the history and its export) and
:mod:`~maml_probe.explorer.render` (tables and plots):

- a checkpoint menu over ``runs/**/checkpoint.pt`` and a *data root* field (where the
  checkpoint's dataset is on this machine, when not where it was trained), or, when there is no
  checkpoint, a button that trains the smoke-scale E1 LinNet (no data needed) with a moving
  progress bar;
- **Conditions** tab: per-layer *adapt / freeze* toggles, the scaling layer, factor and moment,
  the FC noise scale and moment (*before adaptation*: applied to the meta-learned
  initialisation; *after adaptation*: to the adapted weights; the paper's Fig A.2
  pre-/post-adaptation), the number of steps, test tasks and seed; *Run* and *update on change*;
  a table and a bar plot of the current result next to the previous one; a one-click **sweep**
  of the scaling factor (2^0..2^5, Fig A.2), the noise scale or the steps, plotted as accuracy
  against the value;
- **History** tab: every condition tried (runs and sweep points) as a table and a plot, with
  *Export CSV* / *Export PNG* into a folder under ``runs/`` (the written path is shown);
- **Similarity (CKA)** tab: the CKA probe on N test tasks, per layer, before vs after
  adaptation (full, ANIL or BOIL adaptation), as a table and a bar plot.

Every accuracy plot has a dashed line at chance (``1 / ways``). A progress bar, *Cancel* and a
status line sit above the tabs.

Runs go to a background thread, so the notebook stays responsive. **Queue policy**: a request
made while a job is going (a click on *Run*, *Sweep* or *Run CKA*, or a changed control) is
queued (only the latest one is kept, replacing an older queued one) and starts when the current
job ends; the status line says ``queued: <what>``. *Cancel* stops the current job between two
batches of tasks (and drops the queued one); the status line says ``cancelled: <what>``, and
the tables keep the last finished results (the finished points of a sweep stay in the history).
``blocking=True`` runs every request in the calling thread instead (for scripts and tests).
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
from ..data.locations import data_dir
from ..probes import ProbeSetup, layer_names
from ..probes.common import check_layers
from ..probes.presets import PRESET_LABELS, PRESETS
from .checkpoints import (
    SMOKE_EXPERIMENT,
    SMOKE_METHOD,
    checkpoint_label,
    find_checkpoints,
    load_setup,
    match_checkpoint,
    needs_data,
    stored_data_root,
    train_smoke_model,
)
from .core import (
    SWEEP_LABELS,
    SWEEP_VALUES,
    WHEN,
    WHEN_HELP,
    WHEN_LABELS,
    Cancelled,
    Condition,
    History,
    Result,
    chance_level,
    config_frozen_layers,
    default_export_folder,
    evaluate_condition,
    export_history,
    layer_similarity,
    parse_values,
    sweep,
    sweep_conditions,
)
from .render import CSS_PREFIX as _PREFIX
from .render import (
    history_html,
    history_png,
    results_html,
    results_png,
    similarity_html,
    similarity_png,
    sweep_png,
)

#: The tabs of the explorer, in order.
TAB_TITLES = ("Conditions", "History", "Similarity (CKA)")


def format_values(values: tuple[float, ...] | list[float]) -> str:
    """Sweep values as the text of the values field, e.g. ``1, 2, 4, 8, 16, 32``.

    Args:
        values: The values.

    Returns:
        The values joined by ``, `` (4 significant digits).
    """
    return ", ".join(f"{v:.4g}" for v in values)


@dataclass
class _Request:
    """A job asked for on a checkpoint: a condition, a sweep of it, or the CKA probe."""

    setup: ProbeSetup
    checkpoint: str
    condition: Condition
    layers: list[str] = field(default_factory=list)
    kind: str = "run"                       # run | sweep | similarity
    knob: str = ""
    values: tuple[float, ...] = ()
    preset: str = "full"
    tasks: int = 0

    def describe(self) -> str:
        what = self.condition.describe(self.layers, self.setup.steps)
        if self.kind == "sweep":
            return (f"sweep of the {SWEEP_LABELS[self.knob]} over {format_values(self.values)} "
                    f"({what})")
        if self.kind == "similarity":
            return (f"CKA per layer, {PRESET_LABELS[self.preset]}, {self.tasks} tasks, "
                    f"{self.condition.steps} step(s)")
        return what

    @property
    def total(self) -> int:
        """Tasks the job scores in all (the progress bar's length)."""
        if self.kind == "sweep":
            return self.condition.num_tasks * len(self.values)
        if self.kind == "similarity":
            return self.tasks
        return self.condition.num_tasks


class Explorer:
    """The explorer's widgets (``.widget``), wired to :func:`.core.evaluate_condition`.

    See the module doc for the controls and the queue policy. Every finished result is kept in
    :attr:`runs` (a :class:`~maml_probe.explorer.core.History`; single runs and the points of
    sweeps); :attr:`history` holds the status lines as plain text, oldest first.

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
        train_fn: What the *Train* button calls with ``root`` (default: the smoke-scale model,
            with the progress bar following its iterations).
        data_root: Where the checkpoints' dataset is on this machine (``None``: where each
            checkpoint says it was).
        export_folder: Where *Export CSV* / *Export PNG* write (default ``<root>/explorer``).
        similarity_tasks: The initial number of test tasks of the CKA probe.
    """

    def __init__(self, root: str | Path | None = None, checkpoint: str | Path | None = None, *,
                 setup: ProbeSetup | None = None, blocking: bool = False, auto_run: bool = True,
                 device: str = "cpu", num_tasks: int = 100, seed: int = 0, batch_size: int = 25,
                 train_fn: Callable[[Path], Any] | None = None,
                 data_root: str | Path | None = None, export_folder: str | Path | None = None,
                 similarity_tasks: int = 20) -> None:
        import ipywidgets as w

        self._w = w
        self.root = Path(root) if root is not None else Path(runs.RUNS_ROOT)
        self.blocking = blocking
        self.device = device
        self.batch_size = batch_size
        self.train_fn = train_fn or (lambda r: train_smoke_model(
            r, device=device, on_iteration=self._on_train_progress))
        self.setup: ProbeSetup | None = None
        self.checkpoint_name = ""
        self.runs = History()               # finished results
        self.history: list[str] = []       # status lines, oldest first (for tests and debugging)
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._busy = False
        self._pending: _Request | None = None
        self._thread: threading.Thread | None = None
        self._shown_runs = 0
        self._quiet = False                 # suppress auto-runs while the code sets controls

        # ---- controls shared by both views
        self.progress = w.IntProgress(value=0, min=0, max=num_tasks, description="tasks",
                                      layout=w.Layout(width="260px"))
        self.progress.add_class(f"{_PREFIX}-progress")
        self.status = w.HTML(value="", layout=w.Layout(min_width="300px"))
        self.status.add_class(f"{_PREFIX}-status")

        # ---- main view
        self.checkpoint = w.Dropdown(description="checkpoint", options=[],
                                     layout=w.Layout(width="520px"),
                                     style={"description_width": "80px"})
        self.refresh_button = w.Button(description="Refresh", icon="refresh",
                                       tooltip="look for new checkpoints",
                                       layout=w.Layout(width="100px"))
        self.data_root = w.Text(value="" if data_root is None else str(data_root),
                                description="data root", continuous_update=False,
                                placeholder="where the checkpoint says (type a folder, Enter)",
                                tooltip="the folder holding the checkpoint's dataset on this "
                                        "machine, when it is not where the checkpoint was trained",
                                layout=w.Layout(width="520px"),
                                style={"description_width": "80px"})
        self.data_root.add_class(f"{_PREFIX}-data-root")
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
        self.scale_when = self._when_toggle("scale")
        self.noise_scale = w.FloatSlider(value=0.0, min=0.0, max=2.0, step=0.0625,
                                         description="FC noise", continuous_update=False,
                                         readout_format=".4", layout=w.Layout(width="360px"))
        self.noise_scale.add_class(f"{_PREFIX}-noise")
        self.noise_when = self._when_toggle("noise")
        self.when_help = w.HTML(
            "<div style='font-size:11px;color:#666;max-width:360px;line-height:1.3'>"
            f"<b>{WHEN_LABELS['pre']}</b>: applied to the meta-learned initialisation, which is "
            f"then adapted; <b>{WHEN_LABELS['post']}</b>: applied to the adapted weights, just "
            "before the query pass (the paper's Fig A.2 pre-/post-adaptation)</div>")
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
                                      tooltip="stop the current job and drop the queued one")
        self.cancel_button.add_class(f"{_PREFIX}-cancel")
        self.auto_run = w.Checkbox(value=auto_run, description="update on change", indent=False,
                                   layout=w.Layout(width="150px"))
        self.auto_run.add_class(f"{_PREFIX}-auto")
        self.table = w.HTML(value=results_html(self.runs.compare()))
        self.table.add_class(f"{_PREFIX}-table-box")
        self.plot = w.Image(format="png", layout=w.Layout(width="600px", display="none"))

        # ---- sweep
        self.sweep_knob = w.Dropdown(description="sweep",
                                     options=[(SWEEP_LABELS[k], k) for k in SWEEP_VALUES],
                                     value="scale_factor", layout=w.Layout(width="230px"),
                                     style={"description_width": "45px"})
        self.sweep_values = w.Text(value=format_values(SWEEP_VALUES["scale_factor"]),
                                   description="values", layout=w.Layout(width="300px"),
                                   style={"description_width": "50px"})
        self.sweep_values.add_class(f"{_PREFIX}-sweep-values")
        self.sweep_button = w.Button(description="Sweep", icon="line-chart",
                                     button_style="info",
                                     tooltip="run the condition once for each value; the points "
                                             "go to the history")
        self.sweep_button.add_class(f"{_PREFIX}-sweep")
        self.sweep_plot = w.Image(format="png", layout=w.Layout(width="600px", display="none"))
        self.sweep_result: pd.DataFrame | None = None

        # ---- history
        self.history_table = w.HTML(value=history_html(self.runs.frame()))
        self.history_table.add_class(f"{_PREFIX}-history-box")
        self.history_plot = w.Image(format="png", layout=w.Layout(width="700px", display="none"))
        self.export_folder = w.Text(
            value=str(export_folder if export_folder is not None
                      else default_export_folder(self.root)),
            description="folder", layout=w.Layout(width="520px"),
            style={"description_width": "50px"})
        self.export_folder.add_class(f"{_PREFIX}-export-folder")
        self.export_csv_button = w.Button(description="Export CSV", icon="table",
                                          tooltip="the history as a tidy CSV in the folder")
        self.export_csv_button.add_class(f"{_PREFIX}-export-csv")
        self.export_png_button = w.Button(description="Export PNG", icon="image",
                                          tooltip="the history's plot as a PNG in the folder")
        self.export_png_button.add_class(f"{_PREFIX}-export-png")
        self.export_status = w.HTML()
        self.export_status.add_class(f"{_PREFIX}-export-status")

        # ---- similarity
        self.sim_tasks = w.BoundedIntText(value=similarity_tasks, min=1, max=5000, step=10,
                                          description="test tasks",
                                          layout=w.Layout(width="190px"),
                                          style={"description_width": "70px"})
        self.sim_preset = w.Dropdown(description="adapting",
                                     options=[(PRESET_LABELS[p], p) for p in PRESETS],
                                     value="full", layout=w.Layout(width="260px"),
                                     style={"description_width": "60px"})
        self.sim_button = w.Button(description="Run CKA", icon="play", button_style="primary",
                                   tooltip="linear CKA of each layer's representation, before "
                                           "vs after adaptation")
        self.sim_button.add_class(f"{_PREFIX}-similarity-run")
        self.sim_table = w.HTML(value=similarity_html(pd.DataFrame()))
        self.sim_table.add_class(f"{_PREFIX}-similarity-box")
        self.sim_plot = w.Image(format="png", layout=w.Layout(width="500px", display="none"))
        self.similarity_result: pd.DataFrame | None = None

        def section(title):
            return w.HTML(f"<b>{title}</b>")

        conditions = w.VBox([
            w.HBox([
                w.VBox([section("Layers (adapt / freeze)"), self.layers_box],
                       layout=w.Layout(margin="0 24px 0 0")),
                w.VBox([section("Weight scaling"), self.scale_layer, self.scale_factor,
                        self.scale_when,
                        section("Noise on FC (× std of its weights)"), self.noise_scale,
                        self.noise_when, self.when_help,
                        section("Evaluation"), self.steps, w.HBox([self.num_tasks, self.seed])]),
            ]),
            w.HBox([self.run_button, self.auto_run], layout=w.Layout(align_items="center")),
            w.HBox([self.table, self.plot], layout=w.Layout(align_items="flex-start",
                                                            flex_flow="row wrap")),
            section("Sweep: the condition above once for each value (Fig A.2: factors 2^0..2^5)"),
            w.HBox([self.sweep_knob, self.sweep_values, self.sweep_button],
                   layout=w.Layout(align_items="center")),
            self.sweep_plot,
        ])
        history = w.VBox([
            self.history_table,
            w.HBox([self.export_folder, self.export_csv_button, self.export_png_button],
                   layout=w.Layout(align_items="center")),
            self.export_status,
            self.history_plot,
        ])
        similarity = w.VBox([
            w.HTML("<div style='font-size:12px;max-width:760px'>How much adaptation changes "
                   "each layer's representation of the query set: linear CKA between the "
                   "layer's output with the meta-learned initialisation and with the adapted "
                   "weights (1 = unchanged up to rotation and scale). ANIL adapts the head "
                   "only, BOIL the body only.</div>"),
            w.HBox([self.sim_tasks, self.sim_preset, self.sim_button],
                   layout=w.Layout(align_items="center")),
            w.HBox([self.sim_table, self.sim_plot], layout=w.Layout(align_items="flex-start",
                                                                    flex_flow="row wrap")),
        ])
        self.tabs = w.Tab(children=[conditions, history, similarity], titles=TAB_TITLES)
        self.tabs.add_class(f"{_PREFIX}-tabs")

        self.main_view = w.VBox([
            w.HBox([self.checkpoint, self.refresh_button]),
            self.data_root,
            self.info,
            w.HBox([self.progress, self.cancel_button], layout=w.Layout(align_items="center")),
            self.status,
            self.tabs,
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
        self.sweep_button.on_click(lambda _: self.sweep())
        self.sim_button.on_click(lambda _: self.similarity())
        self.export_csv_button.on_click(lambda _: self.export("csv"))
        self.export_png_button.on_click(lambda _: self.export("png"))
        self.sweep_knob.observe(self._on_sweep_knob, "value")
        self.tabs.observe(lambda _: self._render_history(), "selected_index")
        self.data_root.observe(self._on_data_root, "value")
        self.checkpoint.observe(self._on_checkpoint, "value")
        for ctl in (self.scale_layer, self.scale_factor, self.scale_when, self.noise_scale,
                    self.noise_when, self.steps, self.num_tasks, self.seed):
            ctl.observe(self._on_change, "value")

        if setup is not None:
            self._show_main()
            self._open_setup(setup, "(given setup)")
        else:
            self.refresh(select=checkpoint)

    def _when_toggle(self, what: str) -> Any:
        w = self._w
        toggle = w.ToggleButtons(options=[(WHEN_LABELS[x], x) for x in WHEN], value="pre",
                                 tooltips=[f"{what} {WHEN_HELP[x]}" for x in WHEN],
                                 style={"button_width": "150px"})
        toggle.add_class(f"{_PREFIX}-{what}-when")
        return toggle

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
            setup = load_setup(path, data_root=self.data_root.value.strip() or None,
                               device=self.device)
        except Exception as exc:  # a broken or foreign checkpoint: say so, keep the UI
            text = escape(str(exc)).replace("\n", "<br>")
            self._set_status(f"could not open {escape(label)}: {text}", "danger")
            return
        self._open_setup(setup, label)

    def _on_data_root(self, change) -> None:
        if self._quiet:
            return
        if self.checkpoint.value is None:
            self._set_status("data root set; it applies to the next checkpoint opened", "info")
            return
        self._on_checkpoint({"new": self.checkpoint.value})

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
        self.sweep_result = self.similarity_result = None
        self.sweep_plot.layout.display = self.sim_plot.layout.display = "none"
        self.sim_table.value = similarity_html(pd.DataFrame())
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

    @property
    def chance(self) -> float | None:
        """The open checkpoint's chance accuracy (``1 / ways``), drawn on every accuracy plot."""
        return chance_level(self.setup.learner.model) if self.setup is not None else None

    def _request(self, **kw: Any) -> _Request:
        return _Request(self.setup, self.checkpoint_name, self.settings(),
                        layer_names(self.setup.learner.model), **kw)

    def run(self) -> None:
        """Evaluate the current condition (queued behind a running job; module doc)."""
        if self.setup is None:
            self._set_status("no checkpoint open", "warning")
            return
        self._submit(self._request())

    def sweep(self, knob: str | None = None, values: Any = None) -> None:
        """Run the current condition once for each value of a knob (one click; module doc).

        Each value's result joins the history; the sweep's plot shows accuracy against the
        value, pre- and post-adaptation, with the chance line.

        Args:
            knob: ``scale_factor``, ``noise_scale`` or ``steps`` (default: the sweep menu's).
            values: The values, a sequence or text like ``1, 2, 4`` (default: the values field).
        """
        if self.setup is None:
            self._set_status("no checkpoint open", "warning")
            return
        knob = knob or self.sweep_knob.value
        try:
            if values is None:
                values = self.sweep_values.value
            vals = parse_values(values) if isinstance(values, str) else tuple(values)
            sweep_conditions(self.settings(), knob, vals)
            req = self._request(kind="sweep", knob=knob, values=vals)
        except ValueError as exc:
            self._set_status(f"cannot sweep: {escape(str(exc))}", "warning")
            return
        self._submit(req)

    def similarity(self) -> None:
        """Run the CKA-per-layer probe on the open checkpoint (module doc)."""
        if self.setup is None:
            self._set_status("no checkpoint open", "warning")
            return
        self._submit(self._request(kind="similarity", preset=self.sim_preset.value,
                                   tasks=int(self.sim_tasks.value)))

    def export(self, fmt: str = "csv") -> Path | None:
        """Write the history as CSV or PNG into the export folder and show the file's path.

        Args:
            fmt: ``csv`` or ``png``.

        Returns:
            The written file, or ``None`` when nothing was written (the reason is shown).
        """
        try:
            path = export_history(self.runs, self.export_folder.value, fmt, chance=self.chance)
        except (ValueError, OSError) as exc:
            self.export_status.value = (f"<span style='color:#d62728'>not exported: "
                                        f"{escape(str(exc))}</span>")
            return None
        self.export_status.value = (f"<span style='color:#2ca02c'>wrote</span> "
                                    f"<code>{escape(str(path))}</code>")
        return path

    def _on_sweep_knob(self, change) -> None:
        self.sweep_values.value = format_values(SWEEP_VALUES[change["new"]])

    def _submit(self, req: _Request) -> None:
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
        if len(self.runs) != self._shown_runs:   # a sweep point finished: show it at once
            self._render_history(plot=False)

    def _on_train_progress(self, done: int, total: int) -> None:
        self.progress.description = "training"
        self.progress.max = total
        self.progress.value = done

    def _execute(self, req: _Request) -> None:
        self._cancel.clear()
        what = escape(req.describe())
        self.progress.description = {"sweep": "sweep", "similarity": "CKA"}.get(req.kind, "tasks")
        self.progress.bar_style = "info"
        self.progress.max = req.total
        self.progress.value = 0
        self._set_status(f"running: {what}…", "running")
        start, before = time.perf_counter(), len(self.runs)
        try:
            if req.kind == "sweep":
                df = sweep(req.setup, req.condition, req.knob, req.values, history=self.runs,
                           checkpoint=req.checkpoint, progress=self._on_progress,
                           should_stop=self._cancel.is_set)
            elif req.kind == "similarity":
                df = layer_similarity(req.setup, num_tasks=req.tasks, seed=req.condition.seed,
                                      batch_size=req.condition.batch_size, preset=req.preset,
                                      steps=req.condition.steps, progress=self._on_progress,
                                      should_stop=self._cancel.is_set)
            else:
                df = evaluate_condition(req.setup, req.condition, progress=self._on_progress,
                                        should_stop=self._cancel.is_set)
        except Cancelled as exc:
            self.progress.bar_style = "warning"
            kept = len(self.runs) - before
            if kept:
                self._render()
            self._set_status(f"cancelled: {what} ({exc}); the table keeps the last results"
                             + (f" ({kept} finished sweep point(s) are in the history)"
                                if kept else ""), "cancelled")
            return
        except Exception as exc:
            self.progress.bar_style = "danger"
            if len(self.runs) != before:
                self._render()
            self._set_status(f"error: {escape(type(exc).__name__)}: {escape(str(exc))}", "error",
                             detail=traceback.format_exc())
            return
        seconds = time.perf_counter() - start
        self.progress.bar_style = "success"
        if req.kind == "similarity":
            self.similarity_result = df
            self.sim_table.value = similarity_html(df)
            self.sim_plot.value = similarity_png(df, f"{req.checkpoint} · "
                                                     f"{PRESET_LABELS[req.preset]}")
            self.sim_plot.layout.display = None
            self._set_status(f"done: {what} in {seconds:.1f} s", "done")
            return
        if req.kind == "sweep":
            self.sweep_result = df
            self.sweep_plot.value = sweep_png(df, self.chance, req.describe(),
                                              SWEEP_LABELS[req.knob])
            self.sweep_plot.layout.display = None
            self._render()
            self._set_status(f"done (#{before + 1}–#{len(self.runs)}): {what} in "
                             f"{seconds:.1f} s", "done")
            return
        result = self.runs.add(req.checkpoint, req.condition, df, seconds)
        self._render()
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
        if not df.empty:
            self.plot.value = results_png(df, title, self.chance)
            self.plot.layout.display = None
        self._render_history()

    def _render_history(self, plot: bool | None = None) -> None:
        """The history table, and its plot when asked (default: when its tab is showing)."""
        frame = self.runs.frame()
        self._shown_runs = len(self.runs)
        self.history_table.value = history_html(frame)
        if plot is None:
            plot = self.tabs.selected_index == TAB_TITLES.index("History")
        if plot and not frame.empty:
            self.history_plot.value = history_png(frame, self.chance)
            self.history_plot.layout.display = None

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
            self.progress.value = self.progress.max
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
    """One line on the open checkpoint: model, layers, rule, dataset (and where its data is
    read from), training and test steps, chance level."""
    cfg, model = setup.config, setup.learner.model
    n_params = sum(p.numel() for p in model.parameters())
    rule = type(setup.learner.rule).__name__
    data = ""
    try:
        if needs_data(cfg):
            data = f" (data in {escape(str(data_dir(stored_data_root(cfg))))})"
    except ValueError:  # a dataset this install does not know
        pass
    return (f"<span style='font-size:12px'>{escape(cfg.model)} ({', '.join(layer_names(model))}; "
            f"{n_params:,} parameters) · rule {escape(cfg.rule)} ({escape(rule)}, α={cfg.alpha:g})"
            f" · {escape(cfg.dataset)}"
            + (f" {cfg.ways}-way {cfg.shots}-shot" if cfg.dataset != "synthetic" else "")
            + data
            + f" · trained {cfg.iterations} iterations · tested with {setup.steps} step(s)"
            f" · chance {100 * chance_level(model):.3g}%</span>")


def build_explorer(root: str | Path | None = None, checkpoint: str | Path | None = None,
                   **kwargs: Any) -> Any:
    """The explorer widget for checkpoints under ``root`` (default ``runs/``), opening ``checkpoint``.

    Args:
        root: Where to look for checkpoints.
        checkpoint: The one to open first (a path, or its label in the menu).
        **kwargs: Further arguments of :class:`Explorer` (e.g. ``data_root=``).

    Returns:
        The ``ipywidgets`` container to display; its ``.explorer`` attribute is the
        :class:`Explorer`.
    """
    return Explorer(root, checkpoint, **kwargs).widget
