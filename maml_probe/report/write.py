"""``report.md`` and its tables as CSV: what ``maml-probe report`` writes (:func:`write_report`).

One section per paper table (the rows we have; one line per dataset and reason for the rows we do
not), Table A3, E12 (beyond the paper) and every run folder (:func:`runs_overview`).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import pandas as pd

from ..io import write_csv_atomic, write_text_atomic
from ..runs import RUNS_ROOT
from .beyond import BEYOND, _beyond_section, beyond_report
from .markdown import NA, _figure_links, _rows_view, to_markdown
from .records import DataRoots, Roots, _problem, _record_fields, _roots, _run_dirs, read_record
from .tables import PAPER_TABLES, TABLE_SOURCES, _integers, accuracy_report, compute_report


def _source_hint(table: str, dataset: str) -> str:
    exp = TABLE_SOURCES.get((table, dataset)) or TABLE_SOURCES.get((table, None))
    if exp is None:
        return ""
    param = "" if exp in ("E1", "E2") else f" -p dataset={dataset}"
    return f" (`maml-probe run {exp}{param}`)"


def _table_section(acc: pd.DataFrame, table: str) -> str:
    """One paper table: rows we have, and one line per dataset and reason for rows we do not."""
    part = acc[acc["table"] == table]
    lines, shown = [f"## Table {table}", ""], []
    for dataset, rows in part.groupby("dataset", sort=False):
        have = rows[rows["accuracy"].notna()]
        if len(have):
            shown.append(have)
        absent = rows[rows["accuracy"].isna() & rows["failed"].isna()]
        if len(absent):
            reason = absent["not_run"].iloc[0] if "not_run" in absent else "not run yet"
            if reason.startswith("not run here "):
                which = "" if len(absent) == len(rows) else f" for {', '.join(absent['method'])}"
                lines.append(f"- {dataset}: not run here{which} {reason[len('not run here '):]}")
            elif len(absent) == len(rows):
                lines.append(f"- {dataset}: not run yet ({len(rows)} rows){_source_hint(table, dataset)}")
            else:
                lines.append(f"- {dataset}: not run yet for {', '.join(absent['method'])}")
        for method, why in rows.dropna(subset=["failed"])[["method", "failed"]].itertuples(index=False):
            lines.append(f"- {dataset}: {method} failed: {why}")
    if shown:
        lines[2:2] = [to_markdown(_rows_view(pd.concat(shown)), na_rep=NA), ""]
    return "\n".join(lines)


def runs_overview(root: Roots | None = None, out: str | os.PathLike = ".",
                  problems: list[str] | None = None) -> pd.DataFrame:
    """Every run folder under ``root``: status, scale, episode, iterations, seed, commit, figures.

    Covers every experiment, also those without a paper table (E3-E5, E9, E12): their figures
    are linked (relative to ``out``, where the report is written).

    Args:
        root: one folder or several (default :data:`DEFAULT_ROOTS`).
        out: the folder the links are relative to.
        problems: collects a message per unreadable ``record.json`` (that run is skipped).

    Returns:
        One row per run.
    """
    rows = []
    for run_dir in _run_dirs(root):
        try:
            record = read_record(run_dir)
        except ValueError as exc:
            _problem(problems, f"{exc}; skipped")
            continue
        fields = _record_fields(record)
        commit = (record.get("git_commit") or "")[:8] + ("+dirty" if record.get("git_dirty") else "")
        rows.append({"experiment": run_dir.parent.name, "run": run_dir.name,
                     "status": fields["status"], "scale": fields["scale"],
                     "episode": fields["episode"] or "unrecorded",
                     "iterations": fields["iterations"], "seed": fields["seed"],
                     "wall_time_s": fields["wall_time_s"], "commit": commit or "unrecorded",
                     "figures": _figure_links(run_dir, Path(out))})
    df = pd.DataFrame(rows)
    for col in ("iterations", "seed"):
        if col in df:
            df[col] = _integers(df[col])
    return df


def _compute_section(comp: pd.DataFrame) -> str:
    """Table A3: the paper's columns, and ours beside them once E11 has run."""
    ours = ["model_params", "optimizer_params", "seconds_per_iteration", "meta_batch", "scale",
            "device"]
    lines = ["## Table A3: compute", ""]
    if comp["seconds_per_iteration"].isna().all():
        comp = comp.drop(columns=ours)
        lines += [f"- not run yet ({len(comp)} rows) (`maml-probe run E11`); the paper's numbers:", ""]
    return "\n".join(lines + [to_markdown(comp, ".3g", na_rep=NA)])


def _markdown(acc: pd.DataFrame, comp: pd.DataFrame, beyond: dict[str, pd.DataFrame],
              runs: pd.DataFrame, problems: list[str], root: Roots | None, out: Path) -> str:
    parts = ["# maml_probe report", "",
             "Accuracy in percent. Ours: mean ± std over test tasks, and the 95% CI half-width of "
             "the mean; where several seeds ran, the mean over seeds (seeds: how many, sd: their "
             "standard deviation). Paper: mean ± std as printed (the paper does not say over what "
             "its std is taken). Deviation: ours minus the paper's, in points. Each row names the "
             "scale, iterations, meta-batch and episode it was measured at and what differs from "
             "the paper's settings: compare with the paper where nothing that matters differs.", ""]
    if problems:
        parts += ["Skipped (unreadable files):", "", *[f"- {p}" for p in problems], ""]
    for table in PAPER_TABLES:
        parts += [_table_section(acc, table), ""]
    parts += [_compute_section(comp), "", _beyond_section(beyond, root, out), "", "## Runs", ""]
    parts.append(to_markdown(runs, ".1f", na_rep=NA) if len(runs) else "No runs yet.")
    return "\n".join(parts) + "\n"


def write_report(root: Roots | None = None, out: str | os.PathLike | None = None,
                 data_roots: DataRoots = None) -> Path:
    """Write ``report.md`` and its tables as CSV (exact values) into ``out``.

    Writes ``report_accuracy.csv`` (Tables 1, 2, A1, A2), ``report_compute.csv`` (Table A3)
    and ``report_E12_<table>.csv`` (beyond the paper) beside ``report.md``.

    Args:
        root: run folders to gather (default :data:`DEFAULT_ROOTS`: ``results/`` and ``runs/``).
        out: where to write (default: ``root`` when it is one folder, else ``runs/``).
        data_roots: where to look for datasets (see :func:`absent_datasets`).

    Returns:
        The path of ``report.md``.
    """
    roots = _roots(root)
    out = Path(out or (roots[0] if len(roots) == 1 else RUNS_ROOT))
    problems: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        acc, comp = accuracy_report(root, problems, data_roots), compute_report(root, problems)
        beyond = beyond_report(root, problems)
        runs = runs_overview(root, out, problems)
    for p in problems:
        warnings.warn(p, stacklevel=2)
    write_csv_atomic(acc, out / "report_accuracy.csv")
    write_csv_atomic(comp, out / "report_compute.csv")
    for name, df in beyond.items():
        write_csv_atomic(df, out / f"report_{BEYOND}_{name}.csv")
    return write_text_atomic(_markdown(acc, comp, beyond, runs, problems, root, out), out / "report.md")
