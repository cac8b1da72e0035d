"""Few-shot task batches: the one structure every task source returns.

A meta-batch of ``T`` tasks is four tensors: support (adaptation) inputs and labels and
query (evaluation) inputs and labels, stacked over tasks so the engine can loop over them
or vmap over them without a per-task Python structure::

    support_x: [T, N_s, *input_shape]   support_y: [T, N_s]
    query_x:   [T, N_q, *input_shape]   query_y:   [T, N_q]

Labels are ``int64`` class indices ``0..ways-1`` (multiclass) or ``float`` ``{0., 1.}`` for
binary tasks, where the model emits one logit.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@dataclass(frozen=True)
class TaskBatch:
    """A meta-batch of few-shot tasks (see module docstring for shapes)."""

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor

    def __len__(self) -> int:
        return self.support_x.shape[0]

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "TaskBatch":
        """Move to ``device``; ``dtype`` (if given) applies to the inputs only."""
        def move(t: Tensor, is_input: bool) -> Tensor:
            t = t.to(device, non_blocking=True)
            return t.to(dtype) if (dtype is not None and is_input) else t

        return TaskBatch(move(self.support_x, True), move(self.support_y, False),
                         move(self.query_x, True), move(self.query_y, False))

    def select(self, tasks: slice) -> "TaskBatch":
        """The tasks ``tasks`` (a slice over the task axis) as a batch."""
        return TaskBatch(self.support_x[tasks], self.support_y[tasks], self.query_x[tasks],
                         self.query_y[tasks])

    def task(self, i: int) -> "TaskBatch":
        """The ``i``-th task as a batch of one."""
        return TaskBatch(self.support_x[i:i + 1], self.support_y[i:i + 1],
                         self.query_x[i:i + 1], self.query_y[i:i + 1])


@runtime_checkable
class TaskSource(Protocol):
    """Anything that draws seeded meta-batches of tasks.

    ``input_shape`` is the shape of one example, ``num_outputs`` the model head size
    (``ways`` for classification, 1 for binary tasks).
    """

    input_shape: tuple[int, ...]
    num_outputs: int

    def sample(self, num_tasks: int, generator: torch.Generator) -> TaskBatch:
        """Draw ``num_tasks`` tasks as one :class:`TaskBatch`, deterministically from ``generator``."""
        ...


def seeded_batches(source: TaskSource, num_tasks: int, seed: int,
                   batch_size: int = 25) -> Iterator[tuple[int, TaskBatch]]:
    """The ``num_tasks`` tasks of ``seed``, drawn ``batch_size`` at a time from a private generator.

    Every caller with the same source, seed and batch size gets the same tasks, so methods,
    probes and their conditions are all scored on identical episodes.

    Args:
        source: the task source.
        num_tasks: how many tasks in all.
        seed: seeds the private generator.
        batch_size: tasks per drawn batch (the last one may be smaller).

    Yields:
        ``(index of the batch's first task, batch)``.

    Raises:
        ValueError: ``num_tasks`` is not positive.
    """
    if num_tasks <= 0:
        raise ValueError(f"num_tasks must be positive, got {num_tasks}")
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, num_tasks, batch_size):
        yield start, source.sample(min(batch_size, num_tasks - start), gen)
