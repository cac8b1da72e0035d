"""Notebooks: committed clean, parameterised, and each runs end to end at scale=smoke.

Every experiment notebook runs on generated data in the official on-disk formats (what a fresh
clone, or public CI, has: :func:`tests.data_fixtures.make_data_root`), and those that read real
datasets run again on ``../shared/data`` where it exists. Each run's outputs are checked against
each other: every reported accuracy is the mean of the per-task accuracies it summarises (its CI
``1.96 sd / sqrt(n)`` of them), every per-task accuracy is a whole number of query examples, and
the methods, tables and figures are the ones the experiment promises.
"""
import json
import math

import numpy as np
import pandas as pd
import pytest

from maml_probe.experiments.registry import EXPERIMENTS
from maml_probe.experiments.settings import LABEL
from maml_probe.runner import NOTEBOOKS, notebook_defaults, notebook_parameters, run_notebook

from .conftest import SHARED_DATA
from .data_fixtures import make_data_root

ALL = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))

def _labels(defaults):
    """The paper's row names of a notebook's default ``methods`` (``SCNN w/ MSGD``, ``SCNN w/ ANIL``)."""
    assert defaults.get("model", "scnn") == "scnn"
    return {f"SCNN w/ {LABEL.get(m, m.upper())}" for m in defaults["methods"]}


#: What each experiment's smoke run must produce: the report table and its method labels
#: (``None``: no results.csv; a function: of the notebook's parameter defaults, for notebooks
#: whose ``methods`` parameter picks them), the figures it saves, the query examples per task
#: (so every per-task accuracy is k / that), and the test tasks per method.
IMAGE_SMOKE_QUERIES = 5 * 2  # settings.SCALE_EPISODES["smoke"]: 5-way, 2 queries per class
EXPECT = {
    "E1": dict(table="1", methods={"LR w/ MAML", "LR+LinNet w/ MAML", "LR w/ KLin", "LR w/ KFC"},
               figures={"learning_curves", "test_accuracy", "one_step_ceiling"}, queries=100, n=20),
    "E2": dict(table="1", methods={"LR w/ MAML", "LR+LinNet w/ MAML", "LR w/ KLin", "LR w/ KFC"},
               figures={"learning_curves", "test_accuracy"}, queries=5 * 1, n=10),
    "E3": dict(table=None, methods=None, figures={"layers", "noise", "scaling"},
               queries=IMAGE_SMOKE_QUERIES, n=4),
    "E6": dict(table="A2", methods={"CNN1 w/ MAML", "CNN2 w/ MAML", "CNN1 w/ KFC", "CNN2 w/ KFC"},
               figures={"depth"}, queries=IMAGE_SMOKE_QUERIES, n=4),
    "E7": dict(table="2", methods=lambda d: _labels(d) | {"SCNN upper bound"},
               figures={"learning_curves", "test_accuracy"}, queries=IMAGE_SMOKE_QUERIES, n=4),
    "E8": dict(table="A1", methods=lambda d: _labels(d) | {"CNN pruned to SCNN size"},
               figures={"test_accuracy", "pruning"}, queries=IMAGE_SMOKE_QUERIES, n=4),
    "E9": dict(table=None, methods=None, figures={"width"}, queries=100, n=10),
    "E11": dict(table=None, methods=None, figures={"time_per_meta_batch"}, queries=None, n=None),
    "E12": dict(table="E12", methods=_labels,
                figures={"presets", "similarity_cka", "similarity_svcca", "linear_cosines",
                         "linear_spectrum", "cnn_cosines", "cnn_spectrum"},
                queries=IMAGE_SMOKE_QUERIES, n=4),
}
#: The dataset each data-reading notebook reads from the generated root: together they cover
#: all three on-disk loaders (E2 has no ``dataset`` parameter: Omniglot).
GENERATED_DATASET = {"E2": "omniglot", "E3": "cifarfs", "E6": "omniglot", "E7": "cifarfs",
                     "E8": "miniimagenet", "E12": "cifarfs"}
RUNS = ([(e, "none") for e, x in EXPERIMENTS.items() if not x.datasets]
        + [(e, "generated") for e, x in EXPERIMENTS.items() if x.datasets]
        + [(e, "real") for e, x in EXPERIMENTS.items() if x.datasets])


def test_every_experiment_has_a_notebook():
    assert {e.notebook for e in EXPERIMENTS.values()} <= set(ALL)
    assert {"report.ipynb", "explore.ipynb"} <= set(ALL)


def test_every_experiment_is_covered_by_the_smoke_runs():
    """A new experiment (or one that starts reading data) must get expectations and a dataset."""
    assert set(EXPECT) == set(EXPERIMENTS)
    assert set(GENERATED_DATASET) == {e for e, x in EXPERIMENTS.items() if x.datasets}
    assert all(d in EXPERIMENTS[e].datasets for e, d in GENERATED_DATASET.items())


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
    """One prepared-data cache for all real-data notebook runs of this module (built once)."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A generated data root with every on-disk dataset, and its cache (each built once)."""
    root = tmp_path_factory.mktemp("generated")
    return make_data_root(root / "data"), root / "cache"


def _data_params(exp_id, data, request):
    """Parameters that point an experiment at its data (``{}`` for one that reads none)."""
    if data == "none":
        return {}, None
    if data == "real":
        if not SHARED_DATA.is_dir():
            pytest.skip(f"{exp_id} on real data: no datasets at {SHARED_DATA} (the generated run "
                        f"covers a fresh clone)")
        return {"data_root": str(SHARED_DATA), "cache_dir": str(request.getfixturevalue("cache")),
                "dataset": "omniglot"}, "omniglot"
    root, cache_dir = request.getfixturevalue("generated")
    dataset = GENERATED_DATASET[exp_id]
    return {"data_root": str(root), "cache_dir": str(cache_dir), "dataset": dataset}, dataset


def _per_task(exp_id, run_dir):
    """``(method label, per-task post-adaptation accuracies)`` of each method in tests.csv."""
    tests = pd.read_csv(run_dir / "tests.csv")
    post = tests[tests["phase"] == "post"]
    if exp_id == "E6":  # the sweep's rows carry method and depth; results name them CNN<d> w/ ...
        labels = "CNN" + post["depth"].astype(int).astype(str) + " w/ " + post["method"]
    elif exp_id == "E9":
        labels = post["label"]
    else:
        labels = post["method"]
    return tests, {k: g["accuracy"].to_numpy() for k, g in post.groupby(labels)}


#: Table A3's model sizes (10-way) and the features each model's FC layer reads.
TABLE_A3_MODELS = {("omniglot", "CNN"): (112_586, 64), ("omniglot", "SCNN"): (38_474, 64),
                   ("cifarfs", "CNN"): (29_226, 32), ("cifarfs", "SCNN"): (10_602, 32),
                   ("miniimagenet", "CNN"): (36_906, 800), ("miniimagenet", "SCNN"): (18_282, 800)}


def check_compute_table(methods):
    """E11: the 18 rows of Table A3 in its order; at smoke scale the episodes are 5-way, so each
    model is the paper's 10-way one less 5 FC rows (``5 * (features + 1)`` parameters); MAML has
    no optimizer parameters and every other rule has some."""
    rows = ["CNN w/ MAML", "CNN w/ KFC", "SCNN w/ MAML", "SCNN w/ KFC", "SCNN w/ CFC1", "SCNN w/ CFC10"]
    assert list(zip(methods["dataset"], methods["method"])) == [
        (d, m) for d in ("omniglot", "cifarfs", "miniimagenet") for m in rows]
    assert (methods["status"] == "ok").all() and (methods["ways"] == 5).all()
    for row in methods.itertuples():
        paper, features = TABLE_A3_MODELS[(row.dataset, row.method.split(" ")[0])]
        assert row.model_params == paper - 5 * (features + 1), row
        assert (row.optimizer_params == 0) == row.method.endswith("MAML"), row


def check_run_outputs(exp_id, run_dir, dataset):
    """The cross-checks of one finished smoke run (see the module docstring)."""
    want = EXPECT[exp_id]
    figures = {p.stem for p in (run_dir / "figures").glob("*.png")}
    assert figures == want["figures"], figures
    assert figures == {p.stem for p in (run_dir / "figures").glob("*.svg")}
    if want["queries"] is not None:
        tests, per_task = _per_task(exp_id, run_dir)
        nq = want["queries"]
        scaled = tests["accuracy"].to_numpy() * nq
        assert np.allclose(scaled, np.round(scaled), atol=1e-3), "accuracy is not k / queries"
        assert set(tests["phase"]) == {"pre", "post"}
        assert all(len(v) == want["n"] for v in per_task.values()), {k: len(v) for k, v in per_task.items()}
    if exp_id == "E11":
        check_compute_table(pd.read_csv(run_dir / "methods.csv"))
    if want["table"] is None:
        assert not (run_dir / "results.csv").exists()
        return
    results = pd.read_csv(run_dir / "results.csv")
    methods = want["methods"]
    if callable(methods):
        methods = methods(notebook_defaults(EXPERIMENTS[exp_id]))
    assert set(results["method"]) == methods and len(results) == len(methods)
    assert (results["table"].astype(str) == want["table"]).all()
    assert (results["dataset"] == (dataset or "synthetic")).all()
    for row in results.itertuples():
        if row.method == "CNN pruned to SCNN size":  # E8: read off the pruning sweep
            sweep = pd.read_csv(run_dir / "pruning.csv")
            at = sweep[sweep["is_target"]]
            # the threshold is set on the meta-learned weights, so after adaptation it leaves
            # about the SCNN's count (exactly that many only before adaptation)
            assert len(at) == 1
            assert at["nonzero"].iloc[0] == pytest.approx(at["target_nonzero"].iloc[0], rel=0.1)
            assert row.accuracy == pytest.approx(100 * at["accuracy"].iloc[0], abs=1e-9)
            assert row.n == want["n"]
            continue
        values = per_task[row.method]
        sd = values.std(ddof=1)
        assert row.n == len(values) == want["n"], row
        assert row.accuracy == pytest.approx(100 * values.mean(), abs=1e-6), row
        assert row.ci95 == pytest.approx(100 * 1.96 * sd / math.sqrt(len(values)), rel=1e-4, abs=1e-9), row


@pytest.mark.parametrize("exp_id,data", RUNS, ids=[f"{e}-{d}" for e, d in RUNS])
def test_experiment_notebook_runs_at_smoke_scale(exp_id, data, tmp_path, request):
    exp = EXPERIMENTS[exp_id]
    params, dataset = _data_params(exp_id, data, request)
    declared = notebook_parameters(exp)
    params = {k: v for k, v in params.items() if k in declared}
    if "dataset" not in declared:
        assert exp.datasets[:1] == (dataset,) or dataset is None
    outcome = run_notebook(exp, "smoke", params, root=tmp_path / "runs", progress=False)
    assert outcome.ok, outcome.error
    record = json.loads((outcome.run_dir / "record.json").read_text())
    assert record["status"] == "ok" and record["scale"] == "smoke" and record["wall_time_s"] > 0
    assert (outcome.run_dir / exp.notebook).exists()
    check_run_outputs(exp_id, outcome.run_dir, dataset)


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
