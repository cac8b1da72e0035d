"""The explorer (issue #7): its pure function against the probes, and its widgets driven from Python."""
from __future__ import annotations

import threading

import ipywidgets as widgets
import pandas as pd
import pytest
import torch

from maml_probe.evaluation import evaluate_summary
from maml_probe.explorer import (Explorer, build_explorer, checkpoint_label, explore_once,
                                 find_checkpoints, train_smoke_model)
from maml_probe.learner import MetaLearner
from maml_probe.models import ConvNet
from maml_probe.probes import (ProbeSetup, layer_names, layer_probe, load_probe_setup, noise_probe,
                               scaling_probe)
from maml_probe.probes.layers import FREEZE, NO_ADAPTATION
from maml_probe.rules import make_rule
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


# ---------------------------------------------------------------------------- pure functions

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
    # freezing every layer gives the pre-adaptation accuracy ("no adaptation")
    frozen = explore_once(setup, frozen_layers=layers, **FAST)
    assert frozen["condition"].iloc[0] == "all frozen · 1 step"
    assert _acc(frozen, "post") == _acc(frozen, "pre") == _acc(lp, "pre", condition=NO_ADAPTATION)
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

    # freeze every layer: post == pre; the first result is kept as "previous"
    for toggle in ex.layer_toggles.values():
        toggle.value = "freeze"
    ex.run_button.click()
    cur, prev = _current(ex), _previous(ex)
    assert _acc(cur, "post") == _acc(cur, "pre") == _acc(plain, "pre")
    assert _acc(prev, "post") == _acc(plain, "post")
    assert cur["condition"].iloc[0] == "all frozen · 1 step"
    assert "previous (#1)" in ex.table.value and "current (#2)" in ex.table.value

    # FC x 4 after adaptation (all layers adapting again): the same accuracy as plain
    for toggle in ex.layer_toggles.values():
        toggle.value = "adapt"
    ex.scale_layer.value, ex.scale_factor.value, ex.scale_when.value = "FC", 4.0, "post"
    ex.run_button.click()
    assert _current(ex)["condition"].iloc[0] == "all adapt · FC×4 post · 1 step"
    assert _acc(_current(ex), "post") == pytest.approx(_acc(plain, "post"), abs=1e-12)
    assert _acc(_previous(ex), "post") == _acc(plain, "pre")      # the all-frozen run

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
    ex.train_button.click()                                  # blocking: trains here (seconds)
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
