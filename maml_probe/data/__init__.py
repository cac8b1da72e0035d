"""Few-shot datasets (Omniglot, CIFAR-FS, mini-ImageNet) and fast episode sampling.

Loaders read the standard on-disk formats, convert a dataset once into a compact uint8
``.npy`` cache (see ``cache``) and return a ``FewShotDataset`` ``[classes, per_class, C, H, W]``;
``EpisodeSampler`` draws seeded meta-batches of episodes from it as index tensors (a
``TaskSource``). ``build_task_source`` does both from names. Data lives in ``data_dir()``
(``root=``, ``$MAML_PROBE_DATA``, ``<project>/data``), caches in ``cache_dir()``
(``cache_dir=``, ``$MAML_PROBE_CACHE``, ``<data dir>/cache``). Install data with
``maml-probe data download <dataset> [--from PATH]``.
"""
from __future__ import annotations

import inspect
import os
from typing import Any, Callable

import torch

from .cifarfs import load_cifarfs
from .dataset import FewShotDataset
from .episodes import EpisodeSampler, check_episode
from .errors import IntegrityError
from .locations import DATASETS, SPLITS, cache_dir, check_choice, data_dir
from .miniimagenet import load_miniimagenet
from .omniglot import DEFAULT_ROTATIONS, DEFAULT_SPLIT_SIZES, load_omniglot

LOADERS: dict[str, Callable[..., FewShotDataset]] = {
    "omniglot": load_omniglot, "cifarfs": load_cifarfs, "miniimagenet": load_miniimagenet}
SAMPLER_OPTIONS = ("mean", "std", "shuffle")


def load_dataset(dataset: str, split: str, root: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None, **options: Any) -> FewShotDataset:
    """``load_<dataset>(root, cache_dir, split, **options)`` with checked names and options."""
    check_choice("dataset", dataset, DATASETS)
    check_choice("split", split, SPLITS)
    loader = LOADERS[dataset]
    allowed = [p for p in inspect.signature(loader).parameters if p not in ("root", "cache_dir", "split")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for dataset={dataset!r}; allowed: "
                         f"{allowed + list(SAMPLER_OPTIONS)}")
    return loader(root, cache_dir, split, **options)


def expected_counts(dataset: str, split: str, options: dict[str, Any]) -> tuple[int, int]:
    """(classes, images per class) of a split of the standard datasets, from the options."""
    if dataset == "omniglot":
        sizes = options.get("split_sizes", DEFAULT_SPLIT_SIZES)
        rotations = options.get("rotations", DEFAULT_ROTATIONS)
        return int(sizes[SPLITS.index(split)]) * len(rotations), 20
    classes = {"train": 64, "val": 16, "test": 20}[split]
    limit = options.get("classes_limit")
    return (min(classes, limit) if limit else classes), 600


def build_task_source(dataset: str, split: str, ways: int, shots: int, queries: int,
                      root: str | os.PathLike | None = None,
                      cache_dir: str | os.PathLike | None = None,
                      device: torch.device | str = "cpu", **options: Any) -> EpisodeSampler:
    """An ``EpisodeSampler`` for ``dataset`` in {omniglot, cifarfs, miniimagenet}, ``split`` in
    {train, val, test}.

    ``options`` go to the loader (e.g. ``rotations=``, ``split_seed=``, ``classes_limit=``)
    except ``mean``, ``std``, ``shuffle``, which go to the sampler. The episode is checked
    against the standard class and image counts (``expected_counts``) before any data is
    read, and against the loaded data again by ``EpisodeSampler``.
    """
    check_choice("dataset", dataset, DATASETS)
    check_choice("split", split, SPLITS)
    try:
        counts = expected_counts(dataset, split, options)
    except (TypeError, IndexError, ValueError):  # malformed options: the loader reports them
        counts = (2**62, 2**62)
    check_episode(ways, shots, queries, *counts, where=f"{dataset}/{split}")  # before any I/O
    sampler_kw = {k: options.pop(k) for k in SAMPLER_OPTIONS if k in options}
    data = load_dataset(dataset, split, root, cache_dir, **options)
    return EpisodeSampler(data, ways, shots, queries, device=device, **sampler_kw)


def dataset_available(dataset: str, root: str | os.PathLike | None = None) -> str | None:
    """``None`` when ``dataset``'s source files are found under ``root``, else a one-line reason
    with the install command (nothing is read or cached)."""
    from . import cifarfs, miniimagenet, omniglot
    from .errors import install_command

    check_choice("dataset", dataset, DATASETS)
    find = {"omniglot": lambda: omniglot.find_sources(root),
            "miniimagenet": lambda: miniimagenet.find_source(root, "train"),
            "cifarfs": lambda: cifarfs.find_source(root)}[dataset]
    try:
        find()
    except FileNotFoundError:
        return f"{dataset} not found in {data_dir(root)} (install: {install_command(dataset)})"
    return None


__all__ = ["dataset_available", "FewShotDataset", "EpisodeSampler", "IntegrityError", "build_task_source",
           "load_dataset", "load_omniglot", "load_cifarfs", "load_miniimagenet", "data_dir",
           "cache_dir", "check_episode", "DATASETS", "SPLITS"]
