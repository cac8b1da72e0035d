"""Atomic checkpoint files: everything needed to resume a meta-training run bit-for-bit.

One file holds the learner (model and update-rule parameters), the outer optimizer's state,
the run's config, the iteration reached, the training history and every RNG state (torch CPU
and CUDA, numpy, Python, and the task sampler's generator). It is written to a temporary file
in the same directory, flushed to disk and renamed over the old one (``os.replace``), so a run
killed at any moment leaves either the previous checkpoint or the new one, never a torn file.

Checkpoints are pickles (``torch.load(weights_only=False)``): load only files you trust.
"""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = "maml_probe.checkpoint/1"


def capture_rng_states(task_generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every RNG state a run depends on."""
    states: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                              "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    if task_generator is not None:
        states["tasks"] = task_generator.get_state()
    return states


def restore_rng_states(states: dict[str, Any], task_generator: torch.Generator | None = None) -> None:
    """Inverse of :func:`capture_rng_states`.

    RNG states are CPU byte tensors; a checkpoint loaded with ``map_location="cuda"`` has moved
    them to the GPU, so they are brought back first.
    """
    torch.set_rng_state(states["torch"].cpu())
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in states["cuda"]])
    if task_generator is not None and "tasks" in states:
        task_generator.set_state(states["tasks"].cpu())


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temp file in the same directory + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; raise a clear error otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torn or foreign file
        raise ValueError(f"{path} is not a readable maml_probe checkpoint: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a maml_probe checkpoint (format {FORMAT!r} expected)")
    return state
