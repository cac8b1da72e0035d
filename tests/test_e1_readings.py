"""E1's readings of Appendix A.1.1: the options of ``e1_synthetic.configs``, the two accuracies
of ``evaluate_points``, ``measure_reading`` and the ``benchmarks/e1_readings.py`` grid.

* ``points``/``support``: the split of a task's points into adaptation and held-out ones;
* ``labels``: reaches the task source (and stays out of the default config, so old runs resume);
* ``lr_bias``: the bias is in the model's parameter dict exactly when asked, on every layer;
* ``evaluate_points``: held-out accuracy on the query points, adaptation accuracy on the
  support points, under both label encodings; the same tasks as the standard evaluation;
* ``measure_reading``: the divergence iteration, and the bias drift of {-1, 1} targets;
* the benchmark: the fallback after a divergence, and tidy CSVs.
"""
import importlib.util
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from maml_probe.config import build_task_source, learner_from_config
from maml_probe.evaluation import evaluate
from maml_probe.experiments import e1_synthetic
from maml_probe.tasks.base import TaskBatch

ROOT = Path(__file__).resolve().parents[1]


def _readings_script():
    spec = importlib.util.spec_from_file_location("e1_readings", ROOT / "benchmarks" / "e1_readings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- configs
def test_points_split_into_adaptation_and_held_out_points():
    """Catches: support and query swapped, the held-out count not ``points - support``."""
    cfgs = e1_synthetic.configs("smoke", points=1000, support=100, device="cpu")
    for cfg in cfgs.values():
        assert cfg.dataset_kwargs == {"dim": 100, "support": 100, "query": 900}
        b = build_task_source(cfg, "train").sample(2, torch.Generator().manual_seed(0))
        assert b.support_x.shape == (2, 100, 100) and b.query_x.shape == (2, 900, 100)
    assert e1_synthetic.split_points(1000, 500) == (500, 500)
    assert e1_synthetic.configs("smoke", points=1000, support=100, query=900)["LR w/ MAML"] \
        .dataset_kwargs["query"] == 900


@pytest.mark.parametrize("kwargs", [dict(points=1000, support=100, query=300),
                                    dict(points=100, support=100), dict(points=0),
                                    dict(labels="-1/1"), dict(lr_bias="yes")])
def test_bad_options_are_refused(kwargs):
    with pytest.raises(ValueError):
        e1_synthetic.configs("smoke", **kwargs)


def test_defaults_are_unchanged():
    """{0, 1} labels, no bias, 100 + 100 points; ``labels`` stays out of the dataset arguments so
    a checkpoint written before the option still resumes (``TrainConfig.differences``)."""
    for cfg in e1_synthetic.configs("cpu").values():
        assert cfg.dataset_kwargs == {"dim": 100, "support": 100, "query": 100}
        assert cfg.model_kwargs["bias"] is False


def test_pm1_labels_reach_the_task_source():
    """Catches: the option accepted but the source still built with {0, 1} labels."""
    for cfg in e1_synthetic.configs("smoke", labels="pm1").values():
        assert cfg.dataset_kwargs["labels"] == "pm1"
        b = build_task_source(cfg, "train").sample(1, torch.Generator().manual_seed(0))
        assert set(b.support_y.unique().tolist()) == {-1.0, 1.0}
        assert set(b.query_y.unique().tolist()) == {-1.0, 1.0}


@pytest.mark.parametrize("lr_bias", [False, True])
def test_lr_bias_puts_a_bias_in_the_parameter_dict_exactly_when_asked(lr_bias):
    """Catches: the option ignored, LinNet given a bias on some layers only, the
    meta-optimizers not covering the bias (it would then never adapt)."""
    cfgs = e1_synthetic.configs("smoke", lr_bias=lr_bias)
    for label, cfg in cfgs.items():
        learner = learner_from_config(cfg)
        names = [n for n, _ in learner.model.named_parameters()]
        biases = [n for n in names if n.endswith("bias")]
        weights = [n for n in names if n.endswith("weight")]
        assert len(biases) == (len(weights) if lr_bias else 0), (label, names)
        assert ("fc.bias" in names) == lr_bias
        counts = learner.param_counts()
        if label == "LR w/ KLin":  # m = 100, n = 1: 100^2 + 1^2, plus 1 + 1 for the bias
            assert counts["optimizer_params"] == (10_003 if lr_bias else 10_001)
        if label == "LR w/ KFC":
            assert counts["optimizer_params"] == (20_006 if lr_bias else 20_002)


# ---------------------------------------------------------------- evaluate_points
class _FixedSource:
    """Tasks where the adaptation points agree with ``x_0 > 0`` and the held-out ones disagree."""

    input_shape, num_outputs = (3,), 1

    def __init__(self, negative: float):
        self.negative = negative

    def sample(self, n, generator):
        x = torch.randn(n, 8, 3, generator=generator).abs()
        x[:, 4:, 0] *= -1                                   # 4 points on each side of x_0 = 0
        side = torch.tensor([1.0] * 4 + [self.negative] * 4).expand(n, 8)
        flipped = torch.where(side > 0, self.negative, 1.0)
        return TaskBatch(x, side.clone(), x.clone(), flipped)


@pytest.mark.parametrize("negative", [0.0, -1.0])
def test_held_out_and_adaptation_accuracy_are_computed_on_their_own_points(negative):
    """theta_0 = e_0 with a tiny step: right on every adaptation point, wrong on every held-out
    one, under {0, 1} and {-1, 1} labels. Catches: the two point sets swapped, the held-out
    accuracy computed on the adaptation points, an accuracy that fails on -1 labels."""
    cfg = e1_synthetic.configs("smoke", methods=["LR w/ MAML"], dim=3, alpha=1e-9)["LR w/ MAML"]
    learner = learner_from_config(cfg)
    with torch.no_grad():
        learner.model.fc.weight.copy_(torch.tensor([[1.0, 0.0, 0.0]]))
    rows = e1_synthetic.evaluate_points(learner, _FixedSource(negative), num_tasks=3, batch_size=2)
    means = rows.groupby("phase")["accuracy"].mean().to_dict()
    assert means == {"pre": 0.0, "post": 0.0, "pre_support": 1.0, "post_support": 1.0}
    assert len(rows) == 3 * 4 and sorted(rows["task"].unique()) == [0, 1, 2]


def test_evaluate_points_scores_the_tasks_of_the_standard_evaluation():
    """With {0, 1} labels the held-out rows equal :func:`maml_probe.evaluation.evaluate`'s on the
    same seed (same tasks, same adaptation); adaptation accuracy after a step beats held-out."""
    cfg = e1_synthetic.configs("smoke", methods=["LR w/ KLin"], dim=10, support=10,
                               query=20)["LR w/ KLin"]
    torch.manual_seed(0)
    learner = learner_from_config(cfg)
    source = build_task_source(cfg, "test")
    ours = e1_synthetic.evaluate_points(learner, source, num_tasks=30, seed=7)
    ref = evaluate(learner, source, steps=1, num_tasks=30, seed=7)
    for phase in ("pre", "post"):
        a = ours[ours["phase"] == phase].sort_values("task")["accuracy"].to_numpy()
        b = ref[ref["phase"] == phase].sort_values("task")["accuracy"].to_numpy()
        assert a == pytest.approx(b, abs=1e-6)
    means = ours.groupby("phase")["accuracy"].mean()
    assert means["post_support"] > means["post"]


def test_run_reports_held_out_and_adaptation_tables(tmp_path):
    """The held-out table keeps phases pre/post (what the report and notebook checks read); the
    adaptation points get their own table; under pm1 the accuracies are not halved."""
    out = e1_synthetic.run("smoke", tmp_path, progress=False, methods=["LR w/ MAML"], device="cpu",
                           iterations=3, test_tasks=4, labels="pm1", lr_bias=True, points=30,
                           support=10)
    assert set(out["tests"]["phase"]) == set(out["adaptation_tests"]["phase"]) == {"pre", "post"}
    assert len(out["tests"]) == len(out["adaptation_tests"]) == 8
    held = out["summary"].set_index("phase")["accuracy"]
    assert 0.3 < held["pre"] < 0.7                      # about chance, not ~1/4
    assert (out["tests"]["accuracy"] * 20).round(6).mod(1).eq(0).all()          # k / 20 held out
    assert (out["adaptation_tests"]["accuracy"] * 10).round(6).mod(1).eq(0).all()  # k / 10
    assert set(out["ceiling"]["points"]) == {"held-out", "adaptation"}
    assert (out["ceiling"]["labels"] == "pm1").all()


# ---------------------------------------------------------------- measure_reading
def _tiny(label, **kw):
    return e1_synthetic.configs("smoke", methods=[label], dim=10, points=40, support=20,
                                device="cpu", **kw)[label]


def test_measure_reading_records_the_divergence_iteration():
    """Catches: a divergence reported as a number, or its iteration lost."""
    row = e1_synthetic.measure_reading(_tiny("LR w/ KFC", meta_lr=1e30, alpha=1e30, iterations=20),
                                       test_tasks=3)
    assert 1 <= row["diverged_at"] <= 20 and math.isnan(row["acc_post"])
    ok = e1_synthetic.measure_reading(_tiny("LR w/ MAML", iterations=5), test_tasks=3)
    assert math.isnan(ok["diverged_at"]) and 0 <= ok["acc_post"] <= 1
    assert ok["logit_at_origin"] == 0.0                 # no bias: f(0) = 0


def test_pm1_targets_push_the_bias_down_and_01_targets_do_not():
    """``d l / d b = sigmoid(z) - y``: about +1/2 per point with {-1, 1} labels, about 0 with
    {0, 1}; 300 steps at meta rate 0.05 move the pm1 bias far below zero.
    Catches: pm1 labels not reaching the loss, the bias option not reaching the model."""
    pm1 = e1_synthetic.measure_reading(_tiny("LR w/ MAML", labels="pm1", lr_bias=True,
                                             iterations=300, meta_lr=0.05), test_tasks=3)
    zero_one = e1_synthetic.measure_reading(_tiny("LR w/ MAML", labels="01", lr_bias=True,
                                                  iterations=300, meta_lr=0.05), test_tasks=3)
    assert pm1["logit_at_origin"] < -2
    assert abs(zero_one["logit_at_origin"]) < 0.5


# ---------------------------------------------------------------- the benchmark
def test_cell_rows_falls_back_after_a_divergence(monkeypatch):
    """The paper's rates first; a divergence is followed by each fallback until one holds;
    rates at or above the paper's meta rate are not tried."""
    script = _readings_script()
    seen = []

    def fake(cfg, *, test_tasks):
        seen.append((cfg.alpha, cfg.meta_lr))
        diverged = cfg.meta_lr > 0.05
        return {"diverged_at": 7 if diverged else math.nan,
                "acc_post": math.nan if diverged else 0.7, "acc_post_support": 0.9}

    monkeypatch.setattr(script.e1_synthetic, "measure_reading", fake)
    rows = script.cell_rows("pm1", True, "LR w/ KLin", support=10, points=30, iterations=2,
                            fallback_meta_lrs=(0.1, 0.01, 0.001), test_tasks=2)
    assert seen == [(3.33, 3.33), (3.33, 0.1), (3.33, 0.01)]
    assert [r["rates"] for r in rows] == ["paper", "meta_lr=0.1", "meta_lr=0.01"]
    assert all(r["labels"] == "pm1" and r["lr_bias"] is True and r["query"] == 20 for r in rows)
    seen.clear()
    script.cell_rows("01", False, "LR w/ MAML", support=10, points=30, iterations=2,
                     fallback_meta_lrs=(0.1,), test_tasks=2)
    assert seen == [(0.5, 0.01)]


def test_benchmark_writes_tidy_csvs(tmp_path):
    script = _readings_script()
    table = script.main(["--out", str(tmp_path), "--support", "10", "--points", "30",
                         "--lr-iterations", "3", "--budget", "2", "--test-tasks", "2",
                         "--labels", "pm1", "--bias", "0", "1", "--methods", "LR w/ MAML",
                         "--ceiling-tasks", "3", "--jobs", "1"])
    readings = pd.read_csv(tmp_path / "readings.csv")
    assert len(readings) == len(table) == 2
    assert list(readings.columns[:8]) == script.COLUMNS
    assert set(readings["lr_bias"]) == {False, True} and (readings["query"] == 20).all()
    ceiling = pd.read_csv(tmp_path / "ceiling.csv")
    assert set(ceiling["points"]) == {"held-out", "adaptation"} and set(ceiling["labels"]) == {"01", "pm1"}
    assert not (tmp_path / "readings.partial.jsonl").exists()


def test_tidy_orders_rows_as_table_1_with_the_paper_rates_first():
    script = _readings_script()
    rows = pd.DataFrame([
        {"labels": "pm1", "lr_bias": False, "method": "LR w/ MAML", "meta_lr": 0.01},
        {"labels": "01", "lr_bias": True, "method": "LR w/ KFC", "meta_lr": 0.1},
        {"labels": "01", "lr_bias": True, "method": "LR w/ KFC", "meta_lr": 3.9},
        {"labels": "01", "lr_bias": True, "method": "LR+LinNet w/ MAML", "meta_lr": 1.9},
        {"labels": "01", "lr_bias": False, "method": "LR w/ KLin", "meta_lr": 3.33}])
    got = script.tidy(rows)
    assert list(zip(got["method"], got["meta_lr"])) == [
        ("LR w/ KLin", 3.33), ("LR+LinNet w/ MAML", 1.9), ("LR w/ KFC", 3.9), ("LR w/ KFC", 0.1),
        ("LR w/ MAML", 0.01)]
