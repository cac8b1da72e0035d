"""mini-ImageNet (Vinyals et al. 2016; Ravi & Larochelle 2017 split) as a ``FewShotDataset``.

Sources, searched in ``<data dir>/mini-imagenet`` then in the data directory itself, per split:

* ``mini-imagenet-cache-{split}.pkl``: the widely shared pickle caches, a dict with
  ``'image_data'`` uint8 ``[N, 84, 84, 3]`` and ``'class_dict'`` ``{wnid: [indices]}``
  (read through :mod:`~maml_probe.data.safe_pickle`: numpy arrays and plain containers only,
  so a crafted pickle cannot run code);
* ``{split}.csv`` + ``images/``: the Ravi & Larochelle layout, csv rows ``filename,label``,
  images ``images/<filename>`` (84x84 RGB JPEGs from their script).

``source="auto"`` prefers the pickle when both exist. Classes are ordered by wnid, images
within a class in csv (or ``class_dict``) order. Images are converted to RGB; any image that
is not ``image_size`` x ``image_size`` is resized with PIL's Lanczos filter. The cache of one
split is ``[classes, 600, 3, 84, 84]`` uint8 (train: 813 MB; pass ``mmap=True`` to map it
instead of reading it). ``classes_limit=k`` builds (and caches separately) only the first
``k`` classes of the split: decoding all 60,000 JPEGs takes about 20 s per core.
"""
from __future__ import annotations

import csv
import os
import pickle
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from . import cache as cache_mod
from .dataset import FewShotDataset, from_numpy
from .errors import IntegrityError, corrupt_source, missing_dataset
from .locations import SPLITS, candidate_dirs, check_choice
from .locations import cache_dir as default_cache_dir
from .safe_pickle import UnsafePickleError, safe_load

SOURCES = ("auto", "pickle", "csv")
#: How the sampler scales pixels (recorded in every loaded split's ``info``).
NORMALISATION = "x / 255 per channel, values in [0, 1]"
LANCZOS = getattr(Image, "Resampling", Image).LANCZOS  # Pillow < 9.1 has no Image.Resampling


def pickle_name(split: str) -> str:
    """File name of the pickled ``split`` in the common mini-ImageNet distribution."""
    return f"mini-imagenet-cache-{split}.pkl"


def find_source(root: str | os.PathLike | None, split: str,
                source: str = "auto") -> tuple[str, list[Path]]:
    """``("pickle", [pkl])`` or ``("csv", [csv, images_dir])`` for ``split``."""
    check_choice("split", split, SPLITS)
    check_choice("source", source, SOURCES)
    searched: list[Path] = []
    for d in candidate_dirs("miniimagenet", root):
        if source in ("auto", "pickle"):
            pkl = d / pickle_name(split)
            searched.append(pkl)
            if pkl.is_file():
                return "pickle", [pkl]
        if source in ("auto", "csv"):
            table, images = d / f"{split}.csv", d / "images"
            searched += [table, images]
            if table.is_file() and images.is_dir():
                return "csv", [table, images]
    raise missing_dataset("miniimagenet", searched, f"split {split!r}")


def read_split_csv(path: str | os.PathLike) -> dict[str, list[str]]:
    """``{wnid: [filenames]}`` from a Ravi & Larochelle csv, wnids sorted."""
    by_class: dict[str, list[str]] = defaultdict(list)
    with open(path, newline="") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if header is None or [h.strip() for h in header[:2]] != ["filename", "label"]:
            raise ValueError(f"{path}: expected a header 'filename,label', got {header}")
        for row in rows:
            if row:
                by_class[row[1].strip()].append(row[0].strip())
    return {k: by_class[k] for k in sorted(by_class)}


def _equal_counts(counts: dict[str, int], where: Path) -> int:
    values = set(counts.values())
    if len(values) != 1:
        raise ValueError(f"{where}: classes have unequal image counts {sorted(values)}")
    return values.pop()


def _decode(path: Path, image_size: int) -> np.ndarray:
    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.size != (image_size, image_size):
            im = im.resize((image_size, image_size), LANCZOS)
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)


def _build_csv(table: Path, images_dir: Path, classes_limit: int | None, image_size: int,
               workers: int, progress: bool) -> tuple[np.ndarray, dict[str, Any]]:
    classes = read_split_csv(table)
    names = list(classes)[:classes_limit]
    per = _equal_counts({k: len(classes[k]) for k in names}, table)
    files = [f for k in names for f in classes[k]]
    present = set(os.listdir(images_dir))
    missing = [f for f in files if f not in present]
    if missing:
        raise FileNotFoundError(f"{len(missing)} images listed in {table} are missing from "
                                f"{images_dir}, e.g. {missing[:3]}")
    out = np.empty((len(files), 3, image_size, image_size), dtype=np.uint8)

    def work(i: int) -> None:
        try:
            out[i] = _decode(images_dir / files[i], image_size)
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise corrupt_source(images_dir / files[i], "miniimagenet", exc) from exc

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in tqdm(pool.map(work, range(len(files)), chunksize=256), total=len(files),
                      desc=f"mini-imagenet {table.stem}: decoding JPEGs", unit="img",
                      disable=not progress, mininterval=0.5):
            pass
    return out.reshape(len(names), per, 3, image_size, image_size), {"class_names": names}


def _load_pickle(path: Path) -> dict[str, Any]:
    """The cache's dict, through the restricted unpickler (a pickle can run code)."""
    try:
        try:
            obj = safe_load(path)
        except UnicodeDecodeError:  # Python 2 pickle with numpy arrays
            obj = safe_load(path, encoding="latin1")
    except UnsafePickleError as exc:
        raise IntegrityError(f"{exc} Nothing was cached.") from None
    except (pickle.UnpicklingError, EOFError, ValueError, AttributeError, ImportError) as exc:
        raise corrupt_source(path, "miniimagenet", exc) from exc
    if not isinstance(obj, dict):
        raise corrupt_source(path, "miniimagenet", f"expected a dict, got {type(obj).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _build_pickle(path: Path, classes_limit: int | None,
                  image_size: int) -> tuple[np.ndarray, dict[str, Any]]:
    obj = _load_pickle(path)
    try:
        data, class_dict = np.asarray(obj["image_data"]), obj["class_dict"]
    except KeyError as exc:
        raise corrupt_source(path, "miniimagenet", f"missing key {exc}") from exc
    if data.dtype != np.uint8 or data.ndim != 4 or data.shape[1:] != (image_size, image_size, 3):
        raise corrupt_source(path, "miniimagenet", f"image_data is {data.dtype} {data.shape}, "
                             f"expected uint8 [N, {image_size}, {image_size}, 3]")
    class_dict = {k.decode() if isinstance(k, bytes) else k: v for k, v in class_dict.items()}
    names = sorted(class_dict)[:classes_limit]
    per = _equal_counts({k: len(class_dict[k]) for k in names}, path)
    idx = np.asarray([i for k in names for i in class_dict[k]], dtype=np.int64)
    images = data[idx].transpose(0, 3, 1, 2).reshape(len(names), per, 3, image_size, image_size)
    return images, {"class_names": names}


def load_miniimagenet(root: str | os.PathLike | None = None,
                      cache_dir: str | os.PathLike | None = None, split: str = "train", *,
                      source: str = "auto", classes_limit: int | None = None,
                      image_size: int = 84, workers: int | None = None, progress: bool = True,
                      mmap: bool = False) -> FewShotDataset:
    """One split of mini-ImageNet as ``[classes, 600, 3, 84, 84]`` uint8 RGB.

    64 / 16 / 20 classes for train / val / test. ``classes_limit`` keeps the first ``k``
    classes (by wnid); ``workers`` threads decode JPEGs (default ``min(8, cpu_count)``).
    The sampler's default normalisation is ``x / 255`` (values in [0, 1], as Finn et al.).
    """
    if classes_limit is not None and classes_limit < 1:
        raise ValueError(f"classes_limit must be >= 1 or None, got {classes_limit}")
    kind, sources = find_source(root, split, source)
    limit = "all" if classes_limit is None else f"c{classes_limit}"
    key = cache_mod.cache_key(f"miniimagenet-{split}-{limit}-{image_size}px", sources)
    options = {"format": kind, "image_size": image_size, "resize": "lanczos",
               "classes_limit": classes_limit}
    workers = workers or min(8, os.cpu_count() or 1)
    if kind == "pickle":
        build = lambda: _build_pickle(sources[0], classes_limit, image_size)  # noqa: E731
    else:
        build = lambda: _build_csv(sources[0], sources[1], classes_limit, image_size,  # noqa: E731
                                   workers, progress)
    array, meta = cache_mod.cached_array(default_cache_dir(cache_dir, root), key, sources,
                                         options, build, mmap=mmap)
    info = {"source": meta["sources"], "format": kind, "cache": meta.get("key"),
            "cache_hit": meta["cache_hit"], "classes_limit": classes_limit,
            "normalisation": NORMALISATION}
    return from_numpy("miniimagenet", split, array, meta["class_names"], info)
