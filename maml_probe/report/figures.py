"""The paper's figures, and E12's, redrawn from the runs (:func:`figures_from_runs`)."""
from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

from .beyond import BEYOND
from .records import Roots, _read_table, _roots, read_record


def figures_from_runs(root: Roots | None = None) -> dict:
    """The paper's figures, and E12's, redrawn from the latest run of each experiment and dataset
    under ``root`` (default :data:`DEFAULT_ROOTS`).

    Keys name the figure and the run (``"Fig 2 left/middle (E3 cpu-...)"``); experiments not run
    yet are simply absent, and an unreadable table is skipped with a warning.
    """
    from .. import plots
    from ..probes import plots as probe_plots
    from ..probes import similarity_plots

    def dataset_of(run_dir: Path) -> str:
        try:
            params = read_record(run_dir).get("parameters")
        except ValueError:
            return ""
        return str(params.get("dataset", "")) if isinstance(params, dict) else ""

    def latest(experiment: str, csv: str) -> list[tuple[str, pd.DataFrame]]:
        """The newest readable ``csv`` of ``experiment`` per dataset (its run's ``dataset``)."""
        paths = sorted((p for r in _roots(root) for p in r.glob(f"{experiment}/*/{csv}")),
                       key=lambda p: p.stat().st_mtime)
        found: dict[str, tuple[str, pd.DataFrame]] = {}
        for path in reversed(paths):
            dataset = dataset_of(path.parent)
            if dataset in found:
                continue
            try:
                found[dataset] = (path.parent.name, _read_table(path))
            except ValueError as exc:
                warnings.warn(f"{exc}; skipped", stacklevel=3)
        return list(found.values())

    drawers = [
        ("Fig 1 left", "E1", "history.csv", lambda df: plots.learning_curves(df, "Synthetic")),
        ("Fig 1 right", "E2", "history.csv", lambda df: plots.learning_curves(df, "Omniglot")),
        ("Fig 2 left/middle", "E3", "layers.csv", probe_plots.plot_layer_probe),
        ("Fig 2 right", "E3", "noise.csv", probe_plots.plot_noise_probe),
        ("Fig A.2", "E3", "scaling.csv", probe_plots.plot_scaling_probe),
        ("Fig 3", "E6", "summary.csv", probe_plots.plot_depth_sweep),
        ("Fig A.1", "E9", "history.csv", probe_plots.plot_width_sweep),
        ("Fig A.3", "E8", "pruning.csv", probe_plots.plot_pruning_probe),
        ("CKA per layer", BEYOND, "similarity.csv",
         lambda df: similarity_plots.plot_similarity(df, "cka", "representation change (CKA)")),
        ("ANIL/BOIL presets", BEYOND, "presets.csv",
         lambda df: similarity_plots.plot_preset_probe(df, "adaptation presets at test time")),
        ("Learned update vs Newton, SCNN", BEYOND, "cnn_cosines.csv",
         lambda df: similarity_plots.plot_preconditioner_cosines(df, "SCNN")),
        ("Learned update vs Newton, LR", BEYOND, "linear_cosines.csv",
         lambda df: similarity_plots.plot_preconditioner_cosines(df, "LR, synthetic tasks")),
    ]
    figures = {}
    for name, experiment, csv, draw in drawers:
        for run, table in latest(experiment, csv):
            if len(table):
                figures[f"{name} ({experiment} {run})"] = draw(table)
    return figures
