"""mini-ImageNet loader: Ravi csv + JPEGs and pickle caches (generated), plus the real copy."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

try:
    from data_fixtures import CLASS_COLOURS, make_miniimagenet_csv, make_miniimagenet_pickles, wnid
except ImportError:  # tests/ imported as a package
    from tests.data_fixtures import CLASS_COLOURS, make_miniimagenet_csv, make_miniimagenet_pickles, wnid

from maml_probe.data import EpisodeSampler, IntegrityError, load_miniimagenet
from maml_probe.data.miniimagenet import read_split_csv

REAL = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_ravi_layout_classes_colours_and_cache(tmp_path):
    make_miniimagenet_csv(tmp_path / "data" / "mini-imagenet")
    d = load_miniimagenet(tmp_path / "data", tmp_path / "cache", "val", progress=False, workers=2)
    assert d.images.shape == (2, 6, 3, 84, 84) and d.images.dtype == torch.uint8
    assert d.class_names == (wnid(3), wnid(4))  # val holds classes 3, 4 of the fixture
    mean = d.images.float().mean(dim=(1, 3, 4))
    assert torch.allclose(mean, torch.tensor([CLASS_COLOURS[3], CLASS_COLOURS[4]], dtype=torch.float32), atol=3)
    again = load_miniimagenet(tmp_path / "data", tmp_path / "cache", "val", progress=False)
    assert again.info["cache_hit"] and torch.equal(again.images, d.images)
    limited = load_miniimagenet(tmp_path / "data", tmp_path / "cache", "train", classes_limit=2,
                                progress=False)
    assert limited.class_names == (wnid(0), wnid(1)) and not limited.info["cache_hit"]
    mapped = load_miniimagenet(tmp_path / "data", tmp_path / "cache", "val", mmap=True, progress=False)
    assert isinstance(mapped.images, torch.Tensor) and torch.equal(mapped.images, d.images)


def test_other_image_sizes_are_resized(tmp_path):
    make_miniimagenet_csv(tmp_path / "mini-imagenet", {"train": 2}, per_class=3, size=100)
    d = load_miniimagenet(tmp_path, tmp_path / "cache", "train", progress=False)
    assert d.images.shape == (2, 3, 3, 84, 84)


def test_pickle_caches_are_preferred_and_gathered_by_class_dict(tmp_path):
    root = tmp_path / "mini-imagenet"
    make_miniimagenet_csv(root)  # both formats present: auto picks the pickle
    objs = make_miniimagenet_pickles(root)
    d = load_miniimagenet(tmp_path, tmp_path / "cache", "train", progress=False)
    assert d.info["format"] == "pickle" and d.images.shape == (3, 5, 3, 84, 84)
    obj = objs["train"]
    for c, name in enumerate(d.class_names):
        for j, i in enumerate(obj["class_dict"][name]):
            np.testing.assert_array_equal(d.images[c, j].numpy(), obj["image_data"][i].transpose(2, 0, 1))
    csv = load_miniimagenet(tmp_path, tmp_path / "cache", "train", source="csv", progress=False)
    assert csv.info["format"] == "csv" and csv.images.shape == (3, 6, 3, 84, 84)


def test_broken_sources_raise_clear_errors_and_cache_nothing(tmp_path):
    root = tmp_path / "mini-imagenet"
    make_miniimagenet_csv(root, {"train": 2, "val": 2, "test": 2}, per_class=3)
    os.remove(root / "images" / f"{wnid(0)}00000002.jpg")
    with pytest.raises(FileNotFoundError, match=r"1 images listed in .*train.csv are missing"):
        load_miniimagenet(tmp_path, tmp_path / "cache", "train", progress=False)
    (root / "images" / f"{wnid(2)}00000001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(IntegrityError, match="00000001.jpg"):
        load_miniimagenet(tmp_path, tmp_path / "cache", "val", progress=False)
    (root / "test.csv").write_text("file,class\nx.jpg,n1\n")
    with pytest.raises(ValueError, match="filename,label"):
        load_miniimagenet(tmp_path, tmp_path / "cache", "test", progress=False)
    make_miniimagenet_pickles(root)
    pkl = root / "mini-imagenet-cache-val.pkl"
    pkl.write_bytes(pkl.read_bytes()[:1000])
    with pytest.raises(IntegrityError, match="mini-imagenet-cache-val.pkl"):
        load_miniimagenet(tmp_path, tmp_path / "cache", "val", progress=False)
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").glob("*.json"))


def test_missing_split_names_search_and_fix(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_miniimagenet(tmp_path, tmp_path / "cache", "test")
    msg = str(err.value)
    assert str(tmp_path / "mini-imagenet" / "test.csv") in msg
    assert "maml-probe data download miniimagenet --from PATH" in msg
    with pytest.raises(ValueError, match="source='zip'"):
        load_miniimagenet(tmp_path, tmp_path / "cache", "test", source="zip")


# ---------------------------------------------------------------- real data (if present)
real = pytest.mark.skipif(not (REAL / "mini-imagenet" / "train.csv").is_file(),
                          reason=f"real mini-ImageNet not found at {REAL / 'mini-imagenet'} (shared/ absent)")


@real
def test_real_split_files_layout_and_counts():
    root = REAL / "mini-imagenet"
    splits = {s: read_split_csv(root / f"{s}.csv") for s in ("train", "val", "test")}
    assert [len(splits[s]) for s in ("train", "val", "test")] == [64, 16, 20]
    assert all(len(files) == 600 for s in splits.values() for files in s.values())
    classes = [set(s) for s in splits.values()]
    assert not (classes[0] & classes[1]) and not (classes[0] & classes[2]) and not (classes[1] & classes[2])
    files = [f for s in splits.values() for v in s.values() for f in v]
    assert len(set(files)) == 60000 and set(files) <= set(os.listdir(root / "images"))


@real
def test_real_subset_decodes_and_samples(tmp_path):
    d = load_miniimagenet(REAL, tmp_path, "test", classes_limit=2, progress=False)
    assert d.images.shape == (2, 600, 3, 84, 84) and d.class_names == tuple(sorted(d.class_names))
    assert 60 < d.images.float().mean() < 180
    b = EpisodeSampler(d, 2, 5, 15).sample(4, torch.Generator().manual_seed(0))
    assert b.support_x.shape == (4, 10, 3, 84, 84) and b.query_x.shape == (4, 30, 3, 84, 84)
    assert 0.0 <= float(b.support_x.min()) and float(b.support_x.max()) <= 1.0
    assert len(list(tmp_path.glob("miniimagenet-test-c2-84px-*.npy"))) == 1  # cache in tmp_path
