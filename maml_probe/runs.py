"""Run directories: ``runs/<experiment>/<name>/`` with results, figures, checkpoints and a record.

A run directory holds

- the executed notebook (written by papermill, see :mod:`maml_probe.runner`),
- ``results.csv`` — the run's headline numbers in the report's format (``table``,
  ``dataset``, ``method``, ``accuracy`` in percent, ``ci95`` in points, ``n``, ...), plus any
  other tidy CSVs,
- ``figures/<name>.png`` and ``.svg``,
- one subdirectory per trained model with its ``checkpoint.pt``,
- ``record.json`` — parameters, package version, git commit, device, wall time, status.

Every file is written atomically, so an interrupted run never leaves a half-written table.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from . import __version__
from .experiments.common import write_csv_atomic, write_json_atomic

RUNS_ROOT = Path(os.environ.get("MAML_PROBE_RUNS", Path(__file__).resolve().parents[1] / "runs"))
RESULT_COLUMNS = ["table", "dataset", "method", "accuracy", "ci95", "n"]


#: Longest run folder name; longer names keep a prefix and a hash of the whole name.
MAX_NAME = 120


def _safe(c: str) -> bool:
    """Characters a run folder name may hold: letters, digits and ``-_=.,``."""
    return c.isalnum() or c in "-_=.,"


def run_name(scale: str, params: Mapping[str, Any]) -> str:
    """Deterministic name of a run from its scale and parameters (rerunning resumes it).

    Characters other than letters, digits and ``-_=.,`` become ``_`` (no path separators), a
    leading dot is escaped, and a name over :data:`MAX_NAME` characters keeps its start plus a
    hash of the whole, so two long parameter values never share a folder.
    """
    parts = [scale] + [f"{k}={v}" for k, v in sorted(params.items()) if k not in ("scale", "run_dir")]
    name = "".join(c if _safe(c) else "_" for c in "-".join(map(str, parts)))
    if name.startswith("."):
        name = "_" + name[1:]
    if len(name) > MAX_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        name = f"{name[:MAX_NAME - 11]}-{digest}"
    return name


def check_run_name(name: str) -> str:
    """``name`` if it is a safe single folder name (what ``--name`` may be), else ``ValueError``."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME or name.startswith(".") \
            or not all(map(_safe, name)):
        raise ValueError(f"run name {name!r} must be 1-{MAX_NAME} letters, digits or '-_=.,', "
                         f"not starting with '.' (it names one folder under runs/<experiment>/)")
    return name


def run_dir_for(root: str | os.PathLike, experiment: str, name: str) -> Path:
    """``root/experiment/name``, refused unless it stays inside ``root/experiment``."""
    base = (Path(root) / experiment).resolve()
    target = (base / check_run_name(name)).resolve()
    if target.parent != base:
        raise ValueError(f"run folder {target} would leave {base}")
    return target


def git_commit(repo: Path | None = None) -> str | None:
    repo = repo or Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def device_description(device: str | torch.device = "auto") -> str:
    from .device import resolve_device

    dev = resolve_device(device)
    if dev.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(dev)}"
    return f"{dev.type}: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def write_record(run_dir: str | os.PathLike, **fields: Any) -> Path:
    """Write (or update) ``record.json`` with ``fields`` plus version, commit, torch and time."""
    path = Path(run_dir) / "record.json"
    record: dict[str, Any] = {}
    if path.exists():
        record = json.loads(path.read_text())
    record.update({"package_version": __version__, "git_commit": git_commit(),
                   "torch_version": torch.__version__, "python": platform.python_version(),
                   "host": platform.node(), "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    record.update(fields)
    return write_json_atomic(record, path)


def save_results(run_dir: str | os.PathLike, results: pd.DataFrame,
                 tables: Mapping[str, pd.DataFrame] | None = None) -> Path:
    """Write ``results.csv`` (report format, see module docstring) and other tidy tables."""
    missing = [c for c in RESULT_COLUMNS if c not in results.columns]
    if missing:
        raise ValueError(f"results are missing the report columns {missing}")
    for name, df in (tables or {}).items():
        write_csv_atomic(df, Path(run_dir) / f"{name}.csv")
    return write_csv_atomic(results, Path(run_dir) / "results.csv")


def save_figure(run_dir: str | os.PathLike, name: str, fig) -> list[Path]:
    """Save a matplotlib figure as PNG and SVG under ``run_dir/figures`` (atomically)."""
    out = []
    folder = Path(run_dir) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    for ext in ("png", "svg"):
        final = folder / f"{name}.{ext}"
        tmp = folder / f".{name}.tmp.{ext}"
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
        os.replace(tmp, final)
        out.append(final)
    return out


def to_results(summary: pd.DataFrame, *, table: str, dataset: str, phase: str = "post") -> pd.DataFrame:
    """Turn a per-method summary (``method``, ``phase``, ``accuracy`` in [0, 1], ``ci95``, ``n``)
    into report rows (accuracy and CI in percent)."""
    df = summary[summary["phase"] == phase] if "phase" in summary else summary
    return pd.DataFrame({"table": table, "dataset": dataset, "method": df["method"],
                         "accuracy": 100 * df["accuracy"], "ci95": 100 * df["ci95"], "n": df["n"]})


def finish(run_dir: str | os.PathLike | None, out: Mapping[str, pd.DataFrame],
           figures: Mapping[str, Any] | None = None, device: str = "auto") -> None:
    """Save an experiment's outputs into its run directory (no-op without one).

    ``out["results"]`` becomes ``results.csv``; every other DataFrame in ``out`` becomes
    ``<name>.csv``; each figure is saved as PNG and SVG; ``record.json`` gets the device.
    """
    if run_dir is None:
        return
    tables = {k: v for k, v in out.items() if k != "results" and isinstance(v, pd.DataFrame)}
    if "results" in out:
        save_results(run_dir, out["results"], tables)
    else:
        for name, df in tables.items():
            write_csv_atomic(df, Path(run_dir) / f"{name}.csv")
    for name, fig in (figures or {}).items():
        save_figure(run_dir, name, fig)
    write_record(run_dir, device=device_description(device))
