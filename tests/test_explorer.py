"""The explorer: its condition, history and rendering without widgets, the conditions against the
probes, and its widgets driven from Python; sweeps, the history and its export, the chance line,
the data-root override, the CKA tab, the training progress and the notebook's working copy."""
from __future__ import annotations

import json
import math
import threading
from html.parser import HTMLParser

import ipywidgets as widgets
import pandas as pd
import pytest
import torch
from matplotlib.container import BarContainer, ErrorbarContainer

try:
    from data_fixtures import make_omniglot
except ImportError:  # tests/ imported as a package
    from tests.data_fixtures import make_omniglot

from maml_probe import cli, probes
from maml_probe.checkpoint import load_checkpoint, save_checkpoint
from maml_probe.config import learner_from_config
from maml_probe.evaluation import evaluate_summary
from maml_probe.explorer import (
    HISTORY_COLUMNS,
    RESULT_COLUMNS,
    SIMILARITY_COLUMNS,
    SWEEP_COLUMNS,
    SWEEP_VALUES,
    TAB_TITLES,
    WHEN_HELP,
    WHEN_LABELS,
    Cancelled,
    Condition,
    Explorer,
    History,
    build_explorer,
    chance_level,
    check_export_folder,
    checkpoint_label,
    copy_notebook,
    default_export_folder,
    evaluate_condition,
    explore_once,
    export_history,
    find_checkpoints,
    history_figure,
    history_html,
    lab_command,
    layer_similarity,
    load_setup,
    parse_values,
    plan_condition,
    results_figure,
    results_frame,
    results_html,
    results_png,
    similarity_figure,
    similarity_html,
    sweep,
    sweep_figure,
    train_smoke_model,
    with_data_root,
)
from maml_probe.explorer.notebook import NOTEBOOK
from maml_probe.learner import MetaLearner
from maml_probe.models import ConvNet, layer_of
from maml_probe.probes import (
    ProbeSetup,
    layer_names,
    layer_probe,
    load_probe_setup,
    noise_probe,
    scaling_probe,
)
from maml_probe.probes.layers import ADAPT, FREEZE, NO_ADAPTATION
from maml_probe.probes.similarity import similarity_probe
from maml_probe.rules import make_rule
from maml_probe.runs import RUNS_ROOT
from maml_probe.tasks.base import TaskBatch
from maml_probe.train import TrainConfig

TASKS = 50                      # two batches of 25: progress and cancellation see a boundary
FAST = dict(num_tasks=TASKS, seed=7)


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    """A runs/ folder with the smoke-scale E1 LinNet the explorer offers to train (seconds)."""
    root = tmp_path_factory.mktemp("runs")
    torch.set_num_threads(1)
    train_smoke_model(root)
    return root


@pytest.fixture(scope="module")
def setup(runs_root):
    return load_probe_setup(find_checkpoints(runs_root)[0])


def _acc(df: pd.DataFrame, phase: str, **where) -> float:
    for k, v in where.items():
        df = df[df[k] == v]
    return float(df.loc[df["phase"] == phase, "accuracy"].squeeze())


def _current(ex: Explorer) -> pd.DataFrame:
    df = ex.results()
    return df[df["run"] == "current"]


def _previous(ex: Explorer) -> pd.DataFrame:
    df = ex.results()
    return df[df["run"] == "previous"]


# ---------------------------------------------------------------------------- conditions

@pytest.fixture(scope="module")
def cnn():
    """An untrained 2-block CNN (C1, C2, FC) with 32 filters: 160 FC weights for the noise check."""
    torch.manual_seed(0)
    return ConvNet("omniglot", 2, 5, filters=32)


def _names(model, layers):
    return {n for n, _ in model.named_parameters() if layer_of(model, n) in layers}


def test_condition_descriptions():
    layers = ["H1", "H2", "FC"]
    assert Condition().describe(layers, steps=1) == "all adapt · 1 step"
    every = Condition(frozen_layers=("FC", "H1", "H2"))
    assert every.describe(layers, 3) == "all frozen · 3 steps"
    assert Condition(frozen_layers=("H1", "H2")).describe(layers) == "frozen H1,H2"
    # a scale layer with factor 1 is no scaling; the noise layer defaults to the last layer
    assert Condition(scale_layer="H1", noise_scale=0.5, steps=2).describe(["C1", "C4"]) == \
        "all adapt · C4 noise 0.5 pre · 2 steps"
    c = Condition(frozen_layers=("H2",), scale_layer="H1", scale_factor=0.125, scale_when="post",
                  noise_scale=0.0625, noise_when="post", noise_layer="H2", steps=0)
    assert c.describe(layers, steps=5) == \
        "frozen H2 · H1×0.125 post · H2 noise 0.0625 post · 0 steps"


def test_plan_adapts_every_parameter_of_the_unfrozen_layers(cnn):
    assert plan_condition(cnn, Condition(), default_steps=1).adapt_mask is None
    mask = plan_condition(cnn, Condition(frozen_layers=("C1",)), default_steps=1).adapt_mask
    # C2's BatchNorm adapts too (as in the layer probe); nothing of C1 does
    assert mask == _names(cnn, {"C2", "FC"}) and "blocks.1.bn.weight" in mask
    everything = Condition(frozen_layers=("C2", "FC", "C1"))
    assert plan_condition(cnn, everything, default_steps=1).adapt_mask == frozenset()


def test_plan_scaling_is_the_scaling_probe_transform_at_the_chosen_moment(cnn):
    learner = MetaLearner(cnn, make_rule("maml", cnn, 0.4))
    theta = {k: v.detach() for k, v in cnn.named_parameters()}
    scaled = {"blocks.1.conv.weight", "blocks.1.conv.bias"}      # C2's map; its BN stays
    pre = plan_condition(cnn, Condition(scale_layer="C2", scale_factor=4, scale_when="pre"),
                         default_steps=1)
    assert [t.func for t in pre.pre] == [probes.scale_params] and pre.post == ()
    assert pre.post_transform() is None
    got = pre.initial_params(learner)
    for name, value in theta.items():
        assert torch.equal(got[name], value * 4 if name in scaled else value), name
    assert isinstance(pre.condition.scale_factor, float) and pre.condition.steps == 1
    post = plan_condition(cnn, Condition(scale_layer="C2", scale_factor=4, scale_when="post",
                                         steps=3), default_steps=1)
    assert post.pre == () and post.condition.steps == 3
    assert all(torch.equal(post.initial_params(learner)[k], v) for k, v in theta.items())
    moved = post.post_transform()(theta)
    for name, value in theta.items():
        assert torch.equal(moved[name], value * 4 if name in scaled else value), name


def test_plan_noise_is_relative_to_the_weights_spread_and_seeded(cnn):
    theta = {k: v.detach() for k, v in cnn.named_parameters()}
    w = theta["fc.weight"]

    def noisy(**kw):
        plan = plan_condition(cnn, Condition(noise_scale=0.5, **kw), default_steps=1)
        (transform,) = plan.pre
        assert transform.func is probes.perturb and plan.post == ()
        return transform(theta)

    out = noisy()
    assert all(torch.equal(out[k], v) for k, v in theta.items() if k != "fc.weight")  # no bias
    z = (out["fc.weight"] - w) / (0.5 * float(w.std()))    # s * std(W) * Z: Z is standard normal
    assert abs(float(z.mean())) < 0.3 and 0.7 < float(z.std()) < 1.3
    assert torch.equal(noisy()["fc.weight"], out["fc.weight"])
    assert not torch.equal(noisy(noise_seed=1)["fc.weight"], out["fc.weight"])
    c2 = noisy(noise_layer="C2")
    assert not torch.equal(c2["blocks.1.conv.weight"], theta["blocks.1.conv.weight"])
    assert torch.equal(c2["fc.weight"], w)
    # scaling and noise at the same moment: scaling first, each once
    both = plan_condition(cnn, Condition(scale_layer="C1", scale_factor=2.0, scale_when="post",
                                         noise_scale=1.0, noise_when="post"), default_steps=1)
    assert both.pre == () and [t.func for t in both.post] == [probes.scale_params, probes.perturb]


@pytest.mark.parametrize("condition, message", [
    (Condition(scale_factor=2.0), "needs a scale_layer"),
    (Condition(scale_layer="C1", scale_factor=math.inf), "scale_factor must be a finite"),
    (Condition(scale_layer="C9", scale_factor=2.0), "unknown layers"),
    (Condition(noise_scale=0.5, noise_layer="C9"), "unknown layers"),
    (Condition(noise_scale=math.nan), "noise_scale must be a non-negative"),
    (Condition(noise_when="during"), "noise_when must be 'pre' or 'post'"),
    (Condition(steps=-1), "steps must be non-negative"),
    (Condition(num_tasks=0), "num_tasks must be positive"),
])
def test_plan_refuses_bad_conditions(cnn, condition, message):
    with pytest.raises(ValueError, match=message):
        plan_condition(cnn, condition, default_steps=1)


# ---------------------------------------------------------------------------- history

def _summary(pre: float, post: float, ci_pre: float = 0.05, ci_post: float = 0.02,
             condition: str = "c", n: int = 50) -> pd.DataFrame:
    return pd.DataFrame({"condition": condition, "phase": ["pre", "post"],
                         "accuracy": [pre, post], "ci95": [ci_pre, ci_post],
                         "std": [0.1, 0.1], "n": n})


def test_history_numbers_runs_and_compares_the_last_two():
    hist = History()
    assert hist.current is None and hist.previous is None
    assert list(hist.frame().columns) == HISTORY_COLUMNS and hist.frame().empty
    assert list(hist.compare().columns) == RESULT_COLUMNS and hist.compare().empty
    conds = [Condition(), Condition(frozen_layers=("H1", "H2"), steps=2),
             Condition(scale_layer="FC", scale_factor=4.0, scale_when="post")]
    accs = [(0.2, 0.5), (0.3, 0.6), (0.4, 0.7)]
    for i, (cond, (pre, post)) in enumerate(zip(conds, accs)):
        res = hist.add(f"ck{i}", cond, _summary(pre, post, condition=f"cond{i}"), seconds=i + 0.5)
        assert res.number == i + 1
    assert len(hist) == 3 and hist.current.number == 3 and hist.previous.number == 2

    both = hist.compare()
    assert list(both.columns) == RESULT_COLUMNS
    assert both["run"].tolist() == ["current", "current", "previous", "previous"]
    assert both["run_number"].tolist() == [3, 3, 2, 2]
    assert both["checkpoint"].tolist() == ["ck2", "ck2", "ck1", "ck1"]
    assert both["accuracy"].tolist() == [0.4, 0.7, 0.3, 0.6]
    assert results_frame(hist.previous, None)["accuracy"].tolist() == [0.3, 0.6]

    df = hist.frame()
    assert list(df.columns) == HISTORY_COLUMNS
    assert df["run_number"].tolist() == [1, 1, 2, 2, 3, 3]
    assert df["phase"].tolist() == ["pre", "post"] * 3
    assert df["accuracy"].tolist() == [0.2, 0.5, 0.3, 0.6, 0.4, 0.7]
    assert df["condition"].tolist() == ["cond0", "cond0", "cond1", "cond1", "cond2", "cond2"]
    assert df["frozen_layers"].tolist() == ["", "", "H1,H2", "H1,H2", "", ""]
    assert df["steps"].tolist()[2:4] == [2, 2] and df["scale_factor"].tolist()[4:] == [4.0, 4.0]
    assert df["scale_when"].tolist()[4:] == ["post", "post"]
    assert df["seconds"].tolist() == [0.5, 0.5, 1.5, 1.5, 2.5, 2.5]


# ---------------------------------------------------------------------------- rendering

def _two_runs() -> pd.DataFrame:
    """Run #2 (previous) and run #3 (current), one post CI missing."""
    hist = History()
    hist.add("ck", Condition(), _summary(0.9, 0.9), 1.0)                        # not shown
    hist.add("ck", Condition(), _summary(0.4, 0.6, ci_post=math.nan, condition="plain"), 1.0)
    hist.add("ck/<b>", Condition(), _summary(0.4, 0.85, condition="H1×4 <pre>"), 1.0)
    return hist.compare()


def test_plot_shows_the_frame_bars_error_bars_and_colors():
    df = _two_runs()
    ax = results_figure(df, "H1×4 pre").axes[0]
    assert ax.get_title() == "H1×4 pre" and ax.get_ylim() == (0.0, 1.0)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["previous (#2)", "current (#3)"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["pre", "post"]
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert [[b.get_height() for b in c] for c in bars] == [[0.4, 0.6], [0.4, 0.85]]
    # the previous run in grey, the current one in blue (seaborn desaturates both a little)
    (grey,) = {b.get_facecolor() for b in bars[0]}
    (blue,) = {b.get_facecolor() for b in bars[1]}
    assert grey[0] == grey[1] == grey[2] and blue[2] > blue[1] > blue[0]
    # one error bar per finite CI, centred on its bar, spanning accuracy ± ci95
    centres = {(round(b.get_x() + b.get_width() / 2, 9), b.get_height()) for c in bars for b in c}
    spans = []
    for err in (c for c in ax.containers if isinstance(c, ErrorbarContainer)):
        (segment,) = err.lines[2][0].get_segments()
        (x0, lo), (x1, hi) = segment
        assert x0 == x1 and (round(x0, 9), round((lo + hi) / 2, 9)) in centres
        spans.append((round(lo, 9), round(hi, 9)))
    assert sorted(spans) == sorted([(0.35, 0.45), (0.35, 0.45), (0.83, 0.87)])


def test_plot_of_no_result_and_png():
    empty = results_frame(None, None)
    ax = results_figure(empty).axes[0]
    assert not ax.axison and [t.get_text() for t in ax.texts] == ["no result yet"]
    png = results_png(_two_runs(), "x")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")) == (600, 300)


class _Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.weights, self._cell = [], [], None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
            self.weights.append(dict(attrs).get("style", ""))
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.rows[-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def test_table_shows_each_run_pre_post_and_their_difference():
    cells = _Cells()
    cells.feed(results_html(_two_runs()))
    head, current, previous = cells.rows
    assert head == ["run", "checkpoint", "condition", "pre-adaptation", "post-adaptation",
                    "post − pre", "tasks"]
    assert current == ["current (#3)", "ck/<b>", "H1×4 <pre>", "40.0% ± 5.0", "85.0% ± 2.0",
                       "+45.0", "50"]
    assert previous == ["previous (#2)", "ck", "plain", "40.0% ± 5.0", "60.0%", "+20.0", "50"]
    assert "bold" in cells.weights[1] and "normal" in cells.weights[2]
    assert "No result yet" in results_html(results_frame(None, None))


# ---------------------------------------------------------------------------- a trained model

def test_find_checkpoints(runs_root, tmp_path):
    found = find_checkpoints(runs_root)
    assert [checkpoint_label(p, runs_root) for p in found] == ["E1/smoke-explorer/lr-linnet-w-maml"]
    assert find_checkpoints(tmp_path) == [] and find_checkpoints(tmp_path / "missing") == []


def test_plain_condition_is_the_plain_evaluation(setup):
    got = explore_once(setup, **FAST)
    want = evaluate_summary(setup.learner, setup.source, steps=setup.steps, **FAST)
    assert list(got.columns) == ["condition", "phase", "accuracy", "ci95", "std", "n"]
    assert got["condition"].iloc[0] == "all adapt · 1 step"
    for phase in ("pre", "post"):
        assert _acc(got, phase) == _acc(want, phase)
        assert float(got.loc[got.phase == phase, "ci95"].squeeze()) == \
            float(want.loc[want.phase == phase, "ci95"].squeeze())
    # scale 1 and noise 0, pre or post, change nothing
    same = explore_once(setup, scale_layer="H1", scale_factor=1.0, scale_when="post",
                        noise_scale=0.0, noise_when="post", **FAST)
    pd.testing.assert_frame_equal(same, got)


def test_conditions_equal_the_probe_rows(setup):
    layers = layer_names(setup.learner.model)
    assert layers == ["H1", "H2", "H3", "FC"]
    kw = dict(steps=setup.steps, progress=False, **FAST)
    lp = layer_probe(setup.learner, setup.source, layers=["H2"], conditions=[FREEZE], **kw)
    # freezing one layer = the layer probe's "freeze only this" row
    got = explore_once(setup, frozen_layers=["H2"], **FAST)
    assert _acc(got, "post") == _acc(lp, "post", condition=FREEZE, layer="H2")
    # every layer frozen: no step is taken, but the post-adaptation transforms still apply, so
    # "post" scores the noisy unadapted model, as 0 steps with the noise added before adapting
    frozen = explore_once(setup, frozen_layers=layers, noise_scale=1.0, noise_when="post", **FAST)
    zero_steps = explore_once(setup, steps=0, noise_scale=1.0, noise_when="pre", **FAST)
    assert frozen["condition"].iloc[0] == "all frozen · FC noise 1 post · 1 step"
    assert _acc(frozen, "pre") == _acc(lp, "pre", condition=NO_ADAPTATION)
    assert _acc(frozen, "post") == _acc(zero_steps, "post") != _acc(frozen, "pre")
    # scaling: the scaling probe's rows, pre and post
    sp = scaling_probe(setup.learner, setup.source, factors=[4.0], layers=["H1", "FC"], **kw)
    for layer in ("H1", "FC"):
        for when in ("pre", "post"):
            got = explore_once(setup, scale_layer=layer, scale_factor=4.0, scale_when=when, **FAST)
            assert _acc(got, "post") == _acc(sp, "post", layer=layer, when=when), (layer, when)
    # noise on FC with H1, H2 frozen (the noise probe adapts the last two layers): draw 0
    npb = noise_probe(setup.learner, setup.source, scales=[0.5], draws=1, **kw)
    got = explore_once(setup, frozen_layers=["H1", "H2"], noise_scale=0.5, **FAST)
    for phase in ("pre", "post"):
        assert _acc(got, phase) == _acc(npb, phase, scale=0.5), phase


def test_invariances_of_fc_scaling_and_post_noise(setup):
    plain = explore_once(setup, **FAST)
    # FC's weight (and bias) x 4 after adaptation multiplies the logits by 4: same predictions
    fc_post = explore_once(setup, scale_layer="FC", scale_factor=4.0, scale_when="post", **FAST)
    assert _acc(fc_post, "pre") == _acc(plain, "pre")
    assert _acc(fc_post, "post") == pytest.approx(_acc(plain, "post"), abs=1e-12)
    # noise after adaptation leaves the pre-adaptation accuracy alone
    noisy_post = explore_once(setup, noise_scale=2.0, noise_when="post", **FAST)
    assert _acc(noisy_post, "pre") == _acc(plain, "pre")
    assert _acc(noisy_post, "post") != _acc(plain, "post")


def test_should_stop_cancels_between_batches(setup):
    seen = []
    with pytest.raises(Cancelled, match="cancelled after 25 of 50 tasks"):
        evaluate_condition(setup, Condition(**FAST), progress=lambda done, _: seen.append(done),
                           should_stop=lambda: bool(seen))
    assert seen == [0]


def test_bad_arguments_are_refused(setup):
    with pytest.raises(ValueError, match="unknown layers"):
        explore_once(setup, frozen_layers=["C9"], **FAST)
    with pytest.raises(ValueError, match="scale_when"):
        explore_once(setup, scale_layer="FC", scale_factor=2.0, scale_when="during", **FAST)
    with pytest.raises(ValueError, match="noise_scale"):
        explore_once(setup, noise_scale=-1.0, **FAST)


def test_progress_reports_each_batch_and_the_learner_is_untouched(setup):
    before = {k: v.clone() for k, v in setup.learner.state_dict().items()}
    seen = []
    explore_once(setup, scale_layer="H1", scale_factor=8.0, noise_scale=1.0,
                 progress=lambda done, total: seen.append((done, total)), **FAST)
    assert seen == [(0, TASKS), (25, TASKS), (TASKS, TASKS)]
    for k, v in setup.learner.state_dict().items():
        assert torch.equal(v, before[k]), k


# ---------------------------------------------------------------------------- widgets

def _explorer(runs_root, **kw) -> Explorer:
    box = build_explorer(runs_root, blocking=True, auto_run=False, num_tasks=TASKS, seed=7, **kw)
    assert isinstance(box, widgets.VBox)
    return box.explorer


def test_widgets_follow_the_probes(runs_root, setup):
    ex = _explorer(runs_root)
    assert ex.widget.children == (ex.main_view,)
    assert list(ex.layer_toggles) == ["H1", "H2", "H3", "FC"]
    assert ex.checkpoint.label == "E1/smoke-explorer/lr-linnet-w-maml"
    assert ex.steps.value == setup.steps and ex.scale_factor.value == 1.0
    assert ex.results().empty and "No result yet" in ex.table.value

    ex.run_button.click()
    plain = evaluate_summary(setup.learner, setup.source, steps=setup.steps, **FAST)
    assert _acc(_current(ex), "pre") == _acc(plain, "pre")
    assert _acc(_current(ex), "post") == _acc(plain, "post")
    assert ex.status_text().startswith("done (#1)") and ex.progress.value == TASKS
    assert "current (#1)" in ex.table.value and ex.plot.value[:4] == b"\x89PNG"

    # freeze H1-H3 with the toggles: the layer probe's "adapt only this" row of FC; the first
    # result is kept as "previous"
    for layer in ("H1", "H2", "H3"):
        ex.layer_toggles[layer].value = "freeze"
    ex.run_button.click()
    lp = layer_probe(setup.learner, setup.source, steps=setup.steps, layers=["FC"],
                     conditions=[ADAPT], progress=False, **FAST)
    only_fc = _acc(lp, "post", layer="FC")
    assert only_fc != _acc(plain, "post")            # so the toggles' effect is visible
    cur, prev = _current(ex), _previous(ex)
    assert _acc(cur, "post") == only_fc and _acc(cur, "pre") == _acc(plain, "pre")
    assert _acc(prev, "post") == _acc(plain, "post")
    assert cur["condition"].iloc[0] == "frozen H1,H2,H3 · 1 step"
    assert "previous (#1)" in ex.table.value and "current (#2)" in ex.table.value

    # FC x 4 after adaptation (all layers adapting again): the same accuracy as plain
    for toggle in ex.layer_toggles.values():
        toggle.value = "adapt"
    ex.scale_layer.value, ex.scale_factor.value, ex.scale_when.value = "FC", 4.0, "post"
    ex.run_button.click()
    assert _current(ex)["condition"].iloc[0] == "all adapt · FC×4 post · 1 step"
    assert _acc(_current(ex), "post") == pytest.approx(_acc(plain, "post"), abs=1e-12)
    assert _acc(_previous(ex), "post") == only_fc                 # the FC-only run

    # H1 x 4 before adaptation: the scaling probe's row; steps and task count are honoured
    ex.scale_layer.value, ex.scale_when.value = "H1", "pre"
    ex.run_button.click()
    sp = scaling_probe(setup.learner, setup.source, steps=setup.steps, factors=[4.0], layers=["H1"],
                       when="pre", progress=False, **FAST)
    assert _acc(_current(ex), "post") == _acc(sp, "post")
    ex.steps.value, ex.num_tasks.value = 0, 25
    ex.run_button.click()
    cur = _current(ex)
    assert (cur["n"] == 25).all() and _acc(cur, "post") == _acc(cur, "pre")  # 0 steps: no change
    # every run is in the history, with the controls' values
    hist = ex.runs.frame()
    assert hist["run_number"].drop_duplicates().tolist() == [1, 2, 3, 4, 5]
    last = hist[hist["run_number"] == 5]
    assert last["steps"].eq(0).all() and last["num_tasks"].eq(25).all()
    assert last["scale_layer"].eq("H1").all() and last["scale_factor"].eq(4.0).all()
    assert last["accuracy"].tolist() == cur["accuracy"].tolist()
    assert hist.loc[hist["run_number"] == 2, "frozen_layers"].eq("H1,H2,H3").all()


def test_update_on_change_runs_after_each_change(runs_root, setup):
    ex = _explorer(runs_root)
    ex.auto_run.value = True
    ex.noise_scale.value = 0.5          # FC noise before adaptation, everything adapting
    assert ex.status_text().startswith("done (#1)")
    got = explore_once(setup, noise_scale=0.5, **FAST)
    pd.testing.assert_frame_equal(_current(ex)[got.columns].reset_index(drop=True), got)
    ex.layer_toggles["H1"].value = "freeze"
    assert ex.status_text().startswith("done (#2)")
    assert _current(ex)["condition"].iloc[0] == "frozen H1 · FC noise 0.5 pre · 1 step"
    ex.set(frozen_layers=["H1", "H2"], noise_when="post", scale_factor=2.0)   # one run for all
    assert ex.status_text().startswith("done (#3)")
    assert _current(ex)["condition"].iloc[0] == "frozen H1,H2 · H1×2 pre · FC noise 0.5 post · 1 step"


class _Gate:
    """A task source that blocks in ``sample`` until released (to hold a run in the middle)."""

    def __init__(self, source):
        self.source, self.entered, self.release = source, threading.Event(), threading.Event()

    def __getattr__(self, name):
        return getattr(self.source, name)

    def sample(self, num_tasks, generator):
        self.entered.set()
        assert self.release.wait(30), "test gate never released"
        return self.source.sample(num_tasks, generator)


def test_click_while_running_is_queued_latest_wins(setup):
    gate = _Gate(setup.source)
    gated = ProbeSetup(setup.learner, setup.config, gate, setup.steps)
    ex = Explorer(setup=gated, blocking=False, auto_run=False, num_tasks=TASKS, seed=7)
    ex.run_button.click()
    assert gate.entered.wait(10) and ex.running
    assert ex.status_text().startswith("running: all adapt")
    ex.scale_factor.value = 2.0
    ex.run_button.click()
    assert ex.status_text().startswith("queued: all adapt · H1×2 pre")
    ex.scale_factor.value = 4.0
    ex.run_button.click()
    assert ex.status_text().startswith("queued: all adapt · H1×4 pre")
    assert "replaces the earlier queued request" in ex.status_text()
    gate.release.set()
    assert ex.wait(60) and not ex.running
    assert ex.status_text().startswith("done (#2): all adapt · H1×4 pre")
    # the first run, then only the latest queued request (H1 x 2 never ran)
    assert _previous(ex)["condition"].iloc[0] == "all adapt · 1 step"
    assert _current(ex)["condition"].iloc[0] == "all adapt · H1×4 pre · 1 step"
    assert not any(line.startswith("running: all adapt · H1×2") for line in ex.history)
    want = explore_once(setup, scale_layer="H1", scale_factor=4.0, **FAST)
    assert _acc(_current(ex), "post") == _acc(want, "post")


def test_cancel_stops_between_batches_and_drops_the_queue(setup):
    gate = _Gate(setup.source)
    gated = ProbeSetup(setup.learner, setup.config, gate, setup.steps)
    ex = Explorer(setup=gated, blocking=False, auto_run=False, num_tasks=TASKS, seed=7)
    ex.run_button.click()
    assert gate.entered.wait(10)
    ex.noise_scale.value = 1.0
    ex.run_button.click()                                    # queued behind the first
    ex.cancel_button.click()
    assert ex.status_text().startswith("cancelling… (stops after the current batch of tasks; "
                                       "queued request dropped)")
    gate.release.set()                                       # first batch ends, then the stop
    assert ex.wait(60)
    assert ex.status_text().startswith("cancelled: all adapt · 1 step (cancelled after 25 of 50")
    assert ex.results().empty and ex.progress.bar_style == "warning"
    assert not any("FC noise 1" in line and line.startswith("running") for line in ex.history)
    ex.cancel_button.click()
    assert ex.status_text() == "nothing to cancel"
    ex.run_button.click()                                    # the explorer still works
    assert ex.wait(60) and ex.status_text().startswith("done (#1): all adapt · FC noise 1 pre")


def test_no_checkpoint_offers_to_train_the_smoke_model(tmp_path):
    ex = _explorer(tmp_path / "runs")
    assert ex.widget.children == (ex.empty_view,)
    assert "No checkpoint found under" in ex.empty_message.value
    assert ex.train_button.description == "Train smoke-scale model"
    ex.auto_run.value = True
    moves = []
    ex.progress.observe(lambda ch: moves.append((ex.progress.description, ch["new"],
                                                 ex.progress.max)), "value")
    ex.train_button.click()                                  # blocking: trains here (seconds)
    # the bar follows the training iterations, one step each, before the first evaluation
    training = [(v, m) for d, v, m in moves if d == "training"]
    assert training[:40] == [(i, 40) for i in range(1, 41)]
    assert find_checkpoints(tmp_path / "runs")
    assert (tmp_path / "runs" / "E1" / "smoke-explorer" / "record.json").exists()
    assert ex.widget.children == (ex.main_view,)
    assert ex.checkpoint.label == "E1/smoke-explorer/lr-linnet-w-maml"
    assert ex.status_text().startswith("done (#1)")          # opened and evaluated once


def test_opening_a_named_checkpoint_and_refresh(runs_root, tmp_path):
    path = find_checkpoints(runs_root)[0]
    for name in (path, "E1/smoke-explorer/lr-linnet-w-maml", path.parent):
        ex = _explorer(runs_root, checkpoint=name)
        assert ex.checkpoint.value == str(path) and ex.setup is not None
    ex.refresh()                                             # same checkpoint: nothing reset
    assert ex.checkpoint.value == str(path)
    with pytest.raises(FileNotFoundError, match="not found"):
        _explorer(runs_root, checkpoint=tmp_path / "nope.pt")
    broken = tmp_path / "other" / "x" / "checkpoint.pt"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not a checkpoint")
    ex = _explorer(tmp_path / "other")
    assert ex.status_text().startswith("could not open x")


# ---------------------------------------------------------------------------- a CNN, too

class _TinyImages:
    """Random 5-way 1-shot 1x28x28 episodes: class prototypes plus noise."""

    input_shape, ways, num_outputs = (1, 28, 28), 5, 5

    def sample(self, num_tasks, generator):
        protos = torch.randn(num_tasks, self.ways, *self.input_shape, generator=generator)

        def draw(k):
            y = torch.arange(self.ways).repeat(k).expand(num_tasks, -1)
            x = protos[torch.arange(num_tasks)[:, None], y]
            return x + 0.5 * torch.randn(x.shape, generator=generator), y

        (sx, sy), (qx, qy) = draw(1), draw(3)
        return TaskBatch(sx, sy, qx, qy)


def test_cnn_layers_become_toggles_and_match_the_probes():
    torch.manual_seed(0)
    net = ConvNet("omniglot", 2, 5, filters=4)
    learner = MetaLearner(net, make_rule("maml", net, 0.4))
    cfg = TrainConfig(dataset="omniglot", model="cnn", ways=5, shots=1, queries=3, steps=1)
    setup = ProbeSetup(learner, cfg, _TinyImages(), 1)
    ex = Explorer(setup=setup, blocking=True, auto_run=False, num_tasks=6, seed=1, batch_size=3)
    assert list(ex.layer_toggles) == ["C1", "C2", "FC"] and ex.scale_layer.value == "C1"
    ex.set(frozen_layers=["C1", "C2"])                       # adapt only FC
    ex.run_button.click()
    kw = dict(steps=1, num_tasks=6, seed=1, batch_size=3, progress=False)
    lp = layer_probe(learner, setup.source, layers=["FC"], conditions=["adapt only this"], **kw)
    assert _acc(_current(ex), "post") == _acc(lp, "post", layer="FC")
    ex.set(frozen_layers=[], scale_factor=8.0, scale_when="pre")
    ex.run_button.click()
    sp = scaling_probe(learner, setup.source, factors=[8.0], layers=["C1"], when="pre", **kw)
    assert _acc(_current(ex), "post") == _acc(sp, "post")


# ---------------------------------------------------------------------------- history and export

def _history_of_three() -> History:
    hist = History()
    hist.add("ck", Condition(), _summary(0.5, 0.7, condition="plain"), 1.0)
    hist.add("ck", Condition(scale_layer="H1", scale_factor=2.0), _summary(0.5, 0.6), 1.0,
             sweep="sweep 1: scale_factor")
    hist.add("ck", Condition(scale_layer="H1", scale_factor=4.0), _summary(0.5, 0.4), 1.0,
             sweep="sweep 1: scale_factor")
    return hist


def test_history_keeps_every_run_with_its_sweep_and_shows_them_all():
    hist = _history_of_three()
    assert hist.sweeps() == ["sweep 1: scale_factor"]
    df = hist.frame()
    assert list(df.columns) == HISTORY_COLUMNS
    assert df["sweep"].tolist() == ["", ""] + ["sweep 1: scale_factor"] * 4
    assert df["scale_factor"].tolist() == [1.0, 1.0, 2.0, 2.0, 4.0, 4.0]
    cells = _Cells()
    cells.feed(history_html(df))
    head, *rows = cells.rows
    assert head[:6] == ["#", "sweep", "condition", "pre-adaptation", "post-adaptation", "post − pre"]
    # every run, not only the last two; newest first
    assert [r[0] for r in rows] == ["3", "2", "1"]
    assert rows[0][1] == "sweep 1: scale_factor" and rows[2][1:3] == ["", "plain"]
    assert rows[0][3:6] == ["50.0% ± 5.0", "40.0% ± 2.0", "-10.0"]
    assert "No run yet" in history_html(History().frame())


def test_export_history_writes_a_tidy_csv_and_a_png_where_asked(tmp_path):
    hist = _history_of_three()
    csv = export_history(hist, tmp_path / "out", "csv", stem="h")
    assert csv == tmp_path / "out" / "h.csv"
    back = pd.read_csv(csv, keep_default_na=False)
    assert list(back.columns) == HISTORY_COLUMNS
    assert back["accuracy"].tolist() == hist.frame()["accuracy"].tolist()
    assert back["sweep"].tolist() == hist.frame()["sweep"].tolist()
    png = export_history(hist, tmp_path / "out", "png", chance=0.5)
    assert png.parent == tmp_path / "out" and png.name.startswith("explorer-history-")
    assert png.suffix == ".png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="history is empty"):
        export_history(History(), tmp_path, "csv")
    with pytest.raises(ValueError, match="fmt must be one of"):
        export_history(hist, tmp_path, "xlsx")


def test_exports_default_under_runs_and_never_into_the_notebooks_folder(tmp_path):
    assert default_export_folder(tmp_path / "runs") == tmp_path / "runs" / "explorer"
    assert default_export_folder() == RUNS_ROOT / "explorer"
    assert check_export_folder(tmp_path / "anywhere") == tmp_path / "anywhere"
    notebooks = NOTEBOOK.parent
    for folder in (notebooks, notebooks / "exports"):
        with pytest.raises(ValueError, match="tracked notebooks folder"):
            check_export_folder(folder)
        with pytest.raises(ValueError, match="tracked notebooks folder"):
            export_history(_history_of_three(), folder, "csv")
    assert not list(notebooks.glob("explorer-history-*")) and not (notebooks / "exports").exists()


def test_history_plot_has_every_run_and_the_chance_line():
    ax = history_figure(_history_of_three().frame(), chance=0.5).axes[0]
    post = next(c for c in ax.containers if isinstance(c, ErrorbarContainer)
                and c.get_label() == "post-adaptation")
    assert list(post.lines[0].get_xdata()) == [1, 2, 3]
    assert list(post.lines[0].get_ydata()) == [0.7, 0.6, 0.4]
    _assert_chance_line(ax, 0.5)


def test_widgets_history_table_and_export_buttons(runs_root):
    ex = _explorer(runs_root)
    assert ex.tabs.titles == TAB_TITLES
    assert ex.export_folder.value == str(runs_root / "explorer")
    ex.export_csv_button.click()                               # nothing yet: says so
    assert "not exported" in ex.export_status.value and "empty" in ex.export_status.value
    for factor in (1.0, 2.0, 4.0):
        ex.set(scale_factor=factor)
        ex.run_button.click()
    cells = _Cells()
    cells.feed(ex.history_table.value)
    assert [r[0] for r in cells.rows[1:]] == ["3", "2", "1"]           # all three, newest first
    ex.export_csv_button.click()
    (csv,) = (runs_root / "explorer").glob("explorer-history-*.csv")
    assert str(csv) in ex.export_status.value
    pd.testing.assert_frame_equal(pd.read_csv(csv, keep_default_na=False)[["run_number", "accuracy"]],
                                  ex.runs.frame()[["run_number", "accuracy"]].astype({"run_number": int}))
    ex.export_png_button.click()
    (png,) = (runs_root / "explorer").glob("explorer-history-*.png")
    assert str(png) in ex.export_status.value and png.read_bytes()[:4] == b"\x89PNG"
    ex.export_folder.value = str(NOTEBOOK.parent)
    assert ex.export() is None and "tracked notebooks folder" in ex.export_status.value
    # the history tab's plot is drawn when the tab is shown
    assert ex.history_plot.layout.display == "none"
    ex.tabs.selected_index = TAB_TITLES.index("History")
    assert ex.history_plot.layout.display is None and ex.history_plot.value[:4] == b"\x89PNG"


# ---------------------------------------------------------------------------- chance level

def _assert_chance_line(ax, chance: float) -> None:
    lines = [ln for ln in ax.get_lines() if ln.get_label().startswith("chance")]
    assert len(lines) == 1, [ln.get_label() for ln in ax.get_lines()]
    assert set(lines[0].get_ydata()) == {chance}
    assert lines[0].get_label() == f"chance ({100 * chance:.3g}%)"
    assert "chance" in [t.get_text().split(" ")[0] for t in ax.get_legend().get_texts()]


def test_chance_level_is_one_over_ways(cnn, setup):
    assert chance_level(cnn) == pytest.approx(0.2)                        # 5-way CNN
    assert chance_level(setup.learner.model) == 0.5                       # E1: one logit, binary
    assert chance_level(ConvNet("omniglot", 2, 20, filters=4)) == pytest.approx(0.05)


def test_results_plot_draws_the_chance_line():
    ax = results_figure(_two_runs(), "x", chance=0.2).axes[0]
    _assert_chance_line(ax, 0.2)
    assert not [ln for ln in results_figure(_two_runs()).axes[0].get_lines()
                if ln.get_label().startswith("chance")]


def test_widget_plots_carry_the_checkpoints_chance_line(runs_root):
    ex = _explorer(runs_root)
    assert ex.chance == 0.5 and "chance 50%" in ex.info.value
    ex.run_button.click()
    title = ex.current.frame["condition"].iloc[0]
    assert ex.plot.value == results_png(ex.results(), title, 0.5)
    assert ex.plot.value != results_png(ex.results(), title)


# ---------------------------------------------------------------------------- sweeps

def test_parse_values():
    assert parse_values("1, 2, 4") == (1.0, 2.0, 4.0)
    assert parse_values("2^0 2^1 2 ^ 5") == (1.0, 2.0, 32.0)
    assert parse_values("0; 2**-4\n0.5") == (0.0, 0.0625, 0.5)
    with pytest.raises(ValueError, match="at least one value"):
        parse_values(" , ")
    with pytest.raises(ValueError, match="not a number: 'x'"):
        parse_values("1, x")


def test_sweep_of_the_scaling_factor_is_the_scaling_probe_curve(setup):
    """One click's worth of Fig A.2: H1 x 2^0..2^5 before adaptation, the scaling probe's rows."""
    assert SWEEP_VALUES["scale_factor"] == (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
    hist, seen = History(), []
    base = Condition(scale_layer="H1", scale_when="pre", **FAST)
    df = sweep(setup, base, "scale_factor", history=hist, checkpoint="ck",
               progress=lambda done, total: seen.append((done, total)))
    assert list(df.columns) == SWEEP_COLUMNS
    assert df["value"].drop_duplicates().tolist() == list(SWEEP_VALUES["scale_factor"])
    sp = scaling_probe(setup.learner, setup.source, steps=setup.steps, layers=["H1"], when="pre",
                       progress=False, **FAST)
    for factor in SWEEP_VALUES["scale_factor"]:
        assert _acc(df, "post", value=factor) == _acc(sp, "post", scale=factor), factor
    # each value is a run of the history, labelled as this sweep
    assert len(hist) == 6 and hist.sweeps() == ["sweep 1: scale_factor"]
    assert hist.frame()["scale_factor"].drop_duplicates().tolist() == list(SWEEP_VALUES["scale_factor"])
    assert hist.frame()["accuracy"].tolist() == df["accuracy"].tolist()
    # progress runs over the whole sweep, never backwards
    assert seen[-1] == (6 * TASKS, 6 * TASKS) and all(t == 6 * TASKS for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    # a second sweep of another knob gets its own label
    noise = sweep(setup, Condition(**FAST), "noise_scale", [0.0, 2.0], history=hist)
    assert hist.sweeps() == ["sweep 1: scale_factor", "sweep 2: noise_scale"]
    assert _acc(noise, "post", value=0.0) == _acc(explore_once(setup, **FAST), "post")


def test_sweep_refuses_bad_values_before_running_and_keeps_finished_points_on_cancel(setup):
    hist = History()
    with pytest.raises(ValueError, match="steps must be whole numbers"):
        sweep(setup, Condition(**FAST), "steps", [1, 1.5], history=hist)
    with pytest.raises(ValueError, match="needs a scale_layer"):
        sweep(setup, Condition(**FAST), "scale_factor", [1.0, 2.0], history=hist)
    with pytest.raises(ValueError, match="cannot sweep 'seed'"):
        sweep(setup, Condition(**FAST), "seed", [1, 2], history=hist)
    assert len(hist) == 0
    calls = []

    def stop():                      # stop before the second value's second batch
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(Cancelled):
        sweep(setup, Condition(**FAST), "steps", [0, 1, 2], history=hist, should_stop=stop)
    assert len(hist) == 1 and hist.current.condition.steps == 0


def test_sweep_plot_is_accuracy_against_the_value_with_chance(setup):
    df = sweep(setup, Condition(scale_layer="FC", scale_when="post", num_tasks=25, seed=7),
               "scale_factor", [1.0, 4.0, 32.0])
    ax = sweep_figure(df, chance=0.5, title="t", xlabel="scaling factor").axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "scaling factor"
    bars = {c.get_label(): c for c in ax.containers if isinstance(c, ErrorbarContainer)}
    assert set(bars) == {"pre-adaptation accuracy", "post-adaptation accuracy"}
    post = bars["post-adaptation accuracy"].lines[0]
    assert list(post.get_xdata()) == [1.0, 4.0, 32.0]
    assert list(post.get_ydata()) == df[df.phase == "post"]["accuracy"].tolist()
    _assert_chance_line(ax, 0.5)


def test_sweep_button_runs_each_value_into_the_history(runs_root, setup):
    ex = _explorer(runs_root)
    ex.run_button.click()                                       # run #1
    assert ex.sweep_knob.value == "scale_factor" and ex.sweep_values.value == "1, 2, 4, 8, 16, 32"
    ex.sweep_knob.value = "noise_scale"
    assert ex.sweep_values.value == "0, 0.0625, 0.125, 0.25, 0.5, 1, 2"
    ex.sweep_knob.value = "scale_factor"
    ex.set(scale_layer="H1", scale_when="post")
    ex.sweep_values.value = "1, 4, 2^4"
    ex.sweep_button.click()
    assert ex.status_text().startswith("done (#2–#4): sweep of the scaling factor over 1, 4, 16")
    assert len(ex.runs) == 4 and ex.runs.sweeps() == ["sweep 1: scale_factor"]
    sp = scaling_probe(setup.learner, setup.source, steps=setup.steps, factors=[1.0, 4.0, 16.0],
                       layers=["H1"], when="post", progress=False, **FAST)
    for factor in (1.0, 4.0, 16.0):
        assert _acc(ex.sweep_result, "post", value=factor) == _acc(sp, "post", scale=factor)
    assert ex.sweep_plot.layout.display is None and ex.sweep_plot.value[:4] == b"\x89PNG"
    assert ex.progress.value == ex.progress.max == 3 * TASKS
    cells = _Cells()
    cells.feed(ex.history_table.value)
    assert [r[0] for r in cells.rows[1:]] == ["4", "3", "2", "1"]
    ex.sweep_values.value = "1, banana"
    ex.sweep_button.click()
    assert ex.status_text().startswith("cannot sweep: not a number: 'banana'")
    assert len(ex.runs) == 4


# ---------------------------------------------------------------------------- pre/post labels

def test_pre_post_toggles_say_when_the_change_is_applied(runs_root):
    assert WHEN_LABELS == {"pre": "before adaptation", "post": "after adaptation"}
    assert "meta-learned initialisation" in WHEN_HELP["pre"]
    assert "adapted weights" in WHEN_HELP["post"]
    ex = _explorer(runs_root)
    for toggle in (ex.scale_when, ex.noise_when):
        assert toggle.options == (("before adaptation", "pre"), ("after adaptation", "post"))
        assert toggle.value == "pre" and toggle.label == "before adaptation"
        assert "initialisation" in toggle.tooltips[0] and "adapted weights" in toggle.tooltips[1]
    assert "Fig A.2" in ex.when_help.value and "initialisation" in ex.when_help.value
    ex.scale_when.value = "post"
    assert ex.scale_when.label == "after adaptation" and ex.settings().scale_when == "post"


# ---------------------------------------------------------------------------- training progress

def test_smoke_training_reports_each_iteration_and_trains_the_same_model(runs_root, tmp_path):
    seen = []
    path = train_smoke_model(tmp_path / "runs", on_iteration=lambda d, t: seen.append((d, t)))
    assert seen == [(i, 40) for i in range(1, 41)]
    a = load_checkpoint(path)["learner"]
    b = load_checkpoint(find_checkpoints(runs_root)[0])["learner"]    # trained without a callback
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (path.parent / "test.csv").exists()


# ---------------------------------------------------------------------------- data root

@pytest.fixture(scope="module")
def moved_checkpoint(tmp_path_factory):
    """A 2-way Omniglot SCNN checkpoint whose stored data root does not exist here, and the
    folder where its (generated) Omniglot really is."""
    base = tmp_path_factory.mktemp("moved")
    here = base / "here"
    make_omniglot(here / "omniglot")
    cfg = TrainConfig(dataset="omniglot", model="scnn", ways=2, shots=1, queries=1, steps=1,
                      iterations=1, dataset_kwargs={
                          "root": str(base / "elsewhere"), "cache_dir": str(base / "gone"),
                          "split_sizes": [4, 2, 2], "rotations": [0], "progress": False})
    torch.manual_seed(0)
    learner = learner_from_config(cfg)
    path = base / "runs" / "E7" / "moved" / "scnn" / "checkpoint.pt"
    save_checkpoint(path, {"config": cfg.to_dict(), "learner": learner.state_dict(),
                           "iteration": 1})
    return path, here, base


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MAML_PROBE_CACHE", str(tmp_path / "cache"))


def test_data_root_override_finds_the_dataset_here(moved_checkpoint, private_cache):
    path, here, base = moved_checkpoint
    with pytest.raises(FileNotFoundError, match=r"trained with its omniglot data in .*elsewhere"):
        load_setup(path)
    setup = load_setup(path, data_root=here)
    kw = setup.config.dataset_kwargs
    assert kw["root"] == str(here) and "cache_dir" not in kw                # a missing cache dropped
    assert kw["split_sizes"] == [4, 2, 2]
    got = explore_once(setup, num_tasks=4, batch_size=2)
    assert got["n"].eq(4).all()
    assert chance_level(setup.learner.model) == 0.5
    # generated tasks need no data: the override changes nothing
    synthetic = TrainConfig(dataset_kwargs={"dim": 5})
    assert with_data_root(synthetic, here) is synthetic
    assert with_data_root(setup.config, "  ") is setup.config


def test_data_root_field_reopens_the_checkpoint(moved_checkpoint, private_cache):
    path, here, base = moved_checkpoint
    ex = Explorer(base / "runs", blocking=True, auto_run=False, num_tasks=4, batch_size=2)
    assert ex.setup is None and ex.status_text().startswith("could not open E7/moved/scnn")
    assert "Set 'data root'" in ex.status_text()
    ex.data_root.value = str(here)
    assert ex.status_text() == "opened E7/moved/scnn"
    assert ex.setup.config.dataset_kwargs["root"] == str(here) and f"data in {here}" in ex.info.value
    ex.run_button.click()
    assert ex.status_text().startswith("done (#1)")
    # the field given up front works as well
    ex = Explorer(base / "runs", blocking=True, auto_run=False, data_root=here, num_tasks=4,
                  batch_size=2)
    assert ex.setup is not None and ex.status_text() == "opened E7/moved/scnn"


# ---------------------------------------------------------------------------- similarity (CKA)

def test_layer_similarity_is_the_cka_probe_per_layer(setup):
    seen = []
    df = layer_similarity(setup, num_tasks=10, seed=3, batch_size=5,
                          progress=lambda d, t: seen.append((d, t)))
    assert list(df.columns) == SIMILARITY_COLUMNS
    assert df["layer"].tolist() == ["H1", "H2", "H3", "FC"] and df["n"].eq(10).all()
    rows = similarity_probe(setup.learner, setup.source, steps=setup.steps, num_tasks=10, seed=3,
                            batch_size=5, progress=False)
    for layer in ("H1", "FC"):
        mine = df.set_index("layer").loc[layer]
        theirs = rows[rows.layer == layer]
        assert mine["cka"] == pytest.approx(theirs["cka"].mean(), abs=1e-12)
        assert mine["param_change"] == pytest.approx(theirs["param_change"].mean(), abs=1e-12)
    assert seen == [(0, 10), (5, 10), (10, 10)]
    # ANIL adapts the head only: the body's representations are exactly unchanged
    anil = layer_similarity(setup, num_tasks=5, seed=3, preset="anil").set_index("layer")
    assert anil.loc[["H1", "H2", "H3"], "cka"].eq(1.0).all()
    assert anil.loc[["H1", "H2", "H3"], "param_change"].eq(0.0).all()
    assert anil.loc["FC", "param_change"] > 0
    with pytest.raises(ValueError, match="unknown adaptation preset"):
        layer_similarity(setup, preset="half")
    with pytest.raises(Cancelled):
        layer_similarity(setup, num_tasks=10, batch_size=5, should_stop=lambda: True)


def test_similarity_table_and_bars():
    df = pd.DataFrame({"preset": "full", "layer": ["H1", "FC"], "cka": [0.99, 0.5],
                       "ci95": [0.01, math.nan], "std": 0.1, "n": 10, "param_change": [0.02, 0.3]})
    cells = _Cells()
    cells.feed(similarity_html(df))
    assert cells.rows[1:] == [["H1", "0.990 ± 0.010", "2.0", "10"], ["FC", "0.500", "30.0", "10"]]
    ax = similarity_figure(df, "t").axes[0]
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert [b.get_height() for b in bars[0]] == [0.99, 0.5]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["H1", "FC"]
    assert "press" in similarity_html(pd.DataFrame())


def test_similarity_tab_runs_the_probe(runs_root, setup):
    ex = _explorer(runs_root, similarity_tasks=6)
    assert ex.tabs.titles[2] == "Similarity (CKA)"
    ex.sim_preset.value = "anil"
    ex.sim_button.click()
    assert ex.status_text().startswith("done: CKA per layer, ANIL (head only), 6 tasks")
    want = layer_similarity(setup, num_tasks=6, seed=7, preset="anil")
    pd.testing.assert_frame_equal(ex.similarity_result, want)
    cells = _Cells()
    cells.feed(ex.sim_table.value)
    assert [r[0] for r in cells.rows[1:]] == ["H1", "H2", "H3", "FC"]
    assert cells.rows[1][1].startswith("1.000")
    assert ex.sim_plot.layout.display is None and ex.sim_plot.value[:4] == b"\x89PNG"
    assert len(ex.runs) == 0                       # the CKA probe is not an accuracy run


# ---------------------------------------------------------------------------- a clean repository

def test_committed_notebook_has_no_outputs_and_points_to_the_working_copy():
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert "widgets" not in nb.get("metadata", {})
    text = "".join("".join(c["source"]) for c in nb["cells"])
    assert "maml-probe explore" in text and "runs/explore.ipynb" in text
    assert "data_root = None" in text and "data_root=data_root" in text


def test_copy_notebook_puts_a_clean_copy_outside_git(tmp_path):
    dest = copy_notebook(tmp_path / "runs")
    assert dest == tmp_path / "runs" / "explore.ipynb"
    assert json.loads(dest.read_text())["cells"] == json.loads(NOTEBOOK.read_text())["cells"]
    # outputs a user left in some source notebook are not copied
    dirty = json.loads(NOTEBOOK.read_text())
    dirty["cells"][-1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "x"}]
    dirty["cells"][-1]["execution_count"] = 3
    src = tmp_path / "dirty.ipynb"
    src.write_text(json.dumps(dirty))
    copy = copy_notebook(tmp_path / "mine.ipynb", source=src)
    assert all(c.get("outputs", []) == [] for c in json.loads(copy.read_text())["cells"])
    # an existing copy is the user's: kept unless asked
    dest.write_text("{}")
    assert copy_notebook(tmp_path / "runs").read_text() == "{}"
    assert copy_notebook(tmp_path / "runs", overwrite=True).read_text() != "{}"
    with pytest.raises(ValueError, match="committed notebook itself"):
        copy_notebook(NOTEBOOK)
    assert lab_command(dest).endswith(f"lab {dest}")


def test_explore_command_copies_and_prints_how_to_open(tmp_path, capsys):
    assert cli.main(["explore", "--dest", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    path = tmp_path / "runs" / "explore.ipynb"
    assert path.exists() and f"copied the explorer notebook to {path}" in out
    assert f"jupyter lab {path}" in out
    assert cli.main(["explore", "--dest", str(path)]) == 0
    assert "kept your copy" in capsys.readouterr().out
