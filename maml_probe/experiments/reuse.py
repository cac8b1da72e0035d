"""One training run per model: experiments that need the same trained model share it.

Several experiments train the very same model on a dataset: the 4-conv CNN w/ MAML is the
subject of E3-E5 (layer probes, Fig 2 and A.2), E10 (pruning sweep, Fig A.3), the starting point
of E8's PRUNE (Table A1) and the 4-layer point of E6 (Table A2); SCNN w/ MAML and w/ KFC appear
in both E7 (Table 2) and E8 (Table A1). At the ``cpu`` scale each of them costs ten minutes or
more, so a run made by the batch runner (a folder ``<runs>/<experiment>/<run>/`` with its
``record.json``) looks under the same ``<runs>`` folder for that model, finished by another
run, before training it:

* a model folder (``<run>/<method>/``) holds ``checkpoint.pt`` and ``model.json``, which gives
  the model's :meth:`~maml_probe.config.TrainConfig.identity_key` (everything that defines the
  model, iterations included; not where or on which engine it was computed);
* a finished model with the same key (or the same dataset, model, rule and iterations) is
  copied in once its checkpoint confirms it: the same configuration, trained to the same
  iteration, and the copy's ``model.json`` names its source
  in ``reused_from``. Test tasks are always scored again by the experiment that asks.

Runs outside a runner-made folder (``run_dir`` without ``record.json``, as in tests or a
script's own folder) neither look nor are looked at unless ``roots`` is given.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..checkpoint import load_checkpoint
from ..config import TrainConfig
from ..io import write_json_atomic

#: The file that makes a model folder findable: ``{"identity", "label", "iterations", ...}``.
MODEL_FILE = "model.json"
CHECKPOINT = "checkpoint.pt"


def default_roots(run_dir: str | os.PathLike | None) -> list[Path]:
    """The runs folder that a runner-made ``run_dir`` (``<runs>/<experiment>/<run>``) sits in.

    Args:
        run_dir: An experiment's output folder.

    Returns:
        ``[<runs>]`` when ``run_dir`` holds a ``record.json`` (the batch runner made it),
        else ``[]``.
    """
    if run_dir is None:
        return []
    path = Path(run_dir).resolve()
    return [path.parents[1]] if (path / "record.json").is_file() and len(path.parents) > 1 else []


def register(model_dir: str | os.PathLike, cfg: TrainConfig, label: str, *,
             reused_from: str | os.PathLike | None = None) -> Path:
    """Write ``model_dir/model.json`` for a finished model so that other runs can find it.

    Args:
        model_dir: The folder holding the model's ``checkpoint.pt``.
        cfg: The configuration it was trained with.
        label: The method's label (e.g. ``"CNN w/ MAML"``).
        reused_from: The checkpoint it was copied from, if it was.

    Returns:
        The path of ``model.json``.
    """
    record: dict[str, Any] = {"identity": cfg.identity_key(), "label": label,
                              "dataset": cfg.dataset, "model": cfg.model, "rule": cfg.rule,
                              "iterations": cfg.iterations,
                              "reused_from": str(reused_from) if reused_from else None}
    path = Path(model_dir) / MODEL_FILE
    write_json_atomic(record, path)
    return path


def ensure_registered(model_dir: str | os.PathLike, cfg: TrainConfig, label: str) -> None:
    """:func:`register` a finished model unless ``model.json`` already names its identity."""
    path = Path(model_dir) / MODEL_FILE
    try:
        if json.loads(path.read_text()).get("identity") == cfg.identity_key():
            return
    except (OSError, ValueError, AttributeError):
        pass
    register(model_dir, cfg, label)


def find(cfg: TrainConfig, roots: Iterable[str | os.PathLike], *,
         exclude: str | os.PathLike | None = None) -> Path | None:
    """A finished checkpoint of the model ``cfg`` trains, under ``roots``, if there is one.

    Args:
        cfg: The configuration whose model is wanted.
        roots: Runs folders to search (``<root>/<experiment>/<run>/<method>/model.json``).
        exclude: A model folder not to return (the one asking).

    Returns:
        The path of a ``checkpoint.pt`` trained with an identical configuration to exactly
        ``cfg.iterations``, else ``None``. Unreadable files are skipped.
    """
    key = cfg.identity_key()
    skip = Path(exclude).resolve() if exclude is not None else None
    wanted = {"dataset": cfg.dataset, "model": cfg.model, "rule": cfg.rule,
              "iterations": cfg.iterations}
    for root in roots:
        for record_path in sorted(Path(root).glob(f"*/*/*/{MODEL_FILE}")):
            folder = record_path.parent
            if skip is not None and folder.resolve() == skip:
                continue
            try:
                record = json.loads(record_path.read_text())
            except (OSError, ValueError):
                continue
            ckpt = folder / CHECKPOINT
            if not isinstance(record, dict) or not ckpt.is_file():
                continue
            # the key is a fast filter; a model recorded under another key formula (an older
            # version) is still considered when dataset, model, rule and iterations agree
            if record.get("identity") != key and any(record.get(k) != v for k, v in wanted.items()):
                continue
            try:
                state = load_checkpoint(ckpt)
            except Exception:  # noqa: BLE001 - a bad donor is skipped, the model is trained instead
                continue
            if state.get("iteration") == cfg.iterations and not cfg.differences(state["config"]):
                return ckpt
    return None


def adopt(cfg: TrainConfig, model_dir: str | os.PathLike, label: str,
          roots: Iterable[str | os.PathLike]) -> Path | None:
    """Copy a finished identical model into ``model_dir`` unless it has a checkpoint already.

    Args:
        cfg: The configuration of the model ``model_dir`` is to hold.
        model_dir: The asking run's model folder.
        label: The method's label, for ``model.json``.
        roots: Runs folders to search (:func:`default_roots`).

    Returns:
        The source checkpoint that was copied, else ``None`` (train it).
    """
    model_dir = Path(model_dir)
    if (model_dir / CHECKPOINT).exists():
        return None
    source = find(cfg, roots, exclude=model_dir)
    if source is None:
        return None
    model_dir.mkdir(parents=True, exist_ok=True)
    partial = model_dir / f".{CHECKPOINT}.copy"
    shutil.copyfile(source, partial)
    os.replace(partial, model_dir / CHECKPOINT)
    register(model_dir, cfg, label, reused_from=source)
    return source


__all__ = ["MODEL_FILE", "adopt", "default_roots", "ensure_registered", "find", "register"]
