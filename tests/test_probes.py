"""Probes: exact invariances, no mutation of the learner, sweeps, checkpoint, plots."""
import math

import matplotlib
import numpy as np

matplotlib.use("Agg")

import pandas as pd
import pytest
import torch
from matplotlib.container import BarContainer, ErrorbarContainer

from maml_probe import train as train_mod
from maml_probe.evaluation import evaluate
from maml_probe.experiments import common as exp_common
from maml_probe.experiments.common import slug
from maml_probe.experiments.sweeps import depth_sweep, width_sweep
from maml_probe.learner import MetaLearner
from maml_probe.models import ConvNet, LinNet, count_parameters
from maml_probe.probes import (
    adapt_mask_for,
    count_nonzero,
    layer_names,
    layer_probe,
    load_probe_setup,
    noise_probe,
    perturb,
    plots,
    prune,
    pruning_probe,
    scaling_probe,
    scnn_parameter_count,
    select_params,
    threshold_for_count,
)
from maml_probe.probes.common import clone_params, run_condition
from maml_probe.probes.layers import ADAPT, FREEZE, FULL_ADAPTATION, NO_ADAPTATION
from maml_probe.rules import make_rule
from maml_probe.stats import mean_ci95
from maml_probe.tasks.base import TaskBatch
from maml_probe.train import TrainConfig, build_task_source, load_learner, meta_train

WAYS, SHOTS, QUERIES, STEPS = 5, 1, 5, 2
N_TASKS = 6
FAST = dict(steps=STEPS, num_tasks=N_TASKS, seed=3, batch_size=N_TASKS, progress=False)


class TinyImageTasks:
    """Random 1x28x28 episodes: each class is a random prototype image plus noise, labels shuffled.

    Shapes follow :class:`TaskBatch`: ``[T, ways * shots, 1, 28, 28]`` support and
    ``[T, ways * queries, 1, 28, 28]`` query, so adaptation has something to learn.
    """

    input_shape = (1, 28, 28)

    def __init__(self, ways=WAYS, shots=SHOTS, queries=QUERIES, noise=0.5):
        self.ways, self.shots, self.queries, self.noise = ways, shots, queries, noise
        self.num_outputs = ways

    def sample(self, num_tasks, generator):
        protos = torch.randn(num_tasks, self.ways, *self.input_shape, generator=generator)

        def draw(k):
            y = torch.arange(self.ways).repeat(k)
            perm = torch.stack([torch.randperm(len(y), generator=generator) for _ in range(num_tasks)])
            y = y[perm]
            x = protos[torch.arange(num_tasks)[:, None], y]
            return x + self.noise * torch.randn(x.shape, generator=generator), y

        sx, sy = draw(self.shots)
        qx, qy = draw(self.queries)
        return TaskBatch(sx, sy, qx, qy)


def _learner(depth=3, rule="maml", seed=0, **rule_kw):
    torch.manual_seed(seed)
    net = ConvNet("omniglot", depth, WAYS, filters=4)
    return MetaLearner(net, make_rule(rule, net, 0.4, **rule_kw))


def _state(learner):
    return {k: v.detach().clone() for k, v in learner.state_dict().items()}


def _accs(df, **where):
    for k, v in where.items():
        df = df[df[k] == v]
    return df.sort_values("task")["accuracy"].to_numpy()


@pytest.fixture(scope="module")
def src():
    return TinyImageTasks()


@pytest.fixture(scope="module")
def baseline(src):
    learner = _learner()
    return learner, run_condition(learner, src, params=clone_params(learner),
                                  **{k: v for k, v in FAST.items() if k != "progress"})


# ---------------------------------------------------------------- parameter selection
def test_layer_names_and_targets():
    net = ConvNet("omniglot", 2, WAYS, filters=4)
    assert layer_names(net) == ["C1", "C2", "FC"]
    assert select_params(net, ["C1"], "weight") == ["blocks.0.conv.weight"]
    assert select_params(net, ["C1"], "map") == ["blocks.0.conv.weight", "blocks.0.conv.bias"]
    assert len(select_params(net, ["C1"], "all")) == 4
    lin = LinNet(10, [6, 6], num_outputs=1)
    assert layer_names(lin) == ["H1", "H2", "FC"]
    assert select_params(lin, None, "weight") == ["hidden.0.weight", "hidden.1.weight", "fc.weight"]
    with pytest.raises(ValueError, match="unknown layers"):
        select_params(net, ["C3"])
    with pytest.raises(ValueError, match="targets"):
        select_params(net, ["C1"], "bias")


# ---------------------------------------------------------------- layers
def test_an_empty_adapt_mask_moves_nothing_even_when_steps_are_taken(baseline, src):
    """The engine, given an empty mask and ``steps > 0`` (``run_condition`` would shortcut to 0
    steps), must leave every parameter bit-identical and score post = pre. Catches: an empty mask
    read as "no mask" (``if not adapt_mask``: everything adapts), a crash on a step with nothing
    to differentiate, a post-adaptation pass that is not on the unadapted parameters."""
    learner, base = baseline
    init = clone_params(learner)
    seen = []
    df = evaluate(learner, src, steps=STEPS, num_tasks=N_TASKS, seed=FAST["seed"],
                  batch_size=N_TASKS, params=init, adapt_mask=adapt_mask_for(learner.model, []),
                  post_transform=lambda p: seen.append(p) or p)
    assert len(seen) == N_TASKS
    assert all(torch.equal(adapted[k], init[k]) for adapted in seen for k in init)
    assert (_accs(df, phase="post") == _accs(base, phase="pre")).all()
    # and adaptation does something on these tasks, so the equality above is not vacuous
    assert _accs(base, phase="post").mean() > _accs(base, phase="pre").mean()


def test_frozen_layer_is_bit_identical_after_adaptation(src):
    learner = _learner()
    init = clone_params(learner)
    seen = []
    run_condition(learner, src, params=init, adapt_mask=adapt_mask_for(learner.model, ["C2", "C3", "FC"]),
                  post_transform=lambda p: seen.append(p) or p, steps=STEPS, num_tasks=3, seed=0)
    assert len(seen) == 3
    for adapted in seen:
        for name in select_params(learner.model, ["C1"]):
            assert torch.equal(adapted[name], init[name]), name
        assert not torch.equal(adapted["fc.weight"], init["fc.weight"])
        assert not torch.equal(adapted["blocks.2.conv.weight"], init["blocks.2.conv.weight"])


def test_layer_probe_rows_and_consistency(src, baseline):
    learner, base = baseline
    df = layer_probe(learner, src, summary=False, **FAST)
    assert set(df.condition) == {"no adaptation", "full adaptation", "freeze only this", "adapt only this"}
    assert (_accs(df, condition="no adaptation") == _accs(base, phase="pre")).all()
    assert (_accs(df, condition="full adaptation") == _accs(base, phase="post")).all()
    summary = layer_probe(learner, src, layers=["FC"], conditions=["adapt only this"], **FAST)
    assert list(summary.columns[:3]) == ["condition", "layer", "phase"]
    assert {"accuracy", "ci95", "std", "n"} <= set(summary.columns) and (summary.n == N_TASKS).all()
    # depth 1: "freeze only C1" and "adapt only FC" are the same mask, hence the same accuracies
    small = _learner(depth=1)
    d1 = layer_probe(small, src, summary=False, **FAST)
    assert (_accs(d1, condition="freeze only this", layer="C1")
            == _accs(d1, condition="adapt only this", layer="FC")).all()
    with pytest.raises(ValueError, match="unknown conditions"):
        layer_probe(small, src, conditions=["freeze"], **FAST)


# ---------------------------------------------------------------- noise
def test_noise_scale_zero_changes_nothing(src, baseline):
    learner, _ = baseline
    ref = run_condition(learner, src, params=clone_params(learner),
                        adapt_mask=adapt_mask_for(learner.model, ["C3", "FC"]),
                        **{k: v for k, v in FAST.items() if k != "progress"})
    df = noise_probe(learner, src, scales=(0.0, 2.0), draws=2, summary=False, **FAST)
    for phase in ("pre", "post"):
        assert (_accs(df, scale=0.0, phase=phase) == _accs(ref, phase=phase)).all()
    assert set(df[df.scale == 0.0].draw) == {0} and set(df[df.scale == 2.0].draw) == {0, 1}
    summary = noise_probe(learner, src, scales=(0.0, 2.0), draws=2, **FAST)
    assert set(summary.columns) >= {"layer", "scale", "phase", "accuracy", "ci95", "n", "draws"}
    assert (summary.n == N_TASKS).all() and summary.set_index("scale").draws.to_dict() == {0.0: 1, 2.0: 2}


def test_perturb_definition():
    params = {"w": torch.randn(200, 100) * 3, "b": torch.ones(10)}
    sigma = 0.5 * float(params["w"].std())
    out = perturb(params, ["w"], "w", 0.5, draw_seed=7)
    assert torch.equal(out["b"], params["b"])
    assert float((out["w"] - params["w"]).std()) == pytest.approx(sigma, rel=0.02)
    twice = perturb(params, ["w"], "w", 1.0, draw_seed=7)  # same draw, twice the scale
    torch.testing.assert_close(twice["w"] - params["w"], 2 * (out["w"] - params["w"]))
    other = perturb(params, ["w"], "w", 0.5, draw_seed=8)
    assert not torch.equal(other["w"], out["w"])
    assert torch.equal(perturb(params, ["w", "b"], "w", 0.0, draw_seed=1)["w"], params["w"])
    absolute = perturb(params, ["w"], "w", 0.5, draw_seed=7, relative=False)
    torch.testing.assert_close(absolute["w"] - params["w"], (out["w"] - params["w"]) / float(params["w"].std()))


# ---------------------------------------------------------------- scaling
def test_scaling_by_one_changes_nothing_and_fc_post_scaling_keeps_argmax(src, baseline):
    learner, base = baseline
    df = scaling_probe(learner, src, factors=(1.0, 32.0), layers=["C2", "FC"], summary=False, **FAST)
    for layer in ("C2", "FC"):
        for when in ("pre", "post"):
            assert (_accs(df, layer=layer, when=when, scale=1.0) == _accs(base, phase="post")).all()
    # FC weight and bias x32 after adaptation multiplies the logits: same predictions
    assert (_accs(df, layer="FC", when="post", scale=32.0) == _accs(base, phase="post")).all()
    # ... but before adaptation it changes the adaptation itself
    assert (_accs(df, layer="FC", when="pre", scale=32.0) != _accs(base, phase="post")).any()


# ---------------------------------------------------------------- pruning
def test_pruning_threshold_zero_changes_nothing_and_infinity_removes_all_weights(src, baseline):
    learner, base = baseline
    weights = select_params(learner.model, None, "weight")
    df = pruning_probe(learner, src, thresholds=(0.0, math.inf), when=("pre", "post"),
                       summary=False, **FAST)
    total = count_parameters(learner.model)
    for when in ("pre", "post"):
        assert (_accs(df, threshold=0.0, when=when) == _accs(base, phase="post")).all()
        inf = df[(df.threshold == math.inf) & (df.when == when)]
        assert (inf.nonzero_pruned == 0).all()
        assert (inf.nonzero <= total - sum(learner.model.get_parameter(n).numel() for n in weights)).all()
    summary = pruning_probe(learner, src, thresholds=(0.0, 0.2), **FAST)
    assert set(summary.columns) >= {"threshold", "when", "accuracy", "ci95", "n", "nonzero",
                                    "nonzero_pruned", "total"}
    assert (summary.total == total).all()
    assert summary.nonzero.iloc[0] > summary.nonzero.iloc[1]


def test_pre_adaptation_pruning_keeps_pruned_entries_zero(src):
    learner = _learner(rule="kfc", layers=2)  # a rule with its own inner-loop state, wrapped
    init = clone_params(learner)
    names = select_params(learner.model, None, "weight")
    t = float(torch.cat([init[n].abs().flatten() for n in names]).median())
    pruned = prune(init, names, t)
    df = pruning_probe(learner, src, thresholds=(t,), when="pre", summary=False, **FAST)
    assert (df.nonzero_pruned == count_nonzero(pruned, names)).all()
    # post: each task's count is that of its own adapted weights at |w| >= t, counted here by hand
    post = pruning_probe(learner, src, thresholds=(t,), when="post", summary=False, **FAST)
    adapted = []
    run_condition(learner, src, params=init, post_transform=lambda p: adapted.append(p) or p,
                  **{k: v for k, v in FAST.items() if k != "progress"})
    by_hand = [sum(int((a[n].abs() >= t).sum()) for n in names) for a in adapted]
    assert post.sort_values("task").nonzero_pruned.tolist() == by_hand
    assert len(set(by_hand)) > 1          # adapted weights differ per task: counts do too


def test_threshold_helper_hits_its_target():
    torch.manual_seed(0)
    net = ConvNet("omniglot", 4, 10)
    params = clone_params(MetaLearner(net, make_rule("maml", net, 0.4)))
    names = select_params(net, None, "weight")
    assert count_parameters(net) == 112_586 and scnn_parameter_count(net) == 38_474
    assert scnn_parameter_count(ConvNet("cifarfs", 4, 10)) == 10_602
    for target in (38_474, 60_000, 100_000):
        t = threshold_for_count(params, target, names)
        assert count_nonzero(prune(params, names, t)) == target  # continuous weights: no ties
    assert threshold_for_count(params, 10, names) == math.inf
    assert threshold_for_count(params, 10**9, names) == 0.0
    tied = {"w": torch.tensor([1.0, 2.0, 2.0, 3.0])}
    assert count_nonzero(prune(tied, ["w"], threshold_for_count(tied, 2, ["w"]))) == 3  # a tie


# ---------------------------------------------------------------- no mutation
def test_probes_leave_the_learner_untouched(src):
    learner = _learner(rule="metasgd")
    before = _state(learner)
    layer_probe(learner, src, layers=["C3"], **FAST)
    noise_probe(learner, src, scales=(0.0, 1.0), draws=1, **FAST)
    scaling_probe(learner, src, factors=(4.0,), layers=["FC"], **FAST)
    pruning_probe(learner, src, thresholds=(0.1,), when=("pre", "post"), **FAST)
    after = _state(learner)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in learner.parameters())


# ---------------------------------------------------------------- checkpoint
def test_probes_on_a_meta_trained_checkpoint(tmp_path, src):
    cfg = TrainConfig(dataset="omniglot", model="cnn", model_kwargs={"filters": 4}, ways=WAYS,
                      shots=SHOTS, queries=QUERIES, steps=STEPS, alpha=0.4, meta_lr=0.01,
                      outer_optimizer="adam", meta_batch=2, iterations=3, checkpoint_every=3,
                      device="cpu")
    result = meta_train(cfg, tmp_path, progress=False, sources={"train": src})
    setup = load_probe_setup(result.checkpoint, source=src)
    assert setup.steps == STEPS and setup.config == cfg and setup.source is src
    trained = result.learner.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in setup.learner.state_dict().items())
    assert not setup.learner.training                       # probes score in evaluation mode
    layers = layer_probe(setup.learner, setup.source, steps=setup.steps, num_tasks=4, progress=False)
    assert len(layers) == 2 + 2 * 5
    # the reference rows are the checkpoint's own pre/post accuracy on the same 4 tasks
    ref = evaluate(setup.learner, src, steps=STEPS, num_tasks=4, seed=0)
    for condition, phase in (("no adaptation", "pre"), ("full adaptation", "post")):
        row = layers[layers.condition == condition].iloc[0]
        mean, ci = mean_ci95(ref[ref.phase == phase].sort_values("task").accuracy.to_numpy())
        assert (row.phase, row.n) == (phase, 4)
        assert row.accuracy == pytest.approx(mean) and row.ci95 == pytest.approx(ci, nan_ok=True)
    noise = noise_probe(setup.learner, setup.source, steps=setup.steps, num_tasks=4, scales=(0.0, 0.5),
                        draws=1, progress=False)
    assert len(noise) == 4
    assert layer_names(setup.learner.model) == ["C1", "C2", "C3", "C4", "FC"]
    frozen = evaluate(setup.learner, src, steps=STEPS, num_tasks=4, seed=0,
                      adapt_mask=adapt_mask_for(setup.learner.model, ["C4", "FC"]))
    for phase in ("pre", "post"):   # scale 0: exactly "C1-C3 frozen", no noise
        zero = noise[(noise.scale == 0.0) & (noise.phase == phase)].accuracy.iloc[0]
        assert zero == pytest.approx(frozen[frozen.phase == phase].accuracy.mean())
    target = scnn_parameter_count(setup.learner.model)
    t = threshold_for_count(clone_params(setup.learner), target,
                            select_params(setup.learner.model, None, "weight"))
    prune_df = pruning_probe(setup.learner, setup.source, steps=setup.steps, num_tasks=4,
                             thresholds=(t,), when=("pre", "post"), progress=False).set_index("when")
    assert prune_df.nonzero["pre"] == target  # pruned init, masked adaptation: exactly the target
    # post-adaptation pruning with the init's threshold: adapted weights cross it, roughly on target
    assert prune_df.nonzero["post"] == pytest.approx(target, rel=0.1)


# ---------------------------------------------------------------- sweeps
def test_depth_sweep_trains_resumably(tmp_path, src, monkeypatch):
    """Catches: a member built at another depth, the per-depth rate not applied (or applied to
    every member), a summary that is not its tasks' mean, a finished sweep retrained."""
    monkeypatch.setattr(train_mod, "build_task_source", lambda cfg, split, device="cpu": src)
    monkeypatch.setattr(exp_common, "build_task_source", lambda cfg, split, device="cpu": src)
    base = TrainConfig(dataset="omniglot", model="cnn", model_kwargs={"filters": 4}, ways=WAYS,
                       shots=SHOTS, queries=QUERIES, steps=1, alpha=0.4, meta_lr=0.01,
                       outer_optimizer="adam", meta_batch=2, iterations=2, log_every=1, device="cpu")
    methods = {"MAML": {"rule": "maml"}, "KFC": {"rule": "kfc", "rule_kwargs": {"layers": 2, "normalize": True}}}
    out = depth_sweep(base, tmp_path, depths=(1, 2), methods=methods,
                      per_depth={("MAML", 2): {"alpha": 0.8}}, test_tasks=3, progress=False)
    s = out["summary"]
    assert len(s) == 8 and set(s.method) == {"MAML", "KFC"} and set(s.depth) == {1, 2}
    assert (s.status == "ok").all() and (s.n == 3).all()
    assert {"iteration", "split", "accuracy", "method", "depth"} <= set(out["history"].columns)
    assert out["history"].groupby("label").iteration.max().eq(2).all()
    # each member is the CNN of its depth, with its method's rule and rate (MAML at depth 2: 0.8)
    for (method, depth), alpha in {("MAML", 1): 0.4, ("MAML", 2): 0.8, ("KFC", 1): 0.4, ("KFC", 2): 0.4}.items():
        learner, cfg = load_learner(tmp_path / slug(f"CNN-{depth} w/ {method}") / "checkpoint.pt")
        assert len(learner.model.blocks) == depth and cfg.alpha == alpha == learner.rule.alpha
        assert cfg.rule == methods[method]["rule"] and cfg.model_kwargs["filters"] == 4
        post = s[(s.method == method) & (s.depth == depth) & (s.phase == "post")].accuracy.iloc[0]
        tests = out["tests"]
        mine = tests[(tests.method == method) & (tests.depth == depth) & (tests.phase == "post")]
        assert post == pytest.approx(mine.accuracy.mean()) and len(mine) == 3

    def no_training(*a, **k):
        raise AssertionError("a finished sweep must be read back, not retrained")

    monkeypatch.setattr(exp_common, "meta_train", no_training)
    again = depth_sweep(base, tmp_path, depths=(1, 2), methods=methods,
                        per_depth={("MAML", 2): {"alpha": 0.8}}, test_tasks=3, progress=False)
    pd.testing.assert_frame_equal(again["summary"], s)


def test_width_sweep_trains_each_member_and_reports_its_own_scores(tmp_path):
    """Each (depth, width) member is a LinNet of ``depth`` hidden layers of ``width`` units, its
    test rows are that checkpoint's scores on the test tasks (re-scored here), and the summary is
    their mean. Catches: widths or depths mixed up between members, every member built alike,
    members' rows swapped, a summary that is not the mean of its tasks."""
    base = TrainConfig(dataset="synthetic", dataset_kwargs={"dim": 8, "support": 8, "query": 8},
                       model="linnet", model_kwargs={"bias": False}, alpha=0.5, meta_lr=0.05,
                       iterations=3, log_every=1, eval_every=3, eval_tasks=4, device="cpu")
    out = width_sweep(base, tmp_path, depths=(1, 2), widths=(2, 4), test_tasks=5, progress=False)
    s, tests, h = out["summary"], out["tests"], out["history"]
    assert len(s) == 8 and set(zip(s.depth, s.width)) == {(1, 2), (1, 4), (2, 2), (2, 4)}
    assert (s.status == "ok").all() and (s.n == 5).all()
    assert set(h.split) == {"train", "val"} and h.groupby("label").iteration.max().eq(3).all()
    scores = {}
    for d in (1, 2):
        for w in (2, 4):
            label = f"LinNet {d}x{w}"
            learner, cfg = load_learner(tmp_path / slug(label) / "checkpoint.pt")
            shapes = [tuple(p.shape) for p in learner.model.parameters()]
            assert shapes == [(w, 8)] + [(w, w)] * (d - 1) + [(1, w)], (label, shapes)
            again = evaluate(learner, build_task_source(cfg, "test"), steps=cfg.steps, num_tasks=5,
                             seed=1234)
            mine = tests[tests.label == label]
            assert (mine.depth == d).all() and (mine.width == w).all()
            for phase in ("pre", "post"):
                got = mine[mine.phase == phase].sort_values("task").accuracy.to_numpy()
                want = again[again.phase == phase].sort_values("task").accuracy.to_numpy()
                assert got.tolist() == pytest.approx(want.tolist()), (label, phase)
                row = s[(s.label == label) & (s.phase == phase)].iloc[0]
                assert row.accuracy == pytest.approx(want.mean())
                scores[(label, phase)] = tuple(want)
    assert len(set(scores.values())) > 2          # the members really differ


# ---------------------------------------------------------------- plots
def _errorbars(ax):
    """``label -> [x, y, half error]`` (a 3-row array) of every labelled ``ax.errorbar`` line of ``ax``."""
    out = {}
    for c in ax.containers:
        if isinstance(c, ErrorbarContainer) and not c.get_label().startswith("_"):
            xy = c.lines[0].get_xydata()
            segs = c.lines[2][0].get_segments()
            out[c.get_label()] = np.array([xy[:, 0], xy[:, 1],
                                           [(seg[1][1] - seg[0][1]) / 2 for seg in segs]], dtype=float)
    return out


def _bars(ax):
    """Heights, half error bars and tick labels of the bar chart on ``ax``."""
    bars = next(c for c in ax.containers if isinstance(c, BarContainer))
    segs = bars.errorbar.lines[2][0].get_segments()
    return ([p.get_height() for p in bars], [(seg[1][1] - seg[0][1]) / 2 for seg in segs],
            [t.get_text() for t in ax.get_xticklabels()])


def test_layer_probe_plot_draws_the_frame():
    """Catches: panels swapped, bars not in the frame's layer order, the CI not drawn (or a NaN CI
    breaking the plot), reference lines at the wrong accuracies."""
    df = pd.DataFrame([
        dict(condition=NO_ADAPTATION, layer="none", phase="pre", accuracy=.2, ci95=.01),
        dict(condition=FULL_ADAPTATION, layer="all", phase="post", accuracy=.9, ci95=.02),
        dict(condition=FREEZE, layer="C1", phase="post", accuracy=.5, ci95=.03),
        dict(condition=ADAPT, layer="C1", phase="post", accuracy=.4, ci95=.04),
        dict(condition=FREEZE, layer="FC", phase="post", accuracy=.8, ci95=.05),
        dict(condition=ADAPT, layer="FC", phase="post", accuracy=.7, ci95=math.nan)])
    freeze, adapt = plots.plot_layer_probe(df).axes
    assert (freeze.get_title(), adapt.get_title()) == ("Freeze only this", "Adapt only this")
    heights, errs, ticks = _bars(freeze)
    assert heights == pytest.approx([.5, .8]) and errs == pytest.approx([.03, .05]) and ticks == ["C1", "FC"]
    heights, errs, ticks = _bars(adapt)
    assert heights == pytest.approx([.4, .7]) and errs == pytest.approx([.04, 0]) and ticks == ["C1", "FC"]
    refs = {line.get_label(): line.get_ydata()[0] for line in freeze.lines if not line.get_label().startswith("_")}
    assert refs == pytest.approx({NO_ADAPTATION: .2, FULL_ADAPTATION: .9})


def test_noise_and_scaling_plots_draw_accuracy_against_the_sorted_scales():
    """Catches: points in frame order instead of scale order, phases or layers swapped, the
    scale axis labelled with other values than the frame's scales."""
    noise = pd.DataFrame({"layer": "FC", "scale": [2.0, 0.0, 0.0625, 2.0, 0.0, 0.0625],
                          "phase": ["post"] * 3 + ["pre"] * 3,
                          "accuracy": [.3, .9, .8, .1, .5, .4], "ci95": [.01, .02, .03, .04, .05, .06]})
    ax = plots.plot_noise_probe(noise).axes[0]
    lines = _errorbars(ax)
    assert lines["post-adaptation"] == pytest.approx(np.array([[0, 1, 2], [.9, .8, .3], [.02, .03, .01]]))
    assert lines["pre-adaptation"] == pytest.approx(np.array([[0, 1, 2], [.5, .4, .1], [.05, .06, .04]]))
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "$2^{-4}$", "$2^{1}$"]
    scaling = pd.DataFrame({"layer": ["C2"] * 4 + ["FC"] * 4, "when": ["pre", "pre", "post", "post"] * 2,
                            "scale": [4.0, 1.0] * 4, "phase": "post",
                            "accuracy": [.1, .6, .5, .6, .2, .7, .7, .7], "ci95": .01})
    c2, fc = plots.plot_scaling_probe(scaling).axes
    assert (c2.get_title(), fc.get_title()) == ("Scaling C2", "Scaling FC")
    pre, post = plots.SCALED_WHEN["pre"], plots.SCALED_WHEN["post"]
    assert _errorbars(c2)[pre][1] == pytest.approx([.6, .1])
    assert _errorbars(c2)[post][1] == pytest.approx([.6, .5])
    assert _errorbars(fc)[pre][1] == pytest.approx([.7, .2])
    assert [t.get_text() for t in fc.get_xticklabels()] == ["$2^{0}$", "$2^{2}$"]


def test_pruning_depth_and_width_plots_draw_the_frame():
    """Catches: the infinite threshold plotted, counts from the wrong ``when``, the target line
    missing, pre-adaptation rows in the depth plot, the width plot showing the training split
    or putting a width's curve in the wrong depth's panel."""
    pruning = pd.DataFrame({"threshold": [0.2, 0.0, math.inf, 0.1] * 2,
                            "when": ["post"] * 4 + ["pre"] * 4, "phase": "post",
                            "accuracy": [.3, .9, .1, .6, .2, .8, .1, .5], "ci95": .01,
                            "nonzero": [500, 1000, 100, 800, 400, 1000, 100, 700]})
    ax, twin = plots.plot_pruning_probe(pruning, target=600).axes
    lines = _errorbars(ax)
    assert lines["post-adaptation pruning"][:2] == pytest.approx(np.array([[0, .1, .2], [.9, .6, .3]]))
    assert lines["pre-adaptation pruning"][:2] == pytest.approx(np.array([[0, .1, .2], [.8, .5, .2]]))
    counts = {line.get_label(): line.get_xydata().ravel().tolist() for line in twin.lines}
    assert counts["nonzero params"] == pytest.approx([0, 1000, .1, 800, .2, 500])
    assert counts["target 600"][1::2] == pytest.approx([600, 600])
    depth = pd.DataFrame({"method": ["MAML"] * 4 + ["KFC"] * 2, "depth": [2, 1, 2, 1, 2, 1],
                          "phase": ["post", "post", "pre", "pre", "post", "post"],
                          "accuracy": [.6, .3, .1, .1, .9, .6], "ci95": .02})
    ax = plots.plot_depth_sweep(depth).axes[0]
    lines = _errorbars(ax)
    assert set(lines) == {"CNN w/ MAML", "CNN w/ KFC"}
    assert lines["CNN w/ MAML"] == pytest.approx(np.array([[1, 2], [.3, .6], [.02, .02]]))
    assert lines["CNN w/ KFC"] == pytest.approx(np.array([[1, 2], [.6, .9], [.02, .02]]))
    history = pd.DataFrame({"iteration": [1, 2] * 6, "split": ["train"] * 4 + ["val"] * 8,
                            "phase": ["post"] * 12, "depth": [1] * 8 + [2] * 4,
                            "width": [2, 2, 4, 4, 2, 2, 4, 4, 2, 2, 4, 4],
                            "accuracy": [.0, .0, .0, .0, .5, .6, .7, .8, .2, .3, .4, .9]})
    d1, d2 = plots.plot_width_sweep(history).axes
    curves = {(ax.get_title(), line.get_label()): line.get_xydata().ravel().tolist()
              for ax in (d1, d2) for line in ax.lines}
    assert curves == ({("1 hidden layer", "w=2"): [1, .5, 2, .6],
                       ("1 hidden layer", "w=4"): [1, .7, 2, .8],
                       ("2 hidden layers", "w=2"): [1, .2, 2, .3],
                       ("2 hidden layers", "w=4"): [1, .4, 2, .9]})  # the frame's values, copied
