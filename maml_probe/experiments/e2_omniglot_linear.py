"""E2 — Table 1, Omniglot row (and Figure 1 right): linear models on Omniglot 5-way 1-shot
(paper Sections 3.1, 5.1 and Appendix A.1.1).

=====================  ===================================================  ========  ========
label                  model / rule                                         meta lr   alpha
=====================  ===================================================  ========  ========
``LR w/ MAML``         multinomial logistic regression 784 -> 5             0.0005    1.0
``LR+LinNet w/ MAML``  LinNet 784-256-128-64-64 -> 5                        0.0005    0.08
``LR w/ KLin``         LR, KLin (m=784, n=5: 614,681 parameters)            0.003     0.9
``LR w/ KFC``          LR, KFC with 4 Kronecker layers and ReLU (~2.46M)    0.001     0.01
=====================  ===================================================  ========  ========

Adam, 32 tasks per meta-batch, 2 adaptation steps, 60,000 iterations; no biases in the
meta-optimizers. Left open and chosen here: the models have no bias either (the KLin count
614,681 covers the weight alone), one query image per class as in Finn et al. (2017).
Scales ``cpu`` (800 iterations of 16 tasks, ~15 min on a 2-core CPU) and ``smoke`` cut
iterations, meta-batch and test tasks only.
"""
from __future__ import annotations

import os

import pandas as pd

from ..runs import to_results
from ..train import TrainConfig
from .common import check_scale, run_methods

METHODS: dict[str, dict] = {
    "LR w/ MAML": dict(model="lr", rule="maml", meta_lr=0.0005, alpha=1.0),
    "LR+LinNet w/ MAML": dict(model="linnet", model_kwargs={"widths": [256, 128, 64, 64], "bias": False},
                              rule="maml", meta_lr=0.0005, alpha=0.08),
    "LR w/ KLin": dict(model="lr", rule="klin", meta_lr=0.003, alpha=0.9),
    "LR w/ KFC": dict(model="lr", rule="kfc", rule_kwargs={"layers": 4}, meta_lr=0.001, alpha=0.01),
}
SCALES = {"smoke": dict(iterations=3, meta_batch=4, test_tasks=10),
          "cpu": dict(iterations=800, meta_batch=16, test_tasks=600),
          "paper": dict(iterations=60000, meta_batch=32, test_tasks=600)}


def configs(scale: str = "cpu", *, data_root: str | None = None, cache_dir: str | None = None,
            seed: int = 0, device: str = "auto", methods: list[str] | None = None,
            **overrides) -> dict[str, TrainConfig]:
    """``label -> TrainConfig`` of each linear model and rule of Fig 1 right at ``scale``."""
    check_scale(scale)
    s = SCALES[scale]
    dataset_kwargs = {k: v for k, v in (("root", data_root), ("cache_dir", cache_dir)) if v}
    out = {}
    for label in methods or list(METHODS):
        spec = dict(METHODS[label])
        spec.setdefault("model_kwargs", {"bias": False})
        out[label] = TrainConfig(
            tune_malloc=True,
            dataset="omniglot", dataset_kwargs=dataset_kwargs, ways=5, shots=1, queries=1, steps=2,
            outer_optimizer="adam", meta_batch=s["meta_batch"], iterations=s["iterations"],
            log_every=max(1, s["iterations"] // 50), checkpoint_every=max(1, s["iterations"] // 10),
            seed=seed, device=device, **spec).replace(**overrides)
    return out


def run(scale: str = "cpu", run_dir: str | os.PathLike | None = None, *,
        test_tasks: int | None = None, progress: bool = True, **kwargs) -> dict[str, pd.DataFrame]:
    """Train and test each method on Omniglot; tidy tables and ``results`` (Table 1, Omniglot row)."""
    out = run_methods(configs(scale, **kwargs), run_dir,
                      test_tasks=test_tasks or SCALES[scale]["test_tasks"], progress=progress)
    out["results"] = to_results(out["summary"].dropna(subset=["accuracy"]), table="1",
                                dataset="omniglot")
    return out
