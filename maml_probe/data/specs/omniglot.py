"""Omniglot (Lake et al., 2015): 1623 handwritten characters of 50 alphabets, 20 drawings each.

Read as 28x28 greyscale with ink = 1 and every rotation by a multiple of 90 degrees a separate
class (Finn et al., 2017; see :mod:`maml_probe.data.omniglot`). Used by E2 (Table 1, linear
models, 5-way 1-shot, Appendix A.1.1) and by the convolutional experiments E3-E8 and E10.

Paper settings for the convolutional experiments (Section 5.2, Appendix A.1.2): 10-way 5-shot,
4 adaptation steps, meta learning rate 0.003, adaptation rates CNN 0.5, SCNN 0.8 and
MSGD/MC/KFC 0.5. Left open by the paper and chosen here, following Finn et al. (2017):
meta-batch 32 tasks, as many query images per class as shots (5); CFC uses the KFC rate.

Sources: github.com/brendenlake/omniglot ``python/images_{background,evaluation}.zip``; the
md5 values are the ones torchvision publishes for these archives (not re-derived here).
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..download import check_archive
from ..locations import SPLITS
from ..omniglot import (
    ARCHIVES,
    DEFAULT_ROTATIONS,
    DEFAULT_SPLIT_SIZES,
    NORMALISATION,
    find_sources,
    load_omniglot,
    omniglot_characters,
)
from ..spec import DatasetSpec, PaperEpisode, PaperSettings, Remote

DRAWINGS = 20  # drawings of each character
_HOST = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"


def split_counts(split: str, options: Mapping[str, Any]) -> tuple[int, int]:
    """Classes (characters times rotations) and images per class of a split.

    Args:
        split: ``train``, ``val`` or ``test``.
        options: Loader options (``split_sizes``, ``rotations``).

    Returns:
        ``(classes, 20)``.
    """
    sizes = options.get("split_sizes", DEFAULT_SPLIT_SIZES)
    rotations = options.get("rotations", DEFAULT_ROTATIONS)
    return int(sizes[SPLITS.index(split)]) * len(rotations), DRAWINGS


def prepare(root: str | os.PathLike | None, cache_dir: str | os.PathLike | None,
            progress: bool) -> Iterator[tuple[str, dict[str, Any]]]:
    """Build (or check) the cache of all characters.

    Args:
        root: The data directory.
        cache_dir: The cache directory.
        progress: Show a progress bar while building.

    Yields:
        One ``("omniglot", cache record)`` pair.
    """
    yield "omniglot", omniglot_characters(root, cache_dir, progress=progress)[1]


def install_plan(path: Path) -> list[tuple[Path, str]]:
    """The archives or folders that ``--from path`` installs.

    Args:
        path: One of the two zips (also re-packed under another name), or a folder holding
            both zips or both extracted folders.

    Returns:
        (source, name inside ``omniglot/``) pairs; empty if ``path`` holds neither form.
    """
    if path.is_file() and path.suffix == ".zip":
        if path.stem in ARCHIVES:
            return [(path, path.name)]
        check_archive(path)
        top = {n.split("/", 1)[0] for n in zipfile.ZipFile(path).namelist()} & set(ARCHIVES)
        return [(path, f"{top.pop()}.zip")] if len(top) == 1 else []
    if path.is_dir():
        zips = [(path / f"{n}.zip", f"{n}.zip") for n in ARCHIVES if (path / f"{n}.zip").is_file()]
        return zips or [(path / n, n) for n in ARCHIVES if (path / n).is_dir()]
    return []


SPEC = DatasetSpec(
    name="omniglot",
    display_name="Omniglot",
    input_shape=(1, 28, 28),
    order=10,
    loader=load_omniglot,
    split_counts=split_counts,
    normalisation=NORMALISATION,
    folder="omniglot",
    layout=(
        "omniglot/images_background.zip and omniglot/images_evaluation.zip (the official\n"
        "archives), or the extracted folders omniglot/images_background/<Alphabet>/characterNN/*.png\n"
        "and omniglot/images_evaluation/<Alphabet>/characterNN/*.png"
    ),
    find_sources=find_sources,
    prepare=prepare,
    install_plan=install_plan,
    remotes=(
        Remote("images_background.zip", _HOST + "images_background.zip",
               md5="68d2efa1b9178cc56df9314c21c6e718"),
        Remote("images_evaluation.zip", _HOST + "images_evaluation.zip",
               md5="6b91aef0f799c5bb55b94e3f2daec811"),
    ),
    paper=PaperSettings(
        episode=PaperEpisode(ways=10, shots=5, queries=5, steps=4, meta_batch=32, meta_lr=0.003),
        alpha={"cnn": 0.5, "scnn": 0.8, "metasgd": 0.5, "mc": 0.5, "kfc": 0.5, "cfc": 0.5},
        column=0,
        cpu={"iterations": 500, "meta_batch": 4},
    ),
)
