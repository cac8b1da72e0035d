"""The explorer's results as a table and a bar plot: pure functions of a results frame.

The input is the tidy frame of :func:`~maml_probe.explorer.core.results_frame` (one row per run
and phase): the table puts pre- and post-adaptation accuracy of each run side by side, the plot
shows them as bars, the previous run in grey beside the current one, with the 95% CI over tasks
as error bars.
"""
from __future__ import annotations

import io
import math
from html import escape
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: CSS class prefix of the explorer's HTML (the browser test finds elements by it).
CSS_PREFIX = "maml-explorer"
PHASES = ["pre", "post"]
CURRENT_COLOR = "#1f77b4"
PREVIOUS_COLOR = "#b0b0b0"


def _pct(acc: float, ci: float) -> str:
    ci_text = "" if ci is None or (isinstance(ci, float) and math.isnan(ci)) else f" ± {100 * ci:.1f}"
    return f"{100 * acc:.1f}%{ci_text}"


def results_html(df: pd.DataFrame) -> str:
    """The results table: one row per run, pre- and post-adaptation accuracy side by side.

    Args:
        df: A :func:`~maml_probe.explorer.core.results_frame`.

    Returns:
        HTML: a table with the run, checkpoint, condition, pre and post accuracy (percent ± 95%
        CI), their difference in points and the number of tasks; a hint when ``df`` is empty.
    """
    if df.empty:
        return f"<div class='{CSS_PREFIX}-results'><i>No result yet: press Run.</i></div>"
    head = ("<tr><th>run</th><th>checkpoint</th><th>condition</th><th>pre-adaptation</th>"
            "<th>post-adaptation</th><th>post − pre</th><th>tasks</th></tr>")
    body = []
    for (run, number), g in df.groupby(["run", "run_number"], sort=False):
        by = {r.phase: r for r in g.itertuples()}
        pre, post = by.get("pre"), by.get("post")
        delta = f"{100 * (post.accuracy - pre.accuracy):+.1f}" if pre and post else ""
        weight = "bold" if run == "current" else "normal"
        body.append(
            f"<tr style='font-weight:{weight}'><td>{run} (#{number})</td>"
            f"<td>{escape(str(g['checkpoint'].iloc[0]))}</td>"
            f"<td>{escape(str(g['condition'].iloc[0]))}</td>"
            f"<td>{_pct(pre.accuracy, pre.ci95) if pre else ''}</td>"
            f"<td>{_pct(post.accuracy, post.ci95) if post else ''}</td>"
            f"<td>{delta}</td><td>{int(g['n'].iloc[0])}</td></tr>")
    style = ("border-collapse:collapse;font-size:13px;"
             "font-family:var(--jp-ui-font-family, sans-serif)")
    cell = "padding:3px 8px;border-bottom:1px solid #ccc;text-align:left"
    return (f"<style>.{CSS_PREFIX}-table td, .{CSS_PREFIX}-table th {{{cell}}}</style>"
            f"<table class='{CSS_PREFIX}-table {CSS_PREFIX}-results' style='{style}'>"
            f"<thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"
            "<div style='font-size:11px;color:#666'>mean accuracy over test tasks ± 95% CI; "
            "the same tasks in every run of a checkpoint</div>")


def results_figure(df: pd.DataFrame, title: str | None = None) -> Figure:
    """Seaborn bar plot of pre/post accuracy, previous run beside the current one.

    Args:
        df: A :func:`~maml_probe.explorer.core.results_frame`.
        title: The plot's title (usually the current condition).

    Returns:
        The figure: one bar group per phase, one bar per run (labelled ``current (#k)`` /
        ``previous (#j)``, oldest first), black error bars of ``ci95``; a note when ``df`` is
        empty.
    """
    import seaborn as sns
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 3.0), dpi=100)
    ax = fig.subplots()
    if df.empty:
        ax.text(0.5, 0.5, "no result yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        plot = df.assign(phase=pd.Categorical(df["phase"], PHASES),
                         run=[f"{r} (#{n})" for r, n in zip(df["run"], df["run_number"])])
        hue_order = list(dict.fromkeys(plot.sort_values("run_number")["run"]))
        colors = {h: (CURRENT_COLOR if h.startswith("current") else PREVIOUS_COLOR)
                  for h in hue_order}
        sns.barplot(plot, x="phase", y="accuracy", hue="run", hue_order=hue_order,
                    order=PHASES, palette=colors, errorbar=None, ax=ax)
        for container, hue in zip(list(ax.containers), hue_order):
            part = plot[plot["run"] == hue].set_index("phase")
            for bar, phase in zip(container, PHASES):
                if phase in part.index and not math.isnan(float(part.loc[phase, "ci95"])):
                    ax.errorbar(bar.get_x() + bar.get_width() / 2, float(part.loc[phase, "accuracy"]),
                                yerr=float(part.loc[phase, "ci95"]), color="black", capsize=3, lw=1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("")
        ax.set_ylabel("accuracy")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        if title:
            ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def results_png(df: pd.DataFrame, title: str | None = None) -> bytes:
    """:func:`results_figure` as PNG bytes (what the explorer's image widget shows).

    Args:
        df: A :func:`~maml_probe.explorer.core.results_frame`.
        title: The plot's title.

    Returns:
        The PNG file's bytes.
    """
    buf = io.BytesIO()
    results_figure(df, title).savefig(buf, format="png")
    return buf.getvalue()
