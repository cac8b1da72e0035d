"""The report joins runs with the paper's tables; missing runs stay missing, never zero."""
import json
import os
import platform
import subprocess
import sys

import pandas as pd
import pytest

from maml_probe.paper import accuracy_tables, compute_table
from maml_probe.report import (
    accuracy_report,
    compute_report,
    for_display,
    runs_overview,
    to_markdown,
    write_report,
)
from maml_probe.runner import expand_grid, parse_params
from maml_probe.runs import run_name, save_results

#: Files whose presence makes each on-disk dataset count as installed (nothing reads them).
DATASET_FILES = {"omniglot": ["omniglot/images_background.zip", "omniglot/images_evaluation.zip"],
                 "miniimagenet": [f"mini-imagenet/mini-imagenet-cache-{s}.pkl" for s in ("train", "val", "test")],
                 "cifarfs": ["cifar-fs/cifar-100-python.tar.gz"]}


def data_root_with(folder, datasets):
    """A data folder in which exactly ``datasets`` are installed (as empty stand-in files)."""
    for name in datasets:
        for rel in DATASET_FILES[name]:
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(b"")
    return folder


@pytest.fixture(autouse=True)
def _every_dataset_installed(tmp_path_factory, monkeypatch):
    """The report's default data folder holds every dataset, so "not run yet" does not depend on
    the machine (tests of absent datasets point ``data_roots`` elsewhere)."""
    root = data_root_with(tmp_path_factory.mktemp("data"), DATASET_FILES)
    monkeypatch.setenv("MAML_PROBE_DATA", str(root))


def _run(root, experiment, name, scale, rows, updated="2026-01-01T00:00:00"):
    run_dir = root / experiment / name
    save_results(run_dir, pd.DataFrame(rows))
    (run_dir / "record.json").write_text(json.dumps({"scale": scale, "updated": updated}))


def test_paper_tables_hold_every_reported_number():
    acc = accuracy_tables()
    assert len(acc) == 8 + 15 + 15 + 16
    row = acc.query("table == '2' and dataset == 'omniglot' and method == 'SCNN w/ KFC'").iloc[0]
    assert (row.paper_accuracy, row.paper_std) == (91.13, 0.93)
    assert compute_table().query("method == 'SCNN w/ KFC' and dataset == 'omniglot'").iloc[0].paper_optimizer_params == 134_171


def test_report_joins_runs_and_keeps_missing_rows_missing(tmp_path):
    row = {"table": "2", "dataset": "omniglot", "method": "SCNN w/ MAML", "accuracy": 55.0,
           "ci95": 1.0, "n": 100}
    _run(tmp_path, "E7", "smoke", "smoke", [{**row, "accuracy": 30.0}], "2026-02-01T00:00:00")
    _run(tmp_path, "E7", "cpu", "cpu", [row])
    report = accuracy_report(tmp_path)
    ours = report.query("table == '2' and dataset == 'omniglot' and method == 'SCNN w/ MAML'").iloc[0]
    assert ours.accuracy == 55.0 and ours.scale == "cpu"      # larger scale wins over newer smoke
    assert ours.deviation == pytest.approx(55.0 - 60.94)
    missing = report.query("table == '2' and dataset == 'cifarfs'")
    assert len(missing) == 5 and missing["accuracy"].isna().all()   # not run: NaN, not 0
    assert "missing" in to_markdown(missing[["method", "accuracy"]])
    assert compute_report(tmp_path)["seconds_per_iteration"].isna().all()
    path = write_report(tmp_path)
    assert "| omniglot | SCNN w/ MAML | 55.00 | ± 1.00 | 100 | 60.94 ± 1.54 | -5.94 | 1 |" in path.read_text()


def test_results_must_have_report_columns(tmp_path):
    with pytest.raises(ValueError, match="missing the report columns"):
        save_results(tmp_path, pd.DataFrame({"method": ["x"]}))


def test_parameter_grid_and_run_names():
    grid = parse_params(["seed=0,1", "dataset=omniglot", "overrides={\"iterations\": 3}"])
    assert grid == {"seed": [0, 1], "dataset": ["omniglot"], "overrides": [{"iterations": 3}]}
    combos = expand_grid(grid)
    assert len(combos) == 2 and combos[1]["seed"] == 1
    assert run_name("cpu", combos[0]) == run_name("cpu", dict(reversed(list(combos[0].items()))))
    with pytest.raises(ValueError, match="name=value"):
        parse_params(["seed"])


def _e1_run(root, name, accuracy, record, method="LR w/ MAML"):
    run_dir = root / "E1" / name
    save_results(run_dir, pd.DataFrame([{"table": "1", "dataset": "synthetic", "method": method,
                                         "accuracy": accuracy, "ci95": 1.0, "n": 20}]))
    (run_dir / "record.json").write_text(json.dumps({"scale": "smoke", "status": "ok",
                                                     "iterations": 40,
                                                     "episode": "d=100, 100+100 points, 1 step",
                                                     **record}))
    return run_dir


def test_a_seed_grid_is_aggregated_over_its_seeds(tmp_path):
    for seed, acc in ((0, 50.0), (1, 52.0), (2, 54.0)):
        _e1_run(tmp_path, f"smoke-seed={seed}", acc, {"parameters": {"seed": seed}})
    _e1_run(tmp_path, "smoke-query=10-seed=0", 90.0, {"parameters": {"seed": 0, "query": 10},
                                                       "updated": "2020-01-01T00:00:00"})
    report = accuracy_report(tmp_path)
    row = report.query("dataset == 'synthetic' and method == 'LR w/ MAML'").iloc[0]
    assert (row.accuracy, row.seed_std, row.seeds) == (52.0, 2.0, 3)  # not the last seed alone
    assert row.run == "smoke-seed=0 (+2 seeds)"
    text = write_report(tmp_path).read_text()
    assert "| synthetic | LR w/ MAML | 52.00 | ± 1.00 | 20 | 51.38 ± 3.91 | +0.62 | 3 (sd 2.00) |" in text


def test_every_row_names_its_episode_iterations_and_scale(tmp_path):
    _e1_run(tmp_path, "smoke", 50.0, {"parameters": {}})
    text = write_report(tmp_path).read_text()
    line = next(x for x in text.splitlines() if x.startswith("| synthetic | LR w/ MAML"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    header = next(x for x in text.splitlines() if x.startswith("| dataset | method | ours"))
    row = dict(zip([c.strip() for c in header.strip("|").split("|")], cells))
    assert (row["episode"], row["iterations"], row["scale"]) == (
        "d=100, 100+100 points, 1 step", "40", "smoke")


def test_experiments_not_run_are_one_line_each(tmp_path):
    _e1_run(tmp_path, "smoke", 50.0, {})
    text = write_report(tmp_path).read_text()
    assert "- omniglot: not run yet (5 rows) (`maml-probe run E8 -p dataset=omniglot`)" in text
    assert "- omniglot: not run yet (4 rows) (`maml-probe run E2`)" in text
    assert "- synthetic: not run yet for LR+LinNet w/ MAML, LR w/ KLin, LR w/ KFC" in text  # paper order
    tables = text.split("## Runs")[0]
    assert tables.count("missing") == 0                  # no rows of "missing" across columns
    assert "- not run yet (18 rows) (`maml-probe run E11`); the paper's numbers:" in tables


def test_shown_numbers_are_rounded_and_the_csv_keeps_them_exact(tmp_path):
    _e1_run(tmp_path, "smoke", 30.000000819563866, {})
    text = write_report(tmp_path).read_text()
    assert "| 30.00 | ± 1.00 |" in text and "30.0000008" not in text
    exact = pd.read_csv(tmp_path / "report_accuracy.csv").dropna(subset=["accuracy"])
    assert exact["accuracy"].tolist() == [30.000000819563866]
    shown = for_display(pd.DataFrame({"a": [47.500001, float("nan")], "b": ["x", None]}))
    assert shown.values.tolist() == [["47.50", "x"], ["missing", "missing"]]


def test_a_corrupt_record_or_table_is_skipped_and_named(tmp_path):
    _e1_run(tmp_path, "good", 50.0, {})
    bad_record = _e1_run(tmp_path, "bad-record", 99.0, {}) / "record.json"
    bad_record.write_text("{truncated")
    bad_table = tmp_path / "E7" / "bad-table" / "results.csv"
    bad_table.parent.mkdir(parents=True)
    bad_table.write_bytes(b"\xff\xfe\x00\x00")
    with pytest.warns(UserWarning) as caught:
        text = write_report(tmp_path).read_text()
    named = " ".join(str(w.message) for w in caught)
    assert str(bad_record) in named and str(bad_table) in named
    assert f"- {bad_record} is not readable JSON" in text and f"- {bad_table}: unreadable table" in text
    assert "| synthetic | LR w/ MAML | 50.00 | ± 1.00 |" in text          # the good run still counts


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_every_run_reaches_the_report_with_its_figures_and_state(tmp_path):
    for exp, fig in (("E3", "layers"), ("E9", "width")):
        run_dir = tmp_path / exp / "cpu"
        (run_dir / "figures").mkdir(parents=True)
        (run_dir / "figures" / f"{fig}.png").write_bytes(b"png")
        (run_dir / "record.json").write_text(json.dumps({
            "scale": "cpu", "status": "ok", "episode": "5-way 1-shot, 2 steps", "iterations": 400,
            "parameters": {"seed": 0}, "git_commit": "abcdef1234567", "git_dirty": True}))
    (tmp_path / "E1" / "killed").mkdir(parents=True)
    (tmp_path / "E1" / "killed" / "record.json").write_text(json.dumps({
        "status": "running", "pid": _dead_pid(), "host": platform.node()}))
    _e1_run(tmp_path, "rerun", 50.0, {"status": "failed", "outputs_from": "2026-01-02T00:00:00"})
    runs = runs_overview(tmp_path, tmp_path).set_index(["experiment", "run"])
    assert runs.loc[("E3", "cpu"), "figures"] == "[layers](E3/cpu/figures/layers.png)"
    assert runs.loc[("E9", "cpu"), "commit"] == "abcdef12+dirty"
    assert runs.loc[("E1", "killed"), "status"] == "dead"
    assert runs.loc[("E1", "rerun"), "status"] == "last rerun failed; outputs of 2026-01-02T00:00:00"
    text = write_report(tmp_path).read_text()
    assert "[width](E9/cpu/figures/width.png)" in text
    row = next(x for x in text.splitlines() if x.startswith("| synthetic | LR w/ MAML"))
    assert "last rerun failed" in row
    assert os.path.exists(tmp_path / "E3" / "cpu" / "figures" / "layers.png")


def test_report_notebook_shows_rounded_numbers_and_no_stray_output(tmp_path):
    import papermill as pm

    from maml_probe.runner import NOTEBOOKS

    _e1_run(tmp_path, "smoke", 30.000000819563866, {})
    out = tmp_path / "report.ipynb"
    pm.execute_notebook(str(NOTEBOOKS / "report.ipynb"), str(out), parameters={"runs_root": str(tmp_path)},
                        progress_bar=False, cwd=str(tmp_path))
    outputs = [o for c in json.loads(out.read_text())["cells"] for o in c.get("outputs", [])]
    shown = json.dumps(outputs)
    assert "30.00" in shown and "30.0000008" not in shown
    assert "NaN" not in shown and "PosixPath" not in shown
    assert (tmp_path / "report.md").exists()


def test_a_method_that_diverged_is_reported_as_failed_not_as_not_run(tmp_path):
    _e1_run(tmp_path, "smoke", 50.0, {
        "status": "partial", "failed_rows": ["LR w/ KLin: diverged: meta-loss became non-finite; x"],
        "config": {"LR w/ KLin": {"dataset": "synthetic"}, "LR w/ MAML": {"dataset": "synthetic"}}})
    report = accuracy_report(tmp_path).set_index(["dataset", "method"])
    assert report.loc[("synthetic", "LR w/ KLin"), "failed"] == \
        "diverged: meta-loss became non-finite (E1/smoke)"
    assert pd.isna(report.loc[("synthetic", "LR w/ KLin"), "accuracy"])
    text = write_report(tmp_path).read_text()
    assert "- synthetic: LR w/ KLin failed: diverged: meta-loss became non-finite (E1/smoke)" in text
    assert "- synthetic: not run yet for LR+LinNet w/ MAML, LR w/ KFC" in text
