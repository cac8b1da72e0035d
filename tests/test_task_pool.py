"""A fixed pool of training tasks (``TrainConfig.task_pool``, Appendix A.1.1 / A.1.2's 20,000 tasks)."""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from maml_probe.config import TrainConfig, _identity, build_task_source
from maml_probe.distributed import iteration_generator
from maml_probe.tasks import TaskPool, pool_task_seed
from maml_probe.tasks.synthetic import SyntheticBinaryTasks
from maml_probe.train import meta_train

CFG = TrainConfig(model="linnet", model_kwargs={"widths": [8], "bias": False},
                  dataset_kwargs={"dim": 10, "support": 10, "query": 10}, alpha=0.5,
                  meta_lr=0.05, outer_optimizer="adam", meta_batch=2, steps=1, iterations=6,
                  checkpoint_every=2, log_every=1, device="cpu", engine="loop")


def _key(batch):
    """One task's identity: its support inputs, as bytes."""
    return batch.support_x.numpy().tobytes()


def _tasks(batch):
    return [_key(batch.task(i)) for i in range(len(batch))]


def _state(result):
    return {k: v.clone() for k, v in result.learner.state_dict().items()}


# ------------------------------------------------------------------- the default is unchanged
def test_default_draws_fresh_tasks_and_keeps_every_config_identity():
    """Catches: a pool by default, or a new field that changes the identity (and so the reuse and
    resume) of every config written before it."""
    cfg = TrainConfig()
    assert cfg.task_pool is None
    assert not isinstance(build_task_source(CFG, "train"), TaskPool)
    for c in (cfg, CFG, CFG.replace(seed=3, meta_batch=4)):
        old = {k: v for k, v in _identity(c.to_dict()).items()
               if v != _identity(TrainConfig().to_dict()).get(k)}
        assert "task_pool" not in old
        old["iterations"] = c.iterations
        blob = json.dumps(old, sort_keys=True, default=repr)
        assert c.identity_key() == hashlib.sha256(blob.encode()).hexdigest()[:16]
        saved = {k: v for k, v in c.to_dict().items() if k != "task_pool"}  # an older checkpoint
        assert c.differences(saved) == []
    pooled = CFG.replace(task_pool=20000)
    assert pooled.identity_key() != CFG.identity_key()
    assert pooled.differences(CFG.to_dict()) == ["task_pool"]


@pytest.mark.parametrize("value", [0, -3, 2.5, True, "20000"])
def test_task_pool_must_be_a_positive_integer(value):
    with pytest.raises(ValueError, match="task_pool"):
        CFG.replace(task_pool=value).validate()
    with pytest.raises(ValueError, match="size"):
        TaskPool(SyntheticBinaryTasks(dim=4), value)


# ------------------------------------------------------------------- what the pool draws
def test_only_the_train_split_is_pooled_and_its_tasks_come_from_the_pool():
    """Catches: evaluation tasks drawn from the training pool, meta-batches that leave the pool,
    or a pool that is not used at all (every task distinct)."""
    cfg = CFG.replace(task_pool=5, seed=7)
    train = build_task_source(cfg, "train")
    assert isinstance(train, TaskPool) and len(train) == 5 and train.seed == 7
    assert not isinstance(build_task_source(cfg, "test"), TaskPool)
    assert train.input_shape == (10,) and train.num_outputs == 1
    pool = {_key(train.task(i)) for i in range(5)}
    assert len(pool) == 5
    seen = []
    for it in range(1, 31):  # as meta_step draws iteration ``it``
        batch = train.sample(cfg.meta_batch, iteration_generator(cfg.seed + 1, it))
        tasks = _tasks(batch)
        assert len(set(tasks)) == cfg.meta_batch          # distinct within a meta-batch
        seen += tasks
    assert set(seen) == pool
    fresh = build_task_source(CFG, "train")
    drawn = [t for it in range(1, 31)
             for t in _tasks(fresh.sample(2, iteration_generator(CFG.seed + 1, it)))]
    assert len(set(drawn)) == len(drawn)                  # without a pool: never the same task


def test_a_pool_task_is_a_function_of_seed_and_index_only():
    """Catches: pool tasks that depend on the meta-batch they are drawn in, on the order of the
    draws or on the process (what keeps resume and the multi-process path exact)."""
    src = SyntheticBinaryTasks(dim=6, support=3, query=3)
    a, b = TaskPool(src, 50, seed=1), TaskPool(src, 50, seed=1)
    assert _key(a.task(17)) == _key(b.task(17))
    b.sample(8, torch.Generator().manual_seed(0))         # draws in between change nothing
    ga, gb = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    assert _tasks(a.sample(6, ga)) == _tasks(b.sample(6, gb))
    idx = a.indices(6, torch.Generator().manual_seed(4))
    assert _tasks(a.sample(6, torch.Generator().manual_seed(4))) == [_key(a.task(i)) for i in idx]
    assert _key(TaskPool(src, 50, seed=2).task(17)) != _key(a.task(17))
    assert _key(TaskPool(src, 10, seed=1).task(3)) == _key(a.task(3))  # the size picks, not defines
    assert len({pool_task_seed(s, i) for s in range(3) for i in range(100)}) == 300
    with pytest.raises(IndexError):
        a.task(50)


def test_a_meta_batch_larger_than_the_pool_goes_round_it():
    pool = TaskPool(SyntheticBinaryTasks(dim=4, support=2, query=2), 3)
    idx = pool.indices(7, torch.Generator().manual_seed(0))
    assert len(idx) == 7 and sorted(idx[:3]) == sorted(idx[3:6]) == [0, 1, 2]
    assert len(pool.sample(7, torch.Generator().manual_seed(0))) == 7


# ------------------------------------------------------------------- meta-training on a pool
def test_meta_training_on_a_pool_resumes_exactly_and_differs_from_fresh_tasks(tmp_path):
    """Catches: a pool that resume would redraw differently (the pool is rebuilt on resume) and
    an option that training ignores."""
    cfg = CFG.replace(task_pool=4)
    full = meta_train(cfg, tmp_path / "full", progress=False)
    meta_train(cfg.replace(iterations=4), tmp_path / "split", progress=False)
    resumed = meta_train(cfg, tmp_path / "split", progress=False)
    a, b = _state(full), _state(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    fresh = _state(meta_train(CFG, progress=False))
    assert not torch.equal(a["model.fc.weight"], fresh["model.fc.weight"])
    with pytest.raises(ValueError, match="task_pool"):       # a pooled checkpoint is another run
        meta_train(CFG, tmp_path / "full", progress=False)


WORKER = '''
import sys
import torch
from maml_probe import train
from maml_probe.config import TrainConfig
from maml_probe.distributed import current_world, init_from_env

torch.set_num_threads(1)
init_from_env("cpu", timeout_s=30)
cfg = TrainConfig(dataset="synthetic", dataset_kwargs={"dim": 6, "support": 8, "query": 8},
                  model="lr", meta_batch=5, steps=2, alpha=0.3, meta_lr=0.05,
                  outer_optimizer="adam", iterations=4, dtype="float64", log_every=1,
                  checkpoint_every=2, engine="loop", task_pool=3)
result = train.meta_train(cfg, sys.argv[1], progress=False)
if current_world().is_main:
    torch.save({k: v.detach().clone() for k, v in result.learner.state_dict().items()}, sys.argv[2])
'''


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_two_processes_sharing_pooled_meta_batches_equal_one(tmp_path):
    """Catches: ranks that pick different pool tasks for the same meta-batch (meta-batches of 5
    tasks from a pool of 3, shared 3 + 2 by two processes)."""
    root = Path(__file__).resolve().parents[1]
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(root)}
    for nproc in (1, 2):
        cmd = ([sys.executable] if nproc == 1 else
               [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"])
        out = subprocess.run(cmd + [str(worker), str(tmp_path / f"run{nproc}"), str(tmp_path / f"{nproc}.pt")],
                             env=env, capture_output=True, text=True, timeout=240)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    one, two = (torch.load(tmp_path / f"{n}.pt", weights_only=True) for n in (1, 2))
    assert one.keys() == two.keys()
    for k in one:
        torch.testing.assert_close(one[k], two[k], rtol=1e-10, atol=1e-10, msg=k)
