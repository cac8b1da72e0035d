"""Atomic checkpoint files: everything needed to resume a meta-training run bit-for-bit.

One file holds the learner (model and update-rule parameters), the outer optimizer's state,
the run's config, the iteration reached, the training history and every RNG state (torch CPU
and CUDA, numpy, Python, and the task sampler's generator). It is written to a temporary file
in the same directory, flushed to disk and renamed over the old one (``os.replace``), so a run
killed at any moment leaves either the previous checkpoint or the new one, never a torn file.

**Safe to open.** A checkpoint holds only tensors and plain data (dicts, lists, tuples, numbers,
strings; the numpy RNG state is stored as a tensor and numbers), and :func:`load_checkpoint`
reads it with ``torch.load(weights_only=True)``, which refuses anything else: a crafted ``.pt``
found on a shared disk cannot run code when a resume, the explorer or the report opens it.
A checkpoint of an older format (its numpy RNG state pickled as a numpy array) is refused with
the command that converts it once; ``trust=True`` loads any file as a full pickle, for your own
files only.
"""
from __future__ import annotations

import os
import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .io import atomic_write

FORMAT = "maml_probe.checkpoint/1"


def _numpy_state_to_plain(state: tuple) -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = state
    return {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _numpy_state_from_plain(state: Any) -> tuple:
    if isinstance(state, dict):
        keys = state["keys"].cpu().numpy().astype(np.uint32)
        return state["kind"], keys, state["pos"], state["has_gauss"], state["cached_gaussian"]
    return state  # written by an older version (trusted load): numpy's own tuple


def capture_rng_states(task_generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every RNG state a run depends on, as tensors and plain data (safe to load)."""
    states: dict[str, Any] = {"torch": torch.get_rng_state(),
                              "numpy": _numpy_state_to_plain(np.random.get_state()),
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
    np.random.set_state(_numpy_state_from_plain(states["numpy"]))
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in states["cuda"]])
    if task_generator is not None and "tasks" in states:
        task_generator.set_state(states["tasks"].cpu())


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temp file in the same directory + rename)."""
    return atomic_write(path, lambda f: torch.save({"format": FORMAT, **state}, f), binary=True,
                        sync=True)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu", *,
                    trust: bool = False) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; raise a clear error otherwise.

    Loads with ``weights_only=True`` (tensors and plain data only: nothing in the file can run
    code). ``trust=True`` loads any pickle, including the format before that change; use it only
    for files you wrote yourself, or convert them once with :func:`convert_checkpoint`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=not trust)
    except pickle.UnpicklingError as exc:
        # a real reference names a dotted module path; damaged bytes can look like "GLOBAL x y"
        refused = re.search(r"GLOBAL ([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+) was not an allowed",
                            str(exc))
        if trust or refused is None:
            raise ValueError(f"{path} is not a readable maml_probe checkpoint (damaged or not a "
                             f"checkpoint); delete it to train that model again") from None
        what = refused.group(1)
        raise ValueError(
            f"{path} refers to {what}, not only to tensors and plain data, so it was not loaded "
            f"(unpickling it could run code). If it is a checkpoint you wrote yourself with an "
            f"older maml_probe, convert it once: python -m maml_probe.checkpoint convert {path}"
        ) from None
    except Exception as exc:  # torn or foreign file
        raise ValueError(f"{path} is not a readable maml_probe checkpoint: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a maml_probe checkpoint (format {FORMAT!r} expected)")
    return state


def convert_checkpoint(path: str | os.PathLike) -> Path:
    """Rewrite a trusted checkpoint of the older format in the safe one (in place, atomically)."""
    state = load_checkpoint(path, trust=True)
    state.pop("format", None)
    rng = state.get("rng")
    if isinstance(rng, dict) and "numpy" in rng:
        rng["numpy"] = _numpy_state_to_plain(_numpy_state_from_plain(rng["numpy"]))
    save_checkpoint(path, state)
    load_checkpoint(path)  # the result must load safely
    return Path(path)


def main(argv: list[str] | None = None) -> int:
    """``python -m maml_probe.checkpoint convert PATH...``: convert your own old checkpoints."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m maml_probe.checkpoint",
                                 description="Convert checkpoints you wrote with an older "
                                             "maml_probe to the format that loads safely.")
    ap.add_argument("command", choices=["convert"])
    ap.add_argument("paths", nargs="+")
    args = ap.parse_args(argv)
    for p in args.paths:
        print(f"converted {convert_checkpoint(p)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
