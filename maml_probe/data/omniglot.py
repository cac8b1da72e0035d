"""Omniglot (Lake et al. 2015) from the official archives, as a ``FewShotDataset``.

Sources, searched in ``<data dir>/omniglot`` then in the data directory itself:
``images_background.zip`` + ``images_evaluation.zip`` (official archives), or the extracted
folders ``images_background/`` + ``images_evaluation/`` with
``<Alphabet>/characterNN/XXXX_YY.png`` inside (105x105, 1-bit, white background, black ink).

Preprocessing (as in Finn et al. 2017, ``proc_images.py``): each PNG is converted to 8-bit
greyscale and resized to ``image_size`` x ``image_size`` (28) with PIL's **Lanczos** filter,
then **inverted** so that ink is 255 and background 0; after the sampler's ``x / 255`` ink is
1.0 and background 0.0. The cache holds all 1623 characters ``[1623, 20, 1, 28, 28]`` uint8
(25 MB), characters ordered background then evaluation, each by ``Alphabet/characterNN``;
drawings in file-name order.

Split: the paper (A.1.1) says 1200 / 100 / 423, which sums to 1723, not 1623; Finn et al.
use 1200 meta-train and the remaining 423 for meta-test. Default ``split_sizes`` is
``(1100, 100, 423)``: a permutation of the 1623 characters from
``numpy.random.default_rng(split_seed)`` (``split_seed=0``; independent of any global random
state) gives meta-train ``perm[:1100]``, meta-validation ``perm[1100:1200]`` (carved out of
the 1200 meta-training characters) and meta-test ``perm[1200:1623]``; so the test characters
depend only on ``split_seed`` and ``split_sizes[0] + split_sizes[1]``. This is not Finn et al.'s
exact split (theirs depends on ``os.listdir`` order), only the same sizes.

Rotations (Finn et al.; Santoro et al. 2016): each character rotated by 0/90/180/270 degrees
(``torch.rot90``, counter-clockwise) is a separate class, in every split; rotated classes are
materialised (4 x 25 MB at most), class ``4 * c + r`` is character ``c`` rotated by
``rotations[r]``. All rotations of a character stay in the character's split.
"""
from __future__ import annotations

import io
import os
import zipfile
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from . import cache as cache_mod
from .dataset import FewShotDataset
from .errors import corrupt_source, missing_dataset
from .locations import SPLITS, candidate_dirs, check_choice
from .locations import cache_dir as default_cache_dir

ARCHIVES = ("images_background", "images_evaluation")
NUM_CHARACTERS = 1623
DEFAULT_SPLIT_SIZES = (1100, 100, 423)
DEFAULT_SPLIT_SEED = 0
DEFAULT_ROTATIONS = (0, 90, 180, 270)
#: How the sampler scales pixels (recorded in every loaded split's ``info``).
NORMALISATION = "x / 255; ink = 1, background = 0"
LANCZOS = getattr(Image, "Resampling", Image).LANCZOS  # Pillow < 9.1 has no Image.Resampling
_BAD = (zipfile.BadZipFile, zlib.error, EOFError, OSError, UnidentifiedImageError, ValueError)


def find_sources(root: str | os.PathLike | None = None) -> list[Path]:
    """The two archives (or extracted folders); ``FileNotFoundError`` naming what was searched."""
    searched = []
    for d in candidate_dirs("omniglot", root):
        for kind in ("zip", "dir"):
            paths = [d / (f"{a}.zip" if kind == "zip" else a) for a in ARCHIVES]
            searched += paths
            if all(p.is_file() if kind == "zip" else p.is_dir() for p in paths):
                return paths
    raise missing_dataset("omniglot", searched)


def decode_png(data: bytes, image_size: int) -> np.ndarray:
    """One Omniglot PNG -> ``[image_size, image_size]`` uint8, Lanczos-resized, ink = 255."""
    with Image.open(io.BytesIO(data)) as im:
        small = im.convert("L").resize((image_size, image_size), LANCZOS)
    return 255 - np.asarray(small, dtype=np.uint8)


def _list_characters(source: Path) -> tuple[dict[str, list[str]], Callable[[str], bytes], Callable[[], None]]:
    """Map ``images_x/Alphabet/characterNN`` -> sorted PNG members; a reader; a closer."""
    chars: dict[str, list[str]] = defaultdict(list)
    top = source.name.removesuffix(".zip")
    if source.is_file():
        try:
            zf = zipfile.ZipFile(source)
            names = zf.namelist()
        except _BAD as exc:
            raise corrupt_source(source, "omniglot", exc) from exc
        for n in names:
            parts = n.split("/")
            if n.lower().endswith(".png") and len(parts) >= 3:
                chars["/".join([top, *parts[-3:-1]])].append(n)
        return {k: sorted(v) for k, v in chars.items()}, zf.read, zf.close
    for png in source.glob("*/*/*.png"):
        rel = png.relative_to(source)
        chars["/".join([top, *rel.parts[:2]])].append(str(png))
    return {k: sorted(v) for k, v in chars.items()}, lambda p: Path(p).read_bytes(), lambda: None


def _build(sources: Sequence[Path], image_size: int, progress: bool) -> tuple[np.ndarray, dict]:
    listings = [(src, *_list_characters(src)) for src in sources]
    try:
        names = [k for _, chars, _, _ in listings for k in sorted(chars)]
        counts = {len(m) for _, chars, _, _ in listings for m in chars.values()}
        if not names:
            raise missing_dataset("omniglot", list(sources), "no PNG files inside")
        if len(counts) != 1:
            raise ValueError(f"Omniglot characters have unequal numbers of drawings {sorted(counts)}; "
                             f"sources: {', '.join(map(str, sources))}")
        per = counts.pop()
        out = np.empty((len(names), per, 1, image_size, image_size), dtype=np.uint8)
        bar = tqdm(total=len(names) * per, desc="omniglot: decoding PNGs", unit="img",
                   disable=not progress, mininterval=0.5)
        c = 0
        for src, chars, read, _ in listings:
            for key in sorted(chars):
                for j, member in enumerate(chars[key]):
                    try:
                        out[c, j, 0] = decode_png(read(member), image_size)
                    except _BAD as exc:
                        raise corrupt_source(src, "omniglot", f"{member}: {exc}") from exc
                bar.update(per)
                c += 1
        bar.close()
    finally:
        for _, _, _, close in listings:
            close()
    return out, {"class_names": names, "images_per_class": per}


def omniglot_characters(root: str | os.PathLike | None = None,
                        cache_dir: str | os.PathLike | None = None, *, image_size: int = 28,
                        progress: bool = True, mmap: bool = False) -> tuple[np.ndarray, dict]:
    """All characters ``[1623, 20, 1, S, S]`` uint8 (ink = 255) and the cache record.

    Builds the cache on first use (a few seconds; progress bar), then reads it.
    """
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    sources = find_sources(root)
    key = cache_mod.cache_key(f"omniglot-{image_size}px", sources)
    options = {"image_size": image_size, "resize": "lanczos", "ink": 255}
    return cache_mod.cached_array(default_cache_dir(cache_dir, root), key, sources, options,
                                  lambda: _build(sources, image_size, progress), mmap=mmap)


def split_characters(num_characters: int, split_sizes: Sequence[int] = DEFAULT_SPLIT_SIZES,
                     split_seed: int = DEFAULT_SPLIT_SEED) -> dict[str, np.ndarray]:
    """Sorted character indices of each split (see module docstring for the recipe)."""
    sizes = tuple(int(s) for s in split_sizes)
    if len(sizes) != 3 or min(sizes) < 0 or sum(sizes) > num_characters:
        raise ValueError(f"split_sizes={sizes} must be three non-negative counts summing to at "
                         f"most {num_characters} characters")
    perm = np.random.default_rng(split_seed).permutation(num_characters)
    ends = np.cumsum(sizes)
    starts = ends - np.array(sizes)
    return {s: np.sort(perm[a:b]) for s, a, b in zip(SPLITS, starts, ends)}


def rotate_classes(images: torch.Tensor, rotations: Sequence[int]) -> torch.Tensor:
    """``[n, m, C, H, W]`` -> ``[n * R, m, C, H, W]``; class ``R * c + r`` = char ``c`` rotated."""
    ks = [r // 90 for r in rotations]
    if images.shape[0] == 0 or ks == [0]:
        return images
    rotated = torch.stack([torch.rot90(images, k, dims=(-2, -1)) for k in ks], dim=1)
    return rotated.reshape(-1, *images.shape[1:])


def _check_rotations(rotations: Sequence[int]) -> tuple[int, ...]:
    rot = tuple(int(r) for r in rotations)
    if not rot or len(set(rot)) != len(rot) or any(r not in DEFAULT_ROTATIONS for r in rot):
        raise ValueError(f"rotations={rot} must be distinct values from {DEFAULT_ROTATIONS}")
    return rot


def load_omniglot(root: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                  split: str = "train", *, image_size: int = 28,
                  rotations: Sequence[int] = DEFAULT_ROTATIONS,
                  split_sizes: Sequence[int] = DEFAULT_SPLIT_SIZES,
                  split_seed: int = DEFAULT_SPLIT_SEED, progress: bool = True) -> FewShotDataset:
    """One split of Omniglot as ``[classes, 20, 1, 28, 28]`` uint8, ink = 255.

    Defaults: 1100 / 100 / 423 characters (``split_seed=0``), each rotation a class, so
    4400 / 400 / 1692 classes. See the module docstring for the resize filter, ink polarity,
    split recipe and rotation layout.
    """
    check_choice("split", split, SPLITS)
    rot = _check_rotations(rotations)
    array, meta = omniglot_characters(root, cache_dir, image_size=image_size, progress=progress)
    chars = split_characters(array.shape[0], split_sizes, split_seed)[split]
    images = rotate_classes(torch.from_numpy(array[chars]), rot)
    names = [f"{meta['class_names'][c]}/rot{r:03d}" for c in chars for r in rot]
    info = {"source": meta["sources"], "cache": meta.get("key"), "cache_hit": meta["cache_hit"],
            "split_sizes": list(split_sizes), "split_seed": split_seed, "rotations": list(rot),
            "characters": chars.tolist(), "normalisation": NORMALISATION}
    return FewShotDataset("omniglot", split, images, tuple(names), info)
