"""EpisodeSampler on a synthetic dataset whose pixels encode (class, image index)."""
from __future__ import annotations

import pytest
import torch

from maml_probe.data import EpisodeSampler, FewShotDataset
from maml_probe.tasks.base import TaskBatch, TaskSource

K, M = 12, 9  # classes, images per class


def coded(num_classes: int = K, per_class: int = M, channels: int = 1) -> FewShotDataset:
    """Pixel [0,0,0] = class, pixel [0,0,1] = image index, the rest 255."""
    images = torch.full((num_classes, per_class, channels, 2, 2), 255, dtype=torch.uint8)
    images[:, :, 0, 0, 0] = torch.arange(num_classes).view(-1, 1)
    images[:, :, 0, 0, 1] = torch.arange(per_class).view(1, -1)
    return FewShotDataset("coded", "train", images, tuple(f"c{i}" for i in range(num_classes)))


def ids(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    codes = (x[..., 0, 0, :2] * 255).round().long()
    return codes[..., 0], codes[..., 1]  # class, image index


def test_shapes_labels_and_disjoint_support_query():
    sampler = EpisodeSampler(coded(), ways=5, shots=2, queries=3)
    assert isinstance(sampler, TaskSource)
    assert sampler.input_shape == (1, 2, 2) and sampler.num_outputs == 5
    b = sampler.sample(64, torch.Generator().manual_seed(0))
    assert isinstance(b, TaskBatch) and len(b) == 64
    assert b.support_x.shape == (64, 10, 1, 2, 2) and b.query_x.shape == (64, 15, 1, 2, 2)
    assert b.support_x.dtype == torch.float32 and b.support_y.dtype == torch.int64
    assert b.support_x.is_contiguous() and b.query_x.is_contiguous()
    sc, si = ids(b.support_x)
    qc, qi = ids(b.query_x)
    for t in range(64):
        assert torch.bincount(b.support_y[t], minlength=5).tolist() == [2] * 5
        assert torch.bincount(b.query_y[t], minlength=5).tolist() == [3] * 5
        # one class per label, the same in support and query, distinct across labels
        label_to_class = {}
        for c, y in zip(torch.cat([sc[t], qc[t]]).tolist(), torch.cat([b.support_y[t], b.query_y[t]]).tolist()):
            assert label_to_class.setdefault(y, c) == c
        assert len(set(label_to_class.values())) == 5
        support = set(zip(sc[t].tolist(), si[t].tolist()))
        query = set(zip(qc[t].tolist(), qi[t].tolist()))
        assert len(support) == 10 and len(query) == 15 and not support & query


def test_labels_and_order_are_random_but_reproducible():
    sampler = EpisodeSampler(coded(), ways=4, shots=2, queries=2)
    a = sampler.sample(50, torch.Generator().manual_seed(3))
    b = sampler.sample(50, torch.Generator().manual_seed(3))
    c = sampler.sample(50, torch.Generator().manual_seed(4))
    for f in ("support_x", "support_y", "query_x", "query_y"):
        assert torch.equal(getattr(a, f), getattr(b, f))
    assert not torch.equal(a.support_x, c.support_x)
    assert len({tuple(y) for y in a.support_y.tolist()}) > 10  # shuffled positions
    first_class = ids(a.support_x)[0][a.support_y == 0]
    assert len(set(first_class.tolist())) > 5  # label 0 is not tied to one class
    grouped = EpisodeSampler(coded(), 4, 2, 2, shuffle=False).sample(5, torch.Generator().manual_seed(0))
    assert grouped.support_y.tolist() == [[0, 0, 1, 1, 2, 2, 3, 3]] * 5


def test_classes_and_images_are_drawn_uniformly():
    sampler = EpisodeSampler(coded(), ways=3, shots=1, queries=1)
    b = sampler.sample(4000, torch.Generator().manual_seed(0))
    cls, img = ids(b.support_x)
    counts = torch.bincount(cls.flatten(), minlength=K).float()
    assert (counts / counts.mean() - 1).abs().max() < 0.12   # 1000 expected per class
    counts = torch.bincount(img.flatten(), minlength=M).float()
    assert (counts / counts.mean() - 1).abs().max() < 0.12


def test_episode_validation_names_the_numbers():
    data = coded()
    with pytest.raises(ValueError, match=r"ways=13 exceeds the 12 classes of coded/train"):
        EpisodeSampler(data, 13, 1, 1)
    with pytest.raises(ValueError, match=r"shots \+ queries = 5 \+ 5 = 10 exceeds the 9 images"):
        EpisodeSampler(data, 5, 5, 5)
    for bad in ({"ways": 0}, {"shots": 0}, {"queries": -1}, {"ways": 2.0}):
        kw = {"ways": 2, "shots": 1, "queries": 1, **bad}
        with pytest.raises(ValueError, match=next(iter(bad))):
            EpisodeSampler(data, **kw)
    EpisodeSampler(data, 12, 4, 5)  # exactly at the limits is fine
    with pytest.raises(ValueError, match="num_tasks"):
        EpisodeSampler(data, 2, 1, 1).sample(0, torch.Generator())


def test_normalisation_unit_and_standardised():
    data = coded(channels=3)
    b = EpisodeSampler(data, 2, 1, 1).sample(2, torch.Generator().manual_seed(0))
    assert b.support_x[..., 1, :, :].eq(1.0).all()  # 255 -> 1.0 exactly
    s = EpisodeSampler(data, 2, 1, 1, mean=[0.5, 0.5, 0.0], std=[0.25, 0.5, 1.0])
    x = s.sample(2, torch.Generator().manual_seed(0)).support_x
    assert torch.allclose(x[:, :, 1, 1, 1], torch.full((2, 2), 1.0))   # (1 - .5) / .5
    assert torch.allclose(x[:, :, 0, 1, 1], torch.full((2, 2), 2.0))   # (1 - .5) / .25
    with pytest.raises(ValueError, match="mean/std"):
        EpisodeSampler(data, 2, 1, 1, mean=[0.5])


def test_images_are_resident_on_the_sampler_device():
    sampler = EpisodeSampler(coded(), 2, 1, 1, device="cpu")
    assert sampler.device == torch.device("cpu")
    b = sampler.sample(8, torch.Generator().manual_seed(1))
    assert all(t.device.type == "cpu" for t in (b.support_x, b.support_y, b.query_x, b.query_y))
    cls, _ = ids(b.support_x)
    assert all(len(set(row.tolist())) == 2 for row in cls)  # two distinct classes per task


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_sampler_draws_the_same_episodes_on_the_device():
    cpu = EpisodeSampler(coded(), 2, 1, 1, device="cpu")
    gpu = EpisodeSampler(coded(), 2, 1, 1, device="cuda")
    a = gpu.sample(8, torch.Generator().manual_seed(1))
    b = cpu.sample(8, torch.Generator().manual_seed(1))
    for x, y in ((a.support_y, b.support_y), (a.query_y, b.query_y)):
        assert x.is_cuda and torch.equal(x.cpu(), y)
    for x, y in ((a.support_x, b.support_x), (a.query_x, b.query_x)):  # normalised on the GPU
        assert x.is_cuda
        torch.testing.assert_close(x.cpu(), y, rtol=1e-6, atol=1e-6)
        assert torch.equal(ids(x.cpu())[0], ids(y)[0]) and torch.equal(ids(x.cpu())[1], ids(y)[1])
