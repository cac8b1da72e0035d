"""Few-shot datasets (Omniglot, CIFAR-FS, mini-ImageNet) and fast episode sampling.

Every dataset is described once, by a :class:`DatasetSpec` in :mod:`maml_probe.data.specs`,
found by name with :func:`get_spec` (:mod:`maml_probe.data.registry`). Loaders read the
standard on-disk formats, convert a dataset once into a compact uint8 ``.npy`` cache (see
``cache``) and return a ``FewShotDataset`` ``[classes, per_class, C, H, W]``;
``EpisodeSampler`` draws seeded meta-batches of episodes from it as index tensors (a
``TaskSource``). ``build_task_source`` does both from names. Data lives in ``data_dir()``
(``root=``, ``$MAML_PROBE_DATA``, ``<project>/data``), caches in ``cache_dir()``
(``cache_dir=``, ``$MAML_PROBE_CACHE``, ``<data dir>/cache``). Install data with
``maml-probe data download <dataset> [--from PATH]``.

``DATASETS`` names the datasets read from disk and ``DATASET_NAMES`` every dataset
(``synthetic`` included), both in listing order and read from the registry on each access.
"""
from __future__ import annotations

import inspect
import os
from typing import Any

import torch

from .cifarfs import load_cifarfs
from .dataset import FewShotDataset
from .episodes import EpisodeSampler, check_episode
from .errors import IntegrityError
from .locations import SPLITS, cache_dir, check_choice, data_dir
from .miniimagenet import load_miniimagenet
from .omniglot import load_omniglot
from .registry import dataset_names, get_spec, register, unregister
from .spec import DatasetSpec, PaperEpisode, PaperSettings, Remote

SAMPLER_OPTIONS = ("mean", "std", "shuffle")


def load_dataset(dataset: str, split: str | None = None, root: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None, **options: Any) -> FewShotDataset:
    """One split of a dataset read from disk, by name.

    Args:
        dataset: A dataset read from disk (see ``DATASETS``).
        split: ``train``, ``val`` or ``test``; ``None`` reads the spec's ``default_split``.
        root: The data directory (default ``$MAML_PROBE_DATA`` or ``<project>/data``).
        cache_dir: The cache directory (default ``$MAML_PROBE_CACHE`` or ``<data dir>/cache``).
        **options: Options of the dataset's loader (e.g. ``rotations=`` for Omniglot).

    Returns:
        The split as a ``FewShotDataset``.

    Raises:
        ValueError: Unknown dataset, split or option.
    """
    spec = get_spec(dataset, on_disk=True)
    split = spec.default_split if split is None else split
    check_choice("split", split, SPLITS)
    allowed = [p for p in inspect.signature(spec.loader).parameters
               if p not in ("root", "cache_dir", "split")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for dataset={dataset!r}; allowed: "
                         f"{allowed + list(SAMPLER_OPTIONS)}")
    return spec.loader(root, cache_dir, split, **options)


def expected_counts(dataset: str, split: str, options: dict[str, Any]) -> tuple[int, int]:
    """Classes and images per class of a standard split, before any file is read.

    Args:
        dataset: A dataset read from disk.
        split: ``train``, ``val`` or ``test``.
        options: Loader options that change the counts (e.g. ``split_sizes=``).

    Returns:
        ``(classes, images per class)``.
    """
    return get_spec(dataset, on_disk=True).split_counts(split, options)


def build_task_source(dataset: str, split: str, ways: int, shots: int, queries: int,
                      root: str | os.PathLike | None = None,
                      cache_dir: str | os.PathLike | None = None,
                      device: torch.device | str = "cpu", **options: Any) -> EpisodeSampler:
    """An episode sampler over one split of a dataset read from disk.

    The episode is checked against the standard class and image counts
    (``expected_counts``) before any data is read, and against the loaded data again by
    ``EpisodeSampler``.

    Args:
        dataset: A dataset read from disk (see ``DATASETS``).
        split: ``train``, ``val`` or ``test``.
        ways: Classes per episode.
        shots: Support images per class.
        queries: Query images per class.
        root: The data directory.
        cache_dir: The cache directory.
        device: Where the images live and the episodes are built.
        **options: Loader options (e.g. ``rotations=``, ``split_seed=``, ``classes_limit=``),
            except ``mean``, ``std`` and ``shuffle``, which go to the sampler.

    Returns:
        The sampler (a ``TaskSource``).
    """
    spec = get_spec(dataset, on_disk=True)
    check_choice("split", split, SPLITS)
    try:
        counts = spec.split_counts(split, options)
    except (TypeError, IndexError, ValueError):  # malformed options: the loader reports them
        counts = (2**62, 2**62)
    check_episode(ways, shots, queries, *counts, where=f"{dataset}/{split}")  # before any I/O
    sampler_kw = {k: options.pop(k) for k in SAMPLER_OPTIONS if k in options}
    data = load_dataset(dataset, split, root, cache_dir, **options)
    return EpisodeSampler(data, ways, shots, queries, device=device, **sampler_kw)


def dataset_available(dataset: str, root: str | os.PathLike | None = None) -> str | None:
    """Whether a dataset's source files are installed (nothing is read or cached).

    Args:
        dataset: A dataset read from disk.
        root: The data directory.

    Returns:
        ``None`` when the sources are found, else a one-line reason with the install command.
    """
    spec = get_spec(dataset, on_disk=True)
    try:
        spec.find_sources(root)
    except FileNotFoundError:
        return f"{dataset} not found in {data_dir(root)} (install: {spec.install_command})"
    return None


def __getattr__(name: str) -> tuple[str, ...]:
    if name == "DATASETS":
        return dataset_names(on_disk=True)
    if name == "DATASET_NAMES":
        return dataset_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["dataset_available", "FewShotDataset", "EpisodeSampler", "IntegrityError", "build_task_source",
           "load_dataset", "load_omniglot", "load_cifarfs", "load_miniimagenet", "data_dir",
           "cache_dir", "check_episode", "DATASETS", "DATASET_NAMES", "SPLITS", "DatasetSpec",
           "PaperEpisode", "PaperSettings", "Remote", "get_spec", "dataset_names", "register",
           "unregister"]
