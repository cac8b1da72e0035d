"""CIFAR-FS (Bertinetto et al. 2019) from the standard CIFAR-100 python archive.

Sources, searched in ``<data dir>/cifar-fs`` then in the data directory itself:
``cifar-100-python.tar.gz`` (official archive, preferred when present) or the extracted folder
``cifar-100-python/`` with the pickles ``train``, ``test`` and ``meta`` (keys ``b'data'``
``[N, 3072]`` uint8 channel-major, ``b'fine_labels'``, and in ``meta`` ``b'fine_label_names'``).

All 600 images of each fine class (500 from ``train`` then 100 from ``test``, file order) form
the class; the cache is ``[100, 600, 3, 32, 32]`` uint8 in fine-label order. The 64 / 16 / 20
split of the 100 fine classes is Bertinetto et al.'s, carried in
``maml_probe/data/splits/cifarfs_{train,val,test}.txt``: the class sets come from torchmeta's
``assets/cifar100/cifar-fs/*.json``, which reproduce the split files of
github.com/bertinetto/r2d2; they could not be compared with the r2d2 repository itself here.
No resizing.

**Normalisation** (``normalise=``, a loader option, so also ``TrainConfig.dataset_kwargs``):
``"pixel"`` (the default) leaves the sampler's ``x / 255`` (values in [0, 1]); ``"channel"``
standardises each colour channel as Bertinetto et al. (2019) do, whose preprocessing the paper
reproduces for CIFAR-FS (Appendix A.1.2): ``(x / 255 - mean_c) / std_c`` with the mean and
standard deviation of channel ``c`` over every pixel of every image of the 64 *training*
classes (:func:`channel_stats`), the same statistics for all three splits, so training images
have per-channel mean 0 and standard deviation 1. The statistics are recorded in the loaded
split's ``info`` (``mean``, ``std``, in [0, 1] units), which
:class:`~maml_probe.data.episodes.EpisodeSampler` applies. The image cache is the same for both:
they differ only in how the sampler scales the uint8 pixels, so its key does not name the option.
"""
from __future__ import annotations

import os
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from . import cache as cache_mod
from .dataset import FewShotDataset, from_numpy
from .errors import IntegrityError, corrupt_source, missing_dataset
from .locations import SPLITS, candidate_dirs, check_choice
from .locations import cache_dir as default_cache_dir
from .safe_pickle import UnsafePickleError, safe_loads

ARCHIVE = "cifar-100-python.tar.gz"
FOLDER = "cifar-100-python"
PARTS = ("train", "test", "meta")
#: How the sampler scales pixels (recorded in every loaded split's ``info``).
NORMALISATION = "x / 255 per channel, values in [0, 1]"
#: What ``normalise="channel"`` records instead (Bertinetto et al., 2019; see the module docstring).
CHANNEL_NORMALISATION = ("(x / 255 - mean) / std per channel, mean and std over the 64 training "
                         "classes (Bertinetto et al., 2019)")
#: The values of the loader's ``normalise`` option: pixel scaling (default) or per channel.
NORMALISATIONS = ("pixel", "channel")
SPLIT_DIR = Path(__file__).resolve().parent / "splits"

#: The 100 CIFAR-100 fine labels in label-index order (as in ``meta['fine_label_names']``).
CIFAR100_FINE_LABELS = tuple("""
apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly
camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile
cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp
lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree
orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum
rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake spider
squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor train
trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split())


def split_classes(split: str) -> list[str]:
    """The fine-label names of a CIFAR-FS split (from the package's split files)."""
    check_choice("split", split, SPLITS)
    lines = (SPLIT_DIR / f"cifarfs_{split}.txt").read_text().splitlines()
    return [s.strip() for s in lines if s.strip() and not s.startswith("#")]


def find_source(root: str | os.PathLike | None = None) -> Path:
    """The archive or the extracted folder; ``FileNotFoundError`` naming what was searched."""
    searched: list[Path] = []
    for d in candidate_dirs("cifarfs", root):
        archive, folder = d / ARCHIVE, d / FOLDER
        searched += [archive, folder]
        if archive.is_file():
            return archive
        if all((folder / p).is_file() for p in PARTS):
            return folder
    raise missing_dataset("cifarfs", searched)


def _unpickle(raw: bytes, where: Path) -> dict[str, Any]:
    """One part of the archive, through the restricted unpickler (a pickle can run code)."""
    try:
        obj = safe_loads(raw, source=where, encoding="bytes")
    except UnsafePickleError as exc:
        raise IntegrityError(f"{exc} Nothing was cached.") from None
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise corrupt_source(where, "cifarfs", exc) from exc
    if not isinstance(obj, dict):
        raise corrupt_source(where, "cifarfs", f"expected a dict, got {type(obj).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def read_parts(source: Path, progress: bool = False) -> dict[str, dict[str, Any]]:
    """The unpickled ``train``, ``test`` and ``meta`` dicts (str keys) of an archive or folder."""
    if source.is_dir():
        return {p: _unpickle((source / p).read_bytes(), source / p) for p in PARTS}
    raw: dict[str, bytes] = {}
    try:
        with tqdm.wrapattr(open(source, "rb"), "read", total=source.stat().st_size, unit="B",
                           unit_scale=True, desc="cifar-100: reading archive",
                           disable=not progress) as fobj, \
                tarfile.open(fileobj=fobj, mode="r:gz") as tf:
            for member in tf:
                base = member.name.rstrip("/").rsplit("/", 1)[-1]
                if member.isfile() and base in PARTS:
                    f = tf.extractfile(member)
                    raw[base] = f.read() if f is not None else b""
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise corrupt_source(source, "cifarfs", exc) from exc
    missing = [p for p in PARTS if p not in raw]
    if missing:
        raise corrupt_source(source, "cifarfs", f"no member(s) {missing} in the archive")
    return {p: _unpickle(raw[p], source) for p in PARTS}


def _build(source: Path, progress: bool) -> tuple[np.ndarray, dict[str, Any]]:
    parts = read_parts(source, progress)
    try:
        names = [n.decode() if isinstance(n, bytes) else n for n in parts["meta"]["fine_label_names"]]
        data = np.concatenate([np.asarray(parts[p]["data"], dtype=np.uint8) for p in ("train", "test")])
        labels = np.concatenate([np.asarray(parts[p]["fine_labels"]) for p in ("train", "test")])
    except KeyError as exc:
        raise corrupt_source(source, "cifarfs", f"missing key {exc}") from exc
    counts = np.bincount(labels, minlength=len(names))
    if data.shape != (len(labels), 3072) or len(counts) != len(names) or len(set(counts)) != 1:
        raise corrupt_source(source, "cifarfs", f"data {data.shape}, per-class counts "
                             f"{sorted(set(counts.tolist()))} for {len(names)} classes")
    order = np.argsort(labels, kind="stable")
    images = data[order].reshape(len(names), int(counts[0]), 3, 32, 32)
    return images, {"class_names": names}


def cifar100_classes(root: str | os.PathLike | None = None,
                     cache_dir: str | os.PathLike | None = None, *, progress: bool = True,
                     mmap: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """All 100 fine classes ``[100, 600, 3, 32, 32]`` uint8 and the cache record."""
    source = find_source(root)
    key = cache_mod.cache_key("cifar100-32px", [source])
    return cache_mod.cached_array(default_cache_dir(cache_dir, root), key, [source],
                                  {"layout": "fine-label order, train then test"},
                                  lambda: _build(source, progress), mmap=mmap)


def channel_stats(images: np.ndarray,
                  classes: Sequence[int] | None = None) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of uint8 images, in ``x / 255`` units.

    Exact (from a histogram of the 256 pixel values per channel), and read one class at a time,
    so a memory-mapped cache is never copied whole.

    Args:
        images: ``[classes, per_class, C, H, W]`` uint8.
        classes: The classes (first-axis positions) to average over; ``None``: all.

    Returns:
        ``(mean, std)``, ``C`` floats each; ``std`` is the population standard deviation over
        every pixel of every image.
    """
    channels = images.shape[2]
    hist = np.zeros((channels, 256), dtype=np.int64)
    for k in range(len(images)) if classes is None else classes:
        for c in range(channels):
            hist[c] += np.bincount(np.ascontiguousarray(images[k, :, c]).ravel(), minlength=256)
    values = np.arange(256, dtype=np.float64) / 255.0
    n = hist.sum(axis=1)
    mean = hist @ values / n
    var = np.maximum(hist @ values**2 / n - mean**2, 0.0)
    return mean.tolist(), np.sqrt(var).tolist()


def _class_index(meta: dict[str, Any], split: str) -> list[int]:
    """Positions in the cache of ``split``'s classes (``ValueError`` naming unknown ones)."""
    index = {n: i for i, n in enumerate(meta["class_names"])}
    wanted = split_classes(split)
    unknown = [n for n in wanted if n not in index]
    if unknown:
        raise ValueError(f"CIFAR-FS {split} classes {unknown} are not fine labels of "
                         f"{meta['sources'][0]['path']}")
    return [index[n] for n in wanted]


def load_cifarfs(root: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                 split: str = "train", *, normalise: str = "pixel", progress: bool = True,
                 mmap: bool = False) -> FewShotDataset:
    """One CIFAR-FS split ``[64 | 16 | 20, 600, 3, 32, 32]`` uint8 RGB (see module docstring).

    Args:
        root: The data directory.
        cache_dir: The cache directory.
        split: ``train``, ``val`` or ``test``.
        normalise: ``"pixel"`` (``x / 255``, the default) or ``"channel"`` (per-channel mean 0
            and std 1 over the training classes, as Bertinetto et al., 2019; Appendix A.1.2).
        progress: Show a bar while the archive is read for the first (cache-building) load.
        mmap: Memory-map the cache instead of reading it.

    Returns:
        The split; with ``normalise="channel"`` its ``info`` holds the ``mean`` and ``std``
        that the episode sampler applies.
    """
    check_choice("split", split, SPLITS)
    check_choice("normalise", normalise, NORMALISATIONS)
    array, meta = cifar100_classes(root, cache_dir, progress=progress, mmap=mmap)
    idx = _class_index(meta, split)
    info = {"source": meta["sources"], "cache": meta.get("key"), "cache_hit": meta["cache_hit"],
            "normalisation": NORMALISATION}
    if normalise == "channel":
        mean, std = channel_stats(array, _class_index(meta, "train"))
        if min(std) <= 0:
            raise ValueError(f"normalise='channel': a colour channel of the CIFAR-FS training "
                             f"classes is constant (std {std}); use normalise='pixel'")
        info.update(normalisation=CHANNEL_NORMALISATION, mean=mean, std=std)
    return from_numpy("cifarfs", split, np.ascontiguousarray(array[idx]), split_classes(split), info)
