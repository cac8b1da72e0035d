"""The report joins runs with the paper's tables; missing runs stay missing, never zero."""
import json

import pandas as pd
import pytest

from maml_probe.paper import accuracy_tables, compute_table
from maml_probe.report import accuracy_report, compute_report, to_markdown, write_report
from maml_probe.runner import expand_grid, parse_params
from maml_probe.runs import run_name, save_results


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
    assert ours.difference == pytest.approx(55.0 - 60.94)
    missing = report.query("table == '2' and dataset == 'cifarfs'")
    assert len(missing) == 5 and missing["accuracy"].isna().all()   # not run: NaN, not 0
    assert "missing" in to_markdown(missing[["method", "accuracy"]])
    assert compute_report(tmp_path)["seconds_per_iteration"].isna().all()
    path = write_report(tmp_path)
    assert "| 2 | omniglot | SCNN w/ MAML | 55.00 |" in path.read_text()


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
