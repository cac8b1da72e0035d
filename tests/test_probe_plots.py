"""The probe figures: legends that cover no data, a chance line, labels that say what was done."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from maml_probe import plots
from maml_probe.probes import plots as probe_plots
from maml_probe.probes.layers import ADAPT, FREEZE, FULL_ADAPTATION, NO_ADAPTATION

LAYERS = pd.DataFrame({
    "condition": [NO_ADAPTATION, FULL_ADAPTATION] + [FREEZE] * 3 + [ADAPT] * 3,
    "layer": ["none", "all", "C1", "C2", "FC", "C1", "C2", "FC"],
    "accuracy": [.1, .9, .9, .88, .95, .2, .3, .7], "ci95": [.01] * 8})
SCALING = pd.DataFrame({"layer": ["FC"] * 4, "when": ["pre", "pre", "post", "post"],
                        "scale": [1.0, 32.0, 1.0, 32.0], "accuracy": [.9, .3, .9, .9],
                        "ci95": [.01] * 4})
NOISE = pd.DataFrame({"phase": ["pre", "post"] * 2, "scale": [0.0, 0.0, 2.0, 2.0],
                      "accuracy": [.2, .9, .1, .8], "ci95": [.01] * 4})
PRUNING = pd.DataFrame({"when": ["pre", "pre", "post", "post"], "threshold": [0.1, 0.3] * 2,
                        "accuracy": [.9, .7, .9, .8], "ci95": [.01] * 4,
                        "nonzero": [100_000, 40_000] * 2})


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _chance_lines(ax):
    return [line for line in ax.lines if line.get_linestyle() == ":"
            and list(line.get_ydata()) == [0.1, 0.1]]


FIGURES = {
    "layers": lambda c: probe_plots.plot_layer_probe(LAYERS, "t", chance=c),
    "noise": lambda c: probe_plots.plot_noise_probe(NOISE, chance=c),
    "scaling": lambda c: probe_plots.plot_scaling_probe(SCALING, "t", chance=c),
    "pruning": lambda c: probe_plots.plot_pruning_probe(PRUNING, target=40_000, chance=c),
}


@pytest.mark.parametrize("name", FIGURES)
def test_legends_sit_outside_the_axes_and_chance_is_drawn(name):
    """Catches: a legend drawn inside the axes over a bar or a point (the E3 legend covered the
    FC bar, the pruning legend its points) and figures without the chance level."""
    fig = FIGURES[name](0.1)
    for ax in fig.axes:
        assert ax.get_legend() is None, name
    assert fig.legends, name
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "chance (10%)" in texts
    assert any(_chance_lines(ax) for ax in fig.axes)
    legend_box = fig.legends[0].get_window_extent(fig.canvas.get_renderer())
    for ax in fig.axes:  # below every axes: no overlap with the plotted area
        assert legend_box.y1 <= ax.get_window_extent(fig.canvas.get_renderer()).y0 + 1
    no_chance = FIGURES[name](None)
    assert not any(_chance_lines(ax) for ax in no_chance.axes)


def test_scaling_legend_says_when_the_weights_were_scaled():
    """Catches: "Pre-/Post-Adaptation" read as when accuracy was measured (it is always after)."""
    fig = probe_plots.plot_scaling_probe(SCALING)
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts == [probe_plots.SCALED_WHEN["pre"], probe_plots.SCALED_WHEN["post"]]
    assert all("scaled" in t for t in texts)


def test_pruning_figure_has_a_title_and_takes_the_dataset():
    """Catches: an untitled Fig A.3 panel that does not say what was pruned or on which data."""
    assert "4-conv CNN" in probe_plots.plot_pruning_probe(PRUNING).axes[0].get_title()
    fig = probe_plots.plot_pruning_probe(PRUNING, title="omniglot: pruning")
    assert fig.axes[0].get_title() == "omniglot: pruning"


def test_accuracy_bars_mark_chance():
    """Catches: bar charts of 10-way accuracy without the 10% a guess reaches."""
    tests = pd.DataFrame({"method": ["A", "B"], "phase": ["post", "post"], "accuracy": [.5, .2]})
    ax = plots.accuracy_bars(tests, chance=0.1).axes[0]
    assert _chance_lines(ax) and any("chance" in t.get_text() for t in ax.texts)
    assert not _chance_lines(plots.accuracy_bars(tests).axes[0])
