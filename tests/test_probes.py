"""Probes (issue #5): exact invariances, no mutation of the learner, sweeps, checkpoint, plots."""
import math

import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from maml_probe.experiments import common as exp_common
from maml_probe import train as train_mod
from maml_probe.learner import MetaLearner
from maml_probe.models import ConvNet, LinNet, count_parameters
from maml_probe.probes import (adapt_mask_for, count_nonzero, depth_sweep, layer_names,
                               layer_probe, load_probe_setup, noise_probe, perturb, prune,
                               pruning_probe, scaling_probe, scnn_parameter_count, select_params,
                               threshold_for_count, width_sweep)
from maml_probe.probes import plots
from maml_probe.probes.common import clone_params, run_condition
from maml_probe.rules import make_rule
from maml_probe.tasks.base import TaskBatch
from maml_probe.tasks.synthetic import SyntheticBinaryTasks
from maml_probe.train import TrainConfig, meta_train

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
def test_freezing_every_layer_gives_pre_adaptation_accuracy(baseline, src):
    learner, base = baseline
    df = run_condition(learner, src, params=clone_params(learner), adapt_mask=adapt_mask_for(learner.model, []),
                       **{k: v for k, v in FAST.items() if k != "progress"})
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
    post = pruning_probe(learner, src, thresholds=(t,), when="post", summary=False, **FAST)
    assert post.nonzero_pruned.between(0.4 * count_nonzero(init, names), 0.6 * count_nonzero(init, names)).all()


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
    assert setup.steps == STEPS and setup.config == cfg
    layers = layer_probe(setup.learner, setup.source, steps=setup.steps, num_tasks=4, progress=False)
    assert len(layers) == 2 + 2 * 5 and layers.accuracy.between(0, 1).all()
    noise = noise_probe(setup.learner, setup.source, steps=setup.steps, num_tasks=4, scales=(0.0, 0.5),
                        draws=1, progress=False)
    assert len(noise) == 4
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

    def no_training(*a, **k):
        raise AssertionError("a finished sweep must be read back, not retrained")

    monkeypatch.setattr(exp_common, "meta_train", no_training)
    again = depth_sweep(base, tmp_path, depths=(1, 2), methods=methods,
                        per_depth={("MAML", 2): {"alpha": 0.8}}, test_tasks=3, progress=False)
    pd.testing.assert_frame_equal(again["summary"], s)


def test_width_sweep_on_synthetic_tasks(tmp_path):
    base = TrainConfig(dataset="synthetic", dataset_kwargs={"dim": 8, "support": 8, "query": 8},
                       model="linnet", model_kwargs={"bias": False}, alpha=0.5, meta_lr=0.05,
                       iterations=3, log_every=1, eval_every=3, eval_tasks=4, device="cpu")
    out = width_sweep(base, tmp_path, depths=(1, 2), widths=(2, 4), test_tasks=5, progress=False)
    s = out["summary"]
    assert len(s) == 8 and set(zip(s.depth, s.width)) == {(1, 2), (1, 4), (2, 2), (2, 4)}
    h = out["history"]
    assert set(h.split) == {"train", "val"} and {"depth", "width"} <= set(h.columns)
    fig = plots.plot_width_sweep(h)
    assert isinstance(fig, Figure) and len(fig.axes) == 2


# ---------------------------------------------------------------- plots
def test_plot_helpers_return_figures(src, baseline):
    learner, _ = baseline
    figs = [
        plots.plot_layer_probe(layer_probe(learner, src, layers=["C1", "FC"], **FAST)),
        plots.plot_noise_probe(noise_probe(learner, src, scales=(0.0, 0.5), draws=1, **FAST)),
        plots.plot_scaling_probe(scaling_probe(learner, src, factors=(1.0, 2.0), layers=["C1", "FC"], **FAST)),
        plots.plot_pruning_probe(pruning_probe(learner, src, thresholds=(0.0, 0.1, math.inf), **FAST),
                                 target=1000),
        plots.plot_depth_sweep(pd.DataFrame({"method": ["MAML", "MAML", "KFC", "KFC"], "depth": [1, 2, 1, 2],
                                             "phase": "post", "accuracy": [.3, .6, .6, .9], "ci95": .02})),
    ]
    assert [len(f.axes) for f in figs] == [2, 1, 2, 2, 1]
    assert all(isinstance(f, Figure) for f in figs)
