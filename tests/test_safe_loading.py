"""Files from elsewhere cannot run code: checkpoints, dataset pickles, run folder names.

Each crafted file carries a ``__reduce__`` payload that would create a marker file when
unpickled; every loader must refuse it, and the marker must never appear.
"""
from __future__ import annotations

import io
import pickle
import tarfile

import numpy as np
import pytest
import torch

from maml_probe.checkpoint import convert_checkpoint, load_checkpoint, save_checkpoint
from maml_probe.data.cifarfs import load_cifarfs
from maml_probe.data.errors import IntegrityError
from maml_probe.data.miniimagenet import load_miniimagenet
from maml_probe.data.safe_pickle import UnsafePickleError, safe_loads
from maml_probe.experiments.registry import EXPERIMENTS
from maml_probe.probes import load_probe_setup
from maml_probe.runner import check_parameters, run_notebook
from maml_probe.runs import MAX_NAME, check_run_name, run_dir_for, run_name
from maml_probe.train import TrainConfig, load_learner, meta_train

from .data_fixtures import cifar100_parts, make_miniimagenet_pickles

CFG = TrainConfig(dataset="synthetic", dataset_kwargs={"dim": 8, "support": 10, "query": 10},
                  iterations=6, checkpoint_every=3, log_every=3, device="cpu")


class Payload:
    """Unpickling this creates ``path`` (a stand-in for any code a pickle could run)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_checkpoint_with_a_payload_is_refused_everywhere(tmp_path):
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    meta_train(CFG, run, progress=False)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    state["history"].append(Payload(marker))
    torch.save(state, run / "checkpoint.pt")
    with pytest.raises(ValueError, match="refers to (io|builtins).open.*not loaded"):
        load_checkpoint(run / "checkpoint.pt")
    with pytest.raises(ValueError, match="refers to (io|builtins).open"):          # resume
        meta_train(CFG.replace(iterations=9), run, progress=False)
    with pytest.raises(ValueError, match="refers to (io|builtins).open"):          # report, sweeps
        load_learner(run / "checkpoint.pt")
    with pytest.raises(ValueError, match="refers to (io|builtins).open"):          # the explorer
        load_probe_setup(run / "checkpoint.pt")
    assert not marker.exists()


def test_checkpoints_hold_only_tensors_and_plain_data_and_resume_exactly(tmp_path):
    meta_train(CFG.replace(iterations=3), tmp_path / "a", progress=False)
    resumed = meta_train(CFG, tmp_path / "a", progress=False)
    straight = meta_train(CFG, tmp_path / "b", progress=False)
    for (k, x), y in zip(resumed.learner.state_dict().items(), straight.learner.state_dict().values()):
        assert torch.equal(x, y), k
    state = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)  # loads safely
    assert isinstance(state["rng"]["numpy"]["keys"], torch.Tensor)


def test_an_older_checkpoint_is_refused_with_the_command_that_converts_it(tmp_path):
    run = tmp_path / "run"
    meta_train(CFG.replace(iterations=3), run, progress=False)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    state.pop("format")
    state["rng"]["numpy"] = np.random.get_state()          # the earlier format: numpy's tuple
    save_checkpoint(run / "checkpoint.pt", state)
    with pytest.raises(ValueError, match="python -m maml_probe.checkpoint convert"):
        load_checkpoint(run / "checkpoint.pt")
    assert load_checkpoint(run / "checkpoint.pt", trust=True)["iteration"] == 3
    convert_checkpoint(run / "checkpoint.pt")
    resumed = meta_train(CFG, run, progress=False)           # and it resumes after conversion
    straight = meta_train(CFG, tmp_path / "straight", progress=False)
    for x, y in zip(resumed.learner.parameters(), straight.learner.parameters()):
        assert torch.equal(x, y)


def _cifar_archive(path, train_blob: bytes) -> None:
    blobs = {k: pickle.dumps(v, protocol=2) for k, v in cifar100_parts().items()}
    blobs["train"] = train_blob
    with tarfile.open(path, "w:gz") as tf:
        for k, b in blobs.items():
            info = tarfile.TarInfo(f"cifar-100-python/{k}")
            info.size = len(b)
            tf.addfile(info, io.BytesIO(b))


def test_a_crafted_cifar_archive_is_refused_and_not_cached(tmp_path):
    marker, root, cache = tmp_path / "pwned", tmp_path / "data", tmp_path / "cache"
    root.mkdir()
    _cifar_archive(root / "cifar-100-python.tar.gz",
                   pickle.dumps({b"data": Payload(marker)}, protocol=2))
    with pytest.raises(IntegrityError, match="refers to (io|builtins).open.*Nothing was cached"):
        load_cifarfs(root, cache, "train")
    assert not marker.exists()
    assert not cache.exists() or not any(cache.rglob("*.npy"))


def test_a_crafted_miniimagenet_pickle_is_refused(tmp_path):
    marker, root = tmp_path / "pwned", tmp_path / "data"
    folder = root / "mini-imagenet"
    make_miniimagenet_pickles(folder)
    with open(folder / "mini-imagenet-cache-train.pkl", "wb") as f:
        pickle.dump({"image_data": Payload(marker), "class_dict": {}}, f, protocol=4)
    with pytest.raises(IntegrityError, match="refers to (io|builtins).open"):
        load_miniimagenet(root, tmp_path / "cache", "train", source="pickle")
    assert not marker.exists()


def test_the_restricted_unpickler_reads_what_the_official_files_hold():
    arrays = {b"data": np.arange(12, dtype=np.uint8).reshape(3, 4), b"labels": [1, 2, 3],
              b"names": [b"a", b"b"], b"f": np.float32(1.5)}
    for protocol in (2, 4, 5):
        out = safe_loads(pickle.dumps(arrays, protocol=protocol), encoding="bytes")
        assert np.array_equal(out[b"data"], arrays[b"data"]) and out[b"labels"] == [1, 2, 3]
        assert out[b"names"] == [b"a", b"b"] and out[b"f"] == np.float32(1.5)
    with pytest.raises(UnsafePickleError, match="os.system"):
        safe_loads(b"cos\nsystem\n(S'true'\ntR.", source="evil.pkl")


@pytest.mark.parametrize("bad", ["../escape", "a/b", "a\\b", "..", ".hidden", "", "x" * 300,
                                 "/abs"])
def test_run_folder_names_cannot_leave_runs(tmp_path, bad):
    with pytest.raises(ValueError, match="run name"):
        run_dir_for(tmp_path, "E1", bad)
    assert not any(tmp_path.iterdir())


def test_run_names_from_parameters_are_single_bounded_folders(tmp_path):
    for value in ("../../etc", "a/b/c", "x" * 300, ".."):
        name = run_name("cpu", {"dataset": value})
        assert check_run_name(name) == name and len(name) <= MAX_NAME
        assert run_dir_for(tmp_path, "E7", name).parent == (tmp_path / "E7").resolve()
    long_a, long_b = run_name("cpu", {"x": "a" * 300}), run_name("cpu", {"x": "a" * 299 + "b"})
    assert long_a != long_b                                   # no two runs share a folder


def test_bad_values_create_no_folder(tmp_path):
    root = tmp_path / "runs"
    for params in ({"seed": "abc"}, {"seed": 1.5}, {"overrides": "[1]"}, {"seed": True}):
        with pytest.raises(ValueError, match="must be a"):
            run_notebook(EXPERIMENTS["E1"], "smoke", params, root=root, progress=False)
    with pytest.raises(ValueError, match="run name"):
        run_notebook(EXPERIMENTS["E1"], "smoke", {}, root=root, name="../outside", progress=False)
    assert not root.exists()
    check_parameters(EXPERIMENTS["E1"], {"seed": 3, "overrides": {"iterations": 2}})


def test_a_damaged_checkpoint_is_reported_as_damaged_not_as_old(tmp_path):
    """Bytes that happen to parse as a pickle 'GLOBAL' opcode are damage, not an old format."""
    from maml_probe.checkpoint import load_checkpoint

    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"corrupted bytes here")
    with pytest.raises(ValueError, match="damaged or not a checkpoint.*delete it") as info:
        load_checkpoint(path)
    assert "convert" not in str(info.value)
