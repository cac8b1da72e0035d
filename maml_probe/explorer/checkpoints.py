"""The checkpoints the explorer can open, their menu labels, and the smoke-scale model it trains.

The explorer looks for ``checkpoint.pt`` files under a runs folder (``runs/`` by default, see
:data:`maml_probe.runs.RUNS_ROOT`) and names each by its folder relative to that root. When there
is none, it offers to train the smoke-scale E1 LinNet (:func:`train_smoke_model`): the paper's
synthetic-task model, which needs no data and trains in seconds on a CPU.

A checkpoint stores where its dataset was when it was trained (``dataset_kwargs["root"]`` of its
config), which need not exist on this machine: :func:`load_setup` opens it with the data read
from another folder (``data_root=``), the explorer's *data root* field.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import runs
from ..config import TrainConfig, build_task_source, load_learner
from ..data.registry import get_spec
from ..probes import ProbeSetup, load_probe_setup

SMOKE_EXPERIMENT = "E1"
SMOKE_RUN = "smoke-explorer"
SMOKE_METHOD = "LR+LinNet w/ MAML"


def _root(root: str | Path | None) -> Path:
    return Path(root) if root is not None else Path(runs.RUNS_ROOT)


def find_checkpoints(root: str | Path | None = None) -> list[Path]:
    """Every ``checkpoint.pt`` under a runs folder, sorted.

    Args:
        root: The folder to search (default :data:`maml_probe.runs.RUNS_ROOT`).

    Returns:
        The checkpoint paths in sorted order; empty when ``root`` is missing or holds none.
    """
    root = _root(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("checkpoint.pt") if p.is_file())


def checkpoint_label(path: str | Path, root: str | Path | None = None) -> str:
    """The menu label of a checkpoint: its folder, relative to ``root`` when it lies under it.

    ``runs/E1/smoke/lr-linnet-w-maml/checkpoint.pt`` becomes ``E1/smoke/lr-linnet-w-maml``.

    Args:
        path: A ``checkpoint.pt`` file or the folder holding it.
        root: The runs folder the label is relative to (``None``: the folder as given).

    Returns:
        The label, with ``/`` separators.
    """
    path = Path(path)
    folder = path.parent if path.name == "checkpoint.pt" else path
    if root is not None:
        try:
            return folder.resolve().relative_to(Path(root).resolve()).as_posix() or folder.name
        except ValueError:
            pass
    return folder.as_posix()


def match_checkpoint(select: str | Path, options: Sequence[tuple[str, str]],
                     root: str | Path) -> str | None:
    """The menu entry that ``select`` names: a label, a checkpoint path or its folder.

    Args:
        select: What the user asked for (a label, a path to ``checkpoint.pt`` or its folder,
            absolute or relative to ``root``).
        options: The menu entries as ``(label, path)`` pairs.
        root: The runs folder that relative paths start from.

    Returns:
        The ``path`` of the matching entry, or ``None`` when no entry matches.
    """
    text = str(select)
    for label, value in options:
        if text in (label, value):
            return value
    path = Path(select)
    candidates = [path, Path(root) / path]
    if path.suffix != ".pt":
        candidates += [path / "checkpoint.pt", Path(root) / path / "checkpoint.pt"]
    for cand in candidates:
        if cand.exists():
            for _, value in options:
                if Path(value).resolve() == cand.resolve():
                    return value
    return None


class _CountingSource:
    """A training task source that reports each meta-batch drawn (one per iteration).

    It draws exactly what the wrapped source draws, so training is unchanged.
    """

    def __init__(self, source: Any, total: int, on_iteration: Callable[[int, int], None]) -> None:
        self._source, self._total, self._on_iteration = source, total, on_iteration
        self.done = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)

    def sample(self, num_tasks: int, generator: Any) -> Any:
        batch = self._source.sample(num_tasks, generator)
        self.done += 1
        self._on_iteration(min(self.done, self._total), self._total)
        return batch


def train_smoke_model(root: str | Path | None = None, *, progress: bool = False,
                      device: str = "cpu",
                      on_iteration: Callable[[int, int], None] | None = None) -> Path:
    """Train the smoke-scale E1 LinNet (40 iterations on synthetic tasks, no data; seconds).

    The run goes to ``<root>/E1/smoke-explorer/`` with its ``record.json``.

    Args:
        root: The runs folder (default :data:`maml_probe.runs.RUNS_ROOT`).
        progress: Whether to show training progress bars.
        device: The torch device to train on.
        on_iteration: Called as ``on_iteration(done, total)`` after each training iteration
            (the explorer's progress bar).

    Returns:
        The path of the trained ``checkpoint.pt``.
    """
    from ..experiments import e1_synthetic
    from ..experiments.common import slug
    from ..train import meta_train

    run_dir = _root(root) / SMOKE_EXPERIMENT / SMOKE_RUN
    start = time.perf_counter()
    if on_iteration is not None:
        # train here with a counting task source; the run below then finds the finished
        # checkpoint (same config, exact resume) and only tests it
        cfg = e1_synthetic.configs("smoke", methods=[SMOKE_METHOD], device=device)[SMOKE_METHOD]
        train = build_task_source(cfg, "train", device)
        meta_train(cfg, run_dir / slug(SMOKE_METHOD), progress=progress,
                   sources={"train": _CountingSource(train, cfg.iterations, on_iteration)})
    e1_synthetic.run("smoke", run_dir, methods=[SMOKE_METHOD], progress=progress, device=device)
    runs.write_record(run_dir, experiment=SMOKE_EXPERIMENT, scale="smoke", status="ok",
                      parameters={"methods": [SMOKE_METHOD], "scale": "smoke",
                                  "run_dir": str(run_dir)},
                      purpose="trained by the explorer (maml_probe.explorer.train_smoke_model)",
                      wall_time_s=round(time.perf_counter() - start, 2))
    return run_dir / slug(SMOKE_METHOD) / "checkpoint.pt"


def stored_data_root(config: TrainConfig) -> str | None:
    """Where the checkpoint's dataset was when it was trained (``None``: the default folder).

    Args:
        config: The checkpoint's config.

    Returns:
        Its ``dataset_kwargs["root"]``, or ``None``.
    """
    root = (config.dataset_kwargs or {}).get("root")
    return None if root is None else str(root)


def needs_data(config: TrainConfig) -> bool:
    """Whether the checkpoint's tasks are read from files (not generated, like E1's).

    Args:
        config: The checkpoint's config.

    Returns:
        ``True`` for datasets on disk.
    """
    return get_spec(config.dataset).task_source is None


def with_data_root(config: TrainConfig, data_root: str | Path | None) -> TrainConfig:
    """``config`` with its dataset read from ``data_root`` instead of the stored folder.

    A stored ``cache_dir`` that does not exist here is dropped (the cache then follows the
    usual default, ``$MAML_PROBE_CACHE`` or ``data/cache``). Generated tasks need no data: their
    config is returned unchanged.

    Args:
        config: The checkpoint's config.
        data_root: The folder holding the dataset on this machine (``None`` or blank: keep the
            stored one).

    Returns:
        The config to build the task source from.
    """
    if data_root is None or not str(data_root).strip() or not needs_data(config):
        return config
    kwargs = dict(config.dataset_kwargs or {})
    kwargs["root"] = str(Path(str(data_root).strip()).expanduser())
    cache = kwargs.get("cache_dir")
    if cache is not None and not Path(cache).expanduser().is_dir():
        del kwargs["cache_dir"]
    return config.replace(dataset_kwargs=kwargs)


def load_setup(checkpoint: str | Path, *, data_root: str | Path | None = None,
               device: str = "cpu", split: str = "test") -> ProbeSetup:
    """Open a checkpoint for the explorer, its dataset read from ``data_root`` if given.

    Args:
        checkpoint: The ``checkpoint.pt`` file.
        data_root: The folder holding the dataset here (``None``: where the checkpoint says).
        device: The torch device.
        split: The split whose tasks are scored.

    Returns:
        The :class:`~maml_probe.probes.ProbeSetup`; its config names the data root used.

    Raises:
        FileNotFoundError: When the dataset is not found; the message says where the checkpoint
            expected it and how to point the explorer elsewhere.
    """
    learner, stored = load_learner(checkpoint, device=device)
    cfg = with_data_root(stored, data_root)
    try:
        source = build_task_source(cfg, split, next(learner.parameters()).device)
    except FileNotFoundError as exc:
        where = stored_data_root(stored) or "the default data folder"
        raise FileNotFoundError(
            f"{exc}\nThe checkpoint was trained with its {cfg.dataset} data in {where}"
            + (f"; looked in {data_root} as asked" if data_root else "")
            + ". Set 'data root' (load_setup(..., data_root=...)) to the folder that holds "
            f"{cfg.dataset} on this machine.") from exc
    setup = load_probe_setup(checkpoint, split=split, source=source, device=device)
    setup.config = cfg
    return setup
