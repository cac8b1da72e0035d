"""Notebooks: committed clean, parameterised, and each runs end to end at scale=smoke."""
import json
from pathlib import Path

import pandas as pd
import pytest

from maml_probe.experiments.registry import EXPERIMENTS
from maml_probe.runner import NOTEBOOKS, notebook_parameters, run_notebook

from .conftest import SHARED_DATA
from .data_fixtures import make_cifar100

ALL = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))


def test_every_experiment_has_a_notebook():
    assert {e.notebook for e in EXPERIMENTS.values()} <= set(ALL)
    assert {"report.ipynb", "explore.ipynb"} <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_notebook_is_committed_without_outputs_and_is_parameterised(name):
    nb = json.loads((NOTEBOOKS / name).read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), name
    assert nb["cells"][0]["cell_type"] == "markdown"
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{name} needs exactly one cell tagged 'parameters'"
    # thin notebooks: no training loops or model definitions inside
    source = "".join("".join(c["source"]) for c in code)
    for forbidden in ("backward(", "class ", "optimizer.step", "autograd"):
        assert forbidden not in source, f"{name} holds logic ({forbidden!r}); move it to the package"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One prepared-data cache for all notebook runs of this module (built once)."""
    return tmp_path_factory.mktemp("cache")


def _data_params(exp, tmp_path, cache):
    """Parameters that point an experiment at data: the real copies, or a generated CIFAR-FS."""
    if not exp.datasets:
        return {}
    if "omniglot" in exp.datasets or "miniimagenet" in exp.datasets:
        if not SHARED_DATA.is_dir():
            pytest.skip(f"{exp.id} reads real Omniglot/mini-ImageNet, not found at {SHARED_DATA}")
        return {"data_root": str(SHARED_DATA), "cache_dir": str(cache), "dataset": "omniglot"}
    make_cifar100(tmp_path / "data" / "cifar-fs")
    return {"data_root": str(tmp_path / "data"), "cache_dir": str(tmp_path / "cache"),
            "dataset": "cifarfs"}


@pytest.mark.parametrize("exp_id", list(EXPERIMENTS))
def test_experiment_notebook_runs_at_smoke_scale(exp_id, tmp_path, cache):
    exp = EXPERIMENTS[exp_id]
    declared = notebook_parameters(exp)
    params = {k: v for k, v in _data_params(exp, tmp_path, cache).items() if k in declared}
    outcome = run_notebook(exp, "smoke", params, root=tmp_path / "runs", progress=False)
    assert outcome.ok, outcome.error
    record = json.loads((outcome.run_dir / "record.json").read_text())
    assert record["status"] == "ok" and record["scale"] == "smoke" and record["wall_time_s"] > 0
    assert (outcome.run_dir / exp.notebook).exists()
    if (outcome.run_dir / "results.csv").exists():
        results = pd.read_csv(outcome.run_dir / "results.csv")
        assert len(results) and results["accuracy"].between(0, 100).all()
    assert list((outcome.run_dir / "figures").glob("*.png")), "no figure was saved"


def test_cifarfs_experiment_runs_on_generated_archive(tmp_path):
    make_cifar100(tmp_path / "data" / "cifar-fs")
    params = {"data_root": str(tmp_path / "data"), "cache_dir": str(tmp_path / "cache"),
              "dataset": "cifarfs", "methods": ["maml", "kfc"], "upper_bound": False}
    outcome = run_notebook(EXPERIMENTS["E7"], "smoke", params, root=tmp_path / "runs", progress=False)
    assert outcome.ok, outcome.error
    results = pd.read_csv(outcome.run_dir / "results.csv")
    assert set(results["method"]) == {"SCNN w/ MAML", "SCNN w/ KFC"}
    assert (results["dataset"] == "cifarfs").all()


def test_failing_notebook_reports_the_cell_and_error(tmp_path):
    outcome = run_notebook(EXPERIMENTS["E1"], "smoke", {"overrides": {"alpha": -1.0}},
                           root=tmp_path / "runs", progress=False)
    assert not outcome.ok
    assert "alpha must be a positive number" in outcome.error
    record = json.loads((outcome.run_dir / "record.json").read_text())
    assert record["status"] == "failed"


def test_unknown_parameter_is_refused_before_running(tmp_path):
    with pytest.raises(ValueError, match="has no parameter"):
        run_notebook(EXPERIMENTS["E1"], "smoke", {"sead": 1}, root=tmp_path, progress=False)
    assert not (tmp_path / "E1").exists()
