"""What the project knows about one dataset, in one frozen record: :class:`DatasetSpec`.

A spec says what a dataset is (name, display name, input shape), how to read it (a loader
that returns a ``FewShotDataset``, or a task-source builder for datasets generated on the
fly), how the standard splits are sized and normalised, where its files go and how to get
them (download sources with checksums, the layout expected on disk, the install command),
and the settings the paper trains it with (:class:`PaperSettings`, Appendix A.1.2). Each
dataset's spec lives in its own module under :mod:`maml_probe.data.specs`;
:mod:`maml_probe.data.registry` collects them.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

if TYPE_CHECKING:
    from ..tasks.base import TaskSource
    from .dataset import FewShotDataset

PathLike = str | os.PathLike | None
#: ``find_sources(root)``: the source files or folders found, else ``FileNotFoundError``.
SourceFinder = Callable[[PathLike], list[Path]]
#: ``split_counts(split, options)``: (classes, images per class) of a standard split.
SplitCounter = Callable[[str, Mapping[str, Any]], tuple[int, int]]
#: ``prepare(root, cache_dir, progress)``: builds caches, yields (label, cache record) each.
Preparer = Callable[[PathLike, PathLike, bool], Iterable[tuple[str, dict[str, Any]]]]
#: ``install_plan(path)``: (source, name inside the dataset folder) pairs to install.
InstallPlanner = Callable[[Path], list[tuple[Path, str]]]


@dataclass(frozen=True)
class Remote:
    """One downloadable file: final name, URL and known checksums (None = unknown)."""

    filename: str
    url: str
    md5: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class PaperEpisode:
    """The episode and outer loop the paper trains a dataset with (Section 5.2, A.1.2).

    ``queries`` is per class; ``steps`` the number of adaptation steps; ``meta_batch`` the
    tasks per outer step; ``meta_lr`` Adam's learning rate in the outer loop.
    """

    ways: int
    shots: int
    queries: int
    steps: int
    meta_batch: int
    meta_lr: float

    def as_dict(self) -> dict[str, Any]:
        """The episode as ``TrainConfig`` keyword arguments.

        Returns:
            ``{"ways": ..., "shots": ..., "queries": ..., "steps": ..., "meta_batch": ...,
            "meta_lr": ...}``.
        """
        return asdict(self)


@dataclass(frozen=True, eq=False)
class PaperSettings:
    """The paper's non-linear-experiment settings for one dataset (Appendix A.1.2).

    ``alpha`` maps a model (``cnn``, ``scnn``, used with plain MAML) or a meta-optimizer
    (``metasgd``, ``mc``, ``kfc``, ``cfc``) to its adaptation (inner) learning rate.
    ``column`` is the dataset's position in the paper's result tables (Tables 2, A1, A3).
    ``cpu`` is how the ``cpu`` scale shrinks the outer loop (``iterations``, ``meta_batch``, and
    optionally ``test_tasks``, else 600) so that one experiment on the dataset fits in about an
    hour on a 2-core CPU; the episode (ways, shots, queries, steps) and the learning rates stay
    the paper's.
    """

    episode: PaperEpisode
    alpha: Mapping[str, float]
    column: int
    cpu: Mapping[str, int] = field(default_factory=lambda: {"iterations": 500, "meta_batch": 4})

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", MappingProxyType(dict(self.alpha)))
        unknown = set(self.cpu) - {"iterations", "meta_batch", "test_tasks"}
        if unknown:
            raise ValueError(f"PaperSettings.cpu takes iterations, meta_batch and test_tasks, "
                             f"got {sorted(unknown)}")
        object.__setattr__(self, "cpu", MappingProxyType(dict(self.cpu)))


@dataclass(frozen=True, eq=False)
class DatasetSpec:
    """Everything about one dataset that the rest of the project reads.

    Datasets read from disk (``folder`` set) need ``loader``, ``find_sources`` and
    ``split_counts``; datasets generated on the fly (``folder`` is ``None``, e.g. the
    synthetic tasks of E1) need ``task_source`` instead.

    Attributes:
        name: Identifier used everywhere (configs, CLI, cache names), e.g. ``"omniglot"``.
        display_name: How the paper and the reports write it, e.g. ``"mini-ImageNet"``.
        input_shape: Shape of one input, ``(C, H, W)`` for images.
        order: Position in listings (CLI choices, error messages); ties sort by name.
        loader: ``load(root, cache_dir, split, **options) -> FewShotDataset``; its keyword
            parameters are the options a user may pass for this dataset.
        task_source: ``build(**options) -> TaskSource`` for datasets without files.
        split_counts: (classes, images per class) of a split under the given loader options,
            checked against an episode before any file is read.
        default_split: The split read when none is named.
        normalisation: How the sampler scales pixels (as recorded in a loaded split's info).
        smoke_options: Loader options that keep a ``smoke``-scale run fast.
        folder: Folder of the dataset inside the data directory.
        layout: The files expected inside the data directory, shown when they are missing.
        find_sources: ``find(root) -> [paths]`` of the installed sources, else
            ``FileNotFoundError`` naming what was searched.
        prepare: Builds the caches of an installed dataset (``maml-probe data prepare``).
        install_plan: What ``maml-probe data download NAME --from PATH`` copies from ``PATH``.
        remotes: Official download sources with their checksums; empty when there is no
            public host.
        manual_download: How to obtain the dataset when ``remotes`` is empty.
        paper: The paper's episode and adaptation rates (Appendix A.1.2), if it trains
            convolutional models on this dataset.
    """

    name: str
    display_name: str
    input_shape: tuple[int, ...]
    order: int = 100
    loader: Callable[..., FewShotDataset] | None = None
    task_source: Callable[..., TaskSource] | None = None
    split_counts: SplitCounter | None = None
    default_split: str = "train"
    normalisation: str = ""
    smoke_options: Mapping[str, Any] = field(default_factory=dict)
    folder: str | None = None
    layout: str = ""
    find_sources: SourceFinder | None = None
    prepare: Preparer | None = None
    install_plan: InstallPlanner | None = None
    remotes: tuple[Remote, ...] = ()
    manual_download: str | None = None
    paper: PaperSettings | None = None

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or self.name != self.name.lower():
            raise ValueError(f"dataset name {self.name!r} must be a lower-case identifier")
        shape = tuple(self.input_shape)
        if not shape or any(not isinstance(n, int) or n < 1 for n in shape):
            raise ValueError(f"{self.name}: input_shape must be positive integers, got {shape}")
        object.__setattr__(self, "input_shape", shape)
        object.__setattr__(self, "smoke_options", MappingProxyType(dict(self.smoke_options)))
        if self.on_disk:
            missing = [f for f in ("loader", "find_sources", "split_counts")
                       if getattr(self, f) is None]
            if missing:
                raise ValueError(f"{self.name}: a dataset read from disk needs {missing}")
        elif self.task_source is None:
            raise ValueError(f"{self.name}: a dataset without folder needs a task_source")

    @property
    def on_disk(self) -> bool:
        """Whether the dataset is read from files in the data directory."""
        return self.folder is not None

    @property
    def install_command(self) -> str:
        """The CLI command(s) that install the dataset, as shown in error messages.

        Returns:
            One line, e.g. ``maml-probe data download omniglot   (or, ... --from PATH)``.
        """
        if not self.remotes:
            return (f"maml-probe data download {self.name} --from PATH   "
                    "(no official public host; see data/README.md for how to obtain it)")
        return (f"maml-probe data download {self.name}   "
                f"(or, with a copy you already have: maml-probe data download {self.name} "
                f"--from PATH)")


def class_counts(classes: Mapping[str, int], per_class: int) -> SplitCounter:
    """A ``split_counts`` for datasets with a fixed class split and images per class.

    A ``classes_limit`` option (keep only the first k classes) lowers the class count.

    Args:
        classes: Number of classes of each split, e.g. ``{"train": 64, "val": 16, "test": 20}``.
        per_class: Images per class.

    Returns:
        The function ``(split, options) -> (classes, per_class)``.
    """
    table = dict(classes)

    def counts(split: str, options: Mapping[str, Any]) -> tuple[int, int]:
        limit = options.get("classes_limit")
        return (min(table[split], limit) if limit else table[split]), per_class

    return counts
