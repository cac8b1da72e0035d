"""``maml-probe publish``: a finished run's record and tables become a committed reference result."""
import json

import pytest

from maml_probe.cli import main
from maml_probe.runs import publish_run


def _run(tmp_path, status="ok"):
    run = tmp_path / "runs" / "E7" / "cpu-dataset=miniimagenet"
    (run / "scnn-w-maml").mkdir(parents=True)
    (run / "record.json").write_text(json.dumps({"status": status, "experiment": "E7"}))
    (run / "results.csv").write_text("table,dataset,method,accuracy,ci95,n\n")
    (run / "tests.csv").write_text("task,phase,accuracy,method\n")
    (run / "scnn-w-maml" / "checkpoint.pt").write_bytes(b"x" * 1000)
    (run / "E7_meta_optimizers.ipynb").write_text("{}")
    (run / "figures").mkdir()
    (run / "figures" / "a.png").write_bytes(b"png")
    return run


def test_only_the_record_and_tables_are_published(tmp_path):
    """Catches: checkpoints, notebooks or figures (megabytes) copied into the repository, or the
    result landing outside ``results/<experiment>/``."""
    target = publish_run(_run(tmp_path), "cpu-miniimagenet", root=tmp_path / "results")
    assert target == tmp_path / "results" / "E7" / "cpu-miniimagenet"
    assert sorted(p.name for p in target.rglob("*")) == ["record.json", "results.csv", "tests.csv"]


def test_unfinished_runs_and_existing_results_are_refused(tmp_path, capsys):
    """Catches: a failed or still running run published as a reference, or a reference result
    silently overwritten."""
    with pytest.raises(ValueError, match="did not finish"):
        publish_run(_run(tmp_path, status="failed"), root=tmp_path / "results")
    run = tmp_path / "runs" / "E7" / "cpu-dataset=miniimagenet"
    for status in ("running", "dead"):
        (run / "record.json").write_text(json.dumps({"status": status}))
        with pytest.raises(ValueError, match="did not finish"):
            publish_run(run, root=tmp_path / "results")
    (run / "record.json").write_text(json.dumps({"status": "partial", "failed_rows": ["x"]}))
    assert publish_run(run, "diverged", root=tmp_path / "results").is_dir()  # divergence is a result
    (run / "record.json").write_text(json.dumps({"status": "ok"}))
    assert main(["publish", str(run), "--name", "x", "--root", str(tmp_path / "results")]) == 0
    assert "published" in capsys.readouterr().out
    assert main(["publish", str(run), "--name", "x", "--root", str(tmp_path / "results")]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["publish", str(run), "--name", "x", "--replace",
                 "--root", str(tmp_path / "results")]) == 0
    assert main(["publish", str(tmp_path / "nowhere"), "--root", str(tmp_path / "r")]) == 2
