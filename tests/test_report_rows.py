"""Each report row says how well, how spread, how far from the paper, and how it was measured.

Rows show ours as mean ± std over test tasks beside the 95% CI, the paper's mean ± std and the
deviation; they name scale, iterations, meta-batch and episode and say in words what differs
from the paper's settings. A dataset whose files are absent is one "not run here" line per
table; E12 (beyond the paper) gets its own section. Run folders are generated in ``tmp_path``.
"""
import json
import math
import os
import re

import numpy as np
import pandas as pd
import pytest

from maml_probe.experiments.e1_synthetic import configs
from maml_probe.experiments.settings import image_config
from maml_probe.report import (
    absent_datasets,
    accuracy_report,
    beyond_report,
    differs_from_paper,
    figures_from_runs,
    write_report,
)
from maml_probe.runs import save_results
from maml_probe.stats import mean_ci95

from .test_report import DATASET_FILES, data_root_with


def _record(run_dir, **fields):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "record.json").write_text(json.dumps({"status": "ok", "updated": "2026-01-01T00:00:00",
                                                     **fields}))


def _tests(method, accuracies):
    return pd.DataFrame({"task": range(len(accuracies)), "phase": "post", "accuracy": accuracies,
                         "method": method})


def _result(table, dataset, method, accuracies):
    mean, ci = mean_ci95(accuracies)
    return {"table": table, "dataset": dataset, "method": method, "accuracy": 100 * mean,
            "ci95": 100 * ci, "n": len(accuracies)}


def _row(text, start):
    """The cells of the markdown row starting with ``start``, by its table's header."""
    lines = text.splitlines()
    i = next(k for k, x in enumerate(lines) if x.startswith(start))
    j = max(k for k in range(i) if lines[k].startswith("| dataset |") or lines[k].startswith("| method |"))
    cells = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]  # noqa: E731
    return dict(zip(cells(lines[j]), cells(lines[i])))


ACC = [0.5, 0.7, 0.6, 0.6, 0.8, 0.4]          # per-task accuracies: mean 60, std 14.14 points
STD = 100 * float(np.std(ACC, ddof=1))


def test_each_row_shows_mean_and_std_over_test_tasks_beside_the_ci_paper_and_deviation(tmp_path):
    # E7: per-task tests.csv only; E8: a summary.csv (fractions, with std) only
    e7 = tmp_path / "E7" / "cpu"
    save_results(e7, pd.DataFrame([_result("2", "omniglot", "SCNN w/ MAML", ACC)]),
                 {"tests": _tests("SCNN w/ MAML", ACC)})
    _record(e7, scale="cpu")
    e8 = tmp_path / "E8" / "cpu"
    summary = pd.DataFrame([{"method": "SCNN w/ KFC", "phase": "post", "accuracy": 0.9, "ci95": 0.01,
                             "std": 0.05, "n": 600}])
    save_results(e8, pd.DataFrame([{"table": "A1", "dataset": "omniglot", "method": "SCNN w/ KFC",
                                    "accuracy": 90.0, "ci95": 1.0, "n": 600}]), {"summary": summary})
    _record(e8, scale="cpu")
    report = accuracy_report(tmp_path).query("dataset == 'omniglot'").set_index(["table", "method"])
    assert report.loc[("2", "SCNN w/ MAML"), "std"] == pytest.approx(STD)
    assert report.loc[("A1", "SCNN w/ KFC"), "std"] == pytest.approx(5.0)
    assert report.loc[("2", "SCNN w/ MAML"), "deviation"] == pytest.approx(60.0 - 60.94)
    text = write_report(tmp_path).read_text()
    row = _row(text, "| omniglot | SCNN w/ MAML")
    assert row["ours (mean ± std)"] == f"60.00 ± {STD:.2f}"
    assert row["95% CI"] == f"± {100 * mean_ci95(ACC)[1]:.2f}"
    assert (row["paper (mean ± std)"], row["deviation"], row["n"]) == ("60.94 ± 1.54", "-0.94", "6")
    assert _row(text, "| omniglot | SCNN w/ KFC")["ours (mean ± std)"] == "90.00 ± 5.00"
    exact = pd.read_csv(tmp_path / "report_accuracy.csv").dropna(subset=["accuracy"])
    assert sorted(exact["std"]) == pytest.approx(sorted([STD, 5.0]))       # the CSV keeps them exact


def test_a_std_is_never_borrowed_from_another_quantity(tmp_path):
    run = tmp_path / "E7" / "cpu"
    other = pd.DataFrame([{"method": "SCNN w/ MAML", "phase": "pre", "accuracy": 0.2, "ci95": 0.01,
                           "std": 0.07, "n": 600}])          # a summary of another quantity
    save_results(run, pd.DataFrame([{"table": "2", "dataset": "omniglot", "method": "SCNN w/ MAML",
                                     "accuracy": 55.0, "ci95": 1.0, "n": 600}]), {"summary": other})
    _record(run, scale="cpu")
    row = accuracy_report(tmp_path).query("method == 'SCNN w/ MAML' and table == '2' and dataset == 'omniglot'").iloc[0]
    assert math.isnan(row["std"])
    assert _row(write_report(tmp_path).read_text(), "| omniglot | SCNN w/ MAML")["ours (mean ± std)"] == "55.00"


def _configured_run(root, name, dataset, n, **overrides):
    cfg = image_config(dataset, "scnn", "maml", "paper", data_root="/data", **overrides).to_dict()
    run = root / "E7" / name
    save_results(run, pd.DataFrame([_result("2", dataset, "SCNN w/ MAML", ACC[:2] * (n // 2))]))
    _record(run, experiment="E7", scale="cpu", parameters={"dataset": dataset, "data_root": "/data"},
            iterations=cfg["iterations"], episode="from the record", config={"SCNN w/ MAML": cfg})


def test_each_row_says_its_settings_and_what_differs_from_the_paper(tmp_path):
    _configured_run(tmp_path, "cpu-omniglot", "omniglot", 600, iterations=500, meta_batch=4)
    _configured_run(tmp_path, "cpu-mini", "miniimagenet", 200, iterations=100, ways=5, steps=2)
    report = accuracy_report(tmp_path).query("table == '2' and method == 'SCNN w/ MAML'").set_index("dataset")
    omni, mini = report.loc["omniglot"], report.loc["miniimagenet"]
    assert (omni.iterations, omni.meta_batch, omni.episode) == (500, 4, "10-way 5-shot, 4 steps")
    assert omni.differs_from_paper == ("500 iterations of 4 tasks vs the paper's 60,000 of 32; episode, "
                                       "learning rates and test tasks as in the paper")
    assert mini.differs_from_paper == ("100 iterations of 4 tasks vs the paper's 60,000 of 4; 5-way 1-shot, "
                                       "2 steps vs the paper's 10-way 1-shot, 5 steps; 200 test tasks vs "
                                       "the paper's 600; learning rates as in the paper")
    row = _row(write_report(tmp_path).read_text(), "| omniglot | SCNN w/ MAML")
    assert (row["scale"], row["iterations"], row["meta-batch"], row["episode"]) == (
        "cpu", "500", "4", "10-way 5-shot, 4 steps")
    assert row["differs from the paper"].startswith("500 iterations of 4 tasks vs the paper's 60,000 of 32")


def test_differences_in_rates_and_rules_are_named_and_the_paper_itself_differs_in_nothing():
    paper = image_config("omniglot", "scnn", "kfc", "paper").to_dict()
    assert differs_from_paper(paper, paper, 600) == "none: the paper's settings"
    text = differs_from_paper({**paper, "alpha": 0.1, "rule_kwargs": {"layers": 2}}, paper, 600)
    assert "adaptation rate 0.1 vs the paper's 0.5" in text and "rule kwargs" in text
    assert text.endswith("iterations, meta-batch, episode and test tasks as in the paper")
    synthetic = configs("paper")["LR w/ MAML"].to_dict()    # the paper does not say how many test tasks
    assert differs_from_paper({**synthetic, "iterations": 5000}, synthetic, 1000) == (
        "5,000 iterations of 1 task vs the paper's 30,000 of 1; episode and learning rates as in the paper")


def test_a_paper_scale_record_without_configs_is_completed_from_its_parameters(tmp_path):
    run = tmp_path / "E7" / "gpu-it800"
    save_results(run, pd.DataFrame([_result("2", "omniglot", "SCNN w/ KFC", ACC)]),
                 {"methods": pd.DataFrame([{"dataset": "omniglot", "method": "SCNN w/ KFC", "meta_batch": 32}])})
    said = "iterations 800 of the paper's 60,000 (meta-batch, episode, learning rates and test tasks as the paper)"
    _record(run, experiment="E7", scale="paper", iterations=800, differs_from_paper=said,
            parameters={"dataset": "omniglot", "upper_bound": False, "overrides": {"iterations": 800}})
    row = accuracy_report(tmp_path).query("table == '2' and dataset == 'omniglot' and method == 'SCNN w/ KFC'").iloc[0]
    assert (row.iterations, row.meta_batch, row.episode) == (800, 32, "10-way 5-shot, 4 steps")
    assert row.differs_from_paper == said


def test_a_record_with_unreadable_settings_still_reports_its_numbers(tmp_path):
    run = tmp_path / "E7" / "odd"
    save_results(run, pd.DataFrame([_result("2", "omniglot", "SCNN w/ KFC", ACC)]))
    _record(run, scale="cpu", config={"SCNN w/ KFC": "not a configuration"}, parameters=[1])
    row = _row(write_report(tmp_path).read_text(), "| omniglot | SCNN w/ KFC")
    assert (row["ours (mean ± std)"], row["differs from the paper"]) == ("60.00", "not recorded")


def test_the_same_run_found_in_results_and_in_runs_counts_once(tmp_path):
    for root in ("results", "runs"):
        run = tmp_path / root / "E7" / "gpu"
        save_results(run, pd.DataFrame([_result("2", "omniglot", "SCNN w/ KFC", ACC)]))
        _record(run, scale="paper", iterations=800)
    row = accuracy_report([tmp_path / "results", tmp_path / "runs"]).query(
        "table == '2' and dataset == 'omniglot' and method == 'SCNN w/ KFC'").iloc[0]
    assert (row.seeds, row.run) == (1, "gpu") and math.isnan(row.seed_std)
    assert row.path == str(tmp_path / "results" / "E7" / "gpu")             # the committed copy


def test_a_dataset_without_files_is_one_not_run_here_line_per_table(tmp_path):
    data = data_root_with(tmp_path / "data", ["omniglot", "miniimagenet"])
    runs = tmp_path / "runs"
    e7 = runs / "E7" / "cpu"
    save_results(e7, pd.DataFrame([_result("2", "omniglot", "SCNN w/ MAML", ACC)]))
    _record(e7, scale="cpu")
    text = write_report(runs, data_roots=[data]).read_text()
    tables = text.split("## Table A3")[0]
    lines = [x for x in tables.splitlines() if x.startswith("- cifarfs:")]
    assert len(lines) == 3                                     # Tables 2, A1 and A2, one line each
    assert all(x.startswith("- cifarfs: not run here (no data: CIFAR-FS (cifar-100-python.tar.gz) "
                            f"not found in {data}") for x in lines)
    assert not any(re.search(r"\d+\.\d\d|\|", x) for x in lines)               # never numbers
    assert "- miniimagenet: not run yet (5 rows) (`maml-probe run E7 -p dataset=miniimagenet`)" in tables
    assert "missing" not in tables and "| cifarfs |" not in tables
    csv = pd.read_csv(runs / "report_accuracy.csv", dtype={"table": str}).query("dataset == 'cifarfs'")
    assert csv["accuracy"].isna().all() and csv["not_run"].str.startswith("not run here (no data").all()


def test_the_data_folders_runs_recorded_count_as_this_machines(tmp_path, monkeypatch):
    monkeypatch.setenv("MAML_PROBE_DATA", str(tmp_path / "empty"))
    shared = data_root_with(tmp_path / "shared", ["cifarfs"])
    assert set(absent_datasets(root=tmp_path / "runs")) == set(DATASET_FILES)
    _record(tmp_path / "runs" / "E7" / "cpu", parameters={"data_root": str(shared)})
    assert set(absent_datasets(root=tmp_path / "runs")) == {"omniglot", "miniimagenet"}


def e12_run(root, name="cpu-omniglot", figures=True):
    """A small E12 run folder: results, summary, CKA, presets, cosines and gain correlations."""
    run = root / "E12" / name
    tests = pd.concat([_tests("SCNN w/ MAML", ACC), _tests("SCNN w/ KFC", [0.9, 0.8, 0.85, 0.95])])
    results = pd.DataFrame([_result("E12", "omniglot", "SCNN w/ MAML", ACC),
                            _result("E12", "omniglot", "SCNN w/ KFC", [0.9, 0.8, 0.85, 0.95])])
    similarity = pd.DataFrame({"method": ["SCNN w/ MAML"] * 4 + ["SCNN w/ KFC"] * 4,
                               "layer": ["C1", "FC"] * 4, "task": [0, 0, 1, 1] * 2,
                               "cka": [1.0, 0.7, 1.0, 0.8, 0.99, 0.4, 0.97, 0.42],
                               "param_change": [0.01, 0.8, 0.03, 0.8, 0.1, 0.9, 0.1, 0.7]})
    presets = pd.DataFrame({"preset": ["none", "full", "anil", "boil"], "phase": ["pre"] + ["post"] * 3,
                            "accuracy": [0.2, 0.6444, 0.65, 0.3], "ci95": 0.02, "std": 0.1, "n": 100,
                            "method": "SCNN w/ MAML"})
    cosines = pd.DataFrame({"method": ["SCNN w/ KFC"] * 4, "task": [0, 0, 1, 1], "step": 0,
                            "reference": ["gradient", "newton"] * 2, "cos_learned": [0.1, 0.2, 0.12, 0.16],
                            "cos_gradient": [1.0, 0.5, 1.0, 0.55], "exact": False})
    gains = pd.DataFrame({"method": ["SCNN w/ MAML", "SCNN w/ KFC", "SCNN w/ KFC"], "task": [0, 0, 1],
                          "step": 0, "spearman": [float("nan"), 0.8, 0.9]})
    save_results(run, results, {"tests": tests, "similarity": similarity, "presets": presets,
                                "cnn_cosines": cosines, "gain_correlation": gains})
    _record(run, experiment="E12", scale="cpu", parameters={"dataset": "omniglot"})
    if figures:
        (run / "figures").mkdir()
        (run / "figures" / "similarity_cka.png").write_bytes(b"png")
    return run


def test_e12_reaches_the_report_with_its_tables_and_figure_links(tmp_path):
    e12_run(tmp_path)
    beyond = beyond_report(tmp_path)
    assert list(beyond["accuracy"]["method"]) == ["SCNN w/ MAML", "SCNN w/ KFC"]     # as the run wrote them
    cka = beyond["similarity"].set_index(["method", "layer"])["cka"]
    assert cka[("SCNN w/ KFC", "FC")] == pytest.approx(0.41)
    newton = beyond["newton"].set_index("method").loc["SCNN w/ KFC"]
    assert (newton.cos_update_newton, newton.cos_gradient_newton, newton.spearman_gain_newton) == \
        pytest.approx((0.18, 0.525, 0.85))
    text = write_report(tmp_path).read_text()
    section = text.split("## Beyond the paper: E12")[1].split("## Runs")[0]
    assert "### omniglot (E12/cpu-omniglot)" in section
    assert "figures: [similarity_cka](E12/cpu-omniglot/figures/similarity_cka.png)" in section
    assert _row(section, "| SCNN w/ MAML | 60.00")["ours (mean ± std)"] == f"60.00 ± {STD:.2f}"
    assert _row(section, "| SCNN w/ KFC | 0.980")["FC"] == "0.410"             # CKA per layer
    assert _row(section, "| SCNN w/ MAML | 20.00")["anil"] == "65.00 ± 10.00"  # ANIL/BOIL presets
    kfc = _row(section, "| SCNN w/ KFC | 0.110")
    assert (kfc["cos(update, Newton)"], kfc["Spearman(gains, Newton gains)"]) == ("0.180", "0.850")
    assert "nan" not in section.lower()
    exact = pd.read_csv(tmp_path / "report_E12_presets.csv")
    assert exact.query("preset == 'full'")["accuracy"].iloc[0] == pytest.approx(64.44)


def test_e12_without_figures_links_those_of_another_run_of_the_same_dataset(tmp_path):
    e12_run(tmp_path / "results", "cpu-omniglot", figures=False)
    e12_run(tmp_path / "runs", "cpu-dataset=omniglot", figures=True)
    (tmp_path / "results" / "E12" / "cpu-omniglot" / "record.json").write_text(json.dumps(
        {"status": "ok", "scale": "cpu", "updated": "2026-02-01T00:00:00", "parameters": {"dataset": "omniglot"}}))
    text = write_report([tmp_path / "results", tmp_path / "runs"], tmp_path).read_text()
    assert "### omniglot (E12/cpu-omniglot)" in text
    assert ("figures (drawn by E12/cpu-dataset=omniglot): [similarity_cka]"
            "(runs/E12/cpu-dataset=omniglot/figures/similarity_cka.png)") in text


def test_e12_figures_are_redrawn_from_its_tables(tmp_path):
    import matplotlib.pyplot as plt

    e12_run(tmp_path)
    figures = figures_from_runs(tmp_path)
    assert {"CKA per layer (E12 cpu-omniglot)", "ANIL/BOIL presets (E12 cpu-omniglot)",
            "Learned update vs Newton, SCNN (E12 cpu-omniglot)"} <= set(figures)
    plt.close("all")


def test_report_notebook_shows_every_section_rounded(tmp_path):
    import papermill as pm

    from maml_probe.runner import NOTEBOOKS

    e12_run(tmp_path)
    run = tmp_path / "E7" / "cpu"
    save_results(run, pd.DataFrame([_result("2", "omniglot", "SCNN w/ MAML", ACC)]),
                 {"tests": _tests("SCNN w/ MAML", ACC)})
    _record(run, scale="cpu")
    out = tmp_path / "report.ipynb"
    pm.execute_notebook(str(NOTEBOOKS / "report.ipynb"), str(out), parameters={"runs_root": str(tmp_path)},
                        progress_bar=False, cwd=str(tmp_path))
    outputs = [o for c in json.loads(out.read_text())["cells"] for o in c.get("outputs", [])]
    shown = json.dumps([o.get("text") or {k: v for k, v in o.get("data", {}).items() if k.startswith("text/")}
                        for o in outputs], ensure_ascii=False)  # images left out: base64 is not text
    assert f"60.00 ± {STD:.2f}" in shown and "-0.94" in shown and "## Beyond the paper: E12" in shown
    assert not re.search(r"\bnan\b", shown, flags=re.I) and "missing" not in shown
    assert json.loads((NOTEBOOKS / "report.ipynb").read_text())["cells"][2]["outputs"] == []


def test_absent_data_is_not_read_as_a_failure_beside_a_failed_method(tmp_path):
    """Catches: a failed method anywhere turning every other empty row into "failed: nan" (a
    column of strings and missing values reads the missing ones as NaN, which is truthy), so
    that CIFAR-FS rows no longer said why they are empty."""
    data = data_root_with(tmp_path / "data", ["omniglot", "miniimagenet"])
    runs = tmp_path / "runs"
    e8 = runs / "E8" / "cpu"
    save_results(e8, pd.DataFrame([_result("A1", "omniglot", "SCNN w/ CFC1", ACC)]))
    _record(e8, scale="cpu", status="partial", parameters={"dataset": "omniglot"},
            failed_rows=["SCNN w/ CFC10: diverged: meta-gradient became non-finite; kept"])
    table = accuracy_report(runs, data_roots=[data])
    cifarfs = table[table["dataset"] == "cifarfs"]
    assert len(cifarfs) and cifarfs["not_run"].str.startswith("not run here (no data").all()
    cfc10 = table[(table["dataset"] == "omniglot") & (table["method"] == "SCNN w/ CFC10")]
    assert cfc10["not_run"].iloc[0].startswith("failed: diverged")
    mini = table[(table["dataset"] == "miniimagenet") & (table["table"] == "A1")]
    assert (mini["not_run"] == "not run yet").all()


def test_figures_are_drawn_for_each_dataset_of_an_experiment(tmp_path):
    import matplotlib.pyplot as plt

    sweep = pd.DataFrame({"threshold": [0.0, 0.1], "when": "post", "phase": "post",
                          "accuracy": [0.9, 0.1], "ci95": 0.01, "nonzero": [100, 10], "total": 100,
                          "is_target": [False, True]})
    for name, dataset in (("cpu-omniglot", "omniglot"), ("cpu-miniimagenet", "miniimagenet"),
                          ("older-omniglot", "omniglot")):
        run = tmp_path / "E8" / name
        run.mkdir(parents=True)
        sweep.to_csv(run / "pruning.csv", index=False)
        _record(run, parameters={"dataset": dataset})
    older = tmp_path / "E8" / "older-omniglot" / "pruning.csv"
    os.utime(older, (1, 1))  # the oldest file: the newer Omniglot run is the one drawn
    figures = figures_from_runs(tmp_path)
    assert {k for k in figures if k.startswith("Fig A.3")} == {"Fig A.3 (E8 cpu-omniglot)",
                                                               "Fig A.3 (E8 cpu-miniimagenet)"}
    plt.close("all")
