"""Meta-training: the outer loop over meta-batches, with evaluation, checkpoints and resume.

Each iteration draws a meta-batch of ``meta_batch`` tasks, adapts to each with
``steps`` inner steps (:mod:`maml_probe.maml`), and takes one step of the outer optimizer
(Adam or SGD) on the mean query loss, for the model's initial parameters and the update rule's
parameters alike (Algorithm 1, lines 11-13).

Resuming is exact: the task generator, every RNG, the outer optimizer's state and the history
live in the checkpoint, so a run killed and restarted ends with the same parameters, bit for
bit, as one that ran through. A non-finite meta-loss (or meta-gradient) stops the run with
:class:`NonFiniteLossError` *before* the outer step, leaving the last good checkpoint intact.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from .checkpoint import capture_rng_states, load_checkpoint, restore_rng_states, save_checkpoint
from .device import resolve_device
from .evaluation import evaluate
from .learner import INPUT_SHAPES, MetaLearner, build_learner
from .maml import meta_backward
from .models import MODEL_NAMES
from .rules import RULE_NAMES
from .stats import summarize
from .tasks.base import TaskSource
from .tasks.synthetic import SyntheticBinaryTasks

DATASETS = ("synthetic", "omniglot", "cifarfs", "miniimagenet")
OPTIMIZERS = ("adam", "sgd")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


class NonFiniteLossError(RuntimeError):
    """The meta-loss or meta-gradient became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainConfig:
    """Everything that defines a meta-training run (saved in its checkpoint).

    ``dataset_kwargs`` go to the task source: for ``synthetic`` ``dim``, ``support`` and
    ``query``; for image datasets ``root``, ``cache_dir`` and loader options. ``ways``,
    ``shots`` and ``queries`` define image episodes (queries per class). ``alpha`` is the
    adaptation (inner) rate, ``meta_lr`` the outer one. ``adapt_layers`` restricts adaptation to
    some layers (``C1``.. ``FC``) or parameter names; ``None`` adapts everything.
    """

    dataset: str = "synthetic"
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    ways: int = 5
    shots: int = 1
    queries: int = 15
    model: str = "lr"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    rule: str = "maml"
    rule_kwargs: dict[str, Any] = field(default_factory=dict)
    steps: int = 1
    eval_steps: int | None = None
    alpha: float = 0.5
    meta_lr: float = 0.01
    outer_optimizer: str = "sgd"
    meta_batch: int = 1
    iterations: int = 1000
    first_order: bool = False
    adapt_layers: list[str] | None = None
    eval_every: int = 0
    eval_tasks: int = 100
    eval_split: str = "val"
    log_every: int = 10
    checkpoint_every: int = 100
    seed: int = 0
    device: str = "auto"
    dtype: str = "float32"

    def validate(self) -> "TrainConfig":
        """Raise ``ValueError`` naming the first bad field."""
        def choice(name: str, allowed: tuple) -> None:
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {list(allowed)}, got {getattr(self, name)!r}")

        choice("dataset", DATASETS)
        choice("model", MODEL_NAMES)
        choice("rule", RULE_NAMES)
        choice("outer_optimizer", OPTIMIZERS)
        choice("dtype", tuple(DTYPES))
        choice("eval_split", ("train", "val", "test"))
        for name in ("ways", "shots", "queries", "steps", "meta_batch", "iterations", "eval_tasks",
                     "log_every", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.eval_steps is not None and (not isinstance(self.eval_steps, int) or self.eval_steps < 0):
            raise ValueError(f"eval_steps must be a non-negative integer or None, got {self.eval_steps!r}")
        if not isinstance(self.eval_every, int) or self.eval_every < 0:
            raise ValueError(f"eval_every must be a non-negative integer, got {self.eval_every!r}")
        for name in ("alpha", "meta_lr"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not (0 < value < math.inf):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        return self

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with ``changes`` applied (unknown keys raise ``TypeError``)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def build_task_source(cfg: TrainConfig, split: str, device: torch.device | str = "cpu") -> TaskSource:
    """The task source of ``split`` (``train``/``val``/``test``) for ``cfg``."""
    dtype = DTYPES[cfg.dtype]
    if cfg.dataset == "synthetic":
        return SyntheticBinaryTasks(**cfg.dataset_kwargs, dtype=dtype, device=device)
    from . import data  # imported lazily: image loading is not needed for synthetic runs

    return data.build_task_source(cfg.dataset, split, cfg.ways, cfg.shots, cfg.queries,
                                  device=device, **cfg.dataset_kwargs)


def learner_from_config(cfg: TrainConfig) -> MetaLearner:
    """A freshly initialised learner for ``cfg`` (initialisation uses the global torch RNG)."""
    if cfg.dataset == "synthetic":
        input_shape, outputs = (cfg.dataset_kwargs.get("dim", 100),), 1
    else:
        input_shape, outputs = INPUT_SHAPES[cfg.dataset], cfg.ways
    return build_learner(cfg.model, cfg.rule, dataset=cfg.dataset, input_shape=input_shape,
                         num_outputs=outputs, alpha=cfg.alpha, model_kwargs=cfg.model_kwargs,
                         rule_kwargs=cfg.rule_kwargs)


def load_learner(path: str | Path, device: str | torch.device = "cpu") -> tuple[MetaLearner, TrainConfig]:
    """Rebuild the learner saved in checkpoint ``path`` and return it with its config."""
    state = load_checkpoint(path, map_location="cpu")
    cfg = TrainConfig(**state["config"])
    learner = learner_from_config(cfg).to(DTYPES[cfg.dtype])
    learner.load_state_dict(state["learner"])
    return learner.to(resolve_device(device)), cfg


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


def _same_run(saved: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """Config fields that differ between a checkpoint and ``cfg`` (extending ``iterations`` is allowed)."""
    now = cfg.to_dict()
    return [k for k in now if k not in ("iterations", "device") and saved.get(k) != now[k]]


def meta_train(cfg: TrainConfig, run_dir: str | Path | None = None, *, resume: bool = True,
               progress: bool = True, sources: dict[str, TaskSource] | None = None) -> TrainResult:
    """Meta-train per ``cfg``; with ``run_dir``, checkpoint to ``run_dir/checkpoint.pt`` and resume from it.

    Returns the learner and a tidy history with columns ``iteration``, ``split``, ``phase``,
    ``loss``, ``accuracy``, ``ci95``, ``seconds_per_iteration`` (``train`` rows are running means
    over the logging window of the meta-batch query loss/accuracy after adaptation and of the
    wall time per iteration, evaluation excluded; ``val``/``test`` rows come from :func:`evaluate`).
    """
    cfg.validate()
    t0 = time.perf_counter()
    device, dtype = resolve_device(cfg.device), DTYPES[cfg.dtype]
    sources = sources or {}
    train_src = sources.get("train") or build_task_source(cfg, "train", device)
    eval_src = (sources.get(cfg.eval_split) or build_task_source(cfg, cfg.eval_split, device)
                if cfg.eval_every else None)
    torch.manual_seed(cfg.seed)
    learner = learner_from_config(cfg).to(device=device, dtype=dtype)
    mask = learner.resolve_mask(cfg.adapt_layers)
    opt = _outer_optimizer(cfg, learner)
    tasks = torch.Generator().manual_seed(cfg.seed + 1)
    history: list[dict[str, Any]] = []
    start = 0
    ckpt = Path(run_dir) / "checkpoint.pt" if run_dir is not None else None
    if ckpt is not None and resume and ckpt.exists():
        state = load_checkpoint(ckpt, map_location=device)
        changed = _same_run(state["config"], cfg)
        if changed:
            raise ValueError(f"{ckpt} was written by a run with a different config (fields {changed}); "
                             f"use another run directory or resume=False")
        learner.load_state_dict(state["learner"])
        opt.load_state_dict(state["optimizer"])
        restore_rng_states(state["rng"], tasks)
        history, start = state["history"], state["iteration"]

    def checkpoint(iteration: int) -> None:
        if ckpt is not None:
            save_checkpoint(ckpt, {"config": cfg.to_dict(), "iteration": iteration,
                                   "learner": learner.state_dict(), "optimizer": opt.state_dict(),
                                   "rng": capture_rng_states(tasks), "history": history})

    eval_steps = cfg.steps if cfg.eval_steps is None else cfg.eval_steps
    run_loss = run_acc = 0.0
    run_n = 0
    run_time = 0.0
    bar = tqdm(range(start, cfg.iterations), initial=start, total=cfg.iterations,
               desc=f"{cfg.model} w/ {cfg.rule}", disable=not progress)
    for it in bar:
        step_start = time.perf_counter()
        batch = train_src.sample(cfg.meta_batch, tasks)
        opt.zero_grad(set_to_none=True)
        loss, acc = meta_backward(learner.model, learner.rule, batch, steps=cfg.steps,
                                  adapt_mask=mask, first_order=cfg.first_order)
        grads = [p.grad for p in learner.parameters() if p.grad is not None]
        # one device-to-host read for all gradients (a GPU step would otherwise wait per tensor)
        grads_finite = not grads or bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())
        if not (math.isfinite(loss) and grads_finite):
            kept = f"the last good checkpoint is kept at {ckpt}" if ckpt and ckpt.exists() else \
                "no checkpoint had been written yet"
            raise NonFiniteLossError(
                f"meta-{'loss' if not math.isfinite(loss) else 'gradient'} became non-finite "
                f"(loss={loss}) at iteration {it + 1}; training stopped before the update and {kept}. "
                f"Try a smaller alpha (now {cfg.alpha}) or meta_lr (now {cfg.meta_lr}).")
        opt.step()
        run_time += time.perf_counter() - step_start
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
            df = evaluate(learner, eval_src, steps=eval_steps, num_tasks=cfg.eval_tasks,
                          seed=cfg.seed + 2, adapt_mask=mask)
            for row in summarize(df, ["phase"]).to_dict("records"):
                history.append({"iteration": done, "split": cfg.eval_split, "phase": row["phase"],
                                "loss": math.nan, "accuracy": row["accuracy"], "ci95": row["ci95"]})
        if done % cfg.checkpoint_every == 0 or done == cfg.iterations:
            checkpoint(done)
    bar.close()
    if start >= cfg.iterations and ckpt is not None and not ckpt.exists():
        checkpoint(start)
    return TrainResult(learner, cfg, pd.DataFrame(history), ckpt, time.perf_counter() - t0)
