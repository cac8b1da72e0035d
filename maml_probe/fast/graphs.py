"""Whole meta-steps recorded once as CUDA graphs and replayed: the CUDA fast path.

The paper's networks are small: a second-order meta-step of the Omniglot CNN launches tens of
thousands of tiny kernels (inner-loop forwards, their double backward, the rule, the query pass),
and on a modern GPU the time goes into launching them, not into arithmetic. A CUDA graph records
every kernel of one meta-step of :func:`~maml_probe.fast.batched.stacked_meta_gradients` (tasks
stacked, inner loops, query pass, meta-gradient) once per episode shape, and replays the whole
recording with a single launch.

**One recording** belongs to one model (held weakly: it is dropped with the model), one rule
object, the storage of their parameters, the shapes and dtypes of the meta-batch, and the
settings (steps, adaptation mask, first/second order, chunking, float32 precision, the rule's
``alpha``). Optimiser steps update parameters in place, so the same recording serves the whole
of training; anything that would make it stale (parameters replaced by ``.to()`` or
``load_state_dict(assign=True)``, a new rule, a new shape) simply keys a new recording. At most
:data:`MAX_RECORDINGS_PER_MODEL` are kept per model (least recently used dropped first);
:func:`clear_recordings` releases them.

**Recording** (the first meta-step of a key, a few eager steps' time):

1. *Chunk sizing* (unless a chunk is given): one task's meta-step runs eagerly and its peak
   memory is measured; ``chunk = budget // (SAFETY * peak)`` tasks are stacked per pass, the
   budget being ``MAML_PROBE_CUDA_MEMORY_GB`` or :data:`MEMORY_FRACTION` of the memory free now.
2. Two eager warm-up steps on a side stream with ``cudnn.benchmark`` on, so that cuDNN picks its
   fastest algorithm for every (fixed) shape before anything is recorded.
3. Capture into a private memory pool, one replay, and a check that the replay agrees with the
   last warm-up step (:func:`_disagreement`). If the capture fails or the replay disagrees,
   2-3 are tried once more with ``cudnn.benchmark`` off; if that fails too, this key runs
   eagerly from then on, with a warning: the results stay right, only slower. Out of memory
   anywhere in 1-3 halves the chunk and starts again.

**Each meta-step** then copies the batch into the recording's static input buffers, replays, and
adds the static gradient outputs into ``.grad`` (as ``.backward()`` would), plus one read of the
loss and accuracy back to the host.

On a device without CUDA graphs (the CPU, in the test suite) a recording is the same function
called eagerly on the static buffers, so the caching, buffer and accumulation logic is tested
everywhere; ``tests/test_cuda.py`` checks the real graphs in float64 on a GPU.
"""
from __future__ import annotations

import math
import os
import threading
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import torch
from torch import nn

from ..rules.base import UpdateRule
from ..tasks.base import TaskBatch
from .batched import MetaGradients, accumulate_into_grad, meta_leaves, stacked_meta_gradients
from .precision import cuda_precision, resolve_precision

#: Recordings kept per model (each holds one meta-step's activations in its memory pool).
MAX_RECORDINGS_PER_MODEL = 4
#: Share of the currently free device memory that chunk sizing may plan to use.
MEMORY_FRACTION = 0.8
#: Stacked tasks need a little more than ``tasks x one task's peak`` (allocator rounding).
SAFETY = 1.25
#: Eager steps before capture (cuDNN algorithm search, lazy initialisation).
WARMUP_STEPS = 2

_lock = threading.Lock()
_recordings: "weakref.WeakKeyDictionary[nn.Module, OrderedDict[tuple, Recording]]" = \
    weakref.WeakKeyDictionary()


@dataclass
class Recording:
    """One recorded meta-step: static inputs, static outputs and the graph that links them."""

    rule: "weakref.ref[UpdateRule]"
    static: TaskBatch
    outputs: MetaGradients | None
    graph: "torch.cuda.CUDAGraph | None"
    run: Callable[[TaskBatch], MetaGradients] = field(repr=False)
    chunk: int
    peak_bytes: int = 0
    note: str = ""

    @property
    def captured(self) -> bool:
        """Whether this is a real CUDA graph (``False``: the step runs eagerly on static buffers)."""
        return self.graph is not None

    def __call__(self, batch: TaskBatch) -> MetaGradients:
        """One meta-step on ``batch``: copied into the static inputs, then replayed (or run)."""
        _copy_batch(self.static, batch)
        if self.graph is None:
            return self.run(self.static)
        self.graph.replay()
        assert self.outputs is not None
        return self.outputs


def _copy_batch(static: TaskBatch, batch: TaskBatch) -> None:
    for dst, src in zip((static.support_x, static.support_y, static.query_x, static.query_y),
                        (batch.support_x, batch.support_y, batch.query_x, batch.query_y)):
        dst.copy_(src, non_blocking=True)


def _clone_batch(batch: TaskBatch, device: torch.device) -> TaskBatch:
    return TaskBatch(*(t.detach().to(device).clone() for t in
                       (batch.support_x, batch.support_y, batch.query_x, batch.query_y)))


def memory_budget(device: torch.device) -> int:
    """Bytes chunk sizing may plan for: ``MAML_PROBE_CUDA_MEMORY_GB``, else a share of free memory.

    Free memory is the device's free memory plus what PyTorch holds but does not use, capped by
    ``torch.cuda.set_per_process_memory_fraction`` where that is set.
    """
    raw = os.environ.get("MAML_PROBE_CUDA_MEMORY_GB", "").strip()
    if raw:
        try:
            gb = float(raw)
        except ValueError:
            raise ValueError(f"MAML_PROBE_CUDA_MEMORY_GB must be a number, got {raw!r}") from None
        if not gb > 0:
            raise ValueError(f"MAML_PROBE_CUDA_MEMORY_GB must be positive, got {raw!r}")
        return int(gb * 2**30)
    if device.type != "cuda":
        return 2**62
    free, total = torch.cuda.mem_get_info(device)
    allocated = torch.cuda.memory_allocated(device)
    available = free + torch.cuda.memory_reserved(device) - allocated
    fraction = getattr(torch.cuda, "get_per_process_memory_fraction", None)
    if fraction is not None:
        available = min(available, int(fraction(device) * total) - allocated)
    return int(MEMORY_FRACTION * max(available, 0))


def chunk_for(per_task_bytes: int, tasks: int, budget: int) -> int:
    """Tasks per stacked pass: as many as ``budget`` holds at ``SAFETY x per_task_bytes`` each."""
    if per_task_bytes <= 0:
        return tasks
    return max(1, min(tasks, int(budget // (SAFETY * per_task_bytes))))


def _key(model: nn.Module, rule: UpdateRule, batch: TaskBatch, settings: tuple) -> tuple:
    def storage(ps):
        return tuple((p.data_ptr(), tuple(p.shape), p.stride(), p.dtype, p.requires_grad)
                     for p in ps)

    shapes = tuple((tuple(t.shape), t.dtype) for t in
                   (batch.support_x, batch.support_y, batch.query_x, batch.query_y))
    return (id(rule), type(rule), float(rule.alpha), bool(rule.adapts),
            storage(model.parameters()), storage(rule.parameters()), shapes, settings)


def clear_recordings(model: nn.Module | None = None) -> None:
    """Drop the recorded meta-steps of ``model`` (all models if ``None``) and free their memory."""
    with _lock:
        if model is None:
            _recordings.clear()
        else:
            _recordings.pop(model, None)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def recordings(model: nn.Module) -> list[Recording]:
    """The recordings currently kept for ``model`` (most recently used last)."""
    return list(_recordings.get(model, {}).values())


def graphed_meta_backward(model: nn.Module, rule: UpdateRule, batch: TaskBatch, *, steps: int,
                          adapt_mask: Collection[str] | None = None, first_order: bool = False,
                          chunk: int | None = None, query_chunk: int | None = None,
                          precision: str | None = None) -> tuple[float, float]:
    """:func:`~maml_probe.maml.meta_backward` by replaying a recorded meta-step (module docstring).

    ``chunk`` (tasks per stacked pass) is measured from memory when ``None``; ``query_chunk`` as
    in :func:`~maml_probe.fast.batched.stacked_meta_gradients`. Accumulates the meta-gradient
    into ``.grad`` and returns (mean query loss, mean query accuracy).
    """
    mode = resolve_precision(precision)
    mask = None if adapt_mask is None else frozenset(adapt_mask)
    settings = (steps, mask, bool(first_order), chunk, query_chunk, mode)
    key = _key(model, rule, batch, settings)
    with _lock:
        per_model = _recordings.setdefault(model, OrderedDict())
        rec = per_model.get(key)
        if rec is not None and rec.rule() is not rule:
            rec = None
        if rec is None:
            rec = _record(model, rule, batch, steps=steps, adapt_mask=mask,
                          first_order=first_order, chunk=chunk, query_chunk=query_chunk,
                          precision=mode)
            per_model[key] = rec
            while len(per_model) > MAX_RECORDINGS_PER_MODEL:
                per_model.popitem(last=False)
        per_model.move_to_end(key)
        # under the lock: a recording's static buffers serve one meta-step at a time
        with cuda_precision(mode):
            out = rec(batch)
        accumulate_into_grad(meta_leaves(model, rule), out.grads, copy=True)
        n = len(batch)
        return float(out.loss_sum) / n, float(out.acc_sum) / n


def _record(model: nn.Module, rule: UpdateRule, batch: TaskBatch, *, steps: int,
            adapt_mask: frozenset[str] | None, first_order: bool, chunk: int | None,
            query_chunk: int | None, precision: str) -> Recording:
    device = next(model.parameters()).device
    static = _clone_batch(batch, device)
    n = len(batch)

    # The recording must not keep its model alive (it is a value of a weak-keyed dict).
    model_ref, rule_ref = weakref.ref(model), weakref.ref(rule)

    def run_with(c: int | None) -> Callable[[TaskBatch], MetaGradients]:
        def run(b: TaskBatch) -> MetaGradients:
            return stacked_meta_gradients(model_ref(), rule_ref(), b, steps=steps,
                                          adapt_mask=adapt_mask, first_order=first_order,
                                          chunk=c, query_chunk=query_chunk)
        return run

    can_capture = device.type == "cuda" and not torch.cuda.is_current_stream_capturing()
    if not can_capture:
        return Recording(weakref.ref(rule), static, None, None, run_with(chunk), chunk or n,
                         note="eager (no CUDA graphs on this device)")
    with cuda_precision(precision):
        size = chunk
        peak = 0
        if size is None:
            peak = _one_task_peak(run_with(1), static.task(0), device)
            size = chunk_for(peak, n, memory_budget(device))
        while True:
            try:
                return _capture(rule, static, run_with(size), size, peak, device)
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                if size <= 1:
                    raise torch.cuda.OutOfMemoryError(
                        "one task's meta-step does not fit in GPU memory: use a smaller episode or "
                        "model, or the reference loop (impl='loop')") from None
                size = max(1, size // 2)


def _one_task_peak(run: Callable[[TaskBatch], MetaGradients], task: TaskBatch,
                   device: torch.device) -> int:
    """Peak bytes allocated by one task's eager meta-step beyond what is allocated now."""
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    out = run(task)
    del out
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


class CaptureFailed(RuntimeError):
    """A meta-step could not be recorded as a CUDA graph (the message says why)."""


def _capture(rule: UpdateRule, static: TaskBatch, run: Callable[[TaskBatch], MetaGradients],
             chunk: int, peak: int, device: torch.device) -> Recording:
    """Warm up, capture and check; with cuDNN's autotuner first, then without it; else eager."""
    failures = []
    for benchmark in (True, False):
        try:
            outputs, graph = _capture_once(static, run, device, benchmark)
            return Recording(weakref.ref(rule), static, outputs, graph, run, chunk, peak,
                             note="CUDA graph" + ("" if benchmark else " (cudnn.benchmark off)"))
        except CaptureFailed as err:
            failures.append(f"cudnn.benchmark={benchmark}: {err}")
    warnings.warn(f"the meta-step could not be recorded as a CUDA graph ({'; '.join(failures)}); "
                  f"this setting runs eagerly (same results, slower)", stacklevel=5)
    return Recording(weakref.ref(rule), static, None, None, run, chunk, peak,
                     note=f"eager: {failures[-1]}")


def _capture_once(static: TaskBatch, run: Callable[[TaskBatch], MetaGradients],
                  device: torch.device, benchmark: bool
                  ) -> tuple[MetaGradients, "torch.cuda.CUDAGraph"]:
    saved_benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = benchmark
    try:
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        warm: list[MetaGradients] = []
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                out = run(static)
                warm.append(MetaGradients(tuple(None if g is None else g.detach().clone()
                                                for g in out.grads),
                                          out.loss_sum.detach().clone(),
                                          out.acc_sum.detach().clone()))
                del out
        torch.cuda.current_stream(device).wait_stream(side)
        torch.cuda.synchronize(device)
        reference = warm[-1]
        # Run-to-run noise of the eager step itself (cuDNN's atomics, amplified through the
        # inner loop): the replay has to agree with the eager step no worse than 10x that.
        noise = _relative_error(warm[-1], warm[0]) if len(warm) > 1 else 0.0
        del warm
        torch.cuda.empty_cache()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                outputs = run(static)
            graph.replay()
            torch.cuda.synchronize(device)
        except torch.cuda.OutOfMemoryError:
            raise
        except Exception as err:  # noqa: BLE001 - any capture failure is reported, then eager
            raise CaptureFailed(f"capture failed, {type(err).__name__}: {str(err)[:300]}") from err
        problem = _disagreement(outputs, reference, noise)
        if problem:
            raise CaptureFailed(f"the replay disagreed with the eager step: {problem}")
        return outputs, graph
    finally:
        torch.backends.cudnn.benchmark = saved_benchmark


def _relative_error(got: MetaGradients, ref: MetaGradients) -> float:
    """Largest gradient difference relative to the largest reference entry (inf if undefined)."""
    if [g is None for g in got.grads] != [g is None for g in ref.grads]:
        return math.inf
    grads = [(a, b) for a, b in zip(got.grads, ref.grads) if b is not None]
    if not grads:
        return 0.0
    scale = max(float(b.abs().max()) for _, b in grads)
    worst = max(float((a - b).abs().max()) for a, b in grads)
    if not math.isfinite(worst):
        return math.inf
    return worst / scale if scale > 0 else (0.0 if worst == 0 else math.inf)


def _disagreement(got: MetaGradients, ref: MetaGradients, noise: float = 0.0) -> str:
    """Empty if a replay matches the eager step, else what differs.

    What this catches is a recording that reads or writes the wrong memory (stale inputs, wrong
    parameters, outputs overwritten): the query loss is then off by far more than rounding, and
    gradients by order one or NaN. The query loss must agree to ``1e-9`` (float64) or ``1e-4``
    relative; the meta-gradient to the larger of ``1e-9`` / ``5e-2`` of its largest entry and
    ten times the difference between two eager steps (``noise``). The float32 gradient floor is
    loose on purpose: on an H200, replays of correct recordings at the paper's episodes differed
    from eager steps by 3e-3 to 4e-2 of the largest entry (the loss by at most 3e-5), these
    second-order gradients amplifying rounding strongly (TF32 convolutions move them by 1e-1);
    that the recorded computation is exact is established in float64 (``tests/test_cuda.py``).
    """
    double = ref.loss_sum.dtype == torch.float64
    grad_tol = max(1e-9 if double else 5e-2, 10 * noise)
    loss_tol = max(1e-9 if double else 1e-4, 10 * noise)
    worst = _relative_error(got, ref)
    loss_err = abs(float(got.loss_sum) - float(ref.loss_sum)) / max(abs(float(ref.loss_sum)), 1e-30)
    if not worst <= grad_tol or not loss_err <= loss_tol:
        return (f"gradient error {worst:.1e} (tolerance {grad_tol:.1e}), loss error "
                f"{loss_err:.1e} (tolerance {loss_tol:.1e}); eager run-to-run noise {noise:.1e}")
    return ""


def describe(model: nn.Module) -> list[dict[str, object]]:
    """One line per recording of ``model``: whether it is a graph, its chunk and measured peak."""
    return [{"captured": r.captured, "chunk": r.chunk, "tasks": len(r.static),
             "one_task_peak_mib": round(r.peak_bytes / 2**20, 1), "note": r.note}
            for r in recordings(model)]


__all__ = ["MAX_RECORDINGS_PER_MODEL", "MEMORY_FRACTION", "Recording", "chunk_for",
           "clear_recordings", "describe", "graphed_meta_backward", "memory_budget",
           "recordings"]
