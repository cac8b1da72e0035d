"""``FewShotDataset``: the uint8 images of one split, grouped by class."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True, eq=False)
class FewShotDataset:
    """One split of a few-shot dataset.

    ``images`` is a uint8 tensor ``[num_classes, images_per_class, C, H, W]`` (every dataset
    here has the same number of images per class); ``class_names[i]`` names class ``i``.
    Pixel values are the stored 0..255 values; ``EpisodeSampler`` converts them to float32.
    ``info`` records where the data came from (cache record, split choices).
    """

    name: str
    split: str
    images: Tensor
    class_names: tuple[str, ...]
    info: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 5:
            raise ValueError(f"images must be uint8 [classes, per_class, C, H, W], got "
                             f"{self.images.dtype} {tuple(self.images.shape)}")
        if len(self.class_names) != self.images.shape[0]:
            raise ValueError(f"{len(self.class_names)} class names for "
                             f"{self.images.shape[0]} classes")

    @property
    def num_classes(self) -> int:
        """Number of classes in the split."""
        return int(self.images.shape[0])

    @property
    def images_per_class(self) -> int:
        """Images per class (the same for every class)."""
        return int(self.images.shape[1])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(channels, height, width)`` of one image."""
        return tuple(self.images.shape[2:])  # type: ignore[return-value]

    def __len__(self) -> int:
        return self.num_classes

    def subset(self, classes: Sequence[int]) -> "FewShotDataset":
        """The dataset restricted to the given class indices (in that order)."""
        idx = torch.as_tensor(list(classes), dtype=torch.long)
        return FewShotDataset(self.name, self.split, self.images.index_select(0, idx),
                              tuple(self.class_names[i] for i in idx.tolist()), dict(self.info))

    def to(self, device: torch.device | str) -> "FewShotDataset":
        """A copy whose images live on ``device``."""
        return FewShotDataset(self.name, self.split, self.images.to(device), self.class_names,
                              dict(self.info))


def from_numpy(name: str, split: str, array: np.ndarray, class_names: Sequence[str],
               info: dict[str, Any] | None = None) -> FewShotDataset:
    """Wrap a uint8 array (possibly a copy-on-write memmap) without copying it."""
    return FewShotDataset(name, split, torch.from_numpy(array), tuple(class_names), info or {})
