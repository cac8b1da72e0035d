"""The experiments' ``paper``-scale configs against the paper's hyper-parameters (Appendix A.1).

The expected values are written out here from the paper's text (A.1.1 linear models, A.1.2
non-linear models, and Table A3's model sizes), not taken from the package's own tables, so a
mistyped rate, a swapped model or a scale that leaks into ``paper`` fails.
"""
import pytest

from maml_probe.data.registry import get_spec
from maml_probe.data.spec import PaperEpisode, PaperSettings
from maml_probe.experiments import e1_synthetic, e2_omniglot_linear, e7_meta_optimizers, e8_cholesky_pruning
from maml_probe.experiments.settings import image_config, method_label, num_test_tasks
from maml_probe.train import learner_from_config

# A.1.1, synthetic: 30,000 its of plain SGD, meta-batch 1, the 1-step MAML loss; d = 100.
# label -> (model, model_kwargs, rule, rule_kwargs, meta lr, adaptation lr, optimizer params)
SYNTHETIC = {
    "LR w/ MAML": ("lr", {"bias": False}, "maml", {}, 0.01, 0.5, 0),
    "LR+LinNet w/ MAML": ("linnet", {"widths": [64, 64, 64], "bias": False}, "maml", {}, 1.9, 1.9, 0),
    "LR w/ KLin": ("lr", {"bias": False}, "klin", {}, 3.33, 3.33, 10_001),      # m = 100, n = 1
    "LR w/ KFC": ("lr", {"bias": False}, "kfc", {"layers": 2}, 3.9, 3.9, 20_002),  # 1 hidden ReLU
}
# A.1.1, Omniglot: Adam, 60,000 its of 32 tasks, 5-way 1-shot, 2 steps.
OMNIGLOT_LINEAR = {
    "LR w/ MAML": ("lr", "maml", {}, 0.0005, 1.0),
    "LR+LinNet w/ MAML": ("linnet", "maml", {}, 0.0005, 0.08),
    "LR w/ KLin": ("lr", "klin", {}, 0.003, 0.9),
    "LR w/ KFC": ("lr", "kfc", {"layers": 4}, 0.001, 0.01),
}
# A.1.2: (ways, shots, steps, meta lr), adaptation lr of CNN, SCNN, MSGD, MC, KFC.
IMAGE = {
    "omniglot": ((10, 5, 4, 0.003), {"cnn": 0.5, "scnn": 0.8, "metasgd": 0.5, "mc": 0.5, "kfc": 0.5}),
    "cifarfs": ((10, 3, 2, 0.003), {"cnn": 0.7, "scnn": 0.7, "metasgd": 0.5, "mc": 0.5, "kfc": 0.5}),
    "miniimagenet": ((10, 1, 5, 0.0005),
                     {"cnn": 0.07, "scnn": 0.07, "metasgd": 0.1, "mc": 0.09, "kfc": 0.005}),
}
# A.1.2 / Table A3: parameters of the 10-way 4-conv CNN and 2-conv SCNN.
MODEL_PARAMS = {"omniglot": (112_586, 38_474), "cifarfs": (29_226, 10_602),
                "miniimagenet": (36_906, 18_282)}


def test_e1_paper_configs_are_appendix_a11():
    """Catches: a swapped meta/adaptation rate, the CPU scale's lowered meta lr (0.1) leaking into
    ``paper``, Adam instead of plain SGD, more than one step or task, biases, the wrong KFC depth."""
    cfgs = e1_synthetic.configs("paper")
    assert list(cfgs) == list(SYNTHETIC)
    for label, (model, model_kwargs, rule, rule_kwargs, meta_lr, alpha, opt_params) in SYNTHETIC.items():
        c = cfgs[label]
        assert (c.dataset, c.dataset_kwargs["dim"]) == ("synthetic", 100), label
        assert (c.model, c.model_kwargs, c.rule, c.rule_kwargs) == (model, model_kwargs, rule, rule_kwargs), label
        assert (c.meta_lr, c.alpha) == (meta_lr, alpha), label
        assert (c.outer_optimizer, c.meta_batch, c.steps, c.iterations) == ("sgd", 1, 1, 30_000), label
        assert not c.first_order
        counts = learner_from_config(c).param_counts()
        assert counts["optimizer_params"] == opt_params, label
        if model == "lr":
            assert counts["model_params"] == 100, label          # w in R^100, no bias


def test_e2_paper_configs_are_appendix_a11():
    """Catches: any of the four rate pairs mistyped or swapped, 5-way 1-shot / 2 steps / 32 tasks /
    60,000 Adam iterations not kept at ``paper`` scale, the LinNet's widths, KLin's size."""
    cfgs = e2_omniglot_linear.configs("paper")
    assert list(cfgs) == list(OMNIGLOT_LINEAR)
    for label, (model, rule, rule_kwargs, meta_lr, alpha) in OMNIGLOT_LINEAR.items():
        c = cfgs[label]
        assert (c.dataset, c.model, c.rule, c.rule_kwargs) == ("omniglot", model, rule, rule_kwargs), label
        assert (c.meta_lr, c.alpha) == (meta_lr, alpha), label
        assert (c.ways, c.shots, c.steps) == (5, 1, 2), label
        assert (c.outer_optimizer, c.meta_batch, c.iterations) == ("adam", 32, 60_000), label
    assert cfgs["LR+LinNet w/ MAML"].model_kwargs["widths"] == [256, 128, 64, 64]
    klin = learner_from_config(cfgs["LR w/ KLin"]).param_counts()["optimizer_params"]
    kfc = learner_from_config(cfgs["LR w/ KFC"]).param_counts()["optimizer_params"]
    assert klin == 784 ** 2 + 5 ** 2                     # "614k parameters, m = 784, n = 5"
    assert round(kfc / 100_000) / 10 == 2.5              # "2.5M parameters"


@pytest.mark.parametrize("dataset", sorted(IMAGE))
def test_e7_and_e8_paper_configs_are_appendix_a12(dataset):
    """Catches: a rate of one dataset used for another, the SCNN given the CNN's rate (Omniglot
    0.8 vs 0.5), KFC without its 4 layers or gradient normalisation, CFC's rank, the paper scale
    not training 60,000 Adam iterations, fewer than the paper's 600 test tasks."""
    (ways, shots, steps, meta_lr), alpha = IMAGE[dataset]
    e7 = e7_meta_optimizers.configs("paper", dataset=dataset)
    e8 = e8_cholesky_pruning.METHODS
    assert list(e7) == ["SCNN w/ MAML", "SCNN w/ MSGD", "SCNN w/ MC", "SCNN w/ KFC"]
    assert {"maml", "cfc1", "cfc10", "kfc"} <= set(e8)          # Table A1's rows (and maybe more)
    expected_alpha = {"SCNN w/ MAML": alpha["scnn"], "SCNN w/ MSGD": alpha["metasgd"],
                      "SCNN w/ MC": alpha["mc"], "SCNN w/ KFC": alpha["kfc"]}
    for label, c in e7.items():
        assert c.alpha == expected_alpha[label], label
    for model in ("cnn", "scnn"):
        for method in ("maml", "metasgd", "mc", "kfc", "cfc1", "cfc10"):
            c = image_config(dataset, model, method, "paper")
            assert (c.dataset, c.model, c.ways, c.shots, c.steps) == (dataset, model, ways, shots, steps)
            assert (c.meta_lr, c.outer_optimizer, c.iterations) == (meta_lr, "adam", 60_000)
            key = model if method == "maml" else ("kfc" if method.startswith("cfc") else method)
            assert c.alpha == alpha[key], (model, method)       # CFC: KFC's rate (our choice)
            if method == "kfc":   # A.1.2: 4 layers, gradient scaled to unit norm and back
                assert (c.rule_kwargs.get("layers"), c.rule_kwargs.get("normalize")) == (4, True)
            if method.startswith("cfc"):
                assert (c.rule, c.rule_kwargs.get("rank")) == ("cfc", int(method[3:]))
        counts = learner_from_config(image_config(dataset, model, "maml", "paper")).param_counts()
        assert counts["model_params"] == MODEL_PARAMS[dataset][model == "scnn"], (dataset, model)
    assert num_test_tasks("paper") == 600


def test_method_labels_are_the_papers_row_names():
    assert [method_label("scnn", m) for m in ("maml", "metasgd", "mc", "kfc", "cfc1", "cfc10")] == [
        "SCNN w/ MAML", "SCNN w/ MSGD", "SCNN w/ MC", "SCNN w/ KFC", "SCNN w/ CFC1", "SCNN w/ CFC10"]
    assert method_label("cnn", "kfc", depth=3) == "CNN3 w/ KFC"


def test_smaller_scales_shrink_only_the_episode_and_the_run():
    """Catches: ``cpu``/``smoke`` changing the models or rates (they must show the same methods)."""
    for scale in ("cpu", "smoke"):
        for dataset in IMAGE:
            c = image_config(dataset, "scnn", "kfc", scale)
            p = image_config(dataset, "scnn", "kfc", "paper")
            assert (c.model, c.rule, c.rule_kwargs, c.alpha, c.meta_lr) == (
                p.model, p.rule, p.rule_kwargs, p.alpha, p.meta_lr)
            assert c.iterations < p.iterations and c.ways <= p.ways
    assert num_test_tasks("smoke") < num_test_tasks("cpu") == num_test_tasks("paper") == 600


@pytest.mark.parametrize("dataset", IMAGE)
def test_cpu_scale_keeps_the_papers_episode_and_cuts_only_the_outer_loop(dataset):
    """Catches: the ``cpu`` scale changing the episode (ways, shots, queries, steps), so that
    its numbers could not be set beside the paper's (A.1.2: Omniglot 10w5s 4 steps, CIFAR-FS
    10w3s 2 steps, mini-ImageNet 10w1s 5 steps)."""
    c = image_config(dataset, "cnn", "maml", "cpu")
    p = image_config(dataset, "cnn", "maml", "paper")
    episode = ("ways", "shots", "queries", "steps", "meta_lr", "alpha")
    assert {k: getattr(c, k) for k in episode} == {k: getattr(p, k) for k in episode}
    expected = {"omniglot": (10, 5, 4), "cifarfs": (10, 3, 2), "miniimagenet": (10, 1, 5)}[dataset]
    assert (c.ways, c.shots, c.steps) == expected
    cut = get_spec(dataset).paper.cpu
    assert (c.iterations, c.meta_batch) == (cut["iterations"], cut["meta_batch"])
    assert c.meta_batch <= p.meta_batch and c.iterations < p.iterations


def test_the_default_depth_is_the_model_itself():
    """Catches: E6's 4-layer CNN getting another identity than E3's CNN, so the same model is
    trained twice instead of being shared between the experiments."""
    a = image_config("omniglot", "cnn", "maml", "cpu", depth=4)
    b = image_config("omniglot", "cnn", "maml", "cpu")
    assert a.identity_key() == b.identity_key() and not a.differences(b.to_dict())
    assert image_config("omniglot", "cnn", "maml", "cpu", depth=3).identity_key() != b.identity_key()
    # the depth sweep sets depth=4 explicitly: still the same model as E3's CNN
    swept = b.replace(model_kwargs={"depth": 4})
    assert swept.identity_key() == b.identity_key() and not swept.differences(b.to_dict())


def test_dataset_options_add_to_the_data_location():
    """Catches: ``overrides={"dataset_kwargs": {...}}`` dropping ``data_root``/``cache_dir`` (the
    run would then look for the data in the default folder)."""
    cfg = image_config("cifarfs", "scnn", "maml", "cpu", data_root="/d", cache_dir="/c",
                       dataset_kwargs={"normalise": "channel"})
    assert cfg.dataset_kwargs == {"root": "/d", "cache_dir": "/c", "normalise": "channel"}


def test_cpu_test_tasks_follow_the_dataset_where_its_spec_says_so():
    """Catches: mini-ImageNet's ~1 s test tasks (84x84, 150 queries) costing 600 per method at
    ``cpu`` scale, or the spec's choice leaking into the episode or into other datasets."""
    assert num_test_tasks("cpu", "miniimagenet") == 200
    assert num_test_tasks("cpu", "omniglot") == num_test_tasks("cpu") == 600
    assert num_test_tasks("paper", "miniimagenet") == 600
    assert "test_tasks" not in image_config("miniimagenet", "scnn", "maml", "cpu").to_dict()
    with pytest.raises(ValueError, match="test_tasks"):
        PaperSettings(PaperEpisode(ways=2, shots=1, queries=2, steps=1, meta_batch=2, meta_lr=0.1),
                      alpha={}, column=0, cpu={"episodes": 3})
