"""Interactive explorer of a meta-trained checkpoint: freeze layers, scale weights, add noise.

The explorer is the layer probes of :mod:`maml_probe.probes` (paper Section 3.2, Fig 2 and
Appendix A.2) with their knobs in widgets, to see which layers of a meta-trained model do the
adapting and which do the modelling. It is split by concern:

==================  ===========================================================================
``core``            a :class:`Condition` (frozen layers, scaling, noise, steps, tasks), its
                    :class:`Plan` of pre/post-adaptation transforms built from the probes' own
                    functions, :func:`evaluate_condition` on a loaded checkpoint, and the
                    :class:`History` of results as a tidy frame; no widgets
``render``          the results as an HTML table and a bar plot (pure functions of frames)
``checkpoints``     finding checkpoints under ``runs/``, their labels, the smoke-scale model
``widgets``         the ipywidgets UI (:class:`Explorer`, :func:`build_explorer`) and its
                    background runs
==================  ===========================================================================

In a notebook::

    from maml_probe.explorer import build_explorer
    build_explorer()            # checkpoints under runs/

Without widgets::

    from maml_probe.explorer import Condition, evaluate_condition
    from maml_probe.probes import load_probe_setup
    setup = load_probe_setup("runs/E3/.../checkpoint.pt")
    evaluate_condition(setup, Condition(frozen_layers=("C1", "C2"), noise_scale=0.5))
"""
from .checkpoints import (
                          SMOKE_EXPERIMENT,
                          SMOKE_METHOD,
                          SMOKE_RUN,
                          checkpoint_label,
                          find_checkpoints,
                          match_checkpoint,
                          train_smoke_model,
)
from .core import (
                          HISTORY_COLUMNS,
                          RESULT_COLUMNS,
                          WHEN,
                          Cancelled,
                          Condition,
                          History,
                          Plan,
                          Result,
                          Settings,
                          Transform,
                          apply_transforms,
                          config_frozen_layers,
                          evaluate_condition,
                          explore_once,
                          noise_transform,
                          plan_condition,
                          results_frame,
                          scaling_transform,
)
from .render import results_figure, results_html, results_png
from .widgets import Explorer, build_explorer

__all__ = ["HISTORY_COLUMNS", "RESULT_COLUMNS", "SMOKE_EXPERIMENT", "SMOKE_METHOD", "SMOKE_RUN",
           "WHEN", "Cancelled", "Condition", "Explorer", "History", "Plan", "Result", "Settings",
           "Transform", "apply_transforms", "build_explorer", "checkpoint_label",
           "config_frozen_layers", "evaluate_condition", "explore_once", "find_checkpoints",
           "match_checkpoint", "noise_transform", "plan_condition", "results_figure",
           "results_frame", "results_html", "results_png", "scaling_transform",
           "train_smoke_model"]
