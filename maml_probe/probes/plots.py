"""One plotting helper per probe figure; each takes a probe's summary frame and returns the Figure.

Error bars are the frames' ``ci95`` (95% CI over tasks), not seaborn's bootstrap. Everything is
drawn with matplotlib (seaborn's palette), works under the Agg backend and never calls ``show``.

==========================  ======================================  ==============================
helper                      input                                   paper panel
==========================  ======================================  ==============================
:func:`plot_layer_probe`    :func:`~.layers.layer_probe`             Fig 2 left and middle
:func:`plot_noise_probe`    :func:`~.noise.noise_probe`              Fig 2 right
:func:`plot_scaling_probe`  :func:`~.scaling.scaling_probe`          Fig A.2 (one row)
:func:`plot_pruning_probe`  :func:`~.pruning.pruning_probe`          Fig A.3 (one panel)
:func:`plot_depth_sweep`    ``depth_sweep(...)["summary"]``          Fig 3
:func:`plot_width_sweep`    ``width_sweep(...)["history"]``          Fig A.1
==========================  ======================================  ==============================
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from .layers import ADAPT, FREEZE, FULL_ADAPTATION, NO_ADAPTATION


def _pow2_label(v: float) -> str:
    if v == 0:
        return "0"
    k = math.log2(v)
    return f"$2^{{{int(k)}}}$" if k == int(k) else f"{v:g}"


def _line(ax, x, df: pd.DataFrame, label: str, color) -> None:
    ax.errorbar(x, df["accuracy"], yerr=df["ci95"].fillna(0), marker="o", capsize=3,
                label=label, color=color)


def chance_line(ax, chance: float | None) -> None:
    """A dotted line at chance level (``1 / ways``), labelled, when ``chance`` is given."""
    if chance is not None:
        ax.axhline(chance, color="black", lw=0.8, ls=":", label=f"chance ({chance:.0%})")


def _legend_below(fig: Figure, ax, ncol: int = 3) -> None:
    """One legend for the figure, under the axes, so that it covers no bar or point."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(ncol, len(handles)),
                   fontsize="small", frameon=False)
        fig.tight_layout(rect=(0, 0.08 + 0.05 * ((len(handles) - 1) // ncol), 1, 1))


def plot_layer_probe(df: pd.DataFrame, title: str | None = None, *,
                     chance: float | None = None) -> Figure:
    """Fig 2 left/middle: post-adaptation accuracy per layer, frozen alone / adapting alone.

    ``chance``: chance accuracy (``1 / ways``), drawn as a dotted line when given.
    """
    refs = {c: df[df.condition == c] for c in (NO_ADAPTATION, FULL_ADAPTATION)}
    panels = [c for c in (FREEZE, ADAPT) if (df.condition == c).any()]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.5), squeeze=False,
                             sharey=True)
    colors = sns.color_palette()
    for ax, cond in zip(axes[0], panels):
        part = df[df.condition == cond]
        x = np.arange(len(part))
        ax.bar(x, part["accuracy"], yerr=part["ci95"].fillna(0), capsize=3, color=colors[0])
        ax.set_xticks(x, part["layer"])
        for (name, ref), style in zip(refs.items(), ("--", "-")):
            if len(ref):
                ax.axhline(float(ref["accuracy"].iloc[0]), ls=style, color="gray", label=name)
        chance_line(ax, chance)
        ax.set_title(cond.capitalize())
        ax.set_ylim(0, 1)
        ax.set_xlabel("layer")
    axes[0][0].set_ylabel("post-adaptation accuracy")
    if title:
        fig.suptitle(title)
    _legend_below(fig, axes[0][-1])
    return fig


def plot_noise_probe(df: pd.DataFrame, title: str = "Freezing C1-C3, perturbing FC", *,
                     chance: float | None = None) -> Figure:
    """Fig 2 right: pre- and post-adaptation accuracy against the noise scaling factor.

    ``chance``: chance accuracy (``1 / ways``), drawn as a dotted line when given.
    """
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    scales = sorted(df["scale"].unique())
    pos = {s: i for i, s in enumerate(scales)}
    for (phase, part), color in zip(df.groupby("phase", sort=False), sns.color_palette()):
        part = part.sort_values("scale")
        _line(ax, [pos[s] for s in part["scale"]], part, f"{phase}-adaptation", color)
    ax.set_xticks(range(len(scales)), [_pow2_label(s) for s in scales])
    chance_line(ax, chance)
    ax.set(xlabel="noise scaling factor", ylabel="accuracy", ylim=(0, 1), title=title)
    _legend_below(fig, ax)
    return fig


#: Legend of :func:`plot_scaling_probe`: *when* the layer's weights were scaled.
SCALED_WHEN = {"pre": "scaled before adaptation (the initialisation)",
               "post": "scaled after adaptation (the adapted weights)"}


def plot_scaling_probe(df: pd.DataFrame, title: str | None = None, *,
                       chance: float | None = None) -> Figure:
    """Fig A.2: one panel per layer, post-adaptation accuracy against the weight scaling factor.

    The two lines say when the layer was scaled (the paper's "pre-/post-adaptation"): the
    meta-learned initialisation before the inner loop, or the adapted weights after it; the
    accuracy is always measured after adaptation. ``chance``: chance accuracy (``1 / ways``).
    """
    layers = list(dict.fromkeys(df["layer"]))
    fig, axes = plt.subplots(1, len(layers), figsize=(3.2 * len(layers), 3.2), squeeze=False,
                             sharey=True)
    for ax, layer in zip(axes[0], layers):
        part = df[df.layer == layer]
        factors = sorted(part["scale"].unique())
        pos = {s: i for i, s in enumerate(factors)}
        for (when, sub), color in zip(part.groupby("when", sort=False), sns.color_palette()):
            sub = sub.sort_values("scale")
            _line(ax, [pos[s] for s in sub["scale"]], sub, SCALED_WHEN.get(when, str(when)), color)
        chance_line(ax, chance)
        ax.set_xticks(range(len(factors)), [_pow2_label(s) for s in factors])
        ax.set(title=f"Scaling {layer}", xlabel="weight scaling factor", ylim=(0, 1))
    axes[0][0].set_ylabel("post-adaptation accuracy")
    if title:
        fig.suptitle(title)
    _legend_below(fig, axes[0][-1])
    return fig


def plot_pruning_probe(df: pd.DataFrame, target: int | None = None,
                       title: str | None = "Magnitude pruning of the 4-conv CNN", *,
                       chance: float | None = None) -> Figure:
    """Fig A.3: post-adaptation accuracy (and nonzero parameters) against the pruning threshold.

    ``target``: the SCNN's parameter count, drawn on the parameter axis; ``chance``: chance
    accuracy (``1 / ways``), drawn as a dotted line when given. Put the dataset in ``title``.
    """
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    colors = sns.color_palette()
    for (when, part), color in zip(df.groupby("when", sort=False), colors):
        part = part.sort_values("threshold")
        finite = part[np.isfinite(part["threshold"])]
        _line(ax, finite["threshold"], finite, f"{when}-adaptation pruning", color)
    chance_line(ax, chance)
    ax.set(xlabel="weight pruning threshold", ylabel="post-adaptation accuracy", ylim=(0, 1))
    twin = ax.twinx()
    first = df[df["when"] == df["when"].iloc[0]].sort_values("threshold")
    first = first[np.isfinite(first["threshold"])]
    twin.plot(first["threshold"], first["nonzero"], color="gray", ls=":", label="nonzero params")
    twin.set_ylabel("nonzero parameters")
    if target is not None:
        twin.axhline(target, color="gray", lw=0.8, ls="--", label=f"target {target:,}")
    lines = ax.get_legend_handles_labels()
    extra = twin.get_legend_handles_labels()
    fig.legend(lines[0] + extra[0], lines[1] + extra[1], fontsize="small", loc="lower center",
               ncol=2, frameon=False)
    if title:
        ax.set_title(title)
    rows = (len(lines[0]) + len(extra[0]) + 1) // 2
    fig.tight_layout(rect=(0, 0.05 + 0.06 * rows, 1, 1))
    return fig


def plot_depth_sweep(summary: pd.DataFrame, title: str | None = None, *,
                     chance: float | None = None) -> Figure:
    """Fig 3: post-adaptation test accuracy against the number of conv layers, one line per method.

    ``chance``: chance accuracy (``1 / ways``), drawn as a dotted line when given.
    """
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    post = summary[summary["phase"] == "post"]
    for (method, part), color in zip(post.groupby("method", sort=False), sns.color_palette()):
        part = part.sort_values("depth")
        _line(ax, part["depth"], part, f"CNN w/ {method}", color)
    chance_line(ax, chance)
    ax.set(xlabel="number of conv layers", ylabel="post-adaptation accuracy", ylim=(0, 1))
    ax.set_xticks(sorted(post["depth"].unique()))
    if title:
        ax.set_title(title)
    _legend_below(fig, ax)
    return fig


def plot_width_sweep(history: pd.DataFrame, split: str | None = None,
                     title: str | None = None) -> Figure:
    """Fig A.1: accuracy over meta-training, one panel per depth, one line per width.

    ``split`` defaults to the evaluation split if the history has one, else ``train``.
    """
    if split is None:
        evals = [s for s in history["split"].unique() if s != "train"]
        split = evals[0] if evals else "train"
    h = history[(history["split"] == split) & (history["phase"] == "post")]
    depths = sorted(h["depth"].unique())
    fig, axes = plt.subplots(1, len(depths), figsize=(3.5 * len(depths), 3.2), squeeze=False,
                             sharey=True)
    widths = sorted(h["width"].unique())
    colors = dict(zip(widths, sns.color_palette("viridis", len(widths))))
    for ax, d in zip(axes[0], depths):
        for w in widths:
            part = h[(h["depth"] == d) & (h["width"] == w)].sort_values("iteration")
            ax.plot(part["iteration"], part["accuracy"], color=colors[w], label=f"w={w}")
        ax.set(title=f"{d} hidden layer{'s' if d > 1 else ''}", xlabel="iteration", ylim=(0, 1))
    axes[0][0].set_ylabel(f"post-adaptation accuracy ({split})")
    axes[0][-1].legend(fontsize="x-small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
