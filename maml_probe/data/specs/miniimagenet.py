"""mini-ImageNet (Vinyals et al., 2016) with the Ravi & Larochelle (2017) 64 / 16 / 20 split.

600 colour images of 84x84 per class (see :mod:`maml_probe.data.miniimagenet`). Used by E7,
E8 and E10.

Paper settings (Section 5.2, Appendix A.1.2): 10-way 1-shot, 5 adaptation steps, meta
learning rate 0.0005, adaptation rates CNN/SCNN 0.07, MSGD 0.1, MC 0.09, KFC 0.005. Left open
by the paper and chosen here: meta-batch 4 tasks, 15 query images per class; CFC uses the KFC
rate. ``smoke``-scale runs decode only the first 10 classes of each split.

There is no official public download; ``MANUAL_DOWNLOAD`` says how to obtain a copy.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Iterator

from ..locations import SPLITS
from ..miniimagenet import NORMALISATION, find_source, load_miniimagenet
from ..spec import DatasetSpec, PaperEpisode, PaperSettings, class_counts

MANUAL_DOWNLOAD = """\
mini-ImageNet has no official public download. Obtain it in one of these forms:
  * the Ravi & Larochelle layout: images/*.jpg (84x84) plus train.csv, val.csv, test.csv,
    made with their script (github.com/twitter/meta-learning-lstm) from the ILSVRC-2012
    training images (image-net.org, free for non-commercial research after registration);
  * the pickle caches mini-imagenet-cache-{train,val,test}.pkl shared by several few-shot
    repositories.
Then install it with:  maml-probe data download miniimagenet --from PATH
(PATH: the folder holding images/ and the csv files, the folder holding the .pkl files, or
one .pkl file), or point root= / $MAML_PROBE_DATA at the folder that holds mini-imagenet/."""


def find_sources(root: str | os.PathLike | None) -> list[Path]:
    """The first source file of every split.

    Args:
        root: The data directory.

    Returns:
        One path per split (a pickle or a csv); ``FileNotFoundError`` names the first split
        missing and what was searched.
    """
    return [find_source(root, split)[1][0] for split in SPLITS]


def prepare(root: str | os.PathLike | None, cache_dir: str | os.PathLike | None,
            progress: bool) -> Iterator[tuple[str, dict[str, Any]]]:
    """Build (or check) the cache of every split.

    Args:
        root: The data directory.
        cache_dir: The cache directory.
        progress: Show a progress bar while decoding images.

    Yields:
        One ``("mini-imagenet <split>", record)`` pair per split.
    """
    for split in SPLITS:
        start = time.perf_counter()
        ds = load_miniimagenet(root, cache_dir, split, progress=progress, mmap=True)
        yield f"mini-imagenet {split}", dict(ds.info, shape=list(ds.images.shape),
                                              build_seconds=time.perf_counter() - start)


def install_plan(path: Path) -> list[tuple[Path, str]]:
    """The files and folders that ``--from path`` installs.

    Args:
        path: One ``.pkl`` cache, or a folder holding the pickle caches and/or the csv files
            with ``images/``.

    Returns:
        (source, name inside ``mini-imagenet/``) pairs; empty if ``path`` holds neither form.
    """
    if path.is_file() and path.suffix == ".pkl":
        return [(path, path.name)]
    if path.is_dir():
        pkls = sorted(path.glob("mini-imagenet-cache-*.pkl"))
        csvs = [path / f"{s}.csv" for s in SPLITS if (path / f"{s}.csv").is_file()]
        plan = [(p, p.name) for p in pkls]
        if csvs and (path / "images").is_dir():
            plan += [(c, c.name) for c in csvs] + [(path / "images", "images")]
        return plan
    return []


SPEC = DatasetSpec(
    name="miniimagenet",
    display_name="mini-ImageNet",
    input_shape=(3, 84, 84),
    order=20,
    loader=load_miniimagenet,
    split_counts=class_counts({"train": 64, "val": 16, "test": 20}, per_class=600),
    normalisation=NORMALISATION,
    smoke_options={"classes_limit": 10},
    folder="mini-imagenet",
    layout=(
        "mini-imagenet/images/*.jpg with mini-imagenet/{train,val,test}.csv (Ravi & Larochelle\n"
        "layout, rows 'filename,label'), or mini-imagenet/mini-imagenet-cache-{train,val,test}.pkl"
    ),
    find_sources=find_sources,
    prepare=prepare,
    install_plan=install_plan,
    manual_download=MANUAL_DOWNLOAD,
    paper=PaperSettings(
        episode=PaperEpisode(ways=10, shots=1, queries=15, steps=5, meta_batch=4, meta_lr=0.0005),
        alpha={"cnn": 0.07, "scnn": 0.07, "metasgd": 0.1, "mc": 0.09, "kfc": 0.005,
               "cfc": 0.005},
        column=2,
        cpu={"iterations": 100, "meta_batch": 4, "test_tasks": 200},
    ),
)
