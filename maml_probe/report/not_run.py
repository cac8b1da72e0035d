"""Why a row has no number of ours: the method failed, or its dataset's files are absent here.

A row we have not run shows ``NaN`` in the tables (never a zero) and, in ``report.md``, one line
per dataset and reason: not run yet, not run here because the dataset's files are absent
(:func:`absent_datasets`), or failed (:func:`failed_methods`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..runs import project_dir
from .records import DataRoots, Roots, _dict, _run_dirs, read_record


def failed_methods(root: Roots | None = None) -> dict[tuple[str, str], str]:
    """Methods that failed in a run (e.g. diverged), by dataset: why, and in which run.

    Args:
        root: one folder or several (default :data:`DEFAULT_ROOTS`).

    Returns:
        ``(dataset, method) -> "diverged: ... (E1/<run>)"`` from the runs' ``failed_rows``.
    """
    out: dict[tuple[str, str], str] = {}
    for run_dir in _run_dirs(root):
        try:
            record = read_record(run_dir)
        except ValueError:
            continue  # named by the report's other readers
        configs = _dict(record.get("config"))
        for line in record.get("failed_rows") or []:
            label, _, why = str(line).partition(": ")
            dataset = (_dict(configs.get(label)).get("dataset")
                       or _dict(record.get("parameters")).get("dataset"))
            if dataset:
                out[(dataset, label)] = f"{why.split(';')[0]} ({run_dir.parent.name}/{run_dir.name})"
    return out


# --- datasets absent from this machine ----------------------------------------------------

def _recorded_data_roots(root: Roots | None) -> list[Path]:
    """The data folders the runs under ``root`` read (relative ones from the project folder)."""
    found: list[Path] = []
    for run_dir in _run_dirs(root):
        try:
            record = read_record(run_dir)
        except ValueError:
            continue
        given = [_dict(record.get("parameters")).get("data_root")]
        given += [_dict(_dict(cfg).get("dataset_kwargs")).get("root")
                  for cfg in _dict(record.get("config")).values()]
        for g in given:
            if isinstance(g, str) and g:
                path = Path(g).expanduser()
                path = (path if path.is_absolute() else project_dir() / path).resolve()
                if path not in found:
                    found.append(path)
    return found


def absent_datasets(data_roots: DataRoots = None, root: Roots | None = None) -> dict[str, str]:
    """Datasets read from files that are found in none of the data folders: why, in words.

    Args:
        data_roots: the data folders to look in; ``None``: the default one (``$MAML_PROBE_DATA``
            or ``<project>/data``) and every ``data_root`` the runs under ``root`` recorded.
        root: the run folders whose recorded data folders count (default :data:`DEFAULT_ROOTS`).

    Returns:
        ``dataset -> "no data: CIFAR-FS (cifar-100-python.tar.gz) not found in ...; ..."``,
        e.g. CIFAR-FS on a machine without the CIFAR-100 archive; the report shows such a
        dataset as "not run here" rather than "not run yet".
    """
    from ..data import data_dir, dataset_available
    from ..data.registry import dataset_names, get_spec

    if data_roots is None:
        folders: list[Any] = [None, *_recorded_data_roots(root)]
    elif isinstance(data_roots, (str, os.PathLike)):
        folders = [data_roots]
    else:
        folders = list(data_roots)
    out = {}
    for name in dataset_names(on_disk=True):
        if any(dataset_available(name, f) is None for f in folders):
            continue
        spec = get_spec(name)
        files = " and ".join(r.filename for r in spec.remotes) or f"{spec.folder}/"
        where = ", ".join(dict.fromkeys(str(data_dir(f)) for f in folders))
        out[name] = (f"no data: {spec.display_name} ({files}) not found in {where}; "
                     f"`maml-probe data download {name}`")
    return out
