"""Data-parallel meta-training (torchrun, gloo, 2 processes on the CPU) against one process."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from maml_probe.distributed import World, iteration_generator, share_of

ROOT = Path(__file__).resolve().parents[1]
WORKER = str(ROOT / "tests" / "dist_worker.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(ROOT)}

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="this PyTorch build has no torch.distributed")


def launch(nproc: int, *args, timeout: float = 240) -> subprocess.CompletedProcess:
    if nproc == 1:
        cmd = [sys.executable, WORKER, *map(str, args)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={nproc}", WORKER, *map(str, args)]
    out = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def params(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["params"]


def assert_same(a: dict, b: dict, tol: float = 1e-10) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=tol, atol=tol, msg=k)


def test_shares_cover_the_meta_batch_once():
    for tasks in (2, 5, 7, 32):
        for size in (1, 2, 3):
            if tasks < size:
                continue
            shares = [share_of(tasks, World(r, size)) for r in range(size)]
            covered = [i for s in shares for i in range(tasks)[s]]
            assert covered == list(range(tasks))
            assert max(s.stop - s.start for s in shares) - min(s.stop - s.start for s in shares) <= 1
    with pytest.raises(ValueError, match="3 processes"):
        share_of(2, World(0, 3))


def test_tasks_depend_on_seed_and_iteration_only():
    a = torch.rand(4, generator=iteration_generator(1, 7))
    assert torch.equal(a, torch.rand(4, generator=iteration_generator(1, 7)))
    assert not torch.equal(a, torch.rand(4, generator=iteration_generator(1, 8)))
    assert not torch.equal(a, torch.rand(4, generator=iteration_generator(2, 7)))


@pytest.mark.parametrize("rule,engine", [("maml", "loop"), ("kfc", "loop"), ("klin", "batched")])
def test_two_ranks_equal_one_rank(tmp_path, rule, engine):
    """Gradients of model and rule averaged over 2 ranks (5 tasks: shares of 3 and 2) give the
    parameters and the evaluation of one process with all 5 tasks."""
    launch(1, tmp_path / "one", tmp_path / "one.pt", 4, rule, engine)
    launch(2, tmp_path / "two", tmp_path / "two.pt", 4, rule, engine)
    one, two = (torch.load(tmp_path / f, weights_only=True) for f in ("one.pt", "two.pt"))
    assert_same(one["params"], two["params"])
    if rule != "maml":
        assert any(k.startswith("rule.") for k in one["params"])  # the rule was trained too
    torch.testing.assert_close(torch.tensor(one["history"]["accuracy"][-2:]),
                               torch.tensor(two["history"]["accuracy"][-2:]), rtol=0, atol=1e-12)
    init = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)
    assert init["iteration"] == 4 and (tmp_path / "two" / "checkpoint.pt").exists()


def test_checkpoints_move_between_world_sizes(tmp_path):
    launch(1, tmp_path / "ref", tmp_path / "ref.pt", 6, "kfc", "loop")
    launch(2, tmp_path / "a", tmp_path / "a3.pt", 3, "kfc", "loop")   # 2 ranks, then 1
    launch(1, tmp_path / "a", tmp_path / "a6.pt", 6, "kfc", "loop")
    launch(1, tmp_path / "b", tmp_path / "b3.pt", 3, "kfc", "loop")   # 1 rank, then 2
    launch(2, tmp_path / "b", tmp_path / "b6.pt", 6, "kfc", "loop")
    ref = params(tmp_path / "ref.pt")
    assert_same(ref, params(tmp_path / "a6.pt"))
    assert_same(ref, params(tmp_path / "b6.pt"))


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


@pytest.mark.skipif(not Path("/proc").exists(), reason="finds the workers through /proc")
def test_a_killed_rank_stops_the_run_and_the_rerun_resumes(tmp_path):
    launch(1, tmp_path / "ref", tmp_path / "ref.pt", 30, "maml", "loop")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           WORKER, str(tmp_path / "run"), str(tmp_path / "run.pt"), "30", "maml", "loop", "0.2"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not (ckpt.exists() and
                                           torch.load(ckpt, weights_only=True)["iteration"] >= 5):
        time.sleep(0.2)
    workers = [w for w in _children(proc.pid)]
    assert len(workers) == 2 and ckpt.exists(), "the run did not start"
    os.kill(max(workers), signal.SIGKILL)
    output, _ = proc.communicate(timeout=90)  # the survivor must not wait forever
    assert proc.returncode != 0
    assert "exitcode" in output.lower() or "failed" in output.lower(), output[-2000:]
    stopped_at = torch.load(ckpt, weights_only=True)["iteration"]
    assert 5 <= stopped_at < 30
    launch(2, tmp_path / "run", tmp_path / "run.pt", 30, "maml", "loop")
    assert_same(params(tmp_path / "ref.pt"), params(tmp_path / "run.pt"))


def test_train_command_leaves_the_experiments_run_folder(tmp_path, capsys):
    """``maml-probe train E1`` (one process) trains through the experiment's own ``run`` into
    ``runs/E1/<name>/``: results in the report's format, a record that says how it ran."""
    import json

    from maml_probe.cli import main

    code = main(["train", "E1", "--scale", "smoke", "--root", str(tmp_path), "--engine", "loop",
                 "-p", 'methods=["LR w/ MAML"]'])
    assert code == 0
    run_dir = next((tmp_path / "E1").iterdir())
    assert f"done: {run_dir}" in capsys.readouterr().out
    results = (run_dir / "results.csv").read_text().splitlines()
    assert results[0].startswith("table,dataset,method,accuracy") and "LR w/ MAML" in results[1]
    record = json.loads((run_dir / "record.json").read_text())
    assert record["status"] == "ok" and record["processes"] == 1 and record["engine"] == "loop"
    ckpt = torch.load(next(run_dir.glob("*/checkpoint.pt")), weights_only=True)
    assert ckpt["config"]["engine"] == "loop"
