"""Figures of the representation-similarity, adaptation-preset and preconditioner probes.

Each helper takes a probe's frame and returns the Figure; error bars are 95% CIs over tasks
(:func:`maml_probe.stats.summarize`), drawn with matplotlib (seaborn's palette) under any
backend, never calling ``show``.

====================================  ===============================================================
helper                                input
====================================  ===============================================================
:func:`plot_similarity`               :func:`~.similarity.similarity_probe` rows (or its summary)
:func:`plot_preset_probe`             :func:`~.presets.preset_probe` summary (optional ``method``)
:func:`plot_preconditioner_cosines`   ``preconditioner_probe(...)["cosines"]``
:func:`plot_preconditioner_spectrum`  ``preconditioner_probe(...)["spectrum"]``
====================================  ===============================================================
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from ..stats import summarize
from .preconditioner import REFERENCES


def _layer_order(layers: pd.Series) -> list[str]:
    """Layers in forward order: ``C1..Cd`` / ``H1..Hk`` by number, then ``FC``."""
    def key(name: str) -> tuple[int, int]:
        if name == "FC":
            return (1, 0)
        digits = "".join(c for c in name if c.isdigit())
        return (0, int(digits) if digits else 0)

    return sorted(dict.fromkeys(layers), key=key)


def plot_similarity(df: pd.DataFrame, measure: str = "cka", title: str | None = None) -> Figure:
    """Similarity of each layer's representation before vs after adaptation, one line per method.

    Args:
        df: per-task rows of :func:`~.similarity.similarity_probe` (several methods concatenated),
            or a summary with ``method``, ``layer``, ``measure`` mean and ``ci95``.
        measure: the column to draw, ``cka`` or ``svcca``.
        title: the axes title.

    Returns:
        The figure (1 = representation unchanged by adaptation).
    """
    summary = summarize(df, ["method", "layer"], value=measure) if "task" in df else df
    order = _layer_order(summary["layer"])
    pos = {layer: i for i, layer in enumerate(order)}
    fig, ax = plt.subplots(figsize=(4.8, 3.5))
    for (method, part), color in zip(summary.groupby("method", sort=False), sns.color_palette()):
        part = part.sort_values("layer", key=lambda s: s.map(pos))
        ax.errorbar([pos[x] for x in part["layer"]], part[measure], yerr=part["ci95"].fillna(0),
                    marker="o", capsize=3, label=method or "learner", color=color)
    ax.set_xticks(range(len(order)), order)
    low = float(np.nanmin(summary[measure])) if len(summary) else 0.0
    ax.set(xlabel="layer", ylabel=f"{measure.upper()} before vs after adaptation",
           ylim=(min(0.0, low) if low < 0.5 else max(0.0, low - 0.1), 1.02))
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_preset_probe(df: pd.DataFrame, title: str | None = None) -> Figure:
    """Post-adaptation accuracy under each adaptation preset, grouped by trained method.

    Args:
        df: :func:`~.presets.preset_probe` summary rows; an optional ``method`` column (the
            trained model) groups the bars; the ``preset="none"`` row is drawn as a dashed line
            per method (no adaptation).
        title: the axes title.

    Returns:
        The figure.
    """
    df = df if "method" in df else df.assign(method="")
    post = df[df["phase"] == "post"]
    methods = list(dict.fromkeys(post["method"]))
    presets = list(dict.fromkeys(post["preset"]))
    width = 0.8 / max(len(presets), 1)
    fig, ax = plt.subplots(figsize=(1.2 + 1.4 * len(methods) * max(1, len(presets) / 2), 3.5))
    colors = sns.color_palette()
    x = np.arange(len(methods))
    for j, preset in enumerate(presets):
        part = post[post["preset"] == preset].set_index("method").reindex(methods)
        ax.bar(x + (j - (len(presets) - 1) / 2) * width, part["accuracy"], width,
               yerr=part["ci95"].fillna(0), capsize=3, label=preset, color=colors[j % len(colors)])
    pre = df[df["phase"] == "pre"].set_index("method").reindex(methods)
    for i, acc in enumerate(pre["accuracy"]):
        if np.isfinite(acc):
            ax.hlines(acc, i - 0.45, i + 0.45, colors="gray", linestyles="--",
                      label="no adaptation" if i == 0 else None)
    ax.set_xticks(x, [m or "learner" for m in methods])
    ax.set(ylabel="post-adaptation accuracy", ylim=(0, 1), xlabel="trained as")
    ax.legend(fontsize="small", title="adapted at test time", title_fontsize="small")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_preconditioner_cosines(cosines: pd.DataFrame, title: str | None = None) -> Figure:
    """Cosine of the learned update (and of the plain gradient) with each reference direction.

    One panel per method; bars are means over tasks and steps with 95% CIs.

    Args:
        cosines: ``preconditioner_probe(...)["cosines"]`` (several methods concatenated).
        title: the figure title.

    Returns:
        The figure.
    """
    long = cosines.melt(id_vars=["method", "task", "step", "reference"],
                        value_vars=["cos_learned", "cos_gradient"], var_name="update",
                        value_name="cosine")
    long["update"] = long["update"].map({"cos_learned": "learned update u",
                                         "cos_gradient": "gradient g (MAML)"})
    methods = list(dict.fromkeys(long["method"]))
    refs = [r for r in REFERENCES if (long["reference"] == r).any()]
    fig, axes = plt.subplots(1, len(methods), figsize=(3.8 * len(methods), 3.4), squeeze=False,
                             sharey=True)
    colors = sns.color_palette()
    for ax, method in zip(axes[0], methods):
        s = summarize(long[long["method"] == method], ["reference", "update"], value="cosine")
        x = np.arange(len(refs))
        for j, update in enumerate(dict.fromkeys(s["update"])):
            part = s[s["update"] == update].set_index("reference").reindex(refs)
            ax.bar(x + (j - 0.5) * 0.4, part["cosine"], 0.4, yerr=part["ci95"].fillna(0),
                   capsize=3, label=update, color=colors[j])
        ax.set_xticks(x, refs)
        ax.axhline(0, color="gray", lw=0.8)
        ax.set(title=method or "learner", xlabel="reference direction", ylim=(-0.1, 1.05))
    axes[0][0].set_ylabel("cosine")
    axes[0][-1].legend(fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_preconditioner_spectrum(spectrum: pd.DataFrame, step: int | None = 0,
                                 title: str | None = None) -> Figure:
    """Learned gain ``v_i^T P v_i`` against the curvature eigenvalue ``lambda_i``, per method.

    The Newton gain ``1 / (|lambda| + delta)``, rescaled to the learned gains' median, is drawn
    for reference: a map that acts like ``H^{-1}`` follows its slope, MAML's ``alpha I`` is flat.
    Both axes are logarithmic (the gain axis symmetric-log when some gain is not positive).

    Args:
        spectrum: ``preconditioner_probe(...)["spectrum"]`` (several methods concatenated).
        step: which inner step to draw (``None``: all).
        title: the figure title.

    Returns:
        The figure.
    """
    df = spectrum if step is None else spectrum[spectrum["step"] == step]
    methods = list(dict.fromkeys(df["method"]))
    fig, axes = plt.subplots(1, max(len(methods), 1), figsize=(3.8 * max(len(methods), 1), 3.4),
                             squeeze=False)
    colors = sns.color_palette()
    for ax, method in zip(axes[0], methods):
        part = df[(df["method"] == method) & (df["hessian_eig"].abs() > 0)]
        lam = part["hessian_eig"].abs()
        ax.scatter(lam, part["learned_gain"], s=8, alpha=0.6, color=colors[0], label="learned gain")
        newton = part["newton_gain"]
        med_l, med_n = float(np.nanmedian(part["learned_gain"])), float(np.nanmedian(newton))
        if med_n > 0 and np.isfinite(med_l):
            ax.scatter(lam, newton * med_l / med_n, s=8, marker="x", alpha=0.6, color=colors[1],
                       label="Newton gain (rescaled)")
        ax.set_xscale("log")
        positive = bool((part["learned_gain"] > 0).all()) and med_l > 0
        ax.set_yscale("log" if positive else "symlog")
        ax.set(title=method or "learner", xlabel="|Hessian eigenvalue|")
    axes[0][0].set_ylabel("gain along eigenvector")
    axes[0][-1].legend(fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


__all__ = ["plot_preconditioner_cosines", "plot_preconditioner_spectrum", "plot_preset_probe",
           "plot_similarity"]
