"""The explorer's tables and plots: pure functions of its tidy frames.

- :func:`results_html`, :func:`results_figure`: the current result beside the previous one
  (:func:`~maml_probe.explorer.core.results_frame`): pre- and post-adaptation accuracy side by
  side in the table, as bars in the plot (the previous run in grey), 95% CI over tasks as error
  bars;
- :func:`history_html`, :func:`history_figure`: every run so far
  (:meth:`~maml_probe.explorer.core.History.frame`);
- :func:`sweep_figure`: accuracy against a swept knob (:func:`~maml_probe.explorer.core.sweep`;
  the scaling factor as in the paper's Fig A.2, on a log2 axis);
- :func:`similarity_html`, :func:`similarity_figure`: CKA per layer before vs after adaptation
  (:func:`~maml_probe.explorer.core.layer_similarity`).

Every accuracy plot draws the chance level (``1 / ways``, dashed) when it is given.
"""
from __future__ import annotations

import io
import math
from html import escape
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: CSS class prefix of the explorer's HTML (the browser test finds elements by it).
CSS_PREFIX = "maml-explorer"
PHASES = ["pre", "post"]
CURRENT_COLOR = "#1f77b4"
PREVIOUS_COLOR = "#b0b0b0"
PRE_COLOR = "#7f7f7f"
POST_COLOR = "#1f77b4"
CHANCE_COLOR = "#d62728"


def chance_label(chance: float) -> str:
    """The legend entry of the chance line, e.g. ``chance (20%)``.

    Args:
        chance: The chance accuracy as a fraction.

    Returns:
        The label.
    """
    return f"chance ({100 * chance:.3g}%)"


def draw_chance(ax, chance: float | None) -> None:
    """A dashed horizontal line at the chance accuracy, labelled for the legend.

    Args:
        ax: A matplotlib axes whose y axis is accuracy as a fraction.
        chance: The chance accuracy (``None``: nothing is drawn).
    """
    if chance is not None and math.isfinite(chance):
        ax.axhline(chance, color=CHANCE_COLOR, ls="--", lw=1, label=chance_label(chance))


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


def results_figure(df: pd.DataFrame, title: str | None = None,
                   chance: float | None = None) -> Figure:
    """Seaborn bar plot of pre/post accuracy, previous run beside the current one.

    Args:
        df: A :func:`~maml_probe.explorer.core.results_frame`.
        title: The plot's title (usually the current condition).
        chance: The chance accuracy, drawn as a dashed line (``None``: none).

    Returns:
        The figure: one bar group per phase, one bar per run (labelled ``current (#k)`` /
        ``previous (#j)``, oldest first), black error bars of ``ci95``, the chance line; a note
        when ``df`` is empty.
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
        _finish_accuracy_axes(ax, chance, "", title)
    fig.tight_layout()
    return fig


def _finish_accuracy_axes(ax, chance: float | None, xlabel: str, title: str | None) -> None:
    """Chance line, the [0, 1] accuracy axis, labels, and the legend outside the axes."""
    draw_chance(ax, chance)
    ax.set_ylim(0, 1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    if title:
        ax.set_title(title, fontsize=9)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def results_png(df: pd.DataFrame, title: str | None = None, chance: float | None = None) -> bytes:
    """:func:`results_figure` as PNG bytes (what the explorer's image widget shows).

    Args:
        df: A :func:`~maml_probe.explorer.core.results_frame`.
        title: The plot's title.
        chance: The chance accuracy.

    Returns:
        The PNG file's bytes.
    """
    return _png(results_figure(df, title, chance))


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def _cell(value: float, scale: float = 100.0, digits: int = 1) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{scale * value:.{digits}f}"


def _by_run(df: pd.DataFrame) -> list[tuple[pd.Series, Any, Any]]:
    """``(first row, pre row, post row)`` of each run of a history frame, in run order."""
    out = []
    for _, g in df.groupby("run_number", sort=True):
        by = {r.phase: r for r in g.itertuples()}
        out.append((g.iloc[0], by.get("pre"), by.get("post")))
    return out


def history_html(df: pd.DataFrame) -> str:
    """The history table: one row per run, newest first, pre/post accuracy and the knobs.

    Args:
        df: A :meth:`~maml_probe.explorer.core.History.frame`.

    Returns:
        HTML: a table with the run number, sweep, condition, pre and post accuracy (percent ±
        95% CI), their difference, tasks, seed, checkpoint and seconds; a hint when ``df`` is
        empty.
    """
    if df.empty:
        return (f"<div class='{CSS_PREFIX}-history'><i>No run yet: the history lists every "
                "condition tried.</i></div>")
    head = ("<tr><th>#</th><th>sweep</th><th>condition</th><th>pre-adaptation</th>"
            "<th>post-adaptation</th><th>post − pre</th><th>tasks</th><th>seed</th>"
            "<th>checkpoint</th><th>s</th></tr>")
    body = []
    for first, pre, post in reversed(_by_run(df)):
        delta = f"{100 * (post.accuracy - pre.accuracy):+.1f}" if pre and post else ""
        body.append(
            f"<tr><td>{int(first['run_number'])}</td><td>{escape(str(first['sweep']))}</td>"
            f"<td>{escape(str(first['condition']))}</td>"
            f"<td>{_pct(pre.accuracy, pre.ci95) if pre else ''}</td>"
            f"<td>{_pct(post.accuracy, post.ci95) if post else ''}</td>"
            f"<td>{delta}</td><td>{int(first['n'])}</td><td>{int(first['seed'])}</td>"
            f"<td>{escape(str(first['checkpoint']))}</td>"
            f"<td>{float(first['seconds']):.1f}</td></tr>")
    cell = "padding:2px 8px;border-bottom:1px solid #ddd;text-align:left"
    return (f"<style>.{CSS_PREFIX}-history td, .{CSS_PREFIX}-history th {{{cell}}}</style>"
            f"<div style='max-height:320px;overflow-y:auto'>"
            f"<table class='{CSS_PREFIX}-history' style='border-collapse:collapse;font-size:12px'>"
            f"<thead>{head}</thead><tbody>{''.join(body)}</tbody></table></div>"
            "<div style='font-size:11px;color:#666'>every finished run, newest first; mean "
            "accuracy over test tasks ± 95% CI</div>")


def history_figure(df: pd.DataFrame, chance: float | None = None) -> Figure:
    """Pre- and post-adaptation accuracy of every run of the history, by run number.

    Args:
        df: A :meth:`~maml_probe.explorer.core.History.frame`.
        chance: The chance accuracy, drawn as a dashed line.

    Returns:
        The figure: one marker per run and phase (pre grey, post blue) with its 95% CI, the
        chance line; a note when ``df`` is empty.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 3.0), dpi=100)
    ax = fig.subplots()
    if df.empty:
        _empty(ax, "no run yet")
    else:
        for phase, color, marker in (("pre", PRE_COLOR, "o"), ("post", POST_COLOR, "s")):
            part = df[df["phase"] == phase].sort_values("run_number")
            ax.errorbar(part["run_number"], part["accuracy"], yerr=part["ci95"].fillna(0),
                        color=color, marker=marker, ls="none", capsize=2, lw=1,
                        label=f"{phase}-adaptation")
        draw_chance(ax, chance)
        ax.set_ylim(0, 1)
        ax.set_xlabel("run #")
        ax.set_ylabel("accuracy")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        ax.set_title("every run of the explorer", fontsize=9)
    fig.tight_layout()
    return fig


def history_png(df: pd.DataFrame, chance: float | None = None) -> bytes:
    """:func:`history_figure` as PNG bytes.

    Args:
        df: A :meth:`~maml_probe.explorer.core.History.frame`.
        chance: The chance accuracy.

    Returns:
        The PNG file's bytes.
    """
    return _png(history_figure(df, chance))


def sweep_figure(df: pd.DataFrame, chance: float | None = None, title: str | None = None,
                 xlabel: str | None = None) -> Figure:
    """Accuracy against a swept knob, pre- and post-adaptation (as the paper's Fig A.2).

    Args:
        df: A :func:`~maml_probe.explorer.core.sweep` frame.
        chance: The chance accuracy, drawn as a dashed line.
        title: The plot's title.
        xlabel: The x axis' label (default: the knob's name).

    Returns:
        The figure: one line per phase with 95% CI error bars, the value on the x axis (log2
        for the scaling factor, whose values are powers of 2), the chance line; a note when
        ``df`` is empty.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 3.0), dpi=100)
    ax = fig.subplots()
    if df.empty:
        _empty(ax, "no sweep yet")
    else:
        knob = str(df["knob"].iloc[0])
        for phase, color, marker in (("pre", PRE_COLOR, "o"), ("post", POST_COLOR, "s")):
            part = df[df["phase"] == phase].sort_values("value")
            ax.errorbar(part["value"], part["accuracy"], yerr=part["ci95"].fillna(0),
                        color=color, marker=marker, capsize=2, lw=1.2,
                        label=f"{phase}-adaptation accuracy")
        if knob == "scale_factor" and (df["value"] > 0).all():
            ax.set_xscale("log", base=2)
        _finish_accuracy_axes(ax, chance, xlabel or knob, title)
    fig.tight_layout()
    return fig


def sweep_png(df: pd.DataFrame, chance: float | None = None, title: str | None = None,
              xlabel: str | None = None) -> bytes:
    """:func:`sweep_figure` as PNG bytes.

    Args:
        df: A :func:`~maml_probe.explorer.core.sweep` frame.
        chance: The chance accuracy.
        title: The plot's title.
        xlabel: The x axis' label.

    Returns:
        The PNG file's bytes.
    """
    return _png(sweep_figure(df, chance, title, xlabel))


def similarity_html(df: pd.DataFrame) -> str:
    """The CKA table: one row per layer, CKA before vs after adaptation and the weights' change.

    Args:
        df: A :func:`~maml_probe.explorer.core.layer_similarity` frame.

    Returns:
        HTML: layer, CKA ± 95% CI (1 = unchanged), relative parameter change in percent and the
        number of tasks; a hint when ``df`` is empty.
    """
    if df.empty:
        return (f"<div class='{CSS_PREFIX}-similarity'><i>No similarity yet: press "
                "<b>Run CKA</b>.</i></div>")
    head = ("<tr><th>layer</th><th>CKA (before vs after adaptation)</th>"
            "<th>parameter change (%)</th><th>tasks</th></tr>")
    body = []
    for r in df.itertuples():
        ci = "" if math.isnan(r.ci95) else f" ± {r.ci95:.3f}"
        cka = "n/a" if math.isnan(r.cka) else f"{r.cka:.3f}{ci}"
        body.append(f"<tr><td>{escape(str(r.layer))}</td><td>{cka}</td>"
                    f"<td>{_cell(r.param_change)}</td><td>{int(r.n)}</td></tr>")
    cell = "padding:2px 8px;border-bottom:1px solid #ddd;text-align:left"
    return (f"<style>.{CSS_PREFIX}-similarity td, .{CSS_PREFIX}-similarity th {{{cell}}}</style>"
            f"<table class='{CSS_PREFIX}-similarity' style='border-collapse:collapse;"
            f"font-size:12px'><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"
            "<div style='font-size:11px;color:#666'>linear CKA of each layer's query-set "
            "representation, initialisation vs adapted weights: 1 = unchanged</div>")


def similarity_figure(df: pd.DataFrame, title: str | None = None) -> Figure:
    """Bar plot of CKA per layer (1 = adaptation left the layer's representation unchanged).

    Args:
        df: A :func:`~maml_probe.explorer.core.layer_similarity` frame.
        title: The plot's title.

    Returns:
        The figure: one bar per layer in forward order with its 95% CI; a note when ``df`` is
        empty.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 3.0), dpi=100)
    ax = fig.subplots()
    if df.empty:
        _empty(ax, "no similarity yet")
    else:
        x = range(len(df))
        ax.bar(x, df["cka"].fillna(0), color=POST_COLOR,
               yerr=df["ci95"].fillna(0), capsize=3, ecolor="black")
        ax.set_xticks(list(x), [str(v) for v in df["layer"]])
        ax.axhline(1.0, color="#555", ls=":", lw=1)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("CKA before vs after adaptation")
        if title:
            ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def similarity_png(df: pd.DataFrame, title: str | None = None) -> bytes:
    """:func:`similarity_figure` as PNG bytes.

    Args:
        df: A :func:`~maml_probe.explorer.core.layer_similarity` frame.
        title: The plot's title.

    Returns:
        The PNG file's bytes.
    """
    return _png(similarity_figure(df, title))
