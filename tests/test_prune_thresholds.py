"""Table A1's PRUNE threshold: computed for the SCNN's size (default), the paper's, or a number."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch

try:
    from data_fixtures import make_cifar100
except ImportError:  # tests/ imported as a package
    from tests.data_fixtures import make_cifar100

from maml_probe.data.registry import paper_datasets
from maml_probe.experiments import e8_cholesky_pruning as e8
from maml_probe.experiments.registry import EXPERIMENTS
from maml_probe.models import ConvNet
from maml_probe.paper import PRUNE_THRESHOLDS
from maml_probe.probes import scnn_parameter_count, select_params, threshold_for_count
from maml_probe.probes.common import count_nonzero
from maml_probe.probes.pruning import choose_threshold, prune, threshold_rule
from maml_probe.runner import NOTEBOOKS, notebook_defaults

#: Figure A.3's caption: "0.30 (Omniglot), 0.5 (CIFAR-FS), and 0.075 (mini-ImageNet)".
PAPER = {"omniglot": 0.30, "cifarfs": 0.5, "miniimagenet": 0.075}


def _cnn():
    torch.manual_seed(0)
    model = ConvNet("omniglot", 4, 10)
    params = {k: v.detach() for k, v in model.named_parameters()}
    return model, params, frozenset(select_params(model, None, "weight"))


def test_paper_thresholds_are_figure_a3s():
    assert PRUNE_THRESHOLDS == PAPER and set(PRUNE_THRESHOLDS) == set(paper_datasets())


@pytest.mark.parametrize("dataset", sorted(PAPER))
def test_paper_uses_exactly_the_papers_value(dataset):
    """Catches: "paper" computing a threshold, or taking another dataset's value."""
    model, params, names = _cnn()
    assert choose_threshold("paper", params, names, 123, dataset) == (PAPER[dataset], "paper")


def test_scnn_size_is_the_default_and_a_number_is_used_as_given():
    model, params, names = _cnn()
    target = scnn_parameter_count(model)
    computed = threshold_for_count(params, target, names)
    assert choose_threshold("scnn-size", params, names, target, "omniglot") == (computed, "scnn-size")
    assert choose_threshold(None, params, names, target, "omniglot") == (computed, "scnn-size")
    assert count_nonzero(prune(params, names, computed)) == target
    assert choose_threshold(0.2, params, names, target, "omniglot") == (0.2, "value")
    assert choose_threshold(1, params, names, target, "omniglot") == (1.0, "value")


@pytest.mark.parametrize("choice,dataset", [("bogus", "omniglot"), (0, "omniglot"), (-0.1, "cifarfs"),
                                            (math.inf, "omniglot"), (math.nan, "omniglot"),
                                            (True, "omniglot"), ("paper", "synthetic")])
def test_bad_choices_are_refused(choice, dataset):
    with pytest.raises(ValueError, match="prune_threshold"):
        threshold_rule(choice, dataset)


def test_a_bad_choice_fails_before_any_training(monkeypatch):
    def no_training(*a, **k):
        raise AssertionError("trained before checking prune_threshold")

    monkeypatch.setattr(e8, "run_methods", no_training)
    with pytest.raises(ValueError, match="prune_threshold"):
        e8.run("smoke", None, dataset="cifarfs", methods=("maml",), prune_threshold="bogus")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("e8")
    make_cifar100(base / "data" / "cifar-fs")
    return {"data_root": str(base / "data"), "cache_dir": str(base / "cache")}


def _prune_row(out):
    rows = out["results"]
    return rows[rows["method"] == e8.PRUNE_LABEL].iloc[0]


def test_e8_records_the_threshold_and_the_parameter_count_of_each_choice(data, tmp_path):
    """Catches: the PRUNE row without its threshold or count, "paper" not applied in E8, and a
    sweep stored for another threshold read back (the row would have nothing to read)."""
    kw = dict(dataset="cifarfs", methods=("maml",), device="cpu", progress=False, **data)
    run_dir = tmp_path / "run"
    default = e8.run("smoke", run_dir, **kw)
    row = _prune_row(default)
    sweep = default["pruning"]
    assert row["threshold_rule"] == "scnn-size"
    assert row["threshold"] == sweep.loc[sweep["is_target"], "threshold"].iloc[0]
    assert row["target_nonzero"] == sweep["target_nonzero"].iloc[0] == 10_437  # 5-way SCNN
    assert row["nonzero"] == pytest.approx(row["target_nonzero"], rel=0.1)
    assert row["total"] > row["nonzero"]

    paper = e8.run("smoke", run_dir, prune_threshold="paper", **kw)  # same models, new threshold
    row = _prune_row(paper)
    sweep = paper["pruning"]
    at = sweep[sweep["is_target"]]
    assert row["threshold"] == PAPER["cifarfs"] and row["threshold_rule"] == "paper"
    assert len(at) == 1 and at["threshold"].iloc[0] == pytest.approx(0.5)
    assert row["nonzero"] == at["nonzero"].iloc[0] and row["accuracy"] == 100 * at["accuracy"].iloc[0]
    assert (sweep["threshold_rule"] == "paper").all()
    stored = pd.read_csv(run_dir / "pruning.csv")
    assert stored["threshold"].round(12).isin([0.5]).any()

    value = _prune_row(e8.run("smoke", run_dir, prune_threshold=0.05, **kw))
    assert value["threshold"] == 0.05 and value["threshold_rule"] == "value"
    assert row["nonzero"] <= value["nonzero"]  # a higher threshold leaves fewer parameters


def test_the_notebook_exposes_the_choice_and_passes_it():
    assert notebook_defaults(EXPERIMENTS["E8"])["prune_threshold"] is None  # None: "scnn-size"
    nb = json.loads((NOTEBOOKS / EXPERIMENTS["E8"].notebook).read_text())
    calls = "".join("".join(c["source"]) for c in nb["cells"]
                    if c["cell_type"] == "code" and "parameters" not in c["metadata"].get("tags", []))
    assert "prune_threshold=prune_threshold" in calls
