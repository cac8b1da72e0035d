"""The batch runner: every run checked before any starts, owned folders, staged outputs, failed rows."""
import json
import os

import pandas as pd
import pytest

from maml_probe.checkpoint import save_checkpoint
from maml_probe.experiments.registry import EXPERIMENTS
from maml_probe.io import RunBusyError, RunDir
from maml_probe.runner import (
    advice,
    check_parameters,
    claimed,
    describe_configs,
    failed_rows,
    parse_params,
    plan_runs,
    resolve_experiments,
    resume_points,
    run_many,
    run_notebook,
)

E1 = EXPERIMENTS["E1"]


def _plan(ids, params, tmp_path, **kw):
    return plan_runs(ids, "smoke", parse_params(params), root=tmp_path / "runs", **kw)


# -- input refused before anything starts ------------------------------------------------------

def test_parameters_the_runner_owns_are_refused(tmp_path):
    for name, option in (("scale", "--scale"), ("run_dir", "--root")):
        with pytest.raises(ValueError, match=f"{name} is set by the runner.*{option}"):
            _plan(["E1"], [f"{name}=huge"], tmp_path)
    assert not (tmp_path / "runs").exists()


def test_unknown_parameters_list_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match=r"\['sead'\].*E1: device, labels, lr_bias, methods, "
                                         r"overrides, points, query, seed, support"):
        _plan(["E1"], ["sead=1"], tmp_path)
    with pytest.raises(ValueError, match=r"has no parameter\(s\) \['sead'\]; its parameters are"):
        check_parameters(E1, {"sead": 1})
    with pytest.raises(ValueError, match="ways: a training setting, pass -p 'overrides="):
        _plan(["E1"], ["ways=3"], tmp_path)


@pytest.mark.parametrize("param, message", [
    ("seed=abc", r"parameter seed='abc' must be an integer like its default \(0\)"),
    ('overrides={"nosuchfield": 3}', r"overrides has unknown field\(s\) \['nosuchfield'\]; "
                                     r"the fields of a training configuration are .*alpha"),
    ('overrides={"ways": 0}', "E1: ways must be a positive integer, got 0"),
    ('overrides={"steps": -1}', "E1: steps must be a positive integer, got -1"),
    ('overrides={"meta_lr": NaN}', "E1: meta_lr must be a positive number, got nan"),
    ('methods=["LR w/ Nothing"]', r"E1: methods has unknown entries \['LR w/ Nothing'\]"),
])
def test_bad_values_are_named_before_any_kernel_starts(tmp_path, param, message):
    with pytest.raises(ValueError, match=message):
        _plan(["E1"], [param], tmp_path)
    assert not (tmp_path / "runs").exists()


def test_one_bad_run_of_a_grid_refuses_the_whole_batch(tmp_path):
    grid = {"overrides": [{"iterations": 3}, {"ways": 0}]}         # the second run is bad
    with pytest.raises(ValueError, match="E1: ways must be a positive integer"):
        run_many(["E1"], "smoke", grid, root=tmp_path / "runs", progress=False)
    assert not (tmp_path / "runs").exists()


def test_missing_data_is_refused_for_a_named_experiment_and_skipped_for_all(tmp_path):
    empty = tmp_path / "no-data"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=f"E7: omniglot not found in {empty}"):
        _plan(["E7"], [f"data_root={empty}"], tmp_path)
    planned, skipped = _plan(["all"], [f"data_root={empty}"], tmp_path)
    assert [p.experiment.id for p in planned] == ["E1", "E9", "E11"]
    assert {line.split(":")[0] for line in skipped} == {"skip E2", "skip E3", "skip E6", "skip E7", "skip E12",
                                                         "skip E8"}


def test_e4_e5_and_e10_name_the_notebooks_that_hold_them():
    assert [e.id for e in resolve_experiments(["E5", "e4", "E3", "E10"])] == ["E3", "E8"]
    with pytest.raises(ValueError, match="unknown experiment 'E42'; choose from E1, E2, E3, E4, E5"):
        resolve_experiments(["E42"])


def test_one_name_for_a_grid_is_refused(tmp_path):
    with pytest.raises(ValueError, match="would both write into .*drop --name"):
        _plan(["E1"], ["seed=0,1"], tmp_path, name="mine")


def test_the_plan_holds_each_runs_effective_configuration(tmp_path):
    planned, _ = _plan(["E1"], ["seed=0,3", 'overrides={"iterations": 7}'], tmp_path)
    assert [p.run_dir.name for p in planned] == ["smoke-overrides=__iterations___7_-seed=0",
                                                 "smoke-overrides=__iterations___7_-seed=3"]
    configs = planned[1].configs
    assert {c.seed for c in configs.values()} == {3} and len(configs) == 4
    described = describe_configs(configs)
    assert described["iterations"] == 7
    assert described["episode"] == "d=100, 100+100 points, 1 step"
    assert described["config"]["LR w/ KLin"]["meta_lr"] == 0.1
    json.dumps(described)                                   # readable in record.json


# -- owning a run folder -------------------------------------------------------------------------

def test_a_claimed_run_records_who_runs_it_and_how_it_ended(tmp_path):
    run = RunDir(tmp_path / "run")
    with claimed(run, experiment="E1", scale="smoke"):
        record = run.read_record()
        assert record["status"] == "running" and record["pid"] == os.getpid()
        assert record["heartbeat"] and record["host"] and "git_dirty" in record
        with pytest.raises(RunBusyError, match="in use by another run"):
            with claimed(RunDir(run.path)):
                pass
    with pytest.raises(RuntimeError, match="boom"):
        with claimed(run):
            raise RuntimeError("boom")
    assert run.read_record()["status"] == "failed" and "boom" in run.read_record()["error"]
    with pytest.raises(KeyboardInterrupt):
        with claimed(run):
            raise KeyboardInterrupt
    assert run.read_record()["status"] == "interrupted"
    assert not run.lock_path.exists()


def test_a_corrupt_record_does_not_stop_a_run(tmp_path, capsys):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.record_path.write_text('{"status": "ok"')
    with claimed(run, experiment="E1"):
        pass
    assert f"{run.record_path} was unreadable; moved to" in capsys.readouterr().err
    assert (run.path / "record.json.corrupt").read_text() == '{"status": "ok"'
    assert run.read_record()["experiment"] == "E1"


def test_failed_rows_are_read_from_the_runs_tables(tmp_path):
    pd.DataFrame({"method": ["A", "B"], "status": ["ok", "diverged: loss nan"]}).to_csv(
        tmp_path / "methods.csv", index=False)
    pd.DataFrame({"label": ["CNN-1 w/ KFC"], "method": ["KFC"], "status": ["diverged: x"]}).to_csv(
        tmp_path / "summary.csv", index=False)
    assert failed_rows(tmp_path) == ["B: diverged: loss nan", "CNN-1 w/ KFC: diverged: x"]
    assert failed_rows(tmp_path / "nothing") == []


def test_advice_for_a_corrupt_checkpoint_names_the_file_to_delete():
    error = ("cell 3: ValueError: /r/E1/x/lr-w-maml/checkpoint.pt is not a readable maml_probe "
             "checkpoint: EOF")
    assert advice(error).startswith("delete /r/E1/x/lr-w-maml/checkpoint.pt to train that model")
    assert advice("cell 2: NameError: x") == ""


def test_resume_points_say_where_each_model_resumes(tmp_path):
    save_checkpoint(tmp_path / "lr-w-maml" / "checkpoint.pt",
                    {"config": {"iterations": 10}, "iteration": 4})
    save_checkpoint(tmp_path / "lr-w-klin" / "checkpoint.pt",
                    {"config": {"iterations": 10}, "iteration": 10})
    (tmp_path / "lr-w-kfc").mkdir()
    (tmp_path / "lr-w-kfc" / "checkpoint.pt").write_bytes(b"torn")
    lines = resume_points(tmp_path)
    assert lines[0].startswith("lr-w-kfc: unreadable checkpoint") and "delete " in lines[0]
    assert lines[1:] == ["lr-w-klin: finished (10 iterations), read back",
                         "lr-w-maml: resumed from iteration 4 of 10"]


# -- a real notebook run (seconds of training, ~1 min of kernel start-up) -----------------------

@pytest.fixture(scope="module")
def diverged_run(tmp_path_factory):
    """E1 at smoke scale where KLin diverges (alpha 1e6) and MAML does not."""
    root = tmp_path_factory.mktemp("runs")
    params = {"methods": ["LR w/ MAML", "LR w/ KLin"], "overrides": {"alpha": 1e6}}
    outcome = run_notebook(E1, "smoke", params, root=root, progress=False)
    return root, params, outcome


def test_a_diverged_method_is_a_failed_row(diverged_run):
    _, _, outcome = diverged_run
    assert not outcome.ok and outcome.error == "1 of 2 methods failed"
    assert len(outcome.failed_rows) == 1 and outcome.failed_rows[0].startswith("LR w/ KLin: diverged")
    record = json.loads((outcome.run_dir / "record.json").read_text())
    assert record["status"] == "partial" and record["failed_rows"] == outcome.failed_rows
    assert record["episode"] == "d=100, 100+100 points, 1 step" and record["iterations"] == 40
    assert record["config"]["LR w/ MAML"]["alpha"] == 1e6 and record["outputs_from"]
    assert "heartbeat" in record and record["heartbeat"] is None
    results = pd.read_csv(outcome.run_dir / "results.csv")
    assert list(results["method"]) == ["LR w/ MAML"]
    assert not (outcome.run_dir / ".staging").exists()


def test_saved_notebooks_show_progress_as_text(diverged_run):
    _, _, outcome = diverged_run
    nb = json.loads((outcome.run_dir / "E1_synthetic.ipynb").read_text())
    outputs = [o for c in nb["cells"] for o in c.get("outputs", [])]
    text = "".join("".join(o.get("text", "")) for o in outputs if o["output_type"] == "stream")
    assert "lr w/ maml: 100%" in text and "40/40" in text
    widgets = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert widgets == []


def test_a_failed_rerun_keeps_the_last_good_outputs(diverged_run, capsys):
    root, params, first = diverged_run
    run_dir = first.run_dir
    good = {p: p.read_bytes() for p in [run_dir / "results.csv", run_dir / "E1_synthetic.ipynb",
                                         run_dir / "figures" / "test_accuracy.png"]}
    outputs_from = json.loads((run_dir / "record.json").read_text())["outputs_from"]
    checkpoint = run_dir / "lr-w-maml" / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])            # torn
    again = run_notebook(E1, "smoke", params, root=root, progress=False)
    assert not again.ok and again.kept_previous
    assert f"delete {checkpoint} to train that model again" in again.error
    assert "unreadable checkpoint" in capsys.readouterr().err      # said before the kernel started
    assert all(p.read_bytes() == data for p, data in good.items())
    assert again.notebook == run_dir / "failed-attempt" / "E1_synthetic.ipynb"
    assert again.notebook.exists()
    record = json.loads((run_dir / "record.json").read_text())
    assert record["status"] == "failed" and record["outputs_from"] == outputs_from
    assert "outputs of the last successful attempt are kept" in record["error"]


def test_a_folder_claimed_during_a_batch_fails_that_run_only(tmp_path, monkeypatch):
    import maml_probe.runner as runner_module

    def fake(exp, scale, params, **kwargs):
        if params["seed"] == 0:
            raise RunBusyError("taken")
        return runner_module.RunOutcome(exp.id, tmp_path, True, 1.0, params=dict(params))

    monkeypatch.setattr(runner_module, "run_notebook", fake)
    outcomes = run_many(["E1"], "smoke", {"seed": [0, 1]}, root=tmp_path / "runs", progress=False)
    assert [(o.ok, o.error) for o in outcomes] == [(False, "taken"), (True, None)]


def test_an_experiment_without_a_config_builder_is_left_to_its_notebook():
    from maml_probe.experiments.registry import Experiment, experiment_configs

    other = Experiment("E99", "E1_synthetic.ipynb", "a notebook added later")
    assert experiment_configs(other, "smoke", {}) == {}
    assert describe_configs({}) == {}
