"""Where datasets and prepared caches live.

* Data directory: parameter ``root=`` of every loader, else the environment variable
  ``MAML_PROBE_DATA``, else ``data/`` at the project root (the folder that holds
  ``pyproject.toml``; when the package is installed outside a checkout, ``./data``).
* Cache directory: parameter ``cache_dir=``, else ``MAML_PROBE_CACHE``, else
  ``cache/`` inside the *default* data directory (``$MAML_PROBE_DATA`` or ``<project>/data``),
  never inside a ``root=`` given to a loader: such a root may be a shared or read-only copy,
  and a cache key records its source path, so caches of different roots do not collide.

Inside the data directory each dataset has its own folder (``folder`` of its
:class:`~maml_probe.data.spec.DatasetSpec`); a loader also accepts ``root`` pointing straight
at that folder.
"""
from __future__ import annotations

import os
from pathlib import Path

from .registry import check_choice, get_spec

DATA_ENV = "MAML_PROBE_DATA"
CACHE_ENV = "MAML_PROBE_CACHE"

SPLITS = ("train", "val", "test")


def project_root() -> Path:
    """The checkout root (holds ``pyproject.toml``), or the working directory if none."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "pyproject.toml").is_file() else Path.cwd()


def data_dir(root: str | os.PathLike | None = None) -> Path:
    """The data directory: ``root``, else ``$MAML_PROBE_DATA``, else ``<project>/data``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else project_root() / "data"


def cache_dir(cache: str | os.PathLike | None = None, root: str | os.PathLike | None = None) -> Path:
    """The cache directory: ``cache``, else ``$MAML_PROBE_CACHE``, else ``<default data dir>/cache``.

    ``root`` is accepted for symmetry with the loaders but deliberately not used: sources given
    by ``root`` may sit on storage the project must not write to.
    """
    if cache is not None:
        return Path(cache).expanduser()
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else data_dir(None) / "cache"


def dataset_dir(dataset: str, root: str | os.PathLike | None = None) -> Path:
    """``<data dir>/<dataset folder>`` (where downloads are installed).

    Args:
        dataset: A dataset read from disk.
        root: The data directory (default: see :func:`data_dir`).

    Returns:
        The dataset's folder (it may not exist yet).
    """
    return data_dir(root) / get_spec(dataset, on_disk=True).folder


def candidate_dirs(dataset: str, root: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for a dataset: ``<data dir>/<dataset folder>``, then ``root`` itself.

    Args:
        dataset: A dataset read from disk.
        root: The data directory (default: see :func:`data_dir`).

    Returns:
        The two folders, in search order.
    """
    return [dataset_dir(dataset, root), data_dir(root)]


__all__ = ["DATA_ENV", "CACHE_ENV", "SPLITS", "project_root", "data_dir", "cache_dir",
           "dataset_dir", "candidate_dirs", "check_choice"]
