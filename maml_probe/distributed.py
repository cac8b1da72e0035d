"""Data-parallel meta-training across processes (``torchrun``): ranks, task shares, one all-reduce.

The tasks of a meta-batch are independent, and Algorithm 1's meta-gradient is their mean:

    g = (1/T) sum_t grad L_t = sum_r (n_r / T) * g_r,    g_r = (1/n_r) sum_{t in share r} grad L_t,

so each of ``W`` processes (ranks) adapts its share of ``n_r`` tasks, computes ``g_r`` with the
ordinary single-process engine, and one weighted all-reduce gives every rank the meta-batch's
``g``; each then takes the same optimizer step. ``torch.nn.parallel.DistributedDataParallel``
does not fit here: it reduces gradients of a module's own forward, while the meta-gradient comes
from ``functional_call`` over parameter dicts through the inner loop, for the model's initial
parameters and the update rule's parameters alike. So the gradients of all of them are
flattened into one buffer (with a has-gradient flag per tensor and the loss and accuracy) and
reduced by one ``torch.distributed.all_reduce``: a meta-batch moves model + rule parameters
once per step (about 1.5 MB for the Omniglot CNN with KFC), which is small next to the tasks'
compute, so finer buckets overlapping the backward pass would gain nothing measurable.

Every rank draws the *whole* meta-batch from a generator seeded by (seed, iteration) and keeps
its share, so a run on ``W`` ranks visits exactly the tasks of a one-process run, a checkpoint
resumes on any number of ranks, and results agree to the order of summation.

Launch with ``torchrun --nproc-per-node N -m maml_probe train ...``: the process group is made
from torchrun's environment (NCCL on CUDA, gloo on CPU) with a timeout, so the survivors of a
dead rank stop with an error instead of waiting forever.
"""
from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch import Tensor

from .evaluation import evaluate
from .learner import MetaLearner
from .maml import evaluate_batch
from .tasks.base import TaskSource, seeded_batches

__all__ = ["World", "all_reduce_gradients", "current_world", "evaluate_shared", "init_from_env",
           "iteration_generator", "same_on_all", "share_of", "sum_across"]

#: Seconds a collective waits for a missing rank before raising (``MAML_PROBE_DIST_TIMEOUT``).
DEFAULT_TIMEOUT_S = 120


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of a run (``size == 1``: a single process)."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """Whether this rank writes checkpoints, logs and results (rank 0)."""
        return self.rank == 0


def current_world() -> World:
    """The initialised process group's rank and size, or a single process."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def init_from_env(device: torch.device | str = "cpu", *, timeout_s: float | None = None) -> World:
    """Join the process group that ``torchrun`` describes in the environment, once.

    Without ``WORLD_SIZE`` (or with ``WORLD_SIZE=1``) nothing is initialised and the run is a
    single process.

    Args:
        device: the device the run trains on: NCCL for CUDA, gloo otherwise. On CUDA the rank
            uses GPU ``LOCAL_RANK``.
        timeout_s: how long a collective waits for the other ranks (default
            ``MAML_PROBE_DIST_TIMEOUT`` or :data:`DEFAULT_TIMEOUT_S`).

    Returns:
        The resulting :class:`World`.
    """
    if dist.is_initialized() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return current_world()
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    timeout = timeout_s or float(os.environ.get("MAML_PROBE_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                            timeout=timedelta(seconds=timeout))
    return current_world()


def share_of(num_tasks: int, world: World) -> slice:
    """The tasks of a meta-batch this rank adapts: contiguous, sizes differing by at most one.

    Raises:
        ValueError: fewer tasks than ranks (a rank would have nothing to do).
    """
    if num_tasks < world.size:
        raise ValueError(f"a meta-batch of {num_tasks} tasks cannot be shared by {world.size} "
                         f"processes; use at least as many tasks as processes")
    base, extra = divmod(num_tasks, world.size)
    start = world.rank * base + min(world.rank, extra)
    return slice(start, start + base + (world.rank < extra))


def iteration_generator(seed: int, iteration: int, device: torch.device | str = "cpu") -> torch.Generator:
    """The task generator of one meta-batch, a function of ``(seed, iteration)`` only."""
    state = np.random.SeedSequence([seed, iteration]).generate_state(2, np.uint32)
    return torch.Generator(device=device).manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)


def sum_across(values: Tensor, world: World) -> Tensor:
    """``values`` summed over all ranks (itself on a single process)."""
    if world.size > 1:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def same_on_all(value: int, world: World) -> bool:
    """Whether every rank holds the same integer ``value`` (the same answer on every rank)."""
    if world.size == 1:
        return True
    both = torch.tensor([value, -value], dtype=torch.float64)
    dist.all_reduce(both, op=dist.ReduceOp.MAX)
    return bool(both[0] == -both[1])


def evaluate_shared(learner: MetaLearner, source: TaskSource, *, world: World, steps: int,
                    num_tasks: int, seed: int = 0, batch_size: int = 25,
                    adapt_mask: Collection[str] | None = None,
                    progress: bool = False) -> pd.DataFrame:
    """:func:`maml_probe.evaluation.evaluate` with the tasks shared by the ranks.

    Every rank draws the same batches of test tasks, scores its share of each, and the per-task
    accuracies are gathered, so every rank returns the table a single process would.

    Args:
        learner: the learner to score.
        source: the test task source.
        world: the ranks (a single process calls :func:`~maml_probe.evaluation.evaluate`).
        steps: adaptation steps per task.
        num_tasks: test tasks in all.
        seed: seeds the tasks (the same seed scores the same tasks).
        batch_size: tasks drawn at a time.
        adapt_mask: parameter names that adapt (``None``: all).
        progress: show a progress bar (rank 0).

    Returns:
        One row per task and phase: ``task``, ``phase`` (``pre``/``post``), ``accuracy``.
    """
    if world.size == 1:
        return evaluate(learner, source, steps=steps, num_tasks=num_tasks, seed=seed,
                        batch_size=batch_size, adapt_mask=adapt_mask, progress=progress)
    scores = torch.zeros(num_tasks, 2, dtype=torch.float64)
    for done, batch in seeded_batches(source, num_tasks, seed, batch_size):
        n = len(batch)
        share = share_of(n, world) if n >= world.size else slice(0, n if world.is_main else 0)
        if share.stop > share.start:
            pre, post = evaluate_batch(learner.model, learner.rule, batch.select(share),
                                       steps=steps, adapt_mask=adapt_mask)
            scores[done + share.start:done + share.stop, 0] = pre.detach().double().cpu()
            scores[done + share.start:done + share.stop, 1] = post.detach().double().cpu()
    scores = sum_across(scores, world)
    rows = [{"task": i, "phase": phase, "accuracy": float(scores[i, j])}
            for i in range(num_tasks) for j, phase in enumerate(("pre", "post"))]
    return pd.DataFrame(rows)


def all_reduce_gradients(params: Iterable[Tensor], weight: float, world: World,
                         scalars: Tensor | None = None) -> Tensor | None:
    """Replace each ``.grad`` by the sum over ranks of ``weight * .grad``, in one collective.

    A parameter that has no gradient on any rank keeps ``None`` (as in a single process, so
    optimizers such as Adam skip it alike); one that has a gradient on some rank only counts
    zeros for the others.

    Args:
        params: the parameters whose ``.grad`` hold this rank's mean meta-gradient.
        weight: this rank's share of the meta-batch, ``n_r / T``.
        world: the ranks (nothing happens on a single process).
        scalars: extra values reduced the same way (e.g. the weighted loss and accuracy).

    Returns:
        ``scalars`` summed over ranks (``None`` when not given).
    """
    params = list(params)
    if world.size == 1:
        return scalars
    ref = next((p for p in params), None)
    if ref is None:
        return sum_across(scalars, world) if scalars is not None else None
    dtype, device = ref.dtype, ref.device
    flags = torch.tensor([p.grad is not None for p in params], dtype=dtype, device=device)
    pieces = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) * weight
              for p in params]
    extra = scalars.to(dtype=dtype, device=device).reshape(-1) if scalars is not None else \
        torch.zeros(0, dtype=dtype, device=device)
    flat = sum_across(torch.cat([*pieces, flags, extra]), world)
    offset = 0
    for p, has in zip(params, flat[sum(x.numel() for x in pieces):][:len(params)].tolist()):
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone() if has else None
        offset += n
    return flat[offset + len(params):] if scalars is not None else None
