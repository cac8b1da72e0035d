"""N-way K-shot Q-query episodes drawn as whole meta-batches of index tensors.

For ``T`` tasks the sampler draws, with the caller's ``torch.Generator`` only:

1. ``ways`` distinct classes per task: the indices of the ``ways`` largest of i.i.d. uniform
   noise over the split's classes (``topk``, sorted), a uniformly random ordered subset; the
   ``j``-th drawn class gets label ``j``, so labels map to classes in random order;
2. ``shots + queries`` distinct images per drawn class, the same way over the class's
   images: the first ``shots`` are support, the rest query, so support and query never
   share an image;
3. a random order of the examples inside the support set and inside the query set
   (``shuffle=True``; with ``shuffle=False`` they are grouped by label, label-major).

Then one ``index_select`` into the resident uint8 tensor ``[classes * per_class, C, H, W]``
(kept on ``device``) gathers the whole meta-batch, converted to float32 on the fly:
``x / 255`` (Omniglot: ink 1.0, background 0.0; RGB datasets: [0, 1]), then, if
``mean``/``std`` are given (per channel, in [0, 1] units), ``(x / 255 - mean) / std``; when
neither is given, those the loader recorded in the dataset's ``info`` (``mean``, ``std``: CIFAR-FS's
``normalise="channel"``), if any.
Indices are drawn on the generator's device, so a CPU generator gives the same episodes on
every device. Outputs: ``support_x [T, ways*shots, C, H, W]``, ``support_y [T, ways*shots]``
(int64), ``query_x [T, ways*queries, C, H, W]``, ``query_y [T, ways*queries]``.
"""
from __future__ import annotations

import operator
from typing import Sequence

import torch
from torch import Tensor

from maml_probe.tasks.base import TaskBatch

from .dataset import FewShotDataset


def check_episode(ways: int, shots: int, queries: int, num_classes: int, images_per_class: int,
                  where: str = "the dataset") -> None:
    """``ValueError`` naming the numbers if the episode cannot be drawn without repeats."""
    for name, value in (("ways", ways), ("shots", shots), ("queries", queries)):
        try:
            ok = not isinstance(value, bool) and operator.index(value) >= 1
        except TypeError:
            ok = False
        if not ok:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if ways > num_classes:
        raise ValueError(f"ways={ways} exceeds the {num_classes} classes of {where}")
    if shots + queries > images_per_class:
        raise ValueError(f"shots + queries = {shots} + {queries} = {shots + queries} exceeds the "
                         f"{images_per_class} images per class of {where}")


class EpisodeSampler:
    """A ``TaskSource`` of N-way K-shot Q-query episodes over one ``FewShotDataset``.

    ``input_shape`` is ``(C, H, W)`` and ``num_outputs`` is ``ways``. The dataset's images are
    moved to ``device`` once, in ``__init__`` (which also validates the episode). Without
    ``mean`` and ``std``, the dataset's ``info["mean"]`` / ``info["std"]`` apply when its loader
    recorded them (otherwise plain ``x / 255``).
    """

    def __init__(self, dataset: FewShotDataset, ways: int, shots: int, queries: int,
                 device: torch.device | str = "cpu", *, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, shuffle: bool = True) -> None:
        where = f"{dataset.name}/{dataset.split}"
        check_episode(ways, shots, queries, dataset.num_classes, dataset.images_per_class, where)
        self.dataset = dataset
        self.ways, self.shots, self.queries = int(ways), int(shots), int(queries)
        self.shuffle = shuffle
        self.device = torch.device(device)
        self.input_shape: tuple[int, ...] = tuple(dataset.image_shape)
        self.num_outputs: int = self.ways
        self._images = dataset.images.to(self.device).reshape(-1, *self.input_shape)
        if mean is None and std is None:  # the loader's own statistics, if it chose any
            mean, std = dataset.info.get("mean"), dataset.info.get("std")
        self._scale = self._stats(mean, std)

    def _stats(self, mean: Sequence[float] | None,
               std: Sequence[float] | None) -> tuple[Tensor, Tensor] | None:
        if mean is None and std is None:
            return None
        c = self.input_shape[0]
        m = torch.as_tensor(mean if mean is not None else [0.0] * c, dtype=torch.float32)
        s = torch.as_tensor(std if std is not None else [1.0] * c, dtype=torch.float32)
        if m.numel() != c or s.numel() != c or bool((s <= 0).any()):
            raise ValueError(f"mean/std need {c} values (std > 0), got mean={mean}, std={std}")
        return m.view(c, 1, 1).to(self.device), s.view(c, 1, 1).to(self.device)

    def __repr__(self) -> str:
        return (f"EpisodeSampler({self.dataset.name}/{self.dataset.split}, ways={self.ways}, "
                f"shots={self.shots}, queries={self.queries}, device={self.device})")

    def sample_indices(self, num_tasks: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Flat image indices and labels, both ``[T, ways*shots + ways*queries]``.

        Columns ``:ways*shots`` are the support set, the rest the query set; indices point
        into the ``[classes * per_class]`` image table. Drawn on the generator's device.
        """
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
        t, n, k, q = num_tasks, self.ways, self.shots, self.queries
        num_classes, per_class = self.dataset.num_classes, self.dataset.images_per_class
        dev = generator.device
        classes = torch.rand(t, num_classes, generator=generator, device=dev).topk(n, 1).indices
        within = torch.rand(t, n, per_class, generator=generator, device=dev).topk(k + q, 2).indices
        flat = classes.unsqueeze(2) * per_class + within                      # [T, N, K+Q]
        labels = torch.arange(n, device=dev).view(1, n, 1).expand(t, n, k + q)
        parts = []
        for sl, size in ((slice(0, k), n * k), (slice(k, k + q), n * q)):
            idx, lab = flat[..., sl].reshape(t, size), labels[..., sl].reshape(t, size)
            if self.shuffle:
                order = torch.rand(t, size, generator=generator, device=dev).argsort(1)
                idx, lab = idx.gather(1, order), lab.gather(1, order)
            parts.append((idx, lab))
        return (torch.cat([parts[0][0], parts[1][0]], 1), torch.cat([parts[0][1], parts[1][1]], 1))

    def normalise(self, x: Tensor) -> Tensor:
        """uint8 -> float32 ``x / 255`` (then ``(. - mean) / std`` if given)."""
        out = x.to(torch.float32).div_(255.0)
        if self._scale is not None:
            out = out.sub_(self._scale[0]).div_(self._scale[1])
        return out

    def sample(self, num_tasks: int, generator: torch.Generator) -> TaskBatch:
        """A meta-batch of ``num_tasks`` episodes on ``device`` (see module docstring)."""
        index, labels = self.sample_indices(num_tasks, generator)
        index, labels = index.to(self.device), labels.to(self.device)
        s = self.ways * self.shots
        xs, xq = (self.normalise(self._images.index_select(0, i.reshape(-1)))
                  .view(num_tasks, -1, *self.input_shape) for i in (index[:, :s], index[:, s:]))
        return TaskBatch(xs, labels[:, :s].contiguous(), xq, labels[:, s:].contiguous())
