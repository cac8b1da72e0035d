"""The report: every run under ``results/`` and ``runs/`` set beside the paper's numbers.

:func:`accuracy_report` outer-joins the paper's Tables 1, 2, A1 and A2 with the ``results.csv``
of every run folder under the given roots (by default the committed reference results in
``results/`` and the user's own ``runs/``): one row per (table, dataset, method) with our
accuracy and 95% CI, the paper's accuracy and std, and the difference.

Runs that differ only in their seed (a grid ``-p seed=0,1,2``) are aggregated: the accuracy is
the mean over seeds, ``seed_std`` their standard deviation and ``seeds`` how many there are
(``ci95`` is then the mean per-task CI of the seeds). Where several runs report the same row,
the one at the largest scale (``paper`` > ``cpu`` > ``smoke``) wins, then the one with more
training iterations, then more seeds, then the most recent; each row says its scale, episode
(ways, shots, steps), iterations and run. A row we have not run shows ``NaN`` (rendered as "missing" or
collapsed into one "not run" line per experiment), never a zero. :func:`compute_report` does the
same for Table A3 (parameters and seconds per meta-batch) from the E11 runs' ``methods.csv``.

A run folder whose ``record.json`` or table cannot be read is skipped and named in the report
(and in a warning); it never stops the report.
"""
from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .io import RunDir, write_csv_atomic, write_text_atomic
from .paper import accuracy_tables, compute_table
from .runs import RESULTS_ROOT, RUNS_ROOT, run_state

SCALE_RANK = {"smoke": 0, "cpu": 1, "paper": 2}
KEY = ["table", "dataset", "method"]
#: Where the report looks by default: committed reference results, then the user's runs.
DEFAULT_ROOTS = (RESULTS_ROOT, RUNS_ROOT)
#: Which experiment fills each paper table (and the command that runs it).
TABLE_SOURCES = {("1", "synthetic"): "E1", ("1", "omniglot"): "E2", ("2", None): "E7",
                 ("A1", None): "E8", ("A2", None): "E6"}
#: Parameters that do not change what a run measures beyond its seed (grouped over).
_NOT_IDENTITY = ("seed", "run_dir", "data_root", "cache_dir", "device")
_RECORD_COLUMNS = ["scale", "device", "wall_time_s", "updated", "iterations", "differs_from_paper",
                   "episode", "seed", "status", "group"]

Roots = str | os.PathLike | Sequence[str | os.PathLike]


def _roots(root: Roots | None) -> list[Path]:
    if root is None:
        return [Path(r) for r in DEFAULT_ROOTS]
    if isinstance(root, (str, os.PathLike)):
        return [Path(root)]
    return [Path(r) for r in root]


def read_record(run_dir: Path) -> dict[str, Any]:
    """A run folder's ``record.json`` (``{}`` when absent).

    Args:
        run_dir: the run folder.

    Returns:
        The record.

    Raises:
        ValueError: the file is not a readable JSON object (the message names it).
    """
    return RunDir(run_dir).read_record()


def _record_fields(record: dict[str, Any]) -> dict[str, Any]:
    """The columns a run's record adds to each of its rows."""
    params = record.get("parameters") or {}
    config = next(iter((record.get("config") or {}).values()), {})
    group = {k: v for k, v in params.items() if k not in _NOT_IDENTITY}
    status = run_state(record) if record else "unknown"
    if status == "failed" and record.get("outputs_from"):
        status = f"last rerun failed; outputs of {record['outputs_from']}"
    return {"scale": record.get("scale", "unknown"), "device": record.get("device"),
            "wall_time_s": record.get("wall_time_s"), "updated": record.get("updated", ""),
            "iterations": record.get("iterations"),
            "differs_from_paper": record.get("differs_from_paper"),
            "episode": record.get("episode"), "seed": params.get("seed", config.get("seed")),
            "status": status, "group": json.dumps(group, sort_keys=True, default=str)}


def _read_table(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype={"table": str})
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"{path}: unreadable table ({str(exc).splitlines()[0]})") from None


def _runs(root: Roots | None, csv_name: str, problems: list[str] | None = None) -> pd.DataFrame:
    """Rows of every ``csv_name`` under ``root`` with their run's record fields.

    Unreadable files are skipped; each is named in ``problems`` and in a warning.
    """
    frames = []
    paths = [p for r in _roots(root) for p in sorted(r.glob(f"*/*/{csv_name}"))]
    for path in paths:
        run_dir = path.parent
        try:
            fields = _record_fields(read_record(run_dir))
            df = _read_table(path)
        except ValueError as exc:
            _problem(problems, f"{exc}; skipped")
            continue
        df = df.assign(experiment=run_dir.parent.name, run=run_dir.name, **fields)
        df["_rank"] = df["scale"].map(SCALE_RANK).fillna(-1)
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _problem(problems: list[str] | None, message: str) -> None:
    warnings.warn(message, stacklevel=3)
    if problems is not None and message not in problems:
        problems.append(message)


def collect_results(root: Roots | None = None, problems: list[str] | None = None) -> pd.DataFrame:
    """All rows of all ``results.csv`` files under ``root`` (default :data:`DEFAULT_ROOTS`).

    Args:
        root: one folder or several.
        problems: collects one message per file that could not be read (and was skipped).

    Returns:
        One row per result with its run's scale, episode, iterations, seed and status.
    """
    df = _runs(root, "results.csv", problems)
    missing = [c for c in KEY + ["accuracy"] if len(df) and c not in df]
    if missing:
        _problem(problems, f"results.csv files without the columns {missing}; skipped")
        return pd.DataFrame()
    return df


def aggregate_seeds(df: pd.DataFrame) -> pd.DataFrame:
    """One row per result and group of runs that differ only in their seed.

    Args:
        df: rows of :func:`collect_results`.

    Returns:
        ``accuracy`` and ``ci95`` averaged over the seeds, ``seed_std`` (sample std over seeds;
        NaN for one seed) and ``seeds`` (how many runs), ``run`` naming the first run
        (``+k`` more).
    """
    if df.empty:
        return df
    keys = KEY + ["experiment", "scale", "iterations", "episode", "group", "differs_from_paper"]
    agg = df.assign(_run_id=df["experiment"] + "/" + df["run"]).groupby(keys, dropna=False)
    out = agg.agg(accuracy=("accuracy", "mean"), ci95=("ci95", "mean"), n=("n", "first"),
                  seed_std=("accuracy", lambda s: s.std(ddof=1) if len(s) > 1 else float("nan")),
                  seeds=("_run_id", "nunique"), run=("run", "first"), updated=("updated", "max"),
                  status=("status", lambda s: ", ".join(sorted(set(map(str, s))))),
                  device=("device", "first"), wall_time_s=("wall_time_s", "sum"),
                  _rank=("_rank", "max")).reset_index()
    more = out["seeds"] - 1
    out["run"] = out["run"] + more.map(lambda k: f" (+{k} seed{'s' if k > 1 else ''})" if k else "")
    return out


def _integers(values: pd.Series) -> pd.Series:
    """``values`` as nullable integers (counts shown as ``800``, never ``800.00``)."""
    return pd.to_numeric(values, errors="coerce").round().astype("Int64")


def _best(df: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    if df.empty:
        return df
    df = df.assign(_its=pd.to_numeric(df["iterations"], errors="coerce").fillna(-1),
                   _seeds=df["seeds"] if "seeds" in df else 1)
    df = df.sort_values(["_rank", "_its", "_seeds", "updated"]).groupby(key, as_index=False).tail(1)
    df = df.drop(columns=["_its", "_seeds"])
    return df.drop(columns=["_rank"])


def failed_methods(root: Roots | None = None) -> dict[tuple[str, str], str]:
    """Methods that failed in a run (e.g. diverged), by dataset: why, and in which run.

    Args:
        root: one folder or several (default :data:`DEFAULT_ROOTS`).

    Returns:
        ``(dataset, method) -> "diverged: ... (E1/<run>)"`` from the runs' ``failed_rows``.
    """
    out: dict[tuple[str, str], str] = {}
    for run_dir in sorted(d for r in _roots(root) for d in r.glob("*/*/") if (d / "record.json").exists()):
        try:
            record = read_record(run_dir)
        except ValueError:
            continue  # named by the report's other readers
        configs = record.get("config") or {}
        for line in record.get("failed_rows") or []:
            label, _, why = str(line).partition(": ")
            dataset = ((configs.get(label) or {}).get("dataset")
                       or (record.get("parameters") or {}).get("dataset"))
            if dataset:
                out[(dataset, label)] = f"{why.split(';')[0]} ({run_dir.parent.name}/{run_dir.name})"
    return out


_OURS = ["accuracy", "ci95", "seed_std", "seeds", "n", "scale", "episode", "iterations", "status",
         "differs_from_paper", "experiment", "run"]


def accuracy_report(root: Roots | None = None, problems: list[str] | None = None) -> pd.DataFrame:
    """Paper Tables 1, 2, A1, A2 with our numbers beside them (percent).

    Args:
        root: one folder or several (default :data:`DEFAULT_ROOTS`).
        problems: collects a message per unreadable file (skipped).

    Returns:
        One row per (table, dataset, method): ours (mean over seeds), the paper's, the
        difference, and where ours comes from (scale, episode, iterations, run).
    """
    paper = accuracy_tables().assign(_paper_order=lambda df: range(len(df)))
    ours = _best(aggregate_seeds(collect_results(root, problems)), KEY)
    if ours.empty:
        ours = pd.DataFrame(columns=KEY + _OURS)
    table = paper.merge(ours[KEY + _OURS], on=KEY, how="outer")
    table["difference"] = table["accuracy"] - table["paper_accuracy"]
    failures = failed_methods(root)
    table["failed"] = [failures.get((d, m)) if pd.isna(a) else None
                       for d, m, a in zip(table["dataset"], table["method"], table["accuracy"])]
    for col in ("n", "seeds", "iterations"):
        table[col] = _integers(table[col])
    order = {"1": 0, "2": 1, "A1": 2, "A2": 3}
    table = table.sort_values(["table", "dataset", "_paper_order"], kind="stable",
                              key=lambda s: s.map(order) if s.name == "table" else s)
    return table.drop(columns=["_paper_order"]).reset_index(drop=True)


def compute_report(root: Roots | None = None, problems: list[str] | None = None) -> pd.DataFrame:
    """Table A3 beside our parameter counts and seconds per meta-batch (from ``methods.csv``).

    Args:
        root: one folder or several (default :data:`DEFAULT_ROOTS`).
        problems: collects a message per unreadable file (skipped).

    Returns:
        The paper's rows with ours beside them (NaN where E11 has not run).
    """
    paper = compute_table()
    ours = _runs(root, "methods.csv", problems)
    if not ours.empty:  # E11 times the paper's full episodes; other runs' timings are not comparable
        ours = ours[ours["experiment"] == "E11"]
    cols = ["dataset", "method", "model_params", "optimizer_params", "seconds_per_iteration",
            "meta_batch", "scale", "device"]
    if ours.empty or any(c not in ours for c in cols):
        ours = pd.DataFrame(columns=cols + ["_rank", "iterations", "updated"])
    ours = _best(ours, ["dataset", "method"])
    return paper.merge(ours[cols], on=["dataset", "method"], how="left")


def _cell(v: Any, floatfmt: str) -> str:
    if isinstance(v, float):
        if pd.isna(v):
            return "missing"
        return str(int(v)) if v.is_integer() and abs(v) >= 100 else format(v, floatfmt)
    return "missing" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)


def to_markdown(df: pd.DataFrame, floatfmt: str = ".2f") -> str:
    """A plain markdown table (missing values shown as 'missing'); no extra dependency."""
    header = "| " + " | ".join(df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(_cell(v, floatfmt) for v in row) + " |"
            for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def for_display(df: pd.DataFrame, floatfmt: str = ".2f") -> pd.DataFrame:
    """``df`` with every value as the report shows it: rounded, 'missing' for NaN.

    Args:
        df: a report table (its CSV keeps the exact values).
        floatfmt: the format of floats.

    Returns:
        A table of strings, for a notebook to display.
    """
    return df.apply(lambda col: col.map(lambda v: _cell(v, floatfmt)))


def _source_hint(table: str, dataset: str) -> str:
    exp = TABLE_SOURCES.get((table, dataset)) or TABLE_SOURCES.get((table, None))
    if exp is None:
        return ""
    param = "" if exp in ("E1", "E2") else f" -p dataset={dataset}"
    return f" (`maml-probe run {exp}{param}`)"


def _ours_text(row: Any) -> str:
    if pd.isna(row.accuracy):
        return "missing"
    text = f"{row.accuracy:.2f} ± {row.ci95:.2f}" if pd.notna(row.ci95) else f"{row.accuracy:.2f}"
    return text


def _seeds_text(row: Any) -> str:
    if pd.isna(row.seeds):
        return ""
    return f"{int(row.seeds)}" + (f" (sd {row.seed_std:.2f})" if pd.notna(row.seed_std) else "")


def _table_section(acc: pd.DataFrame, table: str) -> str:
    """One paper table: rows we have, and one line per dataset (or methods) not run yet."""
    part = acc[acc["table"] == table]
    lines, shown = [f"## Table {table}", ""], []
    for dataset, rows in part.groupby("dataset", sort=False):
        have = rows[rows["accuracy"].notna()]
        absent = rows[rows["accuracy"].isna() & rows["failed"].isna()]
        if len(absent) == len(rows):
            lines.append(f"- {dataset}: not run yet ({len(rows)} rows){_source_hint(table, dataset)}")
            continue
        if len(have):
            shown.append(have)
        if len(absent):
            lines.append(f"- {dataset}: not run yet for {', '.join(absent['method'])}")
        for method, why in rows.dropna(subset=["failed"])[["method", "failed"]].itertuples(index=False):
            lines.append(f"- {dataset}: {method} failed: {why}")
    if shown:
        rows = pd.concat(shown)
        view = pd.DataFrame({
            "dataset": rows["dataset"], "method": rows["method"],
            "ours": [_ours_text(r) for r in rows.itertuples()],
            "seeds": [_seeds_text(r) for r in rows.itertuples()],
            "paper": [f"{a:.2f} ± {s:.2f}" if pd.notna(a) else "not in the paper"
                      for a, s in zip(rows["paper_accuracy"], rows["paper_std"])],
            "difference": rows["difference"], "n": rows["n"],
            "episode": rows["episode"].astype(object).fillna("unrecorded"),
            "iterations": rows["iterations"], "scale": rows["scale"], "status": rows["status"],
            "run": rows["experiment"] + "/" + rows["run"]})
        lines[2:2] = [to_markdown(view), ""]
    return "\n".join(lines)


def _figure_links(run_dir: Path, out: Path) -> str:
    figs = sorted(run_dir.glob("figures/*.png"))
    return ", ".join(f"[{f.stem}]({Path(os.path.relpath(f, out)).as_posix()})" for f in figs) or "none"


def runs_overview(root: Roots | None = None, out: str | os.PathLike = ".",
                  problems: list[str] | None = None) -> pd.DataFrame:
    """Every run folder under ``root``: status, scale, episode, iterations, seed, commit, figures.

    Covers every experiment, also those without a paper table (E3-E5, E9): their figures are
    linked (relative to ``out``, where the report is written).

    Args:
        root: one folder or several (default :data:`DEFAULT_ROOTS`).
        out: the folder the links are relative to.
        problems: collects a message per unreadable ``record.json`` (that run is skipped).

    Returns:
        One row per run.
    """
    rows = []
    for run_dir in sorted(d for r in _roots(root) for d in r.glob("*/*/") if (d / "record.json").exists()):
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
    return "\n".join(lines + [to_markdown(comp, ".3g")])


def _markdown(acc: pd.DataFrame, comp: pd.DataFrame, runs: pd.DataFrame, problems: list[str]) -> str:
    parts = ["# maml_probe report", "",
             "Accuracy in percent. Ours: mean over test tasks ± 95% CI half-width; where several "
             "seeds ran, the mean over seeds (seeds: how many, sd: their standard deviation). "
             "Paper: mean ± std. Each row names the episode, iterations and scale it was "
             "measured at: compare with the paper only where they match.", ""]
    if problems:
        parts += ["Skipped (unreadable files):", "", *[f"- {p}" for p in problems], ""]
    for table in ("1", "2", "A1", "A2"):
        parts += [_table_section(acc, table), ""]
    parts += [_compute_section(comp), "", "## Runs", ""]
    parts.append(to_markdown(runs, ".1f") if len(runs) else "No runs yet.")
    return "\n".join(parts) + "\n"


def write_report(root: Roots | None = None, out: str | os.PathLike | None = None) -> Path:
    """Write ``report.md`` and the two tables as CSV (exact values) into ``out``.

    Args:
        root: run folders to gather (default :data:`DEFAULT_ROOTS`: ``results/`` and ``runs/``).
        out: where to write (default: ``root`` when it is one folder, else ``runs/``).

    Returns:
        The path of ``report.md``.
    """
    roots = _roots(root)
    out = Path(out or (roots[0] if len(roots) == 1 else RUNS_ROOT))
    problems: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        acc, comp = accuracy_report(root, problems), compute_report(root, problems)
        runs = runs_overview(root, out, problems)
    for p in problems:
        warnings.warn(p, stacklevel=2)
    write_csv_atomic(acc, out / "report_accuracy.csv")
    write_csv_atomic(comp, out / "report_compute.csv")
    return write_text_atomic(_markdown(acc, comp, runs, problems), out / "report.md")


def figures_from_runs(root: Roots | None = None) -> dict:
    """The paper's figures redrawn from the latest run of each experiment under ``root``
    (default :data:`DEFAULT_ROOTS`).

    Keys name the figure and the run (``"Fig 2 left/middle (E3 cpu-...)"``); experiments not run
    yet are simply absent, and an unreadable table is skipped with a warning.
    """
    from . import plots
    from .probes import plots as probe_plots

    def latest(experiment: str, csv: str) -> tuple[str, pd.DataFrame] | None:
        paths = sorted((p for r in _roots(root) for p in r.glob(f"{experiment}/*/{csv}")),
                       key=lambda p: p.stat().st_mtime)
        for path in reversed(paths):
            try:
                return path.parent.name, _read_table(path)
            except ValueError as exc:
                warnings.warn(f"{exc}; skipped", stacklevel=3)
        return None

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
