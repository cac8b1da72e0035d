"""``auto`` picks the engine of a training run by timing the candidates at the run's own episode.

Which engine computes a meta-gradient fastest on a CPU depends on the episode, not only on the
device: the stacked engine wins on small support sets (Omniglot 5-way 1-shot: many tiny
kernels), while at mini-ImageNet's 10-way 1-shot, 5 steps with 150 query images of 84x84 the
reference loop is ~1.25x faster than the stacked engine's best chunking (``results/cpu``). A
fixed rule cannot know this, so before a CPU run of ``engine="auto"`` with enough iterations
ahead, :func:`fastest_engine` times each candidate on a meta-batch of the run's own training
tasks (drawn from iteration 0, which training never uses) and the run keeps the fastest.

Timing does not change the run: the meta-gradients are accumulated and then discarded, no
parameter is updated, and the models hold no running statistics. The candidates compute the same
meta-gradient up to floating-point summation order (``tests/test_fast_paths.py``), so the choice
changes the speed, not the result. The choice and its timings are saved in the checkpoint.
"""
from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import torch

from .fast import choose_impl
from .learner import MetaLearner
from .losses import task_loss
from .maml import meta_backward
from .tasks.base import TaskBatch

#: Engines compared: the reference loop and the device's fixed ``auto`` rule (:data:`maml_probe.fast.AUTO`).
CANDIDATES = ("loop", "auto")
#: Runs with fewer iterations left than this keep the fixed rule (timing would cost more than it saves).
MIN_ITERATIONS = 50


@dataclass
class EngineChoice:
    """The engine a run uses, what ``auto`` resolved to, and the timings it was picked by."""

    engine: str                      # what meta_backward gets: "loop", "auto", ...
    resolved: str                    # the concrete path, e.g. "batched (tasks/chunk 1, query 1)"
    seconds: dict[str, float] = field(default_factory=dict)  # best time per candidate
    reason: str = ""

    def to_dict(self) -> dict:
        """Plain dict for checkpoints and records."""
        return {"engine": self.engine, "resolved": self.resolved, "seconds": dict(self.seconds),
                "reason": self.reason}


def resolved_engine(learner: MetaLearner, batch: TaskBatch, engine: str, steps: int) -> str:
    """The path ``engine`` runs for ``batch`` (e.g. ``auto`` -> ``batched (tasks/chunk 8, ...)``)."""
    device = next(learner.model.parameters()).device
    return choose_impl(learner.model, learner.rule, device, loss_fn=task_loss, impl=engine,
                       support_size=batch.support_x.shape[1], steps=steps,
                       tasks=len(batch)).describe()


def fastest_engine(learner: MetaLearner, batch: TaskBatch, *, steps: int,
                   adapt_mask: Collection[str] | None = None, first_order: bool = False,
                   candidates: Sequence[str] = CANDIDATES, repeats: int = 2) -> EngineChoice:
    """Time one meta-gradient of ``batch`` per candidate engine, ``repeats`` rounds; keep the fastest.

    Rounds alternate the candidates (loop, auto, loop, auto, ...) and each candidate's best
    round counts, so the first call's warm-up does not decide. ``.grad`` of every parameter is
    left as it was found.

    Args:
        learner: The model and rule being meta-trained (on their training device).
        batch: A meta-batch of the run's training tasks.
        steps: Inner steps per task.
        adapt_mask: Names of the parameters that adapt (``None``: all).
        first_order: First-order meta-gradients.
        candidates: Engines to compare (values of ``meta_backward``'s ``impl``).
        repeats: Timed rounds per candidate.

    Returns:
        The :class:`EngineChoice`.
    """
    params = list(learner.parameters())
    saved = [None if p.grad is None else p.grad.clone() for p in params]
    resolved = {c: resolved_engine(learner, batch, c, steps) for c in candidates}
    # candidates that resolve to the same path are timed once
    distinct = list({resolved[c]: c for c in reversed(list(candidates))}.values())[::-1]
    best: dict[str, float] = {}
    try:
        for _ in range(max(1, repeats)):
            for c in distinct:
                for p in params:
                    p.grad = None
                start = time.perf_counter()
                meta_backward(learner.model, learner.rule, batch, steps=steps, adapt_mask=adapt_mask,
                              first_order=first_order, impl=c)
                if batch.support_x.device.type == "cuda":
                    torch.cuda.synchronize()
                best[c] = min(best.get(c, float("inf")), time.perf_counter() - start)
    finally:
        for p, g in zip(params, saved):
            p.grad = g
    engine = min(best, key=best.get)
    timings = ", ".join(f"{c} {best[c]:.2f} s" for c in distinct)
    return EngineChoice(engine, resolved[engine], {resolved[c]: best[c] for c in distinct},
                        f"auto, timed at this episode: {timings}")


__all__ = ["CANDIDATES", "MIN_ITERATIONS", "EngineChoice", "fastest_engine", "resolved_engine"]
