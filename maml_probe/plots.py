"""Plots shared by the experiments: learning curves and test-accuracy bars (seaborn one-liners)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns


def learning_curves(history: pd.DataFrame, title: str = "", split: str | None = None):
    """Accuracy against iteration per method (the paper's Fig 1 / A.5-A.8 panels).

    Uses the evaluation rows (post-adaptation) when there are any, else the training rows.
    """
    df = history[history["phase"] == "post"]
    if split is None:
        split = "val" if (df["split"] == "val").any() else "train"
    df = df[df["split"] == split]
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.lineplot(data=df, x="iteration", y="accuracy", hue="method", ax=ax)
    ax.set(title=title or f"post-adaptation accuracy ({split} tasks)", ylim=(0, 1.02))
    fig.tight_layout()
    return fig


def accuracy_bars(tests: pd.DataFrame, title: str = "", *, chance: float | None = None):
    """Mean post-adaptation test accuracy per method with 95% CIs (per-task rows in ``tests``).

    ``chance``: chance accuracy (``1 / ways``), drawn as a dotted line when given.
    """
    df = tests[tests["phase"] == "post"]
    fig, ax = plt.subplots(figsize=(max(4, 1.3 * df["method"].nunique()), 4))
    sns.barplot(data=df, x="method", y="accuracy", errorbar=("ci", 95), ax=ax)
    if chance is not None:
        ax.axhline(chance, color="black", lw=0.8, ls=":")
        ax.annotate(f"chance {chance:.0%}", (1, chance), xycoords=("axes fraction", "data"),
                    ha="right", va="bottom", fontsize="small")
    ax.set(title=title, ylim=(0, 1.0), xlabel="")
    ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    return fig
