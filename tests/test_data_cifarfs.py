"""CIFAR-FS: the carried Bertinetto split and the cifar-100-python loader (generated archive)."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

try:
    from data_fixtures import make_cifar100, truncated_copy
except ImportError:  # tests/ imported as a package
    from tests.data_fixtures import make_cifar100, truncated_copy

from maml_probe.data import IntegrityError, load_cifarfs
from maml_probe.data.cifarfs import CIFAR100_FINE_LABELS, cifar100_classes, split_classes


def test_split_lists_partition_the_100_fine_labels():
    parts = {s: split_classes(s) for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [64, 16, 20]
    every = parts["train"] + parts["val"] + parts["test"]
    assert len(set(every)) == 100 and set(every) == set(CIFAR100_FINE_LABELS)
    assert len(CIFAR100_FINE_LABELS) == 100 and list(CIFAR100_FINE_LABELS) == sorted(CIFAR100_FINE_LABELS)
    assert parts["test"] == ["baby", "bed", "bicycle", "chimpanzee", "fox", "leopard", "man",
                             "pickup_truck", "plain", "poppy", "rocket", "rose", "snail",
                             "sweet_pepper", "table", "telephone", "wardrobe", "whale", "woman", "worm"]
    assert {"otter", "crab", "sea", "maple_tree"} <= set(parts["val"])


@pytest.mark.parametrize("as_tar", [True, False])
def test_archive_and_folder_load_each_class_in_order(tmp_path, as_tar):
    make_cifar100(tmp_path / "data" / "cifar-fs", as_tar=as_tar, train_per_class=5, test_per_class=1)
    d = load_cifarfs(tmp_path / "data", tmp_path / "cache", "val")
    assert d.images.shape == (16, 6, 3, 32, 32) and d.images.dtype == torch.uint8
    assert list(d.class_names) == split_classes("val")
    for c, name in enumerate(d.class_names):
        label = CIFAR100_FINE_LABELS.index(name)
        assert (d.images[c].flatten(1)[:, 1:] == label).all()           # every pixel but one
        assert d.images[c, :, 0, 0, 0].tolist() == list(range(6))       # train (5) then test (1)
    arr, meta = cifar100_classes(tmp_path / "data", tmp_path / "cache")
    assert arr.shape == (100, 6, 3, 32, 32) and meta["cache_hit"]
    assert load_cifarfs(tmp_path / "data", tmp_path / "cache", "train").num_classes == 64


def test_truncated_archive_raises_and_caches_nothing(tmp_path):
    good = make_cifar100(tmp_path / "good")
    truncated_copy(good, tmp_path / "bad" / "cifar-fs" / good.name, 0.5)
    with pytest.raises(IntegrityError, match="maml-probe data download cifarfs"):
        load_cifarfs(tmp_path / "bad", tmp_path / "cache", "test")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_unequal_class_sizes_are_reported(tmp_path):
    folder = make_cifar100(tmp_path / "cifar-fs", as_tar=False)
    train = pickle.loads((folder / "train").read_bytes())
    train[b"data"] = np.concatenate([train[b"data"], train[b"data"][:1]])
    train[b"fine_labels"] = train[b"fine_labels"] + train[b"fine_labels"][:1]
    (folder / "train").write_bytes(pickle.dumps(train, protocol=2))
    with pytest.raises(IntegrityError, match="per-class counts"):
        load_cifarfs(tmp_path, tmp_path / "cache")


def test_missing_data_is_reported(tmp_path):
    folder = make_cifar100(tmp_path / "cifar-fs", as_tar=False)
    (folder / "meta").unlink()
    with pytest.raises(FileNotFoundError) as err:
        load_cifarfs(tmp_path, tmp_path / "cache")
    assert "cifar-100-python.tar.gz" in str(err.value) and "maml-probe data download cifarfs" in str(err.value)
    with pytest.raises(ValueError, match="split='dev'"):
        load_cifarfs(tmp_path, tmp_path / "cache", "dev")
