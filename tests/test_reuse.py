"""A model that another run has finished is copied, never trained twice; anything else is trained."""
import json

import pytest

from maml_probe.checkpoint import load_checkpoint
from maml_probe.experiments import reuse
from maml_probe.experiments.common import train_and_evaluate
from maml_probe.experiments.settings import image_config
from maml_probe.train import TrainConfig

CFG = TrainConfig(model="linnet", model_kwargs={"widths": [8], "bias": False},
                  dataset_kwargs={"dim": 10, "support": 10, "query": 10}, alpha=0.5,
                  meta_lr=0.05, outer_optimizer="adam", meta_batch=2, steps=1, iterations=3,
                  log_every=1, device="cpu")


def _runner_folder(root, experiment):
    """A run folder as the batch runner makes it (``<runs>/<experiment>/<run>/record.json``)."""
    folder = root / experiment / "cpu"
    folder.mkdir(parents=True)
    (folder / "record.json").write_text("{}")
    return folder


def test_a_finished_identical_model_is_copied_not_trained(tmp_path, monkeypatch):
    """Catches: E8/E10 training again the CNN that E3 has finished (tens of minutes at ``cpu``)."""
    first = _runner_folder(tmp_path, "E3")
    a = train_and_evaluate("Net w/ MAML", CFG, first, test_tasks=4, progress=False)
    record = json.loads((first / "net-w-maml" / "model.json").read_text())
    assert record["identity"] == CFG.identity_key() and record["reused_from"] is None

    import maml_probe.experiments.common as common
    trained = []
    real = common.meta_train
    monkeypatch.setattr(common, "meta_train", lambda cfg, sub, **kw: trained.append(
        load_checkpoint(sub / "checkpoint.pt")["iteration"] if (sub / "checkpoint.pt").exists()
        else None) or real(cfg, sub, **kw))
    second = _runner_folder(tmp_path, "E8")
    b = train_and_evaluate("Net w/ MAML", CFG.replace(device="cpu", engine="loop"), second,
                           test_tasks=4, progress=False)
    assert trained == [CFG.iterations]          # resumed at the end: no step was trained
    copied = json.loads((second / "net-w-maml" / "model.json").read_text())
    assert copied["reused_from"] == str(first / "net-w-maml" / "checkpoint.pt")
    assert a.tests["accuracy"].tolist() == b.tests["accuracy"].tolist()


@pytest.mark.parametrize("change", [{"iterations": 4}, {"alpha": 0.4}, {"seed": 1}])
def test_a_different_model_is_trained(tmp_path, change):
    """Catches: reusing a model trained longer, with another rate or seed (a wrong number)."""
    first = _runner_folder(tmp_path, "E3")
    train_and_evaluate("Net w/ MAML", CFG, first, test_tasks=2, progress=False)
    second = _runner_folder(tmp_path, "E8")
    other = CFG.replace(**change)
    train_and_evaluate("Net w/ MAML", other, second, test_tasks=2, progress=False)
    record = json.loads((second / "net-w-maml" / "model.json").read_text())
    assert record["reused_from"] is None and record["identity"] == other.identity_key()
    assert load_checkpoint(second / "net-w-maml" / "checkpoint.pt")["iteration"] == other.iterations


def test_folders_outside_the_runner_neither_look_nor_share(tmp_path):
    """Catches: a script's or a test's folder silently picking up a stranger's model."""
    first = _runner_folder(tmp_path, "E3")
    train_and_evaluate("Net w/ MAML", CFG, first, test_tasks=2, progress=False)
    plain = tmp_path / "E8" / "mine"
    assert reuse.default_roots(plain) == []
    train_and_evaluate("Net w/ MAML", CFG, plain, test_tasks=2, progress=False)
    assert json.loads((plain / "net-w-maml" / "model.json").read_text())["reused_from"] is None


def test_an_unreadable_or_unfinished_donor_is_skipped(tmp_path):
    """Catches: a corrupt checkpoint or a half-trained model being copied into a new run."""
    first = _runner_folder(tmp_path, "E3")
    train_and_evaluate("Net w/ MAML", CFG, first, test_tasks=2, progress=False)
    (first / "net-w-maml" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert reuse.find(CFG, [tmp_path]) is None
    (first / "net-w-maml" / "model.json").write_text("{broken")
    assert reuse.find(CFG, [tmp_path]) is None


def test_the_key_ignores_where_and_how_and_new_default_fields():
    """Catches: moving the data, another device or engine, or a field added to ``TrainConfig``
    later, changing a model's identity (it would be trained again)."""
    key = CFG.identity_key()
    assert CFG.replace(device="cuda", engine="loop", tune_malloc=True).identity_key() == key
    here = image_config("omniglot", "cnn", "maml", "cpu", data_root="/data/here")
    there = image_config("omniglot", "cnn", "maml", "cpu", data_root="/data/there", cache_dir="/c")
    assert here.identity_key() == there.identity_key()
    assert CFG.replace(iterations=4).identity_key() != key
    assert CFG.replace(meta_batch=3).identity_key() != key
