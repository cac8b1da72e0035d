"""Tables as the report shows them: plain markdown, rounded values, :data:`NA` where none exists.

:func:`to_markdown` writes a table without an extra dependency; :func:`for_display` gives a
notebook the same rounded strings (the report's CSVs keep the exact values).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

#: Shown in place of a value that does not exist (never ``NaN``).
NA = "—"


def _missing(v: Any) -> bool:
    return v is None or (not isinstance(v, str) and bool(pd.isna(v)))


def _cell(v: Any, floatfmt: str, na_rep: str = "missing") -> str:
    if isinstance(v, float):
        if pd.isna(v):
            return na_rep
        return str(int(v)) if v.is_integer() and abs(v) >= 100 else format(v, floatfmt)
    return na_rep if _missing(v) else str(v)


def to_markdown(df: pd.DataFrame, floatfmt: str = ".2f", na_rep: str = "missing") -> str:
    """A plain markdown table; no extra dependency.

    Args:
        df: the table.
        floatfmt: the format of floats.
        na_rep: what a missing value shows.

    Returns:
        The markdown text.
    """
    header = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(_cell(v, floatfmt, na_rep) for v in row) + " |"
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


def _num(v: Any, fmt: str = ".2f") -> str:
    return NA if _missing(v) else format(float(v), fmt)


def _mean_std(mean: Any, std: Any, fmt: str = ".2f") -> str:
    if _missing(mean):
        return NA
    return f"{mean:{fmt}} ± {std:{fmt}}" if not _missing(std) else f"{mean:{fmt}}"


def _seeds_text(seeds: Any, seed_std: Any) -> str:
    if _missing(seeds):
        return NA
    return f"{int(seeds)}" + (f" (sd {seed_std:.2f})" if not _missing(seed_std) else "")


def _int_text(v: Any, missing: str = "unrecorded") -> str:
    return missing if _missing(v) else f"{int(v):,}"


def _rows_view(rows: pd.DataFrame, paper: bool = True) -> pd.DataFrame:
    """The rows we have, as the report shows them (strings, rounded, no NaN)."""
    view = {"dataset": rows["dataset"], "method": rows["method"],
            "ours (mean ± std)": [_mean_std(a, s) for a, s in zip(rows["accuracy"], rows["std"])],
            "95% CI": [NA if _missing(c) else f"± {c:.2f}" for c in rows["ci95"]],
            "n": [_int_text(n, NA) for n in rows["n"]]}
    if paper:
        view["paper (mean ± std)"] = [_mean_std(a, s) if not _missing(a) else "not in the paper"
                                      for a, s in zip(rows["paper_accuracy"], rows["paper_std"])]
        view["deviation"] = [NA if _missing(d) else f"{d:+.2f}" for d in rows["deviation"]]
    view |= {"seeds": [_seeds_text(k, s) for k, s in zip(rows["seeds"], rows["seed_std"])],
             "scale": rows["scale"].astype(object).where(rows["scale"].notna(), "unrecorded"),
             "iterations": [_int_text(v) for v in rows["iterations"]],
             "meta-batch": [_int_text(v) for v in rows["meta_batch"]],
             "episode": rows["episode"].astype(object).where(rows["episode"].notna(), "unrecorded"),
             "differs from the paper": rows["differs_from_paper"].astype(object).where(
                 rows["differs_from_paper"].notna(), "not recorded"),
             "status": rows["status"].astype(object).where(rows["status"].notna(), "unknown"),
             "run": rows["experiment"] + "/" + rows["run"]}
    return pd.DataFrame(view)


def _figure_links(run_dir: Path, out: Path) -> str:
    figs = sorted(run_dir.glob("figures/*.png"))
    return ", ".join(f"[{f.stem}]({Path(os.path.relpath(f, out)).as_posix()})" for f in figs) or "none"


def _pivot(df: pd.DataFrame, columns: str, cells: Sequence[str]) -> pd.DataFrame:
    """``method`` x ``columns`` (in order of appearance) holding ``cells``, one per row of ``df``."""
    methods, names = list(dict.fromkeys(df["method"])), list(dict.fromkeys(df[columns]))
    wide = {m: dict.fromkeys(names, NA) for m in methods}
    for method, name, cell in zip(df["method"], df[columns], cells):
        wide[method][name] = cell
    return pd.DataFrame([{"method": m, **wide[m]} for m in methods])
