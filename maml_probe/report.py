"""The report: every run under ``runs/`` set beside the paper's numbers.

:func:`accuracy_report` outer-joins the paper's Tables 1, 2, A1 and A2 with the ``results.csv``
of every run: one row per (table, dataset, method) with our accuracy and 95% CI, the paper's
accuracy and std, and the difference. Where several runs report the same row, the one at the
largest scale (``paper`` > ``cpu`` > ``smoke``) wins, then the most recent. A row we have not
run shows ``NaN`` (rendered as "missing"), never a zero. :func:`compute_report` does the same
for Table A3 (parameters and seconds per meta-batch) from the E11 runs' ``methods.csv``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from .paper import accuracy_tables, compute_table
from .runs import RUNS_ROOT

SCALE_RANK = {"smoke": 0, "cpu": 1, "paper": 2}
KEY = ["table", "dataset", "method"]


def _runs(root: Path, csv_name: str) -> pd.DataFrame:
    frames = []
    for path in sorted(Path(root).glob(f"*/*/{csv_name}")):
        run_dir = path.parent
        record = {}
        if (run_dir / "record.json").exists():
            record = json.loads((run_dir / "record.json").read_text())
        df = pd.read_csv(path, dtype={"table": str})
        df["experiment"] = run_dir.parent.name
        df["run"] = run_dir.name
        df["scale"] = record.get("scale", "unknown")
        df["device"] = record.get("device")
        df["wall_time_s"] = record.get("wall_time_s")
        df["updated"] = record.get("updated", "")
        df["_rank"] = df["scale"].map(SCALE_RANK).fillna(-1)
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def collect_results(root: str | os.PathLike = RUNS_ROOT) -> pd.DataFrame:
    """All rows of all ``results.csv`` files under ``root``, with run, scale and record fields."""
    return _runs(Path(root), "results.csv")


def _best(df: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    if df.empty:
        return df
    df = df.sort_values(["_rank", "updated"]).groupby(key, as_index=False).tail(1)
    return df.drop(columns=["_rank"])


def accuracy_report(root: str | os.PathLike = RUNS_ROOT) -> pd.DataFrame:
    """Paper Tables 1, 2, A1, A2 with our numbers beside them (percent)."""
    paper = accuracy_tables()
    ours = _best(collect_results(root), KEY)
    if ours.empty:
        ours = pd.DataFrame(columns=KEY + ["accuracy", "ci95", "n", "scale", "run", "experiment"])
    table = paper.merge(ours[KEY + ["accuracy", "ci95", "n", "scale", "experiment", "run"]],
                        on=KEY, how="outer")
    table["difference"] = table["accuracy"] - table["paper_accuracy"]
    table["n"] = table["n"].astype("Int64")
    order = {"1": 0, "2": 1, "A1": 2, "A2": 3}
    table = table.sort_values(["table", "dataset"], key=lambda s: s.map(order) if s.name == "table" else s,
                              kind="stable")
    return table.reset_index(drop=True)


def compute_report(root: str | os.PathLike = RUNS_ROOT) -> pd.DataFrame:
    """Table A3 beside our parameter counts and seconds per meta-batch (from ``methods.csv``)."""
    paper = compute_table()
    ours = _runs(Path(root), "methods.csv")
    if not ours.empty:  # E11 times the paper's full episodes; other runs' timings are not comparable
        ours = ours[ours["experiment"] == "E11"]
    if ours.empty or "dataset" not in ours:
        ours = pd.DataFrame(columns=["dataset", "method", "model_params", "optimizer_params",
                                     "seconds_per_iteration", "meta_batch", "scale", "device"])
    ours = _best(ours, ["dataset", "method"])
    cols = ["dataset", "method", "model_params", "optimizer_params", "seconds_per_iteration",
            "meta_batch", "scale", "device"]
    return paper.merge(ours[cols], on=["dataset", "method"], how="left")


def to_markdown(df: pd.DataFrame, floatfmt: str = ".2f") -> str:
    """A plain markdown table (missing values shown as 'missing'); no extra dependency."""
    def cell(v) -> str:
        if isinstance(v, float):
            if pd.isna(v):
                return "missing"
            return str(int(v)) if v.is_integer() and abs(v) >= 100 else format(v, floatfmt)
        return "missing" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)

    header = "| " + " | ".join(df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def write_report(root: str | os.PathLike = RUNS_ROOT, out: str | os.PathLike | None = None) -> Path:
    """Write ``report.md`` (and the two tables as CSV) under ``root`` (or ``out``)."""
    from .experiments.common import write_csv_atomic

    out = Path(out or root)
    acc, comp = accuracy_report(root), compute_report(root)
    write_csv_atomic(acc, out / "report_accuracy.csv")
    write_csv_atomic(comp, out / "report_compute.csv")
    shown = ["table", "dataset", "method", "accuracy", "ci95", "paper_accuracy", "paper_std",
             "difference", "n", "scale", "run"]
    text = ("# maml_probe report\n\nAccuracy in percent (ours: mean and 95% CI half-width over test "
            "tasks; paper: mean ± std). 'missing' = not run yet.\n\n" + to_markdown(acc[shown]) +
            "\n\n## Table A3: compute\n\n" + to_markdown(comp, ".3g") + "\n")
    path = out / "report.md"
    tmp = out / ".report.md.tmp"
    out.mkdir(parents=True, exist_ok=True)
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def figures_from_runs(root: str | os.PathLike = RUNS_ROOT) -> dict:
    """The paper's figures redrawn from the latest run of each experiment under ``root``.

    Keys name the figure and the run (``"Fig 2 left/middle (E3 cpu-...)"``); experiments not run
    yet are simply absent.
    """
    from . import plots
    from .probes import plots as probe_plots

    def latest(experiment: str, csv: str) -> tuple[str, pd.DataFrame] | None:
        paths = sorted(Path(root).glob(f"{experiment}/*/{csv}"), key=lambda p: p.stat().st_mtime)
        return (paths[-1].parent.name, pd.read_csv(paths[-1])) if paths else None

    drawers = [
        ("Fig 1 left", "E1", "history.csv", lambda df: plots.learning_curves(df, "Synthetic")),
        ("Fig 1 right", "E2", "history.csv", lambda df: plots.learning_curves(df, "Omniglot")),
        ("Fig 2 left/middle", "E3", "layers.csv", probe_plots.plot_layer_probe),
        ("Fig 2 right", "E3", "noise.csv", probe_plots.plot_noise_probe),
        ("Fig A.2", "E3", "scaling.csv", probe_plots.plot_scaling_probe),
        ("Fig 3", "E6", "summary.csv", probe_plots.plot_depth_sweep),
        ("Fig A.1", "E9", "history.csv", probe_plots.plot_width_sweep),
        ("Fig A.3", "E8", "pruning.csv", probe_plots.plot_pruning_probe),
    ]
    figures = {}
    for name, experiment, csv, draw in drawers:
        found = latest(experiment, csv)
        if found is not None and len(found[1]):
            figures[f"{name} ({experiment} {found[0]})"] = draw(found[1])
    return figures
