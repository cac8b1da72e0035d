"""The ``maml-probe`` command line: exit codes, one-line errors, and the main job's run folder."""
import errno
import json
import os
import pathlib
import subprocess
import sys

import pandas as pd
import pytest

from maml_probe import cli, runner
from maml_probe.runner import RunOutcome


def _refused(argv, capsys) -> str:
    """Run ``argv``; it must exit with status 2 and say why in one line on stderr."""
    try:
        status = cli.main(argv)
    except SystemExit as exc:                          # argparse refuses before main's handler
        status = exc.code
    err = capsys.readouterr().err.strip()
    assert status == 2, err
    return err.splitlines()[-1]


@pytest.mark.parametrize("option, value", [("--iterations", "0"), ("--test-tasks", "0"),
                                           ("--iterations", "-5"), ("--support", "0")])
def test_synthetic_refuses_zero_and_negative_counts(option, value, capsys, tmp_path):
    line = _refused(["synthetic", "--root", str(tmp_path), option, value], capsys)
    assert line.endswith(f"argument {option}: must be a positive integer, got {int(value)}")
    assert not any(tmp_path.iterdir())


def test_synthetic_leaves_a_run_folder_and_says_where(tmp_path, capsys):
    argv = ["synthetic", "--scale", "smoke", "--root", str(tmp_path), "--methods", "LR w/ MAML",
            "--iterations", "5", "--test-tasks", "3"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    run_dir = tmp_path / "E1" / "synthetic-smoke-iterations=5-methods=__LR_w__MAML__-test_tasks=3"
    assert f"run folder: {run_dir}" in out and "LR w/ MAML" in out
    record = json.loads((run_dir / "record.json").read_text())
    assert record["status"] == "ok" and record["experiment"] == "E1" and record["scale"] == "smoke"
    assert record["config"]["LR w/ MAML"]["iterations"] == 5 and record["iterations"] == 5
    assert record["command"] == "maml-probe synthetic" and "git_dirty" in record
    results = pd.read_csv(run_dir / "results.csv")
    assert list(results["method"]) == ["LR w/ MAML"] and results["n"].tolist() == [3]
    assert (run_dir / "figures" / "learning_curves.png").stat().st_size > 0
    assert (run_dir / "history.csv").exists() and not (run_dir / ".staging").exists()
    assert cli.main(argv) == 0                                       # a rerun resumes the folder
    assert "lr-w-maml: finished (5 iterations), read back" in capsys.readouterr().err


def test_synthetic_takes_the_papers_readings_of_a11(tmp_path, capsys):
    """``--points/--labels/--lr-bias`` reach the trained configs (not only the folder name)."""
    argv = ["synthetic", "--scale", "smoke", "--root", str(tmp_path), "--methods", "LR w/ MAML",
            "--iterations", "2", "--test-tasks", "2", "--points", "120", "--support", "20",
            "--labels", "pm1", "--lr-bias"]
    assert cli.main(argv) == 0
    assert "20 support / 100 query points" in capsys.readouterr().out
    run_dir = next((tmp_path / "E1").iterdir())
    cfg = json.loads((run_dir / "record.json").read_text())["config"]["LR w/ MAML"]
    assert cfg["dataset_kwargs"]["support"] == 20 and cfg["dataset_kwargs"]["query"] == 100
    assert cfg["dataset_kwargs"]["labels"] == "pm1" and cfg["model_kwargs"]["bias"] is True


@pytest.mark.parametrize("argv, message", [
    (["run", "E1", "-p", "scale=huge"], "scale is set by the runner, not with -p: use --scale"),
    (["run", "E1", "-p", "seed=abc"], "E1: parameter seed='abc' must be an integer"),
    (["run", "E1", "-p", "sead=1"], "valid parameters are E1: device, "),
    (["run", "E1", "-p", 'overrides={"nosuchfield": 3}'], "overrides has unknown field(s)"),
    (["run", "E1", "-p", 'overrides={"alpha": NaN}'], "E1: alpha must be a positive number, got nan"),
    (["run", "E42"], "unknown experiment 'E42'; choose from E1, E2, E3, E4, E5"),
])
def test_run_refuses_bad_input_with_one_line_naming_it(argv, message, capsys, tmp_path):
    line = _refused([*argv, "--root", str(tmp_path)], capsys)
    assert line.startswith("maml-probe: error: ") and message in line
    assert not any(tmp_path.iterdir())


def test_run_accepts_e5_and_e10_as_their_notebooks(capsys, tmp_path):
    empty = tmp_path / "no-data"
    empty.mkdir()
    for alias, exp in (("E5", "E3"), ("E10", "E8")):
        line = _refused(["run", alias, "--scale", "smoke", "-p", f"data_root={empty}",
                         "--root", str(tmp_path / "runs")], capsys)
        assert f"maml-probe: error: {exp}: omniglot not found in {empty}" in line
    assert not (tmp_path / "runs").exists()


def test_run_list_names_the_aliases(capsys):
    assert cli.main(["run", "--list"]) == 0
    out = capsys.readouterr().out
    assert "E11" in out and "E5 runs E3's notebook" in out and "E10 runs E8's notebook" in out


def test_a_read_only_runs_folder_gives_one_line(monkeypatch, capsys, tmp_path):
    def refuse(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(pathlib.Path, "mkdir", refuse)
    line = _refused(["run", "E1", "--scale", "smoke", "--root", str(tmp_path / "ro")], capsys)
    assert line == (f"maml-probe: error: cannot write {tmp_path / 'ro' / 'E1' / 'smoke'} "
                    f"(Permission denied); choose a writable folder (--root, --out, "
                    f"$MAML_PROBE_RUNS, or $MAML_PROBE_DATA / $MAML_PROBE_CACHE for data)")


def test_os_errors_read_as_one_line():
    rofs = OSError(errno.EROFS, "Read-only file system", "/data/cache")
    assert cli.os_error_message(rofs).startswith("cannot write /data/cache (Read-only file system)")
    assert cli.os_error_message(OSError(errno.ENOSPC, "No space left", "/r")) == "/r: No space left"


def test_a_second_run_into_a_busy_folder_is_refused(capsys, tmp_path):
    busy = tmp_path / "E1" / "smoke"
    busy.mkdir(parents=True)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (busy / "run.lock").write_text(json.dumps({"pid": sleeper.pid, "host": os.uname().nodename,
                                                    "started": "2026-01-01T00:00:00+0000"}))
        line = _refused(["run", "E1", "--scale", "smoke", "--root", str(tmp_path)], capsys)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert f"{busy} is in use by another run (pid {sleeper.pid}" in line
    assert "delete" in line and "run.lock" in line


def test_run_exits_1_and_shows_failed_rows(monkeypatch, capsys, tmp_path):
    def diverged(exp, scale, params, **kwargs):
        return RunOutcome(exp.id, tmp_path / "run", False, 1.0, "1 of 2 methods failed",
                          ["LR w/ KLin: diverged: meta-loss became non-finite"],
                          tmp_path / "run" / "E1_synthetic.ipynb", False, dict(params))

    monkeypatch.setattr(runner, "run_notebook", diverged)
    assert cli.main(["run", "E1", "--scale", "smoke", "--root", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "FAILED E1 [defaults]: 1 of 2 methods failed" in captured.err
    assert "failed row: LR w/ KLin: diverged" in captured.err
    assert captured.out.strip().endswith("0 passed, 1 failed")


def test_report_names_a_corrupt_file_and_still_reports(tmp_path, capsys):
    bad = tmp_path / "E7" / "broken"
    bad.mkdir(parents=True)
    (bad / "results.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.warns(UserWarning, match="broken/results.csv"):
        assert cli.main(["report", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"{bad / 'results.csv'}: unreadable table" in out and "## Table 2" in out
    assert f"written to {tmp_path / 'report.md'}" in out
