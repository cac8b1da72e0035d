"""CIFAR-FS's ``normalise`` option: Bertinetto et al.'s per-channel standardisation (A.1.2) or x / 255."""
from __future__ import annotations

import numpy as np
import pytest
import torch

try:
    from data_fixtures import make_cifar100
except ImportError:  # tests/ imported as a package
    from tests.data_fixtures import make_cifar100

from maml_probe.config import TrainConfig, build_task_source
from maml_probe.data import EpisodeSampler, get_spec, load_cifarfs, load_dataset
from maml_probe.data.cifarfs import CHANNEL_NORMALISATION, NORMALISATION, channel_stats


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """The generated CIFAR-100 archive (every class different, 6 images each) and a cache."""
    base = tmp_path_factory.mktemp("cifarfs")
    make_cifar100(base / "data" / "cifar-fs", train_per_class=5, test_per_class=1)
    return base / "data", base / "cache"


def _per_channel(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and population std of each channel of ``[N, C, H, W]`` images, in float64."""
    flat = x.double().transpose(0, 1).reshape(x.shape[1], -1)
    return flat.mean(1), flat.std(1, unbiased=False)


def test_channel_standardises_the_training_split(root):
    """Catches: statistics of the wrong classes or in the wrong units (x not / 255), sample std
    instead of the population's, statistics recorded but not applied by the sampler."""
    data_root, cache = root
    train = load_cifarfs(data_root, cache, "train", normalise="channel")
    assert train.info["normalisation"] == CHANNEL_NORMALISATION
    sampler = EpisodeSampler(train, 5, 1, 1)
    x = sampler.normalise(train.images.reshape(-1, 3, 32, 32))
    mean, std = _per_channel(x)
    assert torch.allclose(mean, torch.zeros(3, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(std, torch.ones(3, dtype=torch.float64), atol=1e-5)
    raw = train.images.double() / 255                       # the recorded numbers themselves
    want_mean, want_std = _per_channel(raw.reshape(-1, 3, 32, 32))
    assert np.allclose(train.info["mean"], want_mean.numpy(), atol=1e-12)
    assert np.allclose(train.info["std"], want_std.numpy(), atol=1e-12)


def test_every_split_uses_the_training_statistics(root):
    """Catches: val/test standardised by their own statistics (information from held-out classes)."""
    data_root, cache = root
    train = load_cifarfs(data_root, cache, "train", normalise="channel")
    for split in ("val", "test"):
        d = load_cifarfs(data_root, cache, split, normalise="channel")
        assert d.info["mean"] == train.info["mean"] and d.info["std"] == train.info["std"]
        mean, _ = _per_channel(EpisodeSampler(d, 5, 1, 1).normalise(d.images.reshape(-1, 3, 32, 32)))
        assert not torch.allclose(mean, torch.zeros(3, dtype=torch.float64), atol=1e-3)


def test_the_option_flows_from_a_train_config(root):
    """Catches: an option that ``dataset_kwargs`` cannot reach, or episodes not standardised."""
    data_root, cache = root
    kw = {"root": str(data_root), "cache_dir": str(cache)}
    cfg = TrainConfig(dataset="cifarfs", model="scnn", ways=5, shots=1, queries=2,
                      dataset_kwargs={**kw, "normalise": "channel"}, device="cpu")
    src = build_task_source(cfg, "train")
    batch = src.sample(4, torch.Generator().manual_seed(0))
    idx, _ = src.sample_indices(4, torch.Generator().manual_seed(0))
    images = src.dataset.images.reshape(-1, 3, 32, 32)[idx[:, :5].reshape(-1)].double() / 255
    mean = torch.tensor(src.dataset.info["mean"], dtype=torch.float64).view(3, 1, 1)
    std = torch.tensor(src.dataset.info["std"], dtype=torch.float64).view(3, 1, 1)
    want = ((images - mean) / std).view(4, 5, 3, 32, 32)
    assert torch.allclose(batch.support_x.double(), want, atol=1e-5)
    assert cfg.identity_key() != cfg.replace(dataset_kwargs=kw).identity_key()
    # explicit sampler statistics still win over the loader's
    own = build_task_source(cfg.replace(dataset_kwargs={**kw, "normalise": "channel",
                                                        "mean": [0.0] * 3, "std": [1.0] * 3}), "train")
    assert float(own.sample(2, torch.Generator().manual_seed(0)).support_x.min()) >= 0.0


def test_default_is_unchanged_pixel_scaling(root):
    """Catches: the default switched to standardised inputs (every run's data would change)."""
    data_root, cache = root
    for d in (load_cifarfs(data_root, cache, "train"),
              load_cifarfs(data_root, cache, "train", normalise="pixel"),
              load_dataset("cifarfs", "train", data_root, cache)):
        assert d.info["normalisation"] == NORMALISATION == get_spec("cifarfs").normalisation
        assert "mean" not in d.info and "std" not in d.info
        x = EpisodeSampler(d, 5, 1, 1).normalise(d.images[:2].reshape(-1, 3, 32, 32))
        assert torch.equal(x, d.images[:2].reshape(-1, 3, 32, 32).float() / 255)


def test_both_options_share_one_cache_and_bad_values_are_refused(root):
    """The option changes how the sampler scales the uint8 cache, not the cache itself."""
    data_root, cache = root
    load_cifarfs(data_root, cache, "test")
    again = load_cifarfs(data_root, cache, "test", normalise="channel")
    assert again.info["cache_hit"] and again.info["cache"] == load_cifarfs(data_root, cache, "test").info["cache"]
    with pytest.raises(ValueError, match="normalise"):
        load_cifarfs(data_root, cache, "train", normalise="imagenet")


def test_channel_stats_are_exact():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 3, 3, 5, 5), dtype=np.uint8)
    mean, std = channel_stats(images, [0, 2])
    sub = images[[0, 2]].astype(np.float64) / 255
    assert np.allclose(mean, sub.mean(axis=(0, 1, 3, 4)), atol=1e-14)
    assert np.allclose(std, sub.std(axis=(0, 1, 3, 4)), atol=1e-14)
    assert np.allclose(channel_stats(images)[0], (images / 255).mean(axis=(0, 1, 3, 4)), atol=1e-14)
