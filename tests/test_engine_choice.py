"""``auto`` times the engines at the run's own episode and keeps the fastest, changing nothing."""
import torch

from maml_probe.checkpoint import load_checkpoint
from maml_probe.engine_choice import fastest_engine
from maml_probe.tasks.synthetic import SyntheticBinaryTasks
from maml_probe.train import TrainConfig, learner_from_config, meta_train

CFG = TrainConfig(model="linnet", model_kwargs={"widths": [8, 8], "bias": False},
                  dataset_kwargs={"dim": 10, "support": 10, "query": 10}, alpha=0.5,
                  meta_lr=0.05, outer_optimizer="adam", meta_batch=3, steps=2, iterations=4,
                  log_every=1, device="cpu")


def _learner_and_batch():
    torch.manual_seed(0)
    learner = learner_from_config(CFG)
    source = SyntheticBinaryTasks(dim=10, support=10, query=10)
    return learner, source.sample(3, torch.Generator().manual_seed(0))


def test_timing_leaves_gradients_and_parameters_as_they_were():
    """Catches: the timed meta-gradients leaking into ``.grad`` (the first update would then
    follow several batches) or a parameter moving while the engines are compared."""
    learner, batch = _learner_and_batch()
    before = {k: v.clone() for k, v in learner.state_dict().items()}
    marker = [torch.full_like(p, 7.0) for p in learner.parameters()]
    for p, m in zip(learner.parameters(), marker):
        p.grad = m.clone()
    choice = fastest_engine(learner, batch, steps=2, repeats=1)
    for p, m in zip(learner.parameters(), marker):
        assert torch.equal(p.grad, m)
    for k, v in learner.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert choice.engine in ("loop", "auto")
    assert choice.seconds and all(s > 0 for s in choice.seconds.values())
    assert choice.resolved in choice.seconds and "timed at this episode" in choice.reason


def test_the_fastest_candidate_is_kept(monkeypatch):
    """Catches: a choice that ignores the measurement (the fixed rule picking the slower engine,
    as at mini-ImageNet's episode on a CPU)."""
    import maml_probe.engine_choice as ec

    slow = {"loop": 0.0, "auto": 0.05}

    def fake(model, rule, batch, *, impl, **kw):
        clock["t"] += slow[impl]
        return 0.0, 0.0

    clock = {"t": 0.0}
    monkeypatch.setattr(ec, "meta_backward", fake)
    monkeypatch.setattr(ec.time, "perf_counter", lambda: clock["t"])
    learner, batch = _learner_and_batch()
    assert fastest_engine(learner, batch, steps=2).engine == "loop"
    slow.update(loop=0.05, auto=0.0)
    assert fastest_engine(learner, batch, steps=2).engine == "auto"


def test_a_long_auto_run_records_its_timed_choice(tmp_path, monkeypatch):
    """Catches: the choice not reaching the checkpoint (a reader could not tell which engine
    made the numbers) or short runs paying for the timing."""
    import maml_probe.train as train

    monkeypatch.setattr(train, "MIN_ITERATIONS", 3)
    result = meta_train(CFG.replace(engine="auto"), tmp_path / "auto", progress=False)
    saved = load_checkpoint(tmp_path / "auto" / "checkpoint.pt")["engine_choice"]
    assert saved["engine"] in ("loop", "auto") and saved["seconds"]
    assert result.engine == saved["resolved"]
    monkeypatch.setattr(train, "MIN_ITERATIONS", 50)
    short = meta_train(CFG.replace(engine="auto"), tmp_path / "short", progress=False)
    saved = load_checkpoint(tmp_path / "short" / "checkpoint.pt")["engine_choice"]
    assert saved == {"engine": "auto", "resolved": "auto", "seconds": {}, "reason": "as configured"}
    assert short.engine == "auto"


def test_a_finished_run_reports_the_engine_it_ran_on(tmp_path, monkeypatch):
    """Catches: a run read back from its checkpoint reporting ``auto`` instead of the engine
    that computed it (the methods table would then hide the choice)."""
    import maml_probe.train as train

    monkeypatch.setattr(train, "MIN_ITERATIONS", 3)
    first = meta_train(CFG.replace(engine="auto"), tmp_path / "run", progress=False)
    again = meta_train(CFG.replace(engine="auto"), tmp_path / "run", progress=False)
    assert again.engine == first.engine and again.engine != "auto"
