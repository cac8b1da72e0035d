"""The paper's settings for the image experiments, and how each scale shrinks them.

Paper (Section 5.2, Appendix A.1.2):

=============  ==============  =====  ==========  ===========================================
dataset        episode         steps  meta lr     adaptation rate alpha
=============  ==============  =====  ==========  ===========================================
Omniglot       10-way 5-shot   4      0.003       CNN 0.5, SCNN 0.8, MSGD/MC/KFC 0.5
CIFAR-FS       10-way 3-shot   2      0.003       CNN/SCNN 0.7, MSGD/MC/KFC 0.5
mini-ImageNet  10-way 1-shot   5      0.0005      CNN/SCNN 0.07, MSGD 0.1, MC 0.09, KFC 0.005
=============  ==============  =====  ==========  ===========================================

Adam, 60,000 iterations, KFC with 4 layers and gradient-norm handling (A.1.2).

Left open by the paper and chosen here (following Finn et al., 2017, where it applies):
meta-batch 32 tasks for Omniglot and 4 for CIFAR-FS and mini-ImageNet; query examples per
class: Omniglot as many as shots (Finn et al.), CIFAR-FS and mini-ImageNet 15; CFC uses the
KFC adaptation rates; evaluation on the test split uses the training number of steps.

Scales: ``paper`` is the above. ``cpu`` keeps the models and rules but shrinks the episode
to 5-way 1-shot with 2 steps, the meta-batch to 8, and the iterations to a few hundred, so a
laptop CPU shows the qualitative findings in minutes. ``smoke`` runs a handful of iterations
to check the pipeline (seconds).
"""
from __future__ import annotations

from typing import Any

from ..train import TrainConfig
from .common import check_scale

PAPER_EPISODES: dict[str, dict[str, Any]] = {
    "omniglot": dict(ways=10, shots=5, queries=5, steps=4, meta_batch=32, meta_lr=0.003),
    "cifarfs": dict(ways=10, shots=3, queries=15, steps=2, meta_batch=4, meta_lr=0.003),
    "miniimagenet": dict(ways=10, shots=1, queries=15, steps=5, meta_batch=4, meta_lr=0.0005),
}
ALPHA: dict[str, dict[str, float]] = {
    "omniglot": {"cnn": 0.5, "scnn": 0.8, "metasgd": 0.5, "mc": 0.5, "kfc": 0.5, "cfc": 0.5},
    "cifarfs": {"cnn": 0.7, "scnn": 0.7, "metasgd": 0.5, "mc": 0.5, "kfc": 0.5, "cfc": 0.5},
    "miniimagenet": {"cnn": 0.07, "scnn": 0.07, "metasgd": 0.1, "mc": 0.09, "kfc": 0.005,
                     "cfc": 0.005},
}
SCALE_EPISODES: dict[str, dict[str, Any]] = {
    "smoke": dict(ways=5, shots=1, queries=2, steps=1, meta_batch=2, iterations=2, test_tasks=4),
    "cpu": dict(ways=5, shots=1, queries=5, steps=2, meta_batch=8, iterations=400, test_tasks=200),
    "paper": dict(iterations=60000, test_tasks=600),
}
RULE_OPTIONS: dict[str, dict[str, Any]] = {
    "maml": {}, "metasgd": {}, "mc": {}, "kfc": {"layers": 4, "normalize": True},
    "cfc1": {"rank": 1}, "cfc10": {"rank": 10},
}
RULE_NAME = {"maml": "maml", "metasgd": "metasgd", "mc": "mc", "kfc": "kfc", "cfc1": "cfc",
             "cfc10": "cfc"}
LABEL = {"maml": "MAML", "metasgd": "MSGD", "mc": "MC", "kfc": "KFC", "cfc1": "CFC1",
         "cfc10": "CFC10"}


def image_config(dataset: str, model: str, method: str, scale: str, *, depth: int | None = None,
                 data_root: str | None = None, cache_dir: str | None = None, seed: int = 0,
                 device: str = "auto", **overrides: Any) -> TrainConfig:
    """The :class:`TrainConfig` of ``model`` (``cnn``/``scnn``) with ``method`` on ``dataset`` at ``scale``.

    ``method`` is one of ``maml``, ``metasgd``, ``mc``, ``kfc``, ``cfc1``, ``cfc10``; ``depth``
    overrides the number of conv layers (depth sweeps); ``overrides`` replace any field last.
    """
    check_scale(scale)
    if dataset not in PAPER_EPISODES:
        raise ValueError(f"dataset must be one of {list(PAPER_EPISODES)}, got {dataset!r}")
    if method not in RULE_NAME:
        raise ValueError(f"method must be one of {list(RULE_NAME)}, got {method!r}")
    ep = {**PAPER_EPISODES[dataset]}
    scaled = {k: v for k, v in SCALE_EPISODES[scale].items() if k != "test_tasks"}
    ep.update(scaled)
    alpha = ALPHA[dataset][model if method == "maml" else RULE_NAME[method]]
    dataset_kwargs = {k: v for k, v in (("root", data_root), ("cache_dir", cache_dir)) if v}
    if scale == "smoke" and dataset == "miniimagenet":
        dataset_kwargs["classes_limit"] = 10  # decode 10 classes per split, not 60,000 images
    model_kwargs = {"depth": depth} if depth is not None else {}
    iterations = ep.pop("iterations", 60000)
    cfg = TrainConfig(dataset=dataset, dataset_kwargs=dataset_kwargs, model=model,
                      model_kwargs=model_kwargs, rule=RULE_NAME[method],
                      rule_kwargs=dict(RULE_OPTIONS[method]), alpha=alpha,
                      outer_optimizer="adam", iterations=iterations,
                      checkpoint_every=max(1, min(500, iterations // 4)),
                      log_every=max(1, min(100, iterations // 20)), seed=seed, device=device, **ep)
    return cfg.replace(**overrides)


def num_test_tasks(scale: str) -> int:
    """Number of test tasks evaluated at ``scale`` (the paper uses 600)."""
    return SCALE_EPISODES[check_scale(scale)]["test_tasks"]


def method_label(model: str, method: str, depth: int | None = None) -> str:
    """``('scnn', 'kfc') -> 'SCNN w/ KFC'``; with ``depth``: ``'CNN3 w/ MAML'``."""
    name = model.upper() if depth is None else f"CNN{depth}"
    return f"{name} w/ {LABEL[method]}"
