"""Meta-training: determinism, exact resume, non-finite stop, config validation."""
import math

import pytest
import torch

from maml_probe.checkpoint import load_checkpoint
from maml_probe.tasks.synthetic import SyntheticBinaryTasks, one_step_ceiling
from maml_probe.train import NonFiniteLossError, TrainConfig, load_learner, meta_train

CFG = TrainConfig(model="linnet", model_kwargs={"widths": [8, 8], "bias": False},
                  dataset_kwargs={"dim": 10, "support": 10, "query": 10}, alpha=0.5,
                  meta_lr=0.05, outer_optimizer="adam", meta_batch=2, steps=2, iterations=6,
                  checkpoint_every=2, log_every=1, device="cpu")


def _history(result):
    """The history without wall-time columns (those differ between identical runs)."""
    return result.history.drop(columns=["seconds_per_iteration"])


def _state(result):
    return {k: v.clone() for k, v in result.learner.state_dict().items()}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


class Interrupting:
    """A task source that raises on its ``fail_at``-th draw (a run killed mid-way)."""

    def __init__(self, source, fail_at, error=KeyboardInterrupt):
        self.source, self.fail_at, self.error, self.calls = source, fail_at, error, 0
        self.input_shape, self.num_outputs = source.input_shape, source.num_outputs

    def sample(self, n, generator):
        self.calls += 1
        if self.calls == self.fail_at:
            raise self.error("simulated kill")
        return self.source.sample(n, generator)


class Poisoning(Interrupting):
    """Returns a batch whose inputs are NaN on its ``fail_at``-th draw."""

    def sample(self, n, generator):
        self.calls += 1
        batch = self.source.sample(n, generator)
        if self.calls == self.fail_at:
            batch = type(batch)(batch.support_x * math.nan, batch.support_y,
                                batch.query_x, batch.query_y)
        return batch


def _source():
    return SyntheticBinaryTasks(dim=10, support=10, query=10)


def test_same_seed_same_results():
    a = meta_train(CFG, progress=False)
    b = meta_train(CFG, progress=False)
    _assert_same(_state(a), _state(b))
    assert _history(a).equals(_history(b))
    c = meta_train(CFG.replace(seed=1), progress=False)
    assert not torch.equal(_state(a)["model.fc.weight"], _state(c)["model.fc.weight"])


def test_resume_after_kill_equals_uninterrupted(tmp_path):
    full = meta_train(CFG, tmp_path / "full", progress=False)
    with pytest.raises(KeyboardInterrupt):
        meta_train(CFG, tmp_path / "killed", progress=False,
                   sources={"train": Interrupting(_source(), fail_at=5)})
    assert load_checkpoint(tmp_path / "killed" / "checkpoint.pt")["iteration"] == 4
    resumed = meta_train(CFG, tmp_path / "killed", progress=False)
    _assert_same(_state(full), _state(resumed))
    assert _history(full).equals(_history(resumed))


def test_resume_refuses_a_different_config(tmp_path):
    meta_train(CFG, tmp_path, progress=False)
    with pytest.raises(ValueError, match="different config"):
        meta_train(CFG.replace(alpha=0.1), tmp_path, progress=False)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    with pytest.raises(NonFiniteLossError, match="iteration 4.*last good checkpoint"):
        meta_train(CFG, tmp_path / "nan", progress=False,
                   sources={"train": Poisoning(_source(), fail_at=4)})
    state = load_checkpoint(tmp_path / "nan" / "checkpoint.pt")
    assert state["iteration"] == 2
    clean = meta_train(CFG.replace(iterations=2), progress=False)
    _assert_same({f"{k}": v for k, v in state["learner"].items()}, _state(clean))
    assert all(torch.isfinite(v).all() for v in state["learner"].values())


def test_checkpoint_round_trip_rebuilds_learner(tmp_path):
    result = meta_train(CFG, tmp_path, progress=False)
    learner, cfg = load_learner(tmp_path / "checkpoint.pt")
    assert cfg == CFG
    _assert_same(learner.state_dict(), _state(result))
    with pytest.raises(ValueError, match="not a readable"):
        (tmp_path / "bad.pt").write_bytes(b"garbage")
        load_checkpoint(tmp_path / "bad.pt")


@pytest.mark.parametrize("field,value,match", [
    ("model", "resnet", "model must be one of"), ("steps", 0, "steps must be"),
    ("alpha", 0.0, "alpha must be"), ("meta_lr", -1.0, "meta_lr must be"),
    ("rule", "adamw", "rule must be one of"), ("dataset", "mnist", "dataset must be one of"),
    ("meta_batch", 0, "meta_batch must be"),
])
def test_bad_config_raises_value_error_naming_field(field, value, match):
    with pytest.raises(ValueError, match=match):
        meta_train(CFG.replace(**{field: value}), progress=False)


def test_wrong_input_shape_is_a_clear_error():
    cfg = CFG.replace(model_kwargs={"widths": [8], "bias": False, "in_features": 12})
    with pytest.raises(ValueError, match="in_features=12"):
        meta_train(cfg, progress=False)


def test_synthetic_meta_training_learns_and_ceiling_grows_with_support():
    cfg = TrainConfig(model="lr", model_kwargs={"bias": False}, alpha=0.5, meta_lr=0.01,
                      iterations=300, log_every=50, dataset_kwargs={"dim": 20, "support": 50},
                      eval_every=300, eval_tasks=100, device="cpu")
    result = meta_train(cfg, progress=False)
    val = result.history.query("split == 'val'").set_index("phase")["accuracy"]
    assert val["pre"] < 0.6 < val["post"]
    assert one_step_ceiling(20, 5, 300) < one_step_ceiling(20, 50, 300) < one_step_ceiling(20, 500, 300)
