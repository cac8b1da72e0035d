"""Interactive explorer of a meta-trained checkpoint: freeze layers, scale weights, add noise.

The explorer is the layer probes of :mod:`maml_probe.probes` (paper Section 3.2, Fig 2 and
Appendix A.2) with their knobs in widgets, to see which layers of a meta-trained model do the
adapting and which do the modelling. It is split by concern:

==================  ===========================================================================
``core``            a :class:`Condition` (frozen layers, scaling, noise, steps, tasks), its
                    :class:`Plan` of pre/post-adaptation transforms built from the probes' own
                    functions, :func:`evaluate_condition` on a loaded checkpoint, the
                    :class:`History` of every result as a tidy frame and its export
                    (:func:`export_history`, CSV or PNG under ``runs/``), :func:`sweep` of one
                    knob (Fig A.2's factors 2^0..2^5), :func:`layer_similarity` (CKA per
                    layer), :func:`chance_level`; no widgets
``render``          tables and plots (pure functions of frames), a chance line on each
                    accuracy plot
``checkpoints``     finding checkpoints under ``runs/``, their labels, opening one with its data
                    elsewhere (:func:`load_setup` with ``data_root=``), the smoke-scale model
``notebook``        the working copy ``runs/explore.ipynb`` (``maml-probe explore``), so the
                    committed notebook collects no outputs
``widgets``         the ipywidgets UI (:class:`Explorer`, :func:`build_explorer`) and its
                    background runs
==================  ===========================================================================

In a notebook (open a copy: ``maml-probe explore`` puts one at ``runs/explore.ipynb``)::

    from maml_probe.explorer import build_explorer
    build_explorer()            # checkpoints under runs/; data_root="..." for data elsewhere

Without widgets::

    from maml_probe.explorer import Condition, History, evaluate_condition, load_setup, sweep
    setup = load_setup("runs/E3/.../checkpoint.pt", data_root="../shared/data")
    evaluate_condition(setup, Condition(frozen_layers=("C1", "C2"), noise_scale=0.5))
    history = History()
    sweep(setup, Condition(scale_layer="C4", scale_when="pre"), "scale_factor", history=history)
    history.frame()             # every condition tried, tidy
"""
from .checkpoints import (
                          SMOKE_EXPERIMENT,
                          SMOKE_METHOD,
                          SMOKE_RUN,
                          checkpoint_label,
                          find_checkpoints,
                          load_setup,
                          match_checkpoint,
                          needs_data,
                          stored_data_root,
                          train_smoke_model,
                          with_data_root,
)
from .core import (
                          EXPORT_FORMATS,
                          HISTORY_COLUMNS,
                          RESULT_COLUMNS,
                          SIMILARITY_COLUMNS,
                          SWEEP_COLUMNS,
                          SWEEP_LABELS,
                          SWEEP_VALUES,
                          WHEN,
                          WHEN_HELP,
                          WHEN_LABELS,
                          Cancelled,
                          Condition,
                          History,
                          Plan,
                          Result,
                          Settings,
                          Transform,
                          apply_transforms,
                          chance_level,
                          check_export_folder,
                          config_frozen_layers,
                          default_export_folder,
                          evaluate_condition,
                          explore_once,
                          export_history,
                          layer_similarity,
                          noise_transform,
                          parse_values,
                          plan_condition,
                          results_frame,
                          scaling_transform,
                          sweep,
                          sweep_conditions,
)
from .notebook import copy_notebook, lab_command
from .render import (
                          history_figure,
                          history_html,
                          history_png,
                          results_figure,
                          results_html,
                          results_png,
                          similarity_figure,
                          similarity_html,
                          similarity_png,
                          sweep_figure,
                          sweep_png,
)
from .widgets import TAB_TITLES, Explorer, build_explorer

__all__ = ["HISTORY_COLUMNS", "RESULT_COLUMNS", "SMOKE_EXPERIMENT", "SMOKE_METHOD", "SMOKE_RUN",
           "WHEN", "Cancelled", "Condition", "Explorer", "History", "Plan", "Result", "Settings",
           "Transform", "apply_transforms", "build_explorer", "checkpoint_label",
           "config_frozen_layers", "evaluate_condition", "explore_once", "find_checkpoints",
           "match_checkpoint", "noise_transform", "plan_condition", "results_figure",
           "results_frame", "results_html", "results_png", "scaling_transform",
           "train_smoke_model"]
__all__ += ["EXPORT_FORMATS", "SIMILARITY_COLUMNS", "SWEEP_COLUMNS", "SWEEP_LABELS",
            "SWEEP_VALUES", "TAB_TITLES", "WHEN_HELP", "WHEN_LABELS", "chance_level",
            "check_export_folder", "copy_notebook", "default_export_folder", "export_history",
            "history_figure", "history_html", "history_png", "lab_command", "layer_similarity",
            "load_setup", "needs_data", "parse_values", "similarity_figure", "similarity_html",
            "similarity_png", "stored_data_root", "sweep", "sweep_conditions", "sweep_figure",
            "sweep_png", "with_data_root"]
