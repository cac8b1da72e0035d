"""Reading run folders for the report: their ``record.json`` and tables.

A run folder is one holding ``record.json`` (``<root>/<experiment>/<run>/``). The report looks
under :data:`DEFAULT_ROOTS` (the committed reference results in ``results/``, then the user's own
``runs/``) unless given other roots. A run folder whose ``record.json`` or table cannot be read is
skipped and named in the report (and in a warning); it never stops the report.
"""
from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..io import RunDir
from ..runs import RESULTS_ROOT, RUNS_ROOT, run_state

#: Where the report looks by default: committed reference results, then the user's runs.
DEFAULT_ROOTS = (RESULTS_ROOT, RUNS_ROOT)
#: Parameters that do not change what a run measures beyond its seed (grouped over).
_NOT_IDENTITY = ("seed", "run_dir", "data_root", "cache_dir", "device")
_RECORD_COLUMNS = ["scale", "device", "wall_time_s", "updated", "iterations", "differs_from_paper",
                   "episode", "seed", "status", "group"]

Roots = str | os.PathLike | Sequence[str | os.PathLike]
DataRoots = str | os.PathLike | Sequence[str | os.PathLike | None] | None


def _roots(root: Roots | None) -> list[Path]:
    if root is None:
        return [Path(r) for r in DEFAULT_ROOTS]
    if isinstance(root, (str, os.PathLike)):
        return [Path(root)]
    return [Path(r) for r in root]


def _run_dirs(root: Roots | None) -> list[Path]:
    """Every run folder (one holding ``record.json``) under ``root``."""
    return sorted(d for r in _roots(root) for d in r.glob("*/*/") if (d / "record.json").exists())


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


def _dict(value: Any) -> dict[str, Any]:
    """``value`` if it is a dict, else ``{}`` (a hand-edited record may hold anything)."""
    return value if isinstance(value, dict) else {}


def _record_fields(record: dict[str, Any]) -> dict[str, Any]:
    """The columns a run's record adds to each of its rows."""
    params = _dict(record.get("parameters"))
    config = _dict(next(iter(_dict(record.get("config")).values()), {}))
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


def _problem(problems: list[str] | None, message: str) -> None:
    warnings.warn(message, stacklevel=3)
    if problems is not None and message not in problems:
        problems.append(message)


def _header(path: Path) -> list[str]:
    try:
        return list(pd.read_csv(path, nrows=0).columns)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return []
