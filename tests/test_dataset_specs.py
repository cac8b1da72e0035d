"""The dataset registry is the one place a dataset is described, and everything reads it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

try:
    from data_fixtures import make_cifar100, make_miniimagenet_csv, make_omniglot
except ImportError:  # tests/ imported as a package
    from tests.data_fixtures import make_cifar100, make_miniimagenet_csv, make_omniglot

import maml_probe.data as data
from maml_probe import learner
from maml_probe.config import TrainConfig
from maml_probe.data import registry
from maml_probe.data.cli import main as data_cli
from maml_probe.data.dataset import FewShotDataset
from maml_probe.data.errors import missing_dataset
from maml_probe.data.locations import candidate_dirs
from maml_probe.data.spec import DatasetSpec, PaperEpisode, PaperSettings, class_counts
from maml_probe.experiments import e11_compute, settings

#: A small generated copy of each dataset read from disk, and the loader options that fit it.
#: A new dataset needs an entry here (test_every_dataset_on_disk_has_a_fixture fails without).
FIXTURES = {
    "omniglot": (lambda root: make_omniglot(root / "omniglot"), {"split_sizes": (4, 2, 2)}),
    "miniimagenet": (lambda root: make_miniimagenet_csv(root / "mini-imagenet"), {}),
    "cifarfs": (lambda root: make_cifar100(root / "cifar-fs"), {}),
}

#: The paper's Appendix A.1.2 settings, as written there (Section 5.2 and the checklist).
PAPER = {
    "omniglot": ((10, 5, 4, 0.003), {"cnn": 0.5, "scnn": 0.8, "metasgd": 0.5, "mc": 0.5, "kfc": 0.5}),
    "cifarfs": ((10, 3, 2, 0.003), {"cnn": 0.7, "scnn": 0.7, "metasgd": 0.5, "mc": 0.5, "kfc": 0.5}),
    "miniimagenet": ((10, 1, 5, 0.0005),
                     {"cnn": 0.07, "scnn": 0.07, "metasgd": 0.1, "mc": 0.09, "kfc": 0.005}),
}


def test_every_dataset_on_disk_has_a_fixture():
    assert set(FIXTURES) == set(registry.dataset_names(on_disk=True))
    assert data.DATASETS == ("omniglot", "miniimagenet", "cifarfs")
    assert data.DATASET_NAMES == registry.DATASET_NAMES == ("synthetic", *data.DATASETS)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_every_spec_fixture_installs_loads_and_prepares(name, tmp_path):
    spec = registry.get_spec(name)
    make, options = FIXTURES[name]
    src, root, cache = tmp_path / "src", tmp_path / "data", tmp_path / "cache"
    reason = data.dataset_available(name, root)
    assert reason and spec.install_command in reason
    with pytest.raises(FileNotFoundError, match="Expected layout"):
        spec.find_sources(root)
    make(src)
    folder = src / spec.folder
    assert data_cli(["download", name, "--from", str(folder), "--root", str(root),
                     "--cache-dir", str(cache), "--quiet", "--no-prepare"]) == 0
    assert (root / spec.folder).is_dir() and data.dataset_available(name, root) is None
    assert all(p.exists() for p in spec.find_sources(root))
    ds = data.load_dataset(name, None, root, cache, progress=False, **options)
    assert isinstance(ds, FewShotDataset) and ds.name == name and ds.split == spec.default_split
    assert ds.image_shape == spec.input_shape and ds.info["normalisation"] == spec.normalisation
    records = [meta for _, meta in spec.prepare(root, cache, False)]
    assert records and all(tuple(meta["shape"])[-3:] == spec.input_shape for meta in records)


def test_synthetic_is_a_dataset_without_files():
    spec = registry.get_spec("synthetic")
    assert not spec.on_disk and spec.loader is None and "synthetic" not in data.DATASETS
    source = spec.task_source(dim=spec.input_shape[0], support=3, query=2)
    assert source.input_shape == spec.input_shape == (100,)
    assert source.sample(2, torch.Generator().manual_seed(0)).support_x.shape == (2, 3, 100)
    with pytest.raises(ValueError, match="dataset='synthetic' is not one of 'omniglot'"):
        registry.get_spec("synthetic", on_disk=True)
    with pytest.raises(ValueError, match="dataset must be one of .*'synthetic'"):  # the same names
        TrainConfig(dataset="no-such-set").validate()


def test_settings_shapes_and_tables_come_from_the_specs():
    assert registry.paper_datasets() == e11_compute.DATASETS == ("omniglot", "cifarfs", "miniimagenet")
    assert settings.PAPER_EPISODES == {
        d: registry.get_spec(d).paper.episode.as_dict() for d in registry.paper_datasets()}
    assert settings.ALPHA == {d: dict(registry.get_spec(d).paper.alpha) for d in registry.paper_datasets()}
    assert dict(learner.INPUT_SHAPES) == {s.name: s.input_shape for s in registry.dataset_specs(on_disk=True)}
    for name, ((ways, shots, steps, meta_lr), alphas) in PAPER.items():
        spec = registry.get_spec(name)
        episode = spec.paper.episode
        assert (episode.ways, episode.shots, episode.steps, episode.meta_lr) == (ways, shots, steps, meta_lr)
        assert spec.paper.alpha["cfc"] == spec.paper.alpha["kfc"]  # chosen: CFC uses KFC's rate
        for model, method, key in (("cnn", "maml", "cnn"), ("scnn", "maml", "scnn"),
                                   ("scnn", "metasgd", "metasgd"), ("scnn", "mc", "mc"),
                                   ("cnn", "kfc", "kfc")):
            cfg = settings.image_config(name, model, method, "paper")
            assert cfg.alpha == alphas[key] and cfg.meta_lr == meta_lr
            assert (cfg.ways, cfg.shots, cfg.queries, cfg.steps, cfg.meta_batch) == (
                episode.ways, episode.shots, episode.queries, episode.steps, episode.meta_batch)
    smoke = settings.image_config("miniimagenet", "scnn", "maml", "smoke")
    assert smoke.dataset_kwargs == {"classes_limit": 10}
    with pytest.raises(ValueError, match="dataset must be one of"):
        settings.image_config("synthetic", "cnn", "maml", "paper")


def test_a_spec_must_describe_how_to_read_it():
    with pytest.raises(ValueError, match="needs \\['loader', 'find_sources', 'split_counts'\\]"):
        DatasetSpec(name="empty", display_name="Empty", input_shape=(1, 2, 2), folder="empty")
    with pytest.raises(ValueError, match="needs a task_source"):
        DatasetSpec(name="nothing", display_name="Nothing", input_shape=(3,))
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.get_spec("omniglot"))


# A dataset defined only here: one .npy file [classes, per_class, 1, 4, 4] uint8 per split.
TOY_SPLITS = {"train": 4, "val": 2, "test": 2}


def _find_toy(root) -> list[Path]:
    searched = [d / f"toy-{s}.npy" for d in candidate_dirs("toyset", root) for s in TOY_SPLITS]
    for d in candidate_dirs("toyset", root):
        files = [d / f"toy-{s}.npy" for s in TOY_SPLITS]
        if all(f.is_file() for f in files):
            return files
    raise missing_dataset("toyset", searched)


def load_toy(root=None, cache_dir=None, split="train", *, progress=True) -> FewShotDataset:
    path = _find_toy(root)[list(TOY_SPLITS).index(split)]
    images = torch.from_numpy(np.load(path))
    return FewShotDataset("toyset", split, images, tuple(f"c{i}" for i in range(len(images))),
                          {"normalisation": "x / 255"})


def _prepare_toy(root, cache_dir, progress):
    for split in TOY_SPLITS:
        yield f"toy {split}", {"shape": list(load_toy(root, cache_dir, split).images.shape),
                               "cache_hit": True}


TOY = DatasetSpec(
    name="toyset", display_name="Toy set", input_shape=(1, 4, 4),
    loader=load_toy, split_counts=class_counts(TOY_SPLITS, per_class=5), normalisation="x / 255",
    folder="toy-set", layout="toy-set/toy-{train,val,test}.npy", find_sources=_find_toy,
    prepare=_prepare_toy,
    install_plan=lambda path: [(p, p.name) for p in sorted(path.glob("toy-*.npy"))],
    manual_download="toyset is made by the test itself",
    paper=PaperSettings(PaperEpisode(ways=2, shots=1, queries=2, steps=1, meta_batch=2, meta_lr=0.01),
                        alpha={"cnn": 0.1, "scnn": 0.2, "metasgd": 0.3, "mc": 0.3, "kfc": 0.3,
                               "cfc": 0.3}, column=9),
)


@pytest.fixture
def toyset():
    registry.register(TOY)
    yield TOY
    registry.unregister("toyset")
    assert "toyset" not in registry.DATASET_NAMES


def test_a_registered_spec_is_picked_up_without_other_edits(toyset, tmp_path, capsys):
    src, root, cache = tmp_path / "src", tmp_path / "data", str(tmp_path / "cache")
    src.mkdir()
    rng = np.random.default_rng(0)
    for split, classes in TOY_SPLITS.items():
        np.save(src / f"toy-{split}.npy", rng.integers(0, 256, (classes, 5, 1, 4, 4), dtype=np.uint8))

    assert "toyset" in data.DATASETS and data.DATASETS[-1] == "toyset"
    reason = data.dataset_available("toyset", root)
    assert "maml-probe data download toyset --from PATH" in reason
    with pytest.raises(FileNotFoundError, match="toy-set/toy-\\{train,val,test\\}.npy"):
        data.load_dataset("toyset", "train", root)
    assert data_cli(["download", "toyset", "--root", str(root)]) == 1
    assert "made by the test itself" in capsys.readouterr().err

    assert data_cli(["download", "toyset", "--from", str(src), "--root", str(root),
                     "--cache-dir", cache, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "installed" in out and "toy test: (2, 5, 1, 4, 4) uint8, cache up to date" in out
    assert data.dataset_available("toyset", root) is None
    assert data_cli(["info", "--root", str(root), "--cache-dir", cache]) == 0
    assert "toyset: installed" in capsys.readouterr().out
    assert data_cli(["prepare", "toyset", "--root", str(root), "--cache-dir", cache]) == 0

    with pytest.raises(ValueError, match="ways=5 exceeds the 4 classes of toyset/train"):
        data.build_task_source("toyset", "train", 5, 1, 1, root=tmp_path / "nowhere")
    sampler = data.build_task_source("toyset", "train", 2, 1, 2, root=root)
    assert sampler.sample(3, torch.Generator().manual_seed(0)).query_x.shape == (3, 4, 1, 4, 4)

    assert learner.INPUT_SHAPES["toyset"] == (1, 4, 4)
    assert registry.paper_datasets()[-1] == "toyset"
    cfg = settings.image_config("toyset", "scnn", "maml", "paper", data_root=str(root))
    assert (cfg.ways, cfg.queries, cfg.alpha, cfg.meta_lr) == (2, 2, 0.2, 0.01)
