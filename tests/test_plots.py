"""``maml_probe.plots``: the plotted data is the input's (curves per method, bars of the means).

Figures are read back through matplotlib (line data, bar heights, tick labels), so a helper that
plots the wrong split, phase or method, or aggregates wrongly, fails here.
"""
import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest

from maml_probe import plots


def _data_lines(ax):
    """Plotted lines with data, flattened to ``[x0, y0, x1, y1, ...]`` (one per hue level)."""
    return [line.get_xydata().ravel().tolist() for line in ax.lines if len(line.get_xydata())]


HISTORY = pd.DataFrame({
    "iteration": [1, 2, 3] * 4,
    "split": ["train"] * 6 + ["val"] * 6,
    "phase": ["post"] * 9 + ["pre"] * 3,
    "accuracy": [.1, .2, .3, .4, .5, .6, .7, .8, .9, .0, .0, .0],
    "method": ["A"] * 3 + ["B"] * 3 + ["A"] * 3 + ["A"] * 3,
})


def test_learning_curves_plot_post_adaptation_rows_of_the_chosen_split():
    """Catches: the training split drawn although there are evaluation rows, pre-adaptation rows
    mixed in (here they would pull A's validation curve towards 0), methods swapped."""
    ax = plots.learning_curves(HISTORY).axes[0]
    (val,) = _data_lines(ax)
    assert val == pytest.approx([1, .7, 2, .8, 3, .9])
    ax = plots.learning_curves(HISTORY, split="train").axes[0]
    a, b = _data_lines(ax)
    assert a == pytest.approx([1, .1, 2, .2, 3, .3]) and b == pytest.approx([1, .4, 2, .5, 3, .6])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["A", "B"]
    assert "train" in ax.get_title() and ax.get_ylim() == (0, 1.02)


def test_accuracy_bars_are_the_post_adaptation_means_per_method():
    """Catches: pre-adaptation rows averaged in, a median or a sum, bars in another order."""
    tests = pd.DataFrame({"method": ["B", "B", "A", "A", "A", "A"],
                          "phase": ["post", "post", "post", "post", "post", "pre"],
                          "accuracy": [.6, .8, .1, .2, .6, .0]})
    ax = plots.accuracy_bars(tests, "t").axes[0]
    assert [p.get_height() for p in ax.patches] == pytest.approx([.7, .3])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["B", "A"]
    assert ax.get_title() == "t"
