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
from .omniglot import load_omniglot

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


def build_task_source(dataset: str, split: str, ways: int, shots: int, queries: int,
                      root: str | os.PathLike | None = None,
                      cache_dir: str | os.PathLike | None = None,
                      device: torch.device | str = "cpu", **options: Any) -> EpisodeSampler:
    """An ``EpisodeSampler`` for ``dataset`` in {omniglot, cifarfs, miniimagenet}, ``split`` in
    {train, val, test}.

    ``options`` go to the loader (e.g. ``rotations=``, ``split_seed=``, ``classes_limit=``)
    except ``mean``, ``std``, ``shuffle``, which go to the sampler. The episode is validated
    before any data is loaded when the dataset's class and image counts are known.
    """
    check_choice("dataset", dataset, DATASETS)
    check_choice("split", split, SPLITS)
    check_episode(ways, shots, queries, 10**9, 10**9)  # argument types and positivity first
    sampler_kw = {k: options.pop(k) for k in SAMPLER_OPTIONS if k in options}
    data = load_dataset(dataset, split, root, cache_dir, **options)
    return EpisodeSampler(data, ways, shots, queries, device=device, **sampler_kw)


__all__ = ["FewShotDataset", "EpisodeSampler", "IntegrityError", "build_task_source",
           "load_dataset", "load_omniglot", "load_cifarfs", "load_miniimagenet", "data_dir",
           "cache_dir", "check_episode", "DATASETS", "SPLITS"]
