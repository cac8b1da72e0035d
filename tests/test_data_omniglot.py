"""Omniglot loader: generated archives in the official layout, plus the real copy if present."""
from __future__ import annotations

import io
import random
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

try:
    from data_fixtures import make_omniglot, omniglot_png, truncated_copy
except ImportError:  # tests/ imported as a package
    from tests.data_fixtures import make_omniglot, omniglot_png, truncated_copy

from maml_probe.data import EpisodeSampler, IntegrityError, load_omniglot
from maml_probe.data.omniglot import omniglot_characters, split_characters

REAL = Path(__file__).resolve().parents[2] / "shared" / "data"
N_CHARS = 8  # data_fixtures.OMNIGLOT_LAYOUT: 3 + 2 + 3 characters, 4 drawings each


@pytest.fixture
def omni(tmp_path: Path) -> tuple[Path, Path]:
    make_omniglot(tmp_path / "data" / "omniglot")
    return tmp_path / "data", tmp_path / "cache"


def test_all_characters_lanczos_resized_and_inverted(omni):
    root, cache = omni
    arr, meta = omniglot_characters(root, cache, progress=False)
    assert arr.shape == (N_CHARS, 4, 1, 28, 28) and arr.dtype == np.uint8
    assert meta["class_names"][0] == "images_background/Alpha/character01"
    assert meta["class_names"][3] == "images_background/Beta_(Greek)/character01"
    assert meta["class_names"][-1] == "images_evaluation/Gamma/character03"
    # documented preprocessing: 8-bit grey, Lanczos to 28x28, inverted (ink = 255)
    ref = Image.open(io.BytesIO(omniglot_png(5, 2))).convert("L").resize((28, 28), Image.Resampling.LANCZOS)
    np.testing.assert_array_equal(arr[5, 2, 0], 255 - np.asarray(ref))
    # the black stem of character 0 (x 8..14, y 8..48 of 105) is bright, the corner is dark
    assert arr[0, 0, 0, 7, 3] > 200 and arr[0, 0, 0, 27, 27] == 0
    assert (arr < 25).mean() > 0.6  # background dominates


def test_extracted_folders_give_the_same_array(omni, tmp_path):
    root, cache = omni
    zipped, _ = omniglot_characters(root, cache, progress=False)
    make_omniglot(tmp_path / "d2" / "omniglot", as_zip=False)
    folders, meta = omniglot_characters(tmp_path / "d2", tmp_path / "c2", progress=False)
    np.testing.assert_array_equal(zipped, folders)
    assert meta["sources"][0]["kind"] == "dir"


def test_splits_are_disjoint_and_rotations_are_classes(omni):
    root, cache = omni
    parts = {s: load_omniglot(root, cache, s, split_sizes=(4, 2, 2), progress=False)
             for s in ("train", "val", "test")}
    assert [parts[s].num_classes for s in ("train", "val", "test")] == [16, 8, 8]
    chars = [set(parts[s].info["characters"]) for s in ("train", "val", "test")]
    assert set().union(*chars) == set(range(N_CHARS)) and sum(map(len, chars)) == N_CHARS
    d = parts["train"]
    assert d.images.shape == (16, 4, 1, 28, 28)
    for r, k in ((1, 1), (2, 2), (3, 3)):
        torch.testing.assert_close(d.images[4 + r], torch.rot90(d.images[4], k, dims=(-2, -1)))
    assert d.class_names[5].endswith("/rot090") and d.class_names[4].endswith("/rot000")
    no_rot = load_omniglot(root, cache, "train", split_sizes=(4, 2, 2), rotations=(0,), progress=False)
    torch.testing.assert_close(no_rot.images, d.images[::4])


def test_bad_rotations_and_split_sizes_raise(omni):
    root, cache = omni
    with pytest.raises(ValueError, match="rotations"):
        load_omniglot(root, cache, rotations=(0, 45), progress=False)
    with pytest.raises(ValueError, match="split_sizes"):
        load_omniglot(root, cache, split_sizes=(5, 2, 2), progress=False)
    with pytest.raises(ValueError, match="split='training'"):
        load_omniglot(root, cache, "training", progress=False)


def test_default_split_is_fixed_and_ignores_global_random_state():
    random.seed(123), np.random.seed(123), torch.manual_seed(123)
    a = split_characters(1623)
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    b = split_characters(1623)
    assert [len(a[s]) for s in ("train", "val", "test")] == [1100, 100, 423]
    for s in a:
        np.testing.assert_array_equal(a[s], b[s])
    # pinned: the documented recipe (default_rng(0) permutation, 1100 | 100 | 423)
    perm = np.random.default_rng(0).permutation(1623)
    np.testing.assert_array_equal(a["val"], np.sort(perm[1100:1200]))
    # test characters are Finn et al.'s 423 left after the 1200 meta-training characters
    np.testing.assert_array_equal(a["test"], split_characters(1623, (1200, 0, 423))["test"])
    assert not set(split_characters(1623, split_seed=1)["test"]) == set(a["test"])


def test_cache_is_reused_then_rebuilt_when_the_source_changes(omni):
    root, cache = omni
    _, m1 = omniglot_characters(root, cache, progress=False)
    _, m2 = omniglot_characters(root, cache, progress=False)
    assert (m1["cache_hit"], m2["cache_hit"]) == (False, True)
    assert sorted(p.suffix for p in cache.iterdir()) == [".json", ".npy"]  # no temp files
    make_omniglot(root / "omniglot", drawings=5)  # same paths, new content
    arr, m3 = omniglot_characters(root, cache, progress=False)
    assert not m3["cache_hit"] and arr.shape[1] == 5


def test_truncated_or_corrupt_zip_raises_and_caches_nothing(omni, tmp_path):
    root, _ = omni
    bg = root / "omniglot" / "images_background.zip"
    bad_root = tmp_path / "bad"
    truncated_copy(bg, bad_root / "omniglot" / bg.name, 0.6)
    (bad_root / "omniglot" / "images_evaluation.zip").write_bytes(
        (root / "omniglot" / "images_evaluation.zip").read_bytes())
    with pytest.raises(IntegrityError, match="maml-probe data download omniglot"):
        omniglot_characters(bad_root, tmp_path / "c1", progress=False)
    assert not (tmp_path / "c1").exists() or not any((tmp_path / "c1").iterdir())
    # flipped bytes inside a member: CRC/inflate failure, also never cached
    data = bytearray(bg.read_bytes())
    with zipfile.ZipFile(bg) as zf:
        info = zf.infolist()[3]
    offset = info.header_offset + 30 + len(info.filename) + 10
    data[offset:offset + 8] = bytes(b ^ 0xFF for b in data[offset:offset + 8])
    (bad_root / "omniglot" / bg.name).write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="corrupt"):
        omniglot_characters(bad_root, tmp_path / "c2", progress=False)
    assert not (tmp_path / "c2").exists() or not any((tmp_path / "c2").iterdir())


def test_missing_dataset_names_the_search_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_omniglot(tmp_path / "nothing", tmp_path / "cache")
    msg = str(err.value)
    assert str(tmp_path / "nothing" / "omniglot" / "images_background.zip") in msg
    assert "maml-probe data download omniglot" in msg and "--from PATH" in msg
    assert "characterNN" in msg


def test_environment_variables_choose_data_and_cache(omni, tmp_path, monkeypatch):
    root, _ = omni
    monkeypatch.setenv("MAML_PROBE_DATA", str(root))
    monkeypatch.setenv("MAML_PROBE_CACHE", str(tmp_path / "envcache"))
    before = sorted(p.name for p in (root / "omniglot").iterdir())
    d = load_omniglot(split_sizes=(4, 2, 2), progress=False)
    assert d.num_classes == 16
    assert len(list((tmp_path / "envcache").glob("omniglot-*.npy"))) == 1
    assert sorted(p.name for p in (root / "omniglot").iterdir()) == before  # source untouched


# ---------------------------------------------------------------- real data (if present)
real = pytest.mark.skipif(not (REAL / "omniglot" / "images_background.zip").is_file(),
                          reason=f"real Omniglot not found at {REAL / 'omniglot'} (shared/ absent)")


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("omniglot_cache")
    omniglot_characters(REAL, cache, progress=False)  # ~5 s build
    return cache


@real
def test_real_omniglot_counts_and_splits(real_cache):
    arr, meta = omniglot_characters(REAL, real_cache, progress=False)
    assert meta["cache_hit"]                          # read from the cache, not rebuilt
    assert arr.shape == (1623, 20, 1, 28, 28)
    names = meta["class_names"]
    assert sum(n.startswith("images_background/") for n in names) == 964
    assert len(set(names)) == 1623
    splits = {s: load_omniglot(REAL, real_cache, s, progress=False) for s in ("train", "val", "test")}
    assert [splits[s].num_classes for s in ("train", "val", "test")] == [4400, 400, 1692]
    chars = [set(splits[s].info["characters"]) for s in ("train", "val", "test")]
    assert [len(c) for c in chars] == [1100, 100, 423] and not (chars[0] & chars[1]) \
        and not (chars[0] & chars[2]) and not (chars[1] & chars[2])
    ink = arr[:50].astype(np.float32) / 255
    assert 0.03 < ink.mean() < 0.3  # sparse strokes: ink = 1.0, background = 0.0


@real
def test_real_omniglot_episodes(real_cache):
    data = load_omniglot(REAL, real_cache, "val", progress=False)
    batch = EpisodeSampler(data, 5, 1, 15).sample(32, torch.Generator().manual_seed(0))
    assert batch.support_x.shape == (32, 5, 1, 28, 28) and batch.query_x.shape == (32, 75, 1, 28, 28)
    val = {bytes(x) for x in data.images.reshape(-1, 784).numpy()}
    test = load_omniglot(REAL, real_cache, "test", progress=False)
    test_only = {bytes(x) for x in test.images.reshape(-1, 784).numpy()} - val
    for t in range(32):
        s = {bytes(x) for x in (batch.support_x[t] * 255).round().to(torch.uint8).reshape(-1, 784).numpy()}
        q = {bytes(x) for x in (batch.query_x[t] * 255).round().to(torch.uint8).reshape(-1, 784).numpy()}
        assert s <= val and q <= val and not (s | q) & test_only
        assert not s & q
        assert sorted(batch.support_y[t].tolist()) == list(range(5))
