"""E12 (beyond the paper): the notebook runs end to end at scale=smoke on a generated CIFAR-FS."""
import json

import pandas as pd

from maml_probe.experiments.registry import EXPERIMENTS, Experiment
from maml_probe.runner import NOTEBOOKS, notebook_parameters, run_notebook

from .data_fixtures import make_cifar100

NOTEBOOK = "E12_beyond.ipynb"
E12 = EXPERIMENTS.get("E12") or Experiment(
    "E12", NOTEBOOK, "beyond the paper: representation similarity, ANIL/BOIL, learned preconditioner",
    ("omniglot", "cifarfs"), cost={"smoke": "~1 min", "cpu": "~1 h", "paper": "~days"})


def test_notebook_declares_the_shared_parameters():
    assert E12.notebook == NOTEBOOK and (NOTEBOOKS / NOTEBOOK).exists()
    assert {"scale", "run_dir", "seed", "device", "overrides", "dataset", "data_root",
            "cache_dir", "model", "methods"} <= notebook_parameters(E12)


def test_beyond_notebook_runs_at_smoke_scale(tmp_path):
    make_cifar100(tmp_path / "data" / "cifar-fs")
    params = {"data_root": str(tmp_path / "data"), "cache_dir": str(tmp_path / "cache"),
              "dataset": "cifarfs"}
    outcome = run_notebook(E12, "smoke", params, root=tmp_path / "runs", progress=False)
    assert outcome.ok, outcome.error
    run = outcome.run_dir
    record = json.loads((run / "record.json").read_text())
    assert record["status"] == "ok" and record["scale"] == "smoke"
    results = pd.read_csv(run / "results.csv")
    assert set(results["method"]) == {"SCNN w/ MAML", "SCNN w/ ANIL", "SCNN w/ BOIL", "SCNN w/ MC",
                                      "SCNN w/ KFC"}
    assert results["accuracy"].between(0, 100).all()
    similarity = pd.read_csv(run / "similarity.csv")
    assert similarity["cka"].between(0, 1).all()
    anil_body = similarity[(similarity["method"] == "SCNN w/ ANIL") & (similarity["layer"] != "FC")]
    assert len(anil_body) and ((anil_body["cka"] - 1).abs() < 1e-9).all()
    presets = pd.read_csv(run / "presets.csv")
    assert set(presets["preset"]) == {"none", "full", "anil", "boil"}
    linear = pd.read_csv(run / "linear_cosines.csv")
    assert set(linear["method"]) == {"LR w/ MAML", "LR w/ KLin", "LR w/ MC"} and linear["exact"].all()
    cnn = pd.read_csv(run / "cnn_cosines.csv")
    assert set(cnn["method"]) == {"SCNN w/ MAML", "SCNN w/ KFC"} and not cnn["exact"].any()
    assert cnn["cos_learned"].between(-1, 1).all()
    figures = {p.stem for p in (run / "figures").glob("*.png")}
    assert {"presets", "similarity_cka", "linear_cosines", "cnn_cosines", "cnn_spectrum"} <= figures
