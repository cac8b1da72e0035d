"""The paper's settings for the image experiments, and how each scale shrinks them.

The per-dataset settings (Section 5.2, Appendix A.1.2) are the ``paper`` field of each
dataset's :class:`~maml_probe.data.spec.DatasetSpec` (modules in :mod:`maml_probe.data.specs`):
the episode (ways, shots, queries per class, adaptation steps, meta-batch, meta learning rate)
and the adaptation rate alpha of each model and meta-optimizer. In the paper:

=============  ==============  =====  ==========  ===========================================
dataset        episode         steps  meta lr     adaptation rate alpha
=============  ==============  =====  ==========  ===========================================
Omniglot       10-way 5-shot   4      0.003       CNN 0.5, SCNN 0.8, MSGD/MC/KFC 0.5
CIFAR-FS       10-way 3-shot   2      0.003       CNN/SCNN 0.7, MSGD/MC/KFC 0.5
mini-ImageNet  10-way 1-shot   5      0.0005      CNN/SCNN 0.07, MSGD 0.1, MC 0.09, KFC 0.005
=============  ==============  =====  ==========  ===========================================

Adam, 60,000 iterations, KFC with 4 layers and gradient-norm handling (A.1.2).

Left open by the paper and chosen in the specs (following Finn et al., 2017, where it
applies): meta-batch 32 tasks for Omniglot and 4 for CIFAR-FS and mini-ImageNet; query
examples per class: Omniglot as many as shots (Finn et al.), CIFAR-FS and mini-ImageNet 15;
CFC uses the KFC adaptation rates. Chosen here: evaluation on the test split uses the training
number of steps.

Scales: ``paper`` is the above. ``cpu`` keeps the paper's episode (ways, shots, queries,
steps) and learning rates and shrinks only the outer loop, per dataset (its spec's
``paper.cpu``): Omniglot 500 iterations of 4 tasks (the paper: 60,000 of 32), mini-ImageNet 100
of 4 (60,000 of 4), CIFAR-FS 500 of 4, sized so that one experiment on one dataset takes about
an hour on a 2-core CPU; 600 test tasks as in the paper (mini-ImageNet: 200, as each of its
test tasks costs about a second). ``smoke`` runs a handful of
iterations of a 5-way 1-shot episode to check the pipeline (seconds), with the dataset's
``smoke_options`` (mini-ImageNet decodes 10 classes per split).

``PAPER_EPISODES`` and ``ALPHA`` are plain-dict views of the specs, taken at import.
"""
from __future__ import annotations

from typing import Any

from ..data.registry import get_spec, paper_datasets
from ..data.spec import PaperSettings
from ..train import TrainConfig
from .common import check_scale

#: The paper's episode of each dataset, as ``TrainConfig`` fields (from the dataset specs).
PAPER_EPISODES: dict[str, dict[str, Any]] = {
    d: get_spec(d).paper.episode.as_dict() for d in paper_datasets()}
#: The paper's adaptation rate of each model / meta-optimizer per dataset (from the specs).
ALPHA: dict[str, dict[str, float]] = {d: dict(get_spec(d).paper.alpha) for d in paper_datasets()}
SCALE_EPISODES: dict[str, dict[str, Any]] = {
    "smoke": dict(ways=5, shots=1, queries=2, steps=1, meta_batch=2, iterations=2, test_tasks=4),
    "cpu": dict(test_tasks=600),  # + the dataset's ``paper.cpu`` (iterations, meta-batch)
    "paper": dict(iterations=60000, test_tasks=600),
}
#: Rule options of each method. KFC: four maps and A.1.2's gradient-norm handling with an
#: elementwise learnable factor, the reading that reproduces Table A3's counts (see
#: :mod:`maml_probe.rules.kronecker`). CFC1/CFC10: the paper's CFC (A.2.3). CFC1n/CFC10n (not
#: in the paper): CFC with ``normalize=True``, whose first steps have MAML's size
#: (:mod:`maml_probe.rules.cholesky`).
RULE_OPTIONS: dict[str, dict[str, Any]] = {
    "maml": {}, "metasgd": {}, "mc": {},
    "kfc": {"layers": 4, "normalize": True, "factor": "elementwise"},
    "cfc1": {"rank": 1}, "cfc10": {"rank": 10},
    "cfc1n": {"rank": 1, "normalize": True}, "cfc10n": {"rank": 10, "normalize": True},
}
RULE_NAME = {"maml": "maml", "metasgd": "metasgd", "mc": "mc", "kfc": "kfc", "cfc1": "cfc",
             "cfc10": "cfc", "cfc1n": "cfc", "cfc10n": "cfc"}
LABEL = {"maml": "MAML", "metasgd": "MSGD", "mc": "MC", "kfc": "KFC", "cfc1": "CFC1",
         "cfc10": "CFC10", "cfc1n": "CFC1n", "cfc10n": "CFC10n"}


def paper_settings(dataset: str) -> PaperSettings:
    """The paper's episode and adaptation rates for ``dataset`` (Appendix A.1.2).

    Args:
        dataset: A dataset whose spec has ``paper`` settings.

    Returns:
        Its :class:`~maml_probe.data.spec.PaperSettings`.

    Raises:
        ValueError: The dataset is unknown or the paper trains no convolutional model on it.
    """
    names = paper_datasets()
    if dataset not in names:
        raise ValueError(f"dataset must be one of {list(names)}, got {dataset!r}")
    return get_spec(dataset).paper


def image_config(dataset: str, model: str, method: str, scale: str, *, depth: int | None = None,
                 data_root: str | None = None, cache_dir: str | None = None, seed: int = 0,
                 device: str = "auto", **overrides: Any) -> TrainConfig:
    """The :class:`TrainConfig` of ``model`` (``cnn``/``scnn``) with ``method`` on ``dataset`` at ``scale``.

    The episode, meta learning rate and adaptation rate are the paper's for ``dataset``
    (its spec's ``paper`` settings, Appendix A.1.2); ``cpu`` shrinks the outer loop only,
    ``smoke`` the episode too.

    Args:
        dataset: A dataset with paper settings (``omniglot``, ``cifarfs``, ``miniimagenet``).
        model: ``cnn`` or ``scnn``.
        method: ``maml``, ``metasgd``, ``mc``, ``kfc``, ``cfc1``, ``cfc10``, or ``cfc1n`` /
            ``cfc10n`` (CFC normalised to start at the gradient step's size).
        scale: ``smoke``, ``cpu`` or ``paper``.
        depth: Number of conv layers, overriding the model's (depth sweeps).
        data_root: The data directory.
        cache_dir: The cache directory.
        seed: Seed of the run.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        **overrides: Any ``TrainConfig`` field, applied last (``dataset_kwargs`` is merged
            into the data location and the scale's loader options, e.g.
            ``dataset_kwargs={"normalise": "channel"}`` for CIFAR-FS).

    Returns:
        The run's configuration.
    """
    check_scale(scale)
    paper = paper_settings(dataset)
    if method not in RULE_NAME:
        raise ValueError(f"method must be one of {list(RULE_NAME)}, got {method!r}")
    ep = paper.episode.as_dict()
    scaled = {k: v for k, v in SCALE_EPISODES[scale].items() if k != "test_tasks"}
    if scale == "cpu":
        scaled.update({k: v for k, v in paper.cpu.items() if k != "test_tasks"})
    ep.update(scaled)
    alpha = paper.alpha[model if method == "maml" else RULE_NAME[method]]
    dataset_kwargs = {k: v for k, v in (("root", data_root), ("cache_dir", cache_dir)) if v}
    if scale == "smoke":
        dataset_kwargs.update(get_spec(dataset).smoke_options)  # e.g. decode 10 classes only
    # depth=4 of "cnn" is the CNN itself: TrainConfig's identity treats it as absent, so E6's
    # 4-layer CNN and E3's CNN are one model (maml_probe.config, maml_probe.experiments.reuse)
    model_kwargs = {"depth": depth} if depth is not None else {}
    iterations = ep.pop("iterations", 60000)
    cfg = TrainConfig(dataset=dataset, dataset_kwargs=dataset_kwargs, model=model,
                      model_kwargs=model_kwargs, tune_malloc=True, rule=RULE_NAME[method],
                      rule_kwargs=dict(RULE_OPTIONS[method]), alpha=alpha,
                      outer_optimizer="adam", iterations=iterations,
                      checkpoint_every=max(1, min(500, iterations // 4)),
                      log_every=max(1, min(100, iterations // 20)), seed=seed, device=device, **ep)
    if "dataset_kwargs" in overrides:  # dataset options add to the data location, not replace it
        overrides = {**overrides, "dataset_kwargs": {**dataset_kwargs, **overrides["dataset_kwargs"]}}
    return cfg.replace(**overrides)


def chance_level(dataset: str, scale: str, **overrides: Any) -> float:
    """Accuracy of guessing on ``dataset``'s episodes at ``scale``: ``1 / ways`` (plots draw it).

    Args:
        dataset: A dataset with paper settings.
        scale: ``smoke``, ``cpu`` or ``paper``.
        **overrides: ``TrainConfig`` fields the run overrides (``ways`` among them).

    Returns:
        The chance accuracy as a fraction.
    """
    ways = overrides.get("ways") or image_config(dataset, "cnn", "maml", scale).ways
    return 1.0 / ways


def num_test_tasks(scale: str, dataset: str | None = None) -> int:
    """Number of test tasks evaluated at ``scale`` (the paper uses 600).

    Args:
        scale: ``smoke``, ``cpu`` or ``paper``.
        dataset: At ``cpu`` scale, a dataset whose spec's ``paper.cpu`` names ``test_tasks``
            uses that (mini-ImageNet: 200, whose 84x84 test tasks cost ~1 s each on a CPU).

    Returns:
        The number of test tasks.
    """
    n = SCALE_EPISODES[check_scale(scale)]["test_tasks"]
    if scale == "cpu" and dataset is not None:
        n = paper_settings(dataset).cpu.get("test_tasks", n)
    return n


def method_label(model: str, method: str, depth: int | None = None) -> str:
    """``('scnn', 'kfc') -> 'SCNN w/ KFC'``; with ``depth``: ``'CNN3 w/ MAML'``."""
    name = model.upper() if depth is None else f"CNN{depth}"
    return f"{name} w/ {LABEL[method]}"
