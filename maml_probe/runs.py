"""Run directories: ``runs/<experiment>/<name>/`` with results, figures, checkpoints and a record.

A run directory holds

- the executed notebook (written by papermill, see :mod:`maml_probe.runner`),
- ``results.csv`` — the run's headline numbers in the report's format (``table``,
  ``dataset``, ``method``, ``accuracy`` in percent, ``ci95`` in points, ``n``, ...), plus any
  other tidy CSVs,
- ``figures/<name>.png`` and ``.svg``,
- one subdirectory per trained model with its ``checkpoint.pt``,
- ``record.json`` — parameters, package version, git commit, device, wall time, status.

Every file is written atomically, so an interrupted run never leaves a half-written table. When
the runner executes a notebook, :func:`finish` writes into a staging folder that the runner moves
into place only when the notebook succeeded, so a failed rerun never replaces good outputs.

A run's name comes from its scale and parameters, except where its data is read from
(``data_root``, ``cache_dir``): moving the data, or handing ``runs/`` to a colleague whose data
lives elsewhere, keeps the same folder.
"""
from __future__ import annotations

import hashlib
import os
import platform
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .io import RunDir, git_state, write_csv_atomic


def project_dir(start: str | os.PathLike | None = None) -> Path:
    """The project that runs belong to, found from the working directory (not the install).

    Args:
        start: where to look from (default: the working directory).

    Returns:
        The nearest folder at or above ``start`` holding a checkout (``pyproject.toml`` beside
        ``maml_probe/``), else ``start`` itself: a second clone that uses the first one's
        environment writes into its own ``runs/``.
    """
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "maml_probe").is_dir():
            return folder
    return here


#: Your runs: ``$MAML_PROBE_RUNS``, else ``runs/`` of the project found from the working directory.
RUNS_ROOT = Path(os.environ.get("MAML_PROBE_RUNS", project_dir() / "runs"))
#: Reference results committed with the project: run folders in the same layout as ``runs/``
#: (tables and ``record.json``, no checkpoints), so numbers outlive the machine that made them.
RESULTS_ROOT = Path(os.environ.get("MAML_PROBE_RESULTS", project_dir() / "results"))
RESULT_COLUMNS = ["table", "dataset", "method", "accuracy", "ci95", "n"]


#: Longest run folder name; longer names keep a prefix and a hash of the whole name.
MAX_NAME = 120
#: Parameters that say where to read or write, not what is run: kept out of run names.
LOCATION_PARAMS = ("scale", "run_dir", "data_root", "cache_dir")
#: Environment variable through which the runner tells :func:`finish` where to stage outputs.
STAGING_ENV = "MAML_PROBE_STAGING"
#: Seconds between two heartbeats of a running run in its ``record.json``.
HEARTBEAT_S = 30
#: A ``running`` record without a heartbeat for this long belongs to a dead run.
STALE_AFTER_S = 10 * 60


def _safe(c: str) -> bool:
    """Characters a run folder name may hold: letters, digits and ``-_=.,``."""
    return c.isalnum() or c in "-_=.,"


def run_name(scale: str, params: Mapping[str, Any]) -> str:
    """Deterministic name of a run from its scale and parameters (rerunning resumes it).

    Where the data is read from (:data:`LOCATION_PARAMS`) is not part of the name. Characters
    other than letters, digits and ``-_=.,`` become ``_`` (no path separators), a leading dot is
    escaped, and a name over :data:`MAX_NAME` characters keeps its start plus a hash of the
    whole, so two long parameter values never share a folder.

    Args:
        scale: ``smoke``, ``cpu`` or ``paper``.
        params: the run's parameters.

    Returns:
        The folder name.
    """
    parts = [scale] + [f"{k}={v}" for k, v in sorted(params.items()) if k not in LOCATION_PARAMS]
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
    """The commit of the package's checkout (``None`` outside a git checkout)."""
    return git_state(repo)["git_commit"]


def device_description(device: str | torch.device = "auto") -> str:
    """A one-line description of ``device`` for records (GPU name, or CPU and core count)."""
    from .device import resolve_device

    dev = resolve_device(device)
    if dev.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(dev)}"
    return f"{dev.type}: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def write_record(run_dir: str | os.PathLike, **fields: Any) -> Path:
    """Merge ``fields`` and provenance into ``run_dir/record.json`` (see :class:`~maml_probe.io.RunDir`)."""
    run = RunDir(run_dir)
    run.update_record(**fields)
    return run.record_path


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
    return RunDir(run_dir).save_figure(name, fig)


def to_results(summary: pd.DataFrame, *, table: str, dataset: str, phase: str = "post") -> pd.DataFrame:
    """Turn a per-method summary (``method``, ``phase``, ``accuracy`` in [0, 1], ``ci95``, ``n``)
    into report rows (accuracy and CI in percent)."""
    df = summary[summary["phase"] == phase] if "phase" in summary else summary
    return pd.DataFrame({"table": table, "dataset": dataset, "method": df["method"],
                         "accuracy": 100 * df["accuracy"], "ci95": 100 * df["ci95"], "n": df["n"]})


def output_dir(run_dir: str | os.PathLike) -> Path:
    """Where :func:`finish` writes the outputs of ``run_dir``.

    The staging folder the runner prepared for this run (named by ``$MAML_PROBE_STAGING``, inside
    ``run_dir``), else ``run_dir`` itself.

    Args:
        run_dir: the run folder.

    Returns:
        The folder to write tables and figures into.
    """
    staged = os.environ.get(STAGING_ENV)
    if staged and Path(staged).resolve().parent == Path(run_dir).resolve():
        return Path(staged)
    return Path(run_dir)


#: What a reference result keeps of a run folder: its record and tables (no checkpoints,
#: notebooks or figures; the report redraws the figures from the tables).
PUBLISHED_PATTERNS = ("record.json", "*.csv", "README.md")


def publish_run(run_dir: str | os.PathLike, name: str | None = None, *,
                root: str | os.PathLike | None = None, replace: bool = False) -> Path:
    """Copy a finished run's record and tables into the committed reference results.

    ``runs/<experiment>/<run>/`` becomes ``results/<experiment>/<name>/`` holding only
    :data:`PUBLISHED_PATTERNS` (kilobytes, not the checkpoints), so that ``maml-probe report``
    on a fresh clone still sets its numbers beside the paper's.

    Args:
        run_dir: The run folder (``runs/<experiment>/<run>``).
        name: The folder name under ``results/<experiment>/`` (default: the run's name).
        root: The results folder (default: :data:`RESULTS_ROOT`).
        replace: Overwrite an existing reference result of that name.

    Returns:
        The new folder.

    Raises:
        ValueError: The run has no ``record.json``, did not finish (``status`` is neither
            ``ok`` nor ``partial``, a finished run in which some methods diverged, which its
            record names), or the target exists and ``replace`` is false.
    """
    import json
    import shutil

    src = Path(run_dir)
    try:
        record = json.loads((src / "record.json").read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{src} has no readable record.json ({exc}); is it a run folder?") from None
    status = run_state(record)
    if status not in ("ok", "partial"):
        raise ValueError(f"{src} did not finish (status {status!r}); only finished runs are published")
    target = Path(root or RESULTS_ROOT) / src.parent.name / check_run_name(name or src.name)
    if target.exists() and not replace:
        raise ValueError(f"{target} exists; pass replace=True (--replace) to overwrite it")
    staged = target.with_name(f".{target.name}.partial")
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    for pattern in PUBLISHED_PATTERNS:
        for path in sorted(src.glob(pattern)):
            if path.is_file():
                shutil.copy2(path, staged / path.name)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staged, target)
    return target


def run_state(record: Mapping[str, Any], now: float | None = None) -> str:
    """The status of a run as it is now: a ``running`` record of a dead process reads ``dead``.

    A run is dead when its process (``pid``) is gone on this machine, or, on another machine,
    when its last heartbeat is older than :data:`STALE_AFTER_S`.

    Args:
        record: the run's ``record.json``.
        now: the current time (seconds since the epoch; default: now).

    Returns:
        ``record["status"]`` (``unknown`` if absent), or ``dead``.
    """
    from .io import pid_alive

    status = str(record.get("status", "unknown"))
    if status != "running":
        return status
    if record.get("pid") and record.get("host") == platform.node():
        return "running" if pid_alive(record["pid"]) else "dead"
    beat = record.get("heartbeat") or record.get("updated")
    try:
        age = (now or time.time()) - datetime.strptime(beat, "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except (TypeError, ValueError):
        return "running"
    return "dead" if age > STALE_AFTER_S else "running"


def finish(run_dir: str | os.PathLike | None, out: Mapping[str, pd.DataFrame],
           figures: Mapping[str, Any] | None = None, device: str = "auto") -> None:
    """Save an experiment's outputs into its run directory (no-op without one).

    ``out["results"]`` becomes ``results.csv`` (checked against the report's columns); every
    other DataFrame in ``out`` becomes ``<name>.csv``; each figure is saved as PNG and SVG.
    ``record.json`` is not touched: the runner that started the run owns it
    (:mod:`maml_probe.runner`). ``device`` is accepted for notebooks written before that.
    Under the runner the files go to its staging folder first (:func:`output_dir`).
    """
    if run_dir is None:
        return
    target = output_dir(run_dir)
    tables = {k: v for k, v in out.items() if k != "results" and isinstance(v, pd.DataFrame)}
    if "results" in out:
        save_results(target, out["results"], tables)
    else:
        RunDir(target).save_tables(tables)
    for name, fig in (figures or {}).items():
        save_figure(target, name, fig)
