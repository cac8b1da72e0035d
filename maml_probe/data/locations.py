"""Where datasets and prepared caches live.

* Data directory: parameter ``root=`` of every loader, else the environment variable
  ``MAML_PROBE_DATA``, else ``data/`` at the project root (the folder that holds
  ``pyproject.toml``; when the package is installed outside a checkout, ``./data``).
* Cache directory: parameter ``cache_dir=``, else ``MAML_PROBE_CACHE``, else
  ``cache/`` inside the *default* data directory (``$MAML_PROBE_DATA`` or ``<project>/data``),
  never inside a ``root=`` given to a loader: such a root may be a shared or read-only copy,
  and a cache key records its source path, so caches of different roots do not collide.

Inside the data directory each dataset has its own folder (see ``DATASET_DIRS``); a loader
also accepts ``root`` pointing straight at that folder.
"""
from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "MAML_PROBE_DATA"
CACHE_ENV = "MAML_PROBE_CACHE"

#: Folder name of each dataset inside the data directory.
DATASET_DIRS = {"omniglot": "omniglot", "miniimagenet": "mini-imagenet", "cifarfs": "cifar-fs"}
DATASETS = tuple(DATASET_DIRS)
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
    """``<data dir>/<dataset folder>`` (where downloads are installed)."""
    check_choice("dataset", dataset, DATASETS)
    return data_dir(root) / DATASET_DIRS[dataset]


def candidate_dirs(dataset: str, root: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for a dataset: ``<data dir>/<dataset folder>``, then ``root`` itself."""
    base = data_dir(root)
    return [base / DATASET_DIRS[dataset], base]


def check_choice(argument: str, value: str, allowed: tuple[str, ...]) -> None:
    """``ValueError`` naming the argument and the allowed values if ``value`` is not one."""
    if value not in allowed:
        raise ValueError(f"{argument}={value!r} is not one of {', '.join(map(repr, allowed))}")
