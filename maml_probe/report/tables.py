"""The paper's Tables 1, 2, A1, A2 (accuracy) and A3 (compute) with our numbers beside them.

:func:`accuracy_report` outer-joins the paper's Tables 1, 2, A1 and A2 with the ``results.csv``
of every run folder under the given roots (by default the committed reference results in
``results/`` and the user's own ``runs/``): one row per (table, dataset, method) with our
accuracy as mean ± std over test tasks and 95% CI, the paper's mean ± std, the deviation (ours
minus the paper's, in points), and how the row was measured (see :mod:`.row_settings`).

Runs that differ only in their seed (a grid ``-p seed=0,1,2``) are aggregated: the accuracy is
the mean over seeds, ``seed_std`` their standard deviation and ``seeds`` how many there are
(``std`` and ``ci95`` are then the means of the seeds' per-task values); the same run found twice
(a copy in ``results/`` and in ``runs/``) counts once. Where several runs report the same row,
the one at the largest scale (``paper`` > ``cpu`` > ``smoke``) wins, then the one with more
training iterations, then more seeds, then the most recent. A row we have not run says why
(see :mod:`.not_run`). :func:`compute_report` does the same for Table A3 (parameters and seconds
per meta-batch) from the E11 runs' ``methods.csv``.
"""
from __future__ import annotations

import math

import pandas as pd

from ..paper import accuracy_tables, compute_table
from .not_run import absent_datasets, failed_methods
from .records import DataRoots, Roots, _problem, _read_table, _record_fields, _roots, read_record
from .row_settings import _row_settings

SCALE_RANK = {"smoke": 0, "cpu": 1, "paper": 2}
KEY = ["table", "dataset", "method"]
#: Which experiment fills each paper table (and the command that runs it).
TABLE_SOURCES = {("1", "synthetic"): "E1", ("1", "omniglot"): "E2", ("2", None): "E7",
                 ("A1", None): "E8", ("A2", None): "E6"}
#: The paper's tables in the order the report shows them.
PAPER_TABLES = ("1", "2", "A1", "A2")


# --- gathering -----------------------------------------------------------------------------

def _runs(root: Roots | None, csv_name: str, problems: list[str] | None = None) -> pd.DataFrame:
    """Rows of every ``csv_name`` under ``root`` with their run's record fields.

    ``results.csv`` rows also get their per-task ``std`` and their own settings
    (:func:`_row_settings`). Unreadable files are skipped; each is named in ``problems`` and in
    a warning.
    """
    frames = []
    paths = [p for r in _roots(root) for p in sorted(r.glob(f"*/*/{csv_name}"))]
    for path in paths:
        run_dir = path.parent
        try:
            record = read_record(run_dir)
            fields = _record_fields(record)
            df = _read_table(path)
        except ValueError as exc:
            _problem(problems, f"{exc}; skipped")
            continue
        df = df.assign(experiment=run_dir.parent.name, run=run_dir.name, path=str(run_dir), **fields)
        if csv_name == "results.csv" and {"method", "accuracy"} <= set(df.columns):
            try:
                df = _row_settings(run_dir, record, df)
            except (AttributeError, KeyError, TypeError, ValueError) as exc:  # an odd record
                _problem(problems, f"{run_dir}: settings and std not derived ({exc!r}); rows kept")
        df["_rank"] = df["scale"].map(SCALE_RANK).fillna(-1)
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def collect_results(root: Roots | None = None, problems: list[str] | None = None) -> pd.DataFrame:
    """All rows of all ``results.csv`` files under ``root`` (default :data:`DEFAULT_ROOTS`).

    Args:
        root: one folder or several.
        problems: collects one message per file that could not be read (and was skipped).

    Returns:
        One row per result with its per-task ``std`` (points; NaN where the run's tables do not
        give it), its run's scale, episode, iterations, meta-batch, what differs from the
        paper, seed and status.
    """
    df = _runs(root, "results.csv", problems)
    missing = [c for c in KEY + ["accuracy"] if len(df) and c not in df]
    if missing:
        _problem(problems, f"results.csv files without the columns {missing}; skipped")
        return pd.DataFrame()
    return df


def aggregate_seeds(df: pd.DataFrame) -> pd.DataFrame:
    """One row per result and group of runs that differ only in their seed.

    The same run found under two roots (e.g. a copy committed to ``results/``) counts once:
    rows with the same settings and seed keep the most recent.

    Args:
        df: rows of :func:`collect_results`.

    Returns:
        ``accuracy``, ``std`` and ``ci95`` averaged over the seeds, ``seed_std`` (sample std
        over seeds; NaN for one seed) and ``seeds`` (how many runs), ``run`` naming the first
        run (``+k`` more).
    """
    if df.empty:
        return df
    df = df.copy()
    for col in ("std", "meta_batch", "ci95", "n", "path"):
        if col not in df:
            df[col] = math.nan
    keys = KEY + ["experiment", "scale", "iterations", "meta_batch", "episode", "group",
                  "differs_from_paper"]
    df = df.sort_values("updated", kind="stable", ascending=False).drop_duplicates(
        subset=[*keys, "seed"], keep="first").sort_index()
    agg = df.assign(_run_id=df["experiment"] + "/" + df["run"]).groupby(keys, dropna=False)
    out = agg.agg(accuracy=("accuracy", "mean"), std=("std", "mean"), ci95=("ci95", "mean"),
                  n=("n", "first"),
                  seed_std=("accuracy", lambda s: s.std(ddof=1) if len(s) > 1 else float("nan")),
                  seeds=("_run_id", "nunique"), run=("run", "first"), path=("path", "first"),
                  updated=("updated", "max"),
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


# --- the tables ------------------------------------------------------------------------------

_OURS = ["accuracy", "std", "ci95", "seed_std", "seeds", "n", "scale", "iterations", "meta_batch",
         "episode", "differs_from_paper", "status", "experiment", "run", "path"]


def accuracy_report(root: Roots | None = None, problems: list[str] | None = None,
                    data_roots: DataRoots = None) -> pd.DataFrame:
    """Paper Tables 1, 2, A1, A2 with our numbers beside them (percent).

    Args:
        root: one folder or several (default :data:`DEFAULT_ROOTS`).
        problems: collects a message per unreadable file (skipped).
        data_roots: where to look for datasets (see :func:`absent_datasets`).

    Returns:
        One row per (table, dataset, method): ours (``accuracy`` mean over test tasks, ``std``
        over test tasks, ``ci95``; over seeds where several ran), the paper's
        (``paper_accuracy``, ``paper_std``), ``deviation`` (ours minus the paper's, points),
        where ours comes from (scale, iterations, meta-batch, episode, what differs from the
        paper, run) and, for rows without a number, ``not_run`` (failed, not run here for lack
        of data, or not run yet). Rows of experiments beyond the paper (table ``E12``) follow.
    """
    paper = accuracy_tables().assign(_paper_order=lambda df: range(len(df)))
    ours = _best(aggregate_seeds(collect_results(root, problems)), KEY)
    if ours.empty:
        ours = pd.DataFrame(columns=KEY + _OURS)
    table = paper.merge(ours.reindex(columns=KEY + _OURS), on=KEY, how="outer")
    table["deviation"] = table["accuracy"] - table["paper_accuracy"]
    failures = failed_methods(root)
    absent = absent_datasets(data_roots, root)
    table["failed"] = [failures.get((d, m)) if pd.isna(a) else None
                       for d, m, a in zip(table["dataset"], table["method"], table["accuracy"])]
    table["not_run"] = [None if pd.notna(a) else f"failed: {f}" if isinstance(f, str) and f else
                        f"not run here ({absent[d]})" if d in absent else "not run yet"
                        for d, a, f in zip(table["dataset"], table["accuracy"], table["failed"])]
    for col in ("n", "seeds", "iterations", "meta_batch"):
        table[col] = _integers(table[col])
    order = {t: i for i, t in enumerate(PAPER_TABLES)}
    table = table.sort_values(["table", "dataset", "_paper_order"], kind="stable",
                              key=lambda s: s.map(order).fillna(len(order)) if s.name == "table" else s)
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
