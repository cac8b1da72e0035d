"""Package-level API: build_task_source, load_dataset, data_dir / cache_dir."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

try:
    from data_fixtures import make_cifar100, make_omniglot
except ImportError:  # tests/ imported as a package
    from tests.data_fixtures import make_cifar100, make_omniglot

from maml_probe.data import EpisodeSampler, build_task_source, cache_dir, data_dir, load_dataset
from maml_probe.tasks.base import TaskSource


def test_locations_follow_parameter_then_environment_then_default(tmp_path, monkeypatch):
    monkeypatch.delenv("MAML_PROBE_DATA", raising=False)
    monkeypatch.delenv("MAML_PROBE_CACHE", raising=False)
    project = Path(__file__).resolve().parents[1]
    assert data_dir() == project / "data" and cache_dir() == project / "data" / "cache"
    monkeypatch.setenv("MAML_PROBE_DATA", str(tmp_path / "d"))
    assert data_dir() == tmp_path / "d" and cache_dir() == tmp_path / "d" / "cache"
    monkeypatch.setenv("MAML_PROBE_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    assert data_dir(tmp_path / "p") == tmp_path / "p" and cache_dir(tmp_path / "q") == tmp_path / "q"


def test_build_task_source_routes_options(tmp_path):
    make_omniglot(tmp_path / "omniglot")
    src = build_task_source("omniglot", "train", ways=3, shots=1, queries=2, root=tmp_path,
                            cache_dir=tmp_path / "cache", split_sizes=(4, 2, 2), rotations=(0, 180),
                            std=[0.5], progress=False)
    assert isinstance(src, EpisodeSampler) and isinstance(src, TaskSource)
    assert src.dataset.num_classes == 8 and src.num_outputs == 3 and src.input_shape == (1, 28, 28)
    b = src.sample(4, torch.Generator().manual_seed(0))
    assert b.support_x.shape == (4, 3, 1, 28, 28) and float(b.support_x.max()) > 1.5  # x / 255 / 0.5


def test_build_task_source_rejects_bad_names_and_episodes_before_loading(tmp_path):
    with pytest.raises(ValueError, match=r"dataset='mnist' is not one of 'omniglot', 'miniimagenet', 'cifarfs'"):
        build_task_source("mnist", "train", 5, 1, 1, root=tmp_path)
    with pytest.raises(ValueError, match=r"split='valid' is not one of 'train', 'val', 'test'"):
        build_task_source("omniglot", "valid", 5, 1, 1, root=tmp_path)
    # no data exists under tmp_path: these fail on the numbers, not on the missing files
    with pytest.raises(ValueError, match=r"ways=21 exceeds the 20 classes of cifarfs/test"):
        build_task_source("cifarfs", "test", 21, 1, 1, root=tmp_path)
    with pytest.raises(ValueError, match=r"shots \+ queries = 10 \+ 15 = 25 exceeds the 20 images"):
        build_task_source("omniglot", "train", 5, 10, 15, root=tmp_path)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['rotations'\]"):
        build_task_source("cifarfs", "train", 5, 1, 1, root=tmp_path, rotations=(0,))
    with pytest.raises(FileNotFoundError, match="maml-probe data download cifarfs"):
        build_task_source("cifarfs", "train", 5, 1, 1, root=tmp_path)


def test_load_dataset_by_name(tmp_path):
    make_cifar100(tmp_path / "cifar-fs")
    d = load_dataset("cifarfs", "test", tmp_path, tmp_path / "cache")
    assert d.name == "cifarfs" and d.split == "test" and d.num_classes == 20
    sub = d.subset([3, 1])
    assert sub.class_names == (d.class_names[3], d.class_names[1]) and torch.equal(sub.images[1], d.images[1])
