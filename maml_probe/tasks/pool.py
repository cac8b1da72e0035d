"""A fixed pool of training tasks (Appendix A.1.1 and A.1.2: "we generate 20,000 training tasks").

The paper meta-trains Omniglot and CIFAR-FS on a fixed set of 20,000 training tasks rather than
on a fresh episode at every iteration. :class:`TaskPool` wraps any :class:`TaskSource` so that
it draws its meta-batches from ``size`` tasks fixed in advance:

* **Pool task** ``i`` (``0 <= i < size``) is the single task that the wrapped source draws from
  a private CPU generator seeded by ``(seed, i)`` (:func:`pool_task_seed`). It is a function of
  ``(seed, i)`` alone, so it is never stored: it is drawn again whenever it is picked, and it
  is the same in every process, after a resume, and on every device.
* **A meta-batch** of ``T`` tasks picks pool indices with the caller's generator only: ``T``
  distinct tasks when ``T <= size`` (a uniformly random ordered subset: the order of i.i.d.
  uniform noise over the pool, as :class:`~maml_probe.data.episodes.EpisodeSampler` picks
  classes); with ``T > size`` each full round of ``size`` picks is a random permutation of the
  pool. Training seeds that generator by ``(seed, iteration)``
  (:func:`maml_probe.train.meta_step`), so the picks, like fresh episodes, do not depend on how
  many processes share a meta-batch.

Picking costs one draw of ``size`` uniform numbers per meta-batch (well under a millisecond at
the paper's 20,000). :func:`maml_probe.config.build_task_source` wraps the ``train`` split in
a pool when :attr:`maml_probe.config.TrainConfig.task_pool` is set.
"""
from __future__ import annotations

import hashlib
import math

import torch

from .base import TaskBatch, TaskSource

__all__ = ["TaskPool", "pool_task_seed"]


def pool_task_seed(seed: int, index: int) -> int:
    """The seed of pool task ``index`` of the pool seeded by ``seed`` (a 63-bit integer).

    A hash of both numbers, so neighbouring seeds and indices give unrelated tasks, and no pool
    task shares its generator with the per-iteration generators of training.

    Args:
        seed: the pool's seed.
        index: the task's index in the pool.

    Returns:
        A non-negative integer below ``2**63`` for ``torch.Generator.manual_seed``.
    """
    digest = hashlib.blake2b(f"maml_probe.task_pool:{int(seed)}:{int(index)}".encode(),
                             digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


class TaskPool:
    """A :class:`TaskSource` that draws its tasks from ``size`` fixed tasks of ``source``.

    Args:
        source: the task source whose tasks fill the pool (e.g. the ``train`` split's episode
            sampler).
        size: how many tasks the pool holds (the paper's 20,000; a positive integer).
        seed: seeds the pool's tasks (with each task's index, see :func:`pool_task_seed`).

    Raises:
        ValueError: ``size`` is not a positive integer.
    """

    def __init__(self, source: TaskSource, size: int, seed: int = 0) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise ValueError(f"size must be a positive integer, got {size!r}")
        self.source, self.size, self.seed = source, size, int(seed)
        self.input_shape: tuple[int, ...] = tuple(source.input_shape)
        self.num_outputs: int = source.num_outputs

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return f"TaskPool({self.source!r}, size={self.size}, seed={self.seed})"

    def task(self, index: int) -> TaskBatch:
        """Pool task ``index`` as a batch of one (the same on every call).

        Args:
            index: the task's index, ``0 <= index < size``.

        Returns:
            The task, drawn from ``source`` with the generator of ``(seed, index)``.

        Raises:
            IndexError: ``index`` is outside the pool.
        """
        if not 0 <= index < self.size:
            raise IndexError(f"pool task {index} does not exist: the pool holds {self.size} tasks")
        gen = torch.Generator().manual_seed(pool_task_seed(self.seed, index))
        return self.source.sample(1, gen)

    def indices(self, num_tasks: int, generator: torch.Generator) -> list[int]:
        """The pool indices of a meta-batch of ``num_tasks`` tasks (see the module docstring).

        Args:
            num_tasks: tasks in the meta-batch.
            generator: every random number comes from it.

        Returns:
            ``num_tasks`` indices into the pool, distinct when ``num_tasks <= size``.

        Raises:
            ValueError: ``num_tasks`` is not positive.
        """
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
        rounds = math.ceil(num_tasks / self.size)
        noise = torch.rand(rounds, self.size, generator=generator, device=generator.device)
        if rounds == 1:
            return noise[0].topk(num_tasks).indices.tolist()
        return noise.argsort(dim=1).flatten()[:num_tasks].tolist()

    def sample(self, num_tasks: int, generator: torch.Generator) -> TaskBatch:
        """A meta-batch of ``num_tasks`` pool tasks picked with ``generator``.

        Args:
            num_tasks: tasks to draw.
            generator: picks the pool tasks (the tasks themselves come from their own seeds).

        Returns:
            The picked tasks, stacked in the order they were picked.
        """
        tasks = [self.task(i) for i in self.indices(num_tasks, generator)]
        if len(tasks) == 1:
            return tasks[0]
        return TaskBatch(*(torch.cat([getattr(t, f) for t in tasks])
                           for f in ("support_x", "support_y", "query_x", "query_y")))
