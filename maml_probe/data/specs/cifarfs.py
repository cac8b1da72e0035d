"""CIFAR-FS (Bertinetto et al., 2019): the 100 CIFAR-100 classes split 64 / 16 / 20.

600 colour images of 32x32 per class, read from the official CIFAR-100 python archive (see
:mod:`maml_probe.data.cifarfs`). Used by E3-E8 and E10.

Paper settings (Section 5.2, Appendix A.1.2): 10-way 3-shot, 2 adaptation steps, meta
learning rate 0.003, adaptation rates CNN/SCNN 0.7 and MSGD/MC/KFC 0.5. Left open by the paper
and chosen here: meta-batch 4 tasks, 15 query images per class; CFC uses the KFC rate.

Loader option ``normalise`` (pass it in ``TrainConfig.dataset_kwargs``, e.g.
``{"normalise": "channel"}``): ``"pixel"`` (the default, ``x / 255``) or ``"channel"``, the
per-channel standardisation of Bertinetto et al. (2019) with the mean and std of the 64 training
classes, whose preprocessing the paper says it reproduces (Appendix A.1.2); see
:mod:`maml_probe.data.cifarfs`.

Source: www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz with its published md5.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

from ..cifarfs import ARCHIVE, FOLDER, NORMALISATION, PARTS, cifar100_classes, find_source, load_cifarfs
from ..spec import DatasetSpec, PaperEpisode, PaperSettings, Remote, class_counts


def find_sources(root: str | os.PathLike | None) -> list[Path]:
    """The installed archive or extracted folder.

    Args:
        root: The data directory.

    Returns:
        A one-element list; ``FileNotFoundError`` names what was searched if there is none.
    """
    return [find_source(root)]


def prepare(root: str | os.PathLike | None, cache_dir: str | os.PathLike | None,
            progress: bool) -> Iterator[tuple[str, dict[str, Any]]]:
    """Build (or check) the cache of all 100 classes.

    Args:
        root: The data directory.
        cache_dir: The cache directory.
        progress: Show a progress bar while building.

    Yields:
        One ``("cifar-100 (CIFAR-FS)", cache record)`` pair.
    """
    yield "cifar-100 (CIFAR-FS)", cifar100_classes(root, cache_dir, progress=progress)[1]


def install_plan(path: Path) -> list[tuple[Path, str]]:
    """The archive or folder that ``--from path`` installs.

    Args:
        path: The tarball, the extracted ``cifar-100-python`` folder, or a folder holding
            either.

    Returns:
        (source, name inside ``cifar-fs/``) pairs; empty if ``path`` holds neither form.
    """
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
        return [(path, ARCHIVE)]
    for d in (path, path / FOLDER):
        if d.is_file() and d.name.endswith(".tar.gz"):
            return [(d, ARCHIVE)]
        if d.is_dir() and all((d / p).is_file() for p in PARTS):
            return [(d, FOLDER)]
    if (path / ARCHIVE).is_file():
        return [(path / ARCHIVE, ARCHIVE)]
    return []


SPEC = DatasetSpec(
    name="cifarfs",
    display_name="CIFAR-FS",
    input_shape=(3, 32, 32),
    order=30,
    loader=load_cifarfs,
    split_counts=class_counts({"train": 64, "val": 16, "test": 20}, per_class=600),
    normalisation=NORMALISATION,
    folder="cifar-fs",
    layout=(
        "cifar-fs/cifar-100-python.tar.gz (the official CIFAR-100 python archive), or the\n"
        "extracted folder cifar-fs/cifar-100-python/{train,test,meta}"
    ),
    find_sources=find_sources,
    prepare=prepare,
    install_plan=install_plan,
    remotes=(
        Remote(ARCHIVE, "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
               md5="eb9058c3a382ffc7106e4002c42a8d85"),
    ),
    paper=PaperSettings(
        episode=PaperEpisode(ways=10, shots=3, queries=15, steps=2, meta_batch=4, meta_lr=0.003),
        alpha={"cnn": 0.7, "scnn": 0.7, "metasgd": 0.5, "mc": 0.5, "kfc": 0.5, "cfc": 0.5},
        column=1,
        cpu={"iterations": 500, "meta_batch": 4},
    ),
)
