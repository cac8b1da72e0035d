"""Run folders: names without data locations, staged outputs, the lock, and live or dead runs."""
import json
import os
import platform
import subprocess
import sys

import pandas as pd
import pytest

from maml_probe.io import RunBusyError, RunDir, pid_alive
from maml_probe.runs import STAGING_ENV, finish, output_dir, project_dir, run_name, run_state


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_data_location_is_not_part_of_a_run_name():
    a = run_name("cpu", {"dataset": "omniglot", "data_root": "/home/a/data", "cache_dir": "/tmp/c"})
    b = run_name("cpu", {"dataset": "omniglot", "data_root": "/mnt/shared/data"})
    assert a == b == "cpu-dataset=omniglot"
    assert run_name("cpu", {"seed": 1}) != run_name("cpu", {"seed": 2})


def test_finish_writes_into_the_runners_staging_folder_only_for_its_own_run(tmp_path, monkeypatch):
    run_dir, other = tmp_path / "run", tmp_path / "other"
    staging = RunDir(run_dir).begin_staging()
    monkeypatch.setenv(STAGING_ENV, str(staging))
    assert output_dir(run_dir) == staging
    assert output_dir(other) == other                  # another run folder is never redirected
    results = pd.DataFrame({"table": ["1"], "dataset": ["synthetic"], "method": ["m"],
                            "accuracy": [50.0], "ci95": [1.0], "n": [10]})
    finish(run_dir, {"results": results, "summary": results})
    assert (staging / "results.csv").exists() and (staging / "summary.csv").exists()
    assert not (run_dir / "results.csv").exists()
    monkeypatch.delenv(STAGING_ENV)
    assert output_dir(run_dir) == run_dir


def test_commit_staging_replaces_outputs_and_keeps_the_rest(tmp_path):
    run = RunDir(tmp_path / "run")
    (run.path / "figures").mkdir(parents=True)
    (run.path / "results.csv").write_text("old")
    (run.path / "figures" / "a.png").write_text("old")
    (run.path / "cache.csv").write_text("kept")
    run.failed_path.mkdir()
    staging = run.begin_staging()
    (staging / "figures").mkdir()
    (staging / "results.csv").write_text("new")
    (staging / "figures" / "a.png").write_text("new")
    run.commit_staging()
    assert (run.path / "results.csv").read_text() == "new"
    assert (run.path / "figures" / "a.png").read_text() == "new"
    assert (run.path / "cache.csv").read_text() == "kept"
    assert not run.staging_path.exists() and not run.failed_path.exists()


def test_a_failed_attempt_is_set_aside_and_the_good_outputs_stay(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    (run.path / "results.csv").write_text("good")
    staging = run.begin_staging()
    (staging / "E1.ipynb").write_text("traceback")
    failed = run.keep_failed_staging()
    assert (failed / "E1.ipynb").read_text() == "traceback"
    assert (run.path / "results.csv").read_text() == "good"
    assert run.has_outputs() and not run.staging_path.exists()


def test_the_lock_refuses_a_second_run_and_names_the_first(tmp_path):
    run = RunDir(tmp_path / "run")
    with run.lock() as stale:
        assert stale is None
        holder = json.loads(run.lock_path.read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == platform.node()
        with pytest.raises(RunBusyError, match=rf"pid {os.getpid()}.*delete .*run.lock"):
            with RunDir(run.path).lock():
                pass
    assert not run.lock_path.exists()                   # released


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    dead = _dead_pid()
    assert not pid_alive(dead) and pid_alive(os.getpid())
    run.lock_path.write_text(json.dumps({"pid": dead, "host": platform.node(), "started": "x"}))
    with run.lock() as stale:
        assert stale["pid"] == dead
        assert json.loads(run.lock_path.read_text())["pid"] == os.getpid()


def test_a_lock_from_another_host_is_not_taken_over(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.lock_path.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "x"}))
    with pytest.raises(RunBusyError, match="elsewhere"):
        with run.lock():
            pass


def test_a_corrupt_record_is_set_aside(tmp_path):
    run = RunDir(tmp_path)
    run.record_path.write_text("{not json")
    moved = run.set_aside_corrupt_record()
    assert moved == tmp_path / "record.json.corrupt" and moved.read_text() == "{not json"
    assert run.read_record() == {}
    assert run.set_aside_corrupt_record() is None


def test_a_running_record_of_a_dead_process_reads_dead():
    here = platform.node()
    assert run_state({"status": "running", "pid": os.getpid(), "host": here}) == "running"
    assert run_state({"status": "running", "pid": _dead_pid(), "host": here}) == "dead"
    beat = {"status": "running", "pid": 1, "host": "elsewhere",
            "heartbeat": "2026-01-01T00:00:00+0000"}
    t0 = pd.Timestamp("2026-01-01T00:00:00+0000").timestamp()
    assert run_state(beat, now=t0 + 60) == "running"   # another host: judged by its heartbeat
    assert run_state(beat, now=t0 + 3600) == "dead"
    assert run_state({"status": "ok", "pid": _dead_pid(), "host": here}) == "ok"
    assert run_state({}) == "unknown"


def test_runs_belong_to_the_project_found_from_the_working_directory(tmp_path):
    clone = tmp_path / "second-clone"
    (clone / "maml_probe").mkdir(parents=True)
    (clone / "pyproject.toml").write_text("[project]\nname = 'maml-probe'\n")
    (clone / "notebooks").mkdir()
    assert project_dir(clone / "notebooks") == clone.resolve()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert project_dir(elsewhere) == elsewhere.resolve()
    env = {k: v for k, v in os.environ.items() if k not in ("MAML_PROBE_RUNS", "MAML_PROBE_RESULTS")}
    out = subprocess.run([sys.executable, "-c", "from maml_probe import runs; "
                          "print(runs.RUNS_ROOT); print(runs.RESULTS_ROOT)"],
                         cwd=clone / "notebooks", env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(clone.resolve() / "runs"), str(clone.resolve() / "results")]
