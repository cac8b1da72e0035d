"""The checkpoints the explorer can open, their menu labels, and the smoke-scale model it trains.

The explorer looks for ``checkpoint.pt`` files under a runs folder (``runs/`` by default, see
:data:`maml_probe.runs.RUNS_ROOT`) and names each by its folder relative to that root. When there
is none, it offers to train the smoke-scale E1 LinNet (:func:`train_smoke_model`): the paper's
synthetic-task model, which needs no data and trains in seconds on a CPU.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from .. import runs

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


def train_smoke_model(root: str | Path | None = None, *, progress: bool = False,
                      device: str = "cpu") -> Path:
    """Train the smoke-scale E1 LinNet (40 iterations on synthetic tasks, no data; seconds).

    The run goes to ``<root>/E1/smoke-explorer/`` with its ``record.json``.

    Args:
        root: The runs folder (default :data:`maml_probe.runs.RUNS_ROOT`).
        progress: Whether to show training progress bars.
        device: The torch device to train on.

    Returns:
        The path of the trained ``checkpoint.pt``.
    """
    from ..experiments import e1_synthetic
    from ..experiments.common import slug

    run_dir = _root(root) / SMOKE_EXPERIMENT / SMOKE_RUN
    start = time.perf_counter()
    e1_synthetic.run("smoke", run_dir, methods=[SMOKE_METHOD], progress=progress, device=device)
    runs.write_record(run_dir, experiment=SMOKE_EXPERIMENT, scale="smoke", status="ok",
                      parameters={"methods": [SMOKE_METHOD], "scale": "smoke",
                                  "run_dir": str(run_dir)},
                      purpose="trained by the explorer (maml_probe.explorer.train_smoke_model)",
                      wall_time_s=round(time.perf_counter() - start, 2))
    return run_dir / slug(SMOKE_METHOD) / "checkpoint.pt"
