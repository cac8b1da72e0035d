"""Measure ||U(g)|| / ||g|| at initialisation for every rule and layer of the Omniglot SCNN and CNN.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python results/rules/update_gradient_ratio.py \
        --data-root ../shared/data --out results/rules/update_gradient_ratio_init.csv

Real Omniglot training episodes at the paper's shape (10-way 5-shot, A.1.2), freshly
initialised models and rules (seed 0), the paper's Omniglot adaptation rates. One row per
model, method and parameter, aggregated over the tasks.
"""
from __future__ import annotations

import argparse
import platform

import pandas as pd
import torch

from maml_probe.data import build_task_source
from maml_probe.models import build_model
from maml_probe.rules import count_rule_parameters, make_rule
from maml_probe.rules.diagnostics import update_gradient_ratio

#: method -> (rule, options, Omniglot adaptation rate; None: the model's MAML rate)
METHODS = {
    "MAML": ("maml", {}, None),
    "MSGD": ("metasgd", {}, 0.5),
    "MC": ("mc", {}, 0.5),
    "KLin": ("klin", {}, 0.5),
    "KFC": ("kfc", {"layers": 4, "normalize": True, "factor": "elementwise"}, 0.5),
    "CFC1": ("cfc", {"rank": 1}, 0.5),
    "CFC10": ("cfc", {"rank": 10}, 0.5),
    "CFC1n": ("cfc", {"rank": 1, "normalize": True}, 0.5),
    "CFC10n": ("cfc", {"rank": 10, "normalize": True}, 0.5),
}
MAML_ALPHA = {"scnn": 0.8, "cnn": 0.5}


def main() -> None:
    """Write the table (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--tasks", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="results/rules/update_gradient_ratio_init.csv")
    args = ap.parse_args()
    torch.set_num_threads(2)
    source = build_task_source("omniglot", "train", ways=10, shots=5, queries=5, root=args.data_root)
    batch = source.sample(args.tasks, torch.Generator().manual_seed(args.seed))
    frames = []
    for model_name in ("scnn", "cnn"):
        torch.manual_seed(args.seed)
        model = build_model(model_name, 10, variant="omniglot")
        for label, (rule_name, options, alpha) in METHODS.items():
            alpha = MAML_ALPHA[model_name] if alpha is None else alpha
            torch.manual_seed(args.seed)
            rule = make_rule(rule_name, model, alpha, **options)
            df = update_gradient_ratio(model, rule, batch)
            agg = df.groupby(["parameter", "layer", "shape", "numel"], sort=False).agg(
                ratio_median=("ratio", "median"), ratio_min=("ratio", "min"),
                ratio_max=("ratio", "max"), cosine_median=("cosine", "median"),
                grad_norm_median=("grad_norm", "median")).reset_index()
            frames.append(agg.assign(model=model_name.upper(), method=label, rule=rule_name,
                                     options=repr(options), alpha=alpha,
                                     optimizer_params=count_rule_parameters(rule),
                                     ratio_over_alpha=agg["ratio_median"] / alpha,
                                     tasks=args.tasks))
    out = pd.concat(frames, ignore_index=True)
    cols = ["model", "method", "rule", "options", "alpha", "optimizer_params", "parameter", "layer",
            "shape", "numel", "tasks", "ratio_median", "ratio_min", "ratio_max", "ratio_over_alpha",
            "cosine_median", "grad_norm_median"]
    out[cols].to_csv(args.out, index=False, float_format="%.4g")
    print(f"wrote {args.out} ({len(out)} rows; torch {torch.__version__}, {platform.machine()})")


if __name__ == "__main__":
    main()
