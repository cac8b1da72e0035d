"""Meta-training: the outer loop over meta-batches, with evaluation, checkpoints and resume.

Each iteration (:func:`meta_step`) draws a meta-batch of ``meta_batch`` tasks, adapts to each
with ``steps`` inner steps (:mod:`maml_probe.maml`), and takes one step of the outer optimizer
(Adam or SGD) on the mean query loss, for the model's initial parameters and the update rule's
parameters alike (Algorithm 1, lines 11-13). :func:`meta_train` loops it with logging,
evaluation and checkpoints; under ``torchrun`` the ranks share each meta-batch
(:mod:`maml_probe.distributed`).

Resuming is exact: the tasks of an iteration depend only on the seed and the iteration number,
and every RNG, the outer optimizer's state and the history live in the checkpoint, so a run
killed and restarted ends with the same parameters, bit for bit, as one that ran through. A
non-finite meta-loss (or meta-gradient) stops the run with :class:`NonFiniteLossError`
*before* the outer step, leaving the last good checkpoint intact.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from .checkpoint import capture_rng_states, load_checkpoint, restore_rng_states, save_checkpoint
from .config import DTYPES, OPTIMIZERS, TrainConfig, build_task_source, learner_from_config, load_learner
from .device import resolve_device
from .distributed import (
    World,
    all_reduce_gradients,
    current_world,
    evaluate_shared,
    iteration_generator,
    same_on_all,
    share_of,
)
from .engine_choice import MIN_ITERATIONS, EngineChoice, fastest_engine
from .fast import tune_malloc
from .learner import MetaLearner
from .maml import meta_backward
from .stats import summarize
from .tasks.base import TaskSource

__all__ = ["DTYPES", "OPTIMIZERS", "NonFiniteLossError", "StepResult", "TrainConfig",
           "TrainResult", "build_task_source", "learner_from_config", "load_learner", "meta_step",
           "meta_train"]


class NonFiniteLossError(RuntimeError):
    """The meta-loss or meta-gradient became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class StepResult:
    """One meta-batch: its mean query loss and accuracy after adaptation, and its wall time."""

    loss: float
    accuracy: float
    seconds: float


def meta_step(learner: MetaLearner, optimizer: torch.optim.Optimizer, source: TaskSource,
              cfg: TrainConfig, iteration: int, *, mask: frozenset[str] | None = None,
              world: World | None = None, checkpoint: Path | None = None,
              engine: str | None = None) -> StepResult:
    """One outer step (Algorithm 1, lines 3-13): sample, meta-gradient, all-reduce, update.

    Draws the meta-batch of ``cfg.meta_batch`` tasks from a generator seeded by
    ``(cfg.seed, iteration)`` (so the tasks do not depend on how many processes share them),
    adapts to this rank's share with ``cfg.steps`` inner steps and back-propagates the mean query
    loss into the ``.grad`` of the model's initial parameters and the rule's parameters
    (:func:`maml_probe.maml.meta_backward` with ``cfg.engine``), averages the gradients over the
    ranks (:mod:`maml_probe.distributed`), then applies ``optimizer``. Nothing is updated when the
    loss or any gradient is not finite on any rank.

    Args:
        learner: the model and update rule being meta-trained.
        optimizer: the outer optimizer over ``learner.parameters()``.
        source: the training task sampler.
        cfg: the run's configuration (meta-batch, steps, first-order, engine, seed).
        iteration: 1-based number of this step (it seeds the step's tasks).
        mask: parameter names that adapt (``None``: all).
        world: the ranks sharing the meta-batch (default: the initialised process group, if any).
        checkpoint: the run's checkpoint file, for the error message.
        engine: the engine to run instead of ``cfg.engine`` (what ``auto`` was timed to pick).

    Returns:
        The meta-batch's loss and accuracy (the same on every rank) and this step's wall time.

    Raises:
        NonFiniteLossError: the meta-loss or a meta-gradient is NaN or infinite.
    """
    start = time.perf_counter()
    world = world or current_world()
    batch = source.sample(cfg.meta_batch, iteration_generator(cfg.seed + 1, iteration))
    share = share_of(cfg.meta_batch, world)
    if world.size > 1:
        batch = batch.select(share)
    optimizer.zero_grad(set_to_none=True)
    loss, acc = meta_backward(learner.model, learner.rule, batch, steps=cfg.steps,
                              adapt_mask=mask, first_order=cfg.first_order,
                              impl=engine or cfg.engine)
    if world.size > 1:
        weight = (share.stop - share.start) / cfg.meta_batch
        loss, acc = all_reduce_gradients(learner.parameters(), weight, world,
                                         torch.tensor([loss * weight, acc * weight],
                                                      dtype=torch.float64)).tolist()
    grads = [p.grad for p in learner.parameters() if p.grad is not None]
    # one device-to-host read for all gradients (a GPU step would otherwise wait per tensor)
    grads_finite = not grads or bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())
    if not (math.isfinite(loss) and grads_finite):
        kept = (f"the last good checkpoint is kept at {checkpoint}"
                if checkpoint is not None and checkpoint.exists() else
                "no checkpoint had been written yet")
        raise NonFiniteLossError(
            f"meta-{'loss' if not math.isfinite(loss) else 'gradient'} became non-finite "
            f"(loss={loss}) at iteration {iteration}; training stopped before the update and "
            f"{kept}. Try a smaller alpha (now {cfg.alpha}) or meta_lr (now {cfg.meta_lr}).")
    optimizer.step()
    return StepResult(loss, acc, time.perf_counter() - start)


def _outer_optimizer(cfg: TrainConfig, learner: MetaLearner) -> torch.optim.Optimizer:
    if cfg.outer_optimizer == "adam":
        return torch.optim.Adam(learner.parameters(), lr=cfg.meta_lr)
    return torch.optim.SGD(learner.parameters(), lr=cfg.meta_lr)


@dataclass
class TrainResult:
    """A finished (or resumed-and-finished) run: the learner, its history and where it was saved."""

    learner: MetaLearner
    config: TrainConfig
    history: pd.DataFrame
    checkpoint: Path | None
    wall_time_s: float
    engine: str = ""   # the path the meta-gradients ran on, e.g. "loop" or "batched (...)"


def meta_train(cfg: TrainConfig, run_dir: str | Path | None = None, *, resume: bool = True,
               progress: bool = True, sources: dict[str, TaskSource] | None = None) -> TrainResult:
    """Meta-train per ``cfg``; with ``run_dir``, checkpoint to ``run_dir/checkpoint.pt`` and resume from it.

    Loops :func:`meta_step` over the iterations. Under ``torchrun`` (an initialised process
    group, :mod:`maml_probe.distributed`) every rank runs this function: the ranks share each
    meta-batch and the periodic evaluation's tasks, resume from the same checkpoint, and rank 0
    alone writes the checkpoint and shows progress.

    Args:
        cfg: the run's configuration.
        run_dir: folder of ``checkpoint.pt`` (``None``: no checkpoints).
        resume: continue from ``run_dir``'s checkpoint when there is one.
        progress: show a progress bar (rank 0).
        sources: task sources by split, to use instead of building them from ``cfg``.

    Returns:
        The learner and a tidy history with columns ``iteration``, ``split``, ``phase``,
        ``loss``, ``accuracy``, ``ci95``, ``seconds_per_iteration`` (``train`` rows are running
        means over the logging window of the meta-batch query loss/accuracy after adaptation and
        of the wall time per iteration, evaluation excluded; ``val``/``test`` rows come from
        :func:`~maml_probe.evaluation.evaluate`).
    """
    cfg.validate()
    world = current_world()
    t0 = time.perf_counter()
    device, dtype = resolve_device(cfg.device), DTYPES[cfg.dtype]
    if cfg.tune_malloc and device.type == "cpu":
        tune_malloc()  # process-wide, once: the run asked for it (MAML_PROBE_MALLOC=0 vetoes)
    sources = sources or {}
    train_src = sources.get("train") or build_task_source(cfg, "train", device)
    eval_src = (sources.get(cfg.eval_split) or build_task_source(cfg, cfg.eval_split, device)
                if cfg.eval_every else None)
    torch.manual_seed(cfg.seed)
    learner = learner_from_config(cfg).to(device=device, dtype=dtype)
    mask = learner.resolve_mask(cfg.adapt_layers)
    opt = _outer_optimizer(cfg, learner)
    history: list[dict[str, Any]] = []
    start = 0
    saved_choice: dict[str, Any] | None = None
    ckpt = Path(run_dir) / "checkpoint.pt" if run_dir is not None else None
    if ckpt is not None and resume and ckpt.exists():
        state = load_checkpoint(ckpt, map_location=device)
        changed = cfg.differences(state["config"])
        if changed:
            raise ValueError(f"{ckpt} was written by a run with a different config (fields {changed}); "
                             f"use another run directory or resume=False")
        learner.load_state_dict(state["learner"])
        opt.load_state_dict(state["optimizer"])
        restore_rng_states(state["rng"])
        history, start = state["history"], state["iteration"]
        saved_choice = state.get("engine_choice")
    if world.size > 1:  # every rank must resume from the same point (a shared run folder)
        if not same_on_all(start, world):
            raise RuntimeError(f"the ranks found different checkpoints in {ckpt} (rank "
                               f"{world.rank} at iteration {start}); put the run folder on a file "
                               f"system every rank shares")

    def checkpoint(iteration: int) -> None:
        if ckpt is not None and world.is_main:
            save_checkpoint(ckpt, {"config": cfg.to_dict(), "iteration": iteration,
                                   "learner": learner.state_dict(), "optimizer": opt.state_dict(),
                                   "rng": capture_rng_states(), "history": history,
                                   "engine_choice": engine.to_dict()})

    engine = _pick_engine(cfg, learner, train_src, mask, world, start, progress)
    if start >= cfg.iterations and saved_choice:  # nothing left to run: report what ran
        engine = EngineChoice(**saved_choice)

    eval_steps = cfg.steps if cfg.eval_steps is None else cfg.eval_steps
    run_loss = run_acc = 0.0
    run_n = 0
    run_time = 0.0
    bar = tqdm(range(start, cfg.iterations), initial=start, total=cfg.iterations,
               desc=f"{cfg.model} w/ {cfg.rule}", disable=not (progress and world.is_main))
    for it in bar:
        step = meta_step(learner, opt, train_src, cfg, it + 1, mask=mask, world=world,
                         checkpoint=ckpt, engine=engine.engine)
        loss, acc = step.loss, step.accuracy
        run_time += step.seconds
        run_loss, run_acc, run_n = run_loss + loss, run_acc + acc, run_n + 1
        done = it + 1
        if done % cfg.log_every == 0 or done == cfg.iterations:
            history.append({"iteration": done, "split": "train", "phase": "post",
                            "loss": run_loss / run_n, "accuracy": run_acc / run_n, "ci95": math.nan,
                            "seconds_per_iteration": run_time / run_n})
            bar.set_postfix(loss=f"{run_loss / run_n:.3f}", acc=f"{run_acc / run_n:.3f}")
            run_loss = run_acc = run_time = 0.0
            run_n = 0
        if cfg.eval_every and (done % cfg.eval_every == 0 or done == cfg.iterations):
            df = evaluate_shared(learner, eval_src, world=world, steps=eval_steps,
                                 num_tasks=cfg.eval_tasks, seed=cfg.seed + 2, adapt_mask=mask)
            for row in summarize(df, ["phase"]).to_dict("records"):
                history.append({"iteration": done, "split": cfg.eval_split, "phase": row["phase"],
                                "loss": math.nan, "accuracy": row["accuracy"], "ci95": row["ci95"]})
        if done % cfg.checkpoint_every == 0 or done == cfg.iterations:
            checkpoint(done)
    bar.close()
    if start >= cfg.iterations and ckpt is not None and not ckpt.exists():
        checkpoint(start)
    if world.size > 1:  # the other ranks may read the checkpoint rank 0 has just written
        torch.distributed.barrier()
    return TrainResult(learner, cfg, pd.DataFrame(history), ckpt, time.perf_counter() - t0,
                       engine=engine.resolved)


def _pick_engine(cfg: TrainConfig, learner: MetaLearner, source: TaskSource,
                 mask: frozenset[str] | None, world: World, start: int,
                 progress: bool) -> EngineChoice:
    """``cfg.engine``, or for ``auto`` on a CPU with enough iterations ahead the fastest engine
    timed on this run's own tasks (:mod:`maml_probe.engine_choice`); one process only (ranks of a
    distributed run keep the fixed rule, so they agree without a vote)."""
    device = next(learner.model.parameters()).device
    if (cfg.engine != "auto" or device.type != "cpu" or world.size > 1
            or cfg.iterations - start < MIN_ITERATIONS):
        return EngineChoice(cfg.engine, cfg.engine, reason="as configured")
    probe = source.sample(cfg.meta_batch, iteration_generator(cfg.seed + 1, 0))  # iteration 0: unused
    choice = fastest_engine(learner, probe, steps=cfg.steps, adapt_mask=mask,
                            first_order=cfg.first_order)
    if progress and world.is_main:
        tqdm.write(f"{cfg.model} w/ {cfg.rule}: engine {choice.resolved} ({choice.reason})")
    return choice
