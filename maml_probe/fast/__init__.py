"""Fast paths for :func:`maml_probe.maml.meta_backward`, chosen per device.

=============  ==============================================================================
impl           what runs
=============  ==============================================================================
``loop``       the reference engine: one task after another, ``functional_call`` forward,
               per-task backward (memory of one task)
``batched``    :mod:`~maml_probe.fast.batched`: all tasks of the meta-batch (or ``chunk`` at a
               time) in one stacked pass - the model's task-stacked forward
               (:mod:`maml_probe.models.stacked`: grouped convolutions, batched matmuls), the
               same inner loop as ``loop`` (:func:`maml_probe.inner.adapt`) with one
               ``autograd.grad`` per inner step for all tasks, rules under ``vmap``
``graph``      ``batched`` recorded once per episode shape as a CUDA graph and replayed
               (:mod:`~maml_probe.fast.graphs`; CUDA only)
``auto``       per device (:data:`AUTO`); settings the batched engine does not support (custom
               models, custom ``loss_fn``) use ``loop``. A CPU training run of ``auto``
               times ``loop`` against this rule on its own episode first and keeps the
               faster (:mod:`maml_probe.engine_choice`)
=============  ==============================================================================

All give the same meta-gradients (to floating-point summation order): ``tests/test_fast_paths.py``
checks every path in float64 against the loop on the CPU, ``tests/test_cuda.py`` does the same
on a GPU. The glibc allocator tuning of :mod:`~maml_probe.fast.allocator` (~35k fewer page faults
per Omniglot-CNN meta-step whatever the path) is a run-level option, not something
``meta_backward`` does: a training run applies it at start (``TrainConfig.tune_malloc``, set by
the experiments' presets), a library user calls :func:`tune_malloc` or not. On CUDA every path
runs float32 at the precision of :mod:`~maml_probe.fast.precision` (strict fp32 unless ``tf32``
is asked for).

**Forcing a path** (debugging, benchmarks): ``meta_backward(..., impl="loop" | "batched" |
"graph" | "auto")``, or for a whole run the environment variables ``MAML_PROBE_IMPL`` (same
values), ``MAML_PROBE_TASK_CHUNK`` (tasks per stacked chunk) and ``MAML_PROBE_QUERY_CHUNK`` (tasks
per query pass); unset or 0: the device default (for a forced ``batched``: all tasks; for
``graph``: sized from measured memory). An explicit ``impl`` that cannot run the setting raises
``ValueError``; the environment variable falls back to ``loop`` with a warning.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..models.stacked import stacked_forward
from .allocator import malloc_tuned, tune_malloc
from .batched import (
    batched_meta_backward,
    maps_rule_over_tasks,
    stacked_meta_gradients,
    unsupported_reason,
)
from .graphs import clear_recordings, graphed_meta_backward
from .precision import PRECISIONS, cuda_precision, resolve_precision

IMPLS = ("auto", "loop", "batched", "graph")

#: ``auto``'s choice per device type: (impl, tasks per stacked chunk, tasks per query pass);
#: ``None`` = all tasks (``graph``: sized from measured memory), ``"sized"`` = :func:`cpu_chunk`.
#: A device type not listed uses ``loop``.
#:
#: * CPU (measured, BENCHMARKS.md): the tasks' inner loops are stacked (small support batches,
#:   where per-op overhead and poorly parallel small kernels dominate: the second-order part
#:   gets ~2x faster), while the query pass (large batches, where oneDNN's grouped convolutions
#:   are *slower* than ungrouped ones) runs one task at a time with ordinary convolutions and
#:   hands ``dL/dtheta_T`` to one backward pass through the stacked inner loops. The chunk is
#:   sized by :func:`cpu_chunk` to keep the process's peak memory near the loop's.
#: * CUDA (measured, BENCHMARKS.md): kernel launches, not arithmetic, bound these small networks,
#:   so the whole stacked meta-step (all tasks, query pass included) is recorded as one CUDA
#:   graph and replayed; tasks per pass are sized from the measured memory of one task.
AUTO: dict[str, tuple[str, int | str | None, int | None]] = {
    "cpu": ("batched", "sized", 1),
    "cuda": ("graph", None, None),
}

#: CPU inner-loop budget of :func:`cpu_chunk` for plain SGD (MAML): support images x inner steps
#: per stacked chunk. Measured on the Omniglot CNN, 5-way 1-shot, 75 queries, 2 steps, 8 tasks,
#: one thread (peak RSS growth over a run's meta-steps; BENCHMARKS.md, CPU table): 2 tasks per
#: chunk hold 79 MiB (learn2learn 67 MiB) at 0.81x learn2learn's time; 4 tasks 93 MiB at 0.79x;
#: 8 tasks 123 MiB at 0.81x; 1 task 65 MiB at 0.86x. The stacked inner-loop graph and its double
#: backward grow with the chunk and glibc's heap keeps the high-water mark, while the speed gained
#: beyond 2 tasks is within this machine's noise.
CPU_INNER_IMAGES = 20
#: The same budget for learned rules (KLin, KFC, CFC, Meta-SGD, MC), which run under
#: ``torch.func.vmap`` over the tasks of a chunk: there each chunk pays the mapped rule's fixed
#: cost, and on the Omniglot SCNN at 5-way 1-shot KFC takes 0.57 s per meta-step with 8 tasks per
#: chunk against 0.75 s with 2 (179 vs 96 MiB; the reference loop: 0.94 s, 71 MiB).
CPU_INNER_IMAGES_LEARNED_RULE = 80


def cpu_chunk(support_size: int, steps: int, tasks: int, *, learned_rule: bool = False) -> int:
    """Tasks per stacked chunk on CPU: ``budget // (support_size * steps)``, 1..tasks.

    The budget is :data:`CPU_INNER_IMAGES` for plain SGD and
    :data:`CPU_INNER_IMAGES_LEARNED_RULE` for a learned rule (``learned_rule=True``). MAML at
    5-way 1-shot with 2 steps stacks 2 tasks (beyond that the chunk costs memory and gains little
    speed), KFC 8; 10-way 5-shot with 4 steps (200 image-steps per task) runs one task at a time,
    where each inner-loop op is large enough on its own.
    """
    budget = CPU_INNER_IMAGES_LEARNED_RULE if learned_rule else CPU_INNER_IMAGES
    per_task = max(1, support_size * max(steps, 1))
    return max(1, min(tasks, budget // per_task))


@dataclass(frozen=True)
class Choice:
    """The path :func:`choose_impl` picked for a meta-step, and why."""

    impl: str                       # "loop", "batched" or "graph"
    chunk: int | None = None        # tasks per stacked inner loop (None: all / measured)
    query_chunk: int | None = None  # tasks per query pass (None: the whole chunk)
    reason: str = ""                # why (for logs and benchmarks)

    def describe(self) -> str:
        """One line for logs and benchmark tables, e.g. ``batched (tasks/chunk 8, query 1)``."""
        if self.impl == "graph":
            return (f"graph: batched + CUDA graph (tasks/chunk {self.chunk or 'measured'}, "
                    f"query {self.query_chunk or 'whole chunk'})")
        if self.impl != "batched":
            return self.impl
        return (f"batched (tasks/chunk {self.chunk or 'all'}, "
                f"query {self.query_chunk or 'whole chunk'})")


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    return value if value > 0 else None


def choose_impl(model: nn.Module, rule: nn.Module, device: torch.device, *,
                loss_fn: Callable[[Tensor, Tensor], Tensor], impl: str | None = None,
                support_size: int = 1, steps: int = 1, tasks: int = 1) -> Choice:
    """Resolve ``impl`` (argument, else ``MAML_PROBE_IMPL``, else ``auto``) to a concrete path.

    Args:
        model: the model (the stacked paths need its task-stacked forward).
        rule: the update rule.
        device: where the meta-step runs.
        loss_fn: the task loss (a custom one runs on the loop).
        impl: ``"auto"``, ``"loop"``, ``"batched"`` or ``"graph"`` (default: the environment).
        support_size: support examples per task (sizes the CPU chunk).
        steps: inner steps (sizes the CPU chunk).
        tasks: tasks in the meta-batch (sizes the CPU chunk).

    Returns:
        The :class:`Choice`: path, tasks per chunk and per query pass, and why.
    """
    from_env = impl is None
    name = (os.environ.get("MAML_PROBE_IMPL", "auto") if from_env else impl).strip().lower()
    if name not in IMPLS:
        where = "MAML_PROBE_IMPL" if from_env else "impl"
        raise ValueError(f"{where} must be one of {list(IMPLS)}, got {name!r}")
    chunk, query_chunk = _env_int("MAML_PROBE_TASK_CHUNK"), _env_int("MAML_PROBE_QUERY_CHUNK")
    if name == "loop":
        return Choice("loop", reason="forced")
    reason = unsupported_reason(model, rule, loss_fn)
    if name == "graph" and reason is None and device.type != "cuda":
        reason = f"CUDA graphs need a CUDA device, the model is on {device.type}"
    if name in ("batched", "graph"):
        if reason is None:
            return Choice(name, chunk, query_chunk, "forced")
        if not from_env:
            raise ValueError(f"impl={name!r} does not support this setting: {reason}")
        warnings.warn(f"MAML_PROBE_IMPL={name}: {reason}; using the reference loop", stacklevel=3)
        return Choice("loop", reason=f"fallback: {reason}")
    if reason is not None:
        return Choice("loop", reason=f"auto fallback: {reason}")
    auto = AUTO.get(device.type)
    if auto is None:
        return Choice("loop", reason=f"auto ({device.type}: no fast path)")
    auto_impl, auto_chunk, auto_query = auto
    if auto_chunk == "sized":
        auto_chunk = cpu_chunk(support_size, steps, tasks, learned_rule=maps_rule_over_tasks(rule))
    return Choice(auto_impl, chunk or auto_chunk, query_chunk or auto_query,
                  f"auto ({device.type})")


__all__ = ["AUTO", "CPU_INNER_IMAGES", "CPU_INNER_IMAGES_LEARNED_RULE", "IMPLS", "PRECISIONS",
           "Choice", "batched_meta_backward",
           "choose_impl", "clear_recordings", "cpu_chunk", "cuda_precision", "graphed_meta_backward",
           "malloc_tuned", "resolve_precision", "stacked_forward", "stacked_meta_gradients",
           "tune_malloc", "unsupported_reason"]
