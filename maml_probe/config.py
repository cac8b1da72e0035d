"""The configuration of a meta-training run, and what is built from it.

:class:`TrainConfig` holds everything that defines a run (it is saved in the run's checkpoint and
in ``record.json``). :func:`build_task_source` and :func:`learner_from_config` turn it into the
task sampler and the freshly initialised learner (model plus update rule) that
:func:`maml_probe.train.meta_train` trains; :func:`load_learner` rebuilds a trained learner from
its checkpoint. Experiments make configs through :mod:`maml_probe.experiments.settings`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .checkpoint import load_checkpoint
from .data import build_task_source as image_task_source
from .data.registry import dataset_names, get_spec
from .device import resolve_device
from .learner import INPUT_SHAPES, MetaLearner, build_learner
from .models import MODEL_DEFAULTS, MODEL_NAMES
from .rules import RULE_NAMES
from .tasks.base import TaskSource
from .tasks.pool import TaskPool

__all__ = ["DTYPES", "ENGINES", "OPTIMIZERS", "TrainConfig", "build_task_source",
           "learner_from_config", "load_learner"]

OPTIMIZERS = ("adam", "sgd")
#: ``dataset_kwargs`` that say where the data is, not which data: not part of a run's identity.
LOCATION_KEYS = ("root", "cache_dir")
#: How the meta-gradient is computed (:func:`maml_probe.maml.meta_backward`): ``auto`` picks per
#: device; ``loop`` is the one-task-at-a-time reference; ``batched`` stacks the tasks into one
#: pass; ``graph`` replays that pass as a recorded CUDA graph. All give the same gradients.
ENGINES = ("auto", "loop", "batched", "graph")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class TrainConfig:
    """Everything that defines a meta-training run (saved in its checkpoint).

    ``dataset_kwargs`` go to the task source: for ``synthetic`` ``dim``, ``support`` and
    ``query``; for image datasets ``root``, ``cache_dir`` and loader options. ``ways``,
    ``shots`` and ``queries`` define image episodes (queries per class). ``alpha`` is the
    adaptation (inner) rate, ``meta_lr`` the outer one. ``adapt_layers`` restricts adaptation to
    some layers (``C1``.. ``FC``) or parameter names; ``None`` adapts everything. ``engine``
    (:data:`ENGINES`) says how the meta-gradient is computed; it changes speed and memory, not
    the result, so a run may resume under another engine (or device); its default is read once,
    when the config is made, from ``MAML_PROBE_IMPL``. ``tune_malloc`` raises glibc's malloc
    thresholds for the whole process at the start of the run on a CPU
    (:mod:`maml_probe.fast.allocator`: ~20% faster second-order steps); the experiments' presets
    turn it on.

    ``task_pool`` (Appendix A.1.1 and A.1.2: "we generate 20,000 training tasks"): ``None`` (the
    default) draws fresh episodes at every iteration; a positive integer ``N`` meta-trains on a
    fixed pool of ``N`` tasks of the ``train`` split (:class:`~maml_probe.tasks.pool.TaskPool`),
    pool task ``i`` a function of ``(seed, i)``, so resuming and sharing a meta-batch across
    processes give the same tasks. Evaluation splits are never pooled. Experiments take it as an
    override, e.g. ``image_config(..., task_pool=20000)`` or the notebooks' ``overrides``.
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
    engine: str = field(default_factory=lambda: os.environ.get("MAML_PROBE_IMPL", "auto"))
    tune_malloc: bool = False
    task_pool: int | None = None

    def validate(self) -> "TrainConfig":
        """Raise ``ValueError`` naming the first bad field."""
        def choice(name: str, allowed: tuple) -> None:
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {list(allowed)}, got {getattr(self, name)!r}")

        choice("dataset", dataset_names())
        choice("model", MODEL_NAMES)
        choice("rule", RULE_NAMES)
        choice("outer_optimizer", OPTIMIZERS)
        choice("dtype", tuple(DTYPES))
        choice("engine", ENGINES)
        choice("eval_split", ("train", "val", "test"))
        for name in ("ways", "shots", "queries", "steps", "meta_batch", "iterations", "eval_tasks",
                     "log_every", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.eval_steps is not None and (not isinstance(self.eval_steps, int) or self.eval_steps < 0):
            raise ValueError(f"eval_steps must be a non-negative integer or None, got {self.eval_steps!r}")
        if self.task_pool is not None and (not isinstance(self.task_pool, int)
                                           or isinstance(self.task_pool, bool) or self.task_pool <= 0):
            raise ValueError(f"task_pool must be a positive integer or None, got {self.task_pool!r}")
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

    def differences(self, saved: dict[str, Any]) -> list[str]:
        """Fields in which a saved config (a checkpoint's) defines another run than this one.

        Where and how a run is computed is not what was run: ``iterations`` (a run may be
        extended), ``device``, ``engine`` and the data's location (``dataset_kwargs`` ``root``
        and ``cache_dir``) are ignored, so moving the data or the run folder keeps resuming.
        Fields added since ``saved`` was written count as their defaults.
        """
        now, then = _identity(self.to_dict()), _identity(saved)
        return [k for k in now if then.get(k) != now[k]]

    def identity_key(self) -> str:
        """A short hash of what this run trains, iterations included (where and how excluded).

        Two configs with the same key train the same model to the same iteration (the fields
        :meth:`differences` compares, plus ``iterations``), so a finished model of one can stand
        in for the other (:mod:`maml_probe.experiments.reuse`).
        """
        defaults = _identity(TrainConfig().to_dict())
        # fields at their default are left out, so a field added later keeps every key
        ident = {k: v for k, v in _identity(self.to_dict()).items() if v != defaults.get(k)}
        ident["iterations"] = self.iterations
        blob = json.dumps(ident, sort_keys=True, default=repr)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dict (what checkpoints and ``record.json`` store)."""
        return dataclasses.asdict(self)


def _identity(d: dict[str, Any]) -> dict[str, Any]:
    """What a config dict trains: its fields but where and how it runs, and ``iterations``.

    Model options at the value the model name implies (``depth=4`` of ``cnn``) count as absent.
    """
    d = {**TrainConfig().to_dict(), **d}
    d["dataset_kwargs"] = {k: v for k, v in (d.get("dataset_kwargs") or {}).items()
                           if k not in LOCATION_KEYS}
    implied = MODEL_DEFAULTS.get(d.get("model"), {})  # {"depth": 4} of "cnn" is the CNN itself
    d["model_kwargs"] = {k: v for k, v in (d.get("model_kwargs") or {}).items()
                         if implied.get(k, object()) != v}
    return {k: v for k, v in d.items() if k not in ("iterations", "device", "engine", "tune_malloc")}


def build_task_source(cfg: TrainConfig, split: str, device: torch.device | str = "cpu") -> TaskSource:
    """The task source of ``split`` (``train``/``val``/``test``) for ``cfg``.

    With ``cfg.task_pool`` set, the ``train`` split's source is wrapped in a
    :class:`~maml_probe.tasks.pool.TaskPool` of that many tasks seeded by ``cfg.seed``
    (Appendix A.1.1 / A.1.2); other splits always draw fresh tasks.

    Args:
        cfg: the run's configuration.
        split: ``train``, ``val`` or ``test`` (generated datasets have no splits: only
            ``train`` is pooled).
        device: where the tasks are returned.

    Returns:
        The task source.
    """
    dtype = DTYPES[cfg.dtype]
    spec = get_spec(cfg.dataset)
    if spec.task_source is not None:  # generated tasks: no files, no splits
        source = spec.task_source(**cfg.dataset_kwargs, dtype=dtype, device=device)
    else:
        source = image_task_source(cfg.dataset, split, cfg.ways, cfg.shots, cfg.queries,
                                   device=device, **cfg.dataset_kwargs)
    if cfg.task_pool is not None and split == "train":
        source = TaskPool(source, cfg.task_pool, seed=cfg.seed)
    return source


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
