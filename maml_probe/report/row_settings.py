"""How each result was measured, beside the paper's settings, and its std over test tasks.

Each row of a run's ``results.csv`` gets its std over test tasks (read from the run's summary
tables or computed from its per-task ``tests.csv``) and how it was measured: iterations,
meta-batch, episode and, in words, what differs from the paper's settings (derived from the run's
recorded configuration, see :func:`differs_from_paper`).
"""
from __future__ import annotations

import ast
import functools
import json
import math
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd

from .records import _dict, _header

#: Test tasks the paper evaluates on (Section 5.2: "600 validation/testing tasks").
PAPER_TEST_TASKS = 600
#: Parameters that choose what a notebook runs (kept when building the paper's configurations
#: of a run); every other parameter is a setting the paper fixes.
_SELECTION = ("dataset", "datasets", "methods", "linear_methods", "depths", "widths", "prune",
              "model", "upper_bound")
#: Configuration fields compared with the paper's besides the episode, outer loop and rates.
_OTHER_FIELDS = ("model", "model_kwargs", "rule", "rule_kwargs", "outer_optimizer", "first_order",
                 "eval_steps", "adapt_layers", "task_pool")


# --- the per-task std of each result -------------------------------------------------------

def _std_candidates(run_dir: Path) -> pd.DataFrame:
    """``method``, ``accuracy``, ``std`` and ``n`` of every summary row the run's tables hold.

    Summary tables (``accuracy``, ``std``, ``n`` columns, e.g. ``summary.csv``) are taken as
    they are; per-task tables (``task`` and ``accuracy``, e.g. ``tests.csv``) are summarised
    per group of their other categorical columns (method, phase, ...). Units are as stored.
    """
    from ..stats import summarize

    frames = []
    for path in sorted(run_dir.glob("*.csv")):
        cols = _header(path)
        if path.name == "results.csv" or "accuracy" not in cols:
            continue
        try:
            df = pd.read_csv(path)
        except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError):
            continue
        if {"std", "n"} <= set(cols):
            frames.append(df)
        elif "task" in cols and len(df):
            by = [c for c in df.columns if c not in ("task", "accuracy")
                  and not pd.api.types.is_float_dtype(df[c])]
            if by:
                frames.append(summarize(df, by))
    if not frames:
        return pd.DataFrame(columns=["method", "accuracy", "std", "n"])
    out = pd.concat([f.reindex(columns=["method", "accuracy", "std", "n"]) for f in frames],
                    ignore_index=True)
    for col in ("accuracy", "std", "n"):
        out[col] = pd.to_numeric(out[col], errors="coerce")
    return out.dropna(subset=["accuracy", "std"])


def _find_std(cands: pd.DataFrame, method: Any, accuracy: float, n: Any) -> float:
    """The std of the summary row that reports exactly ``accuracy`` (and ``n``), in points.

    A summary row matches when its accuracy, in either unit (fraction or percent), equals the
    result's and its task count agrees; a row of the same method is preferred. No match: NaN
    (a std is never borrowed from another quantity).
    """
    if cands.empty or pd.isna(accuracy):
        return math.nan
    tol = 1e-6 * max(1.0, abs(accuracy))
    same_n = (pd.Series(True, index=cands.index) if pd.isna(n)
              else cands["n"].isna() | (cands["n"] == n))
    for factor in (100.0, 1.0):
        hit = cands[((factor * cands["accuracy"] - accuracy).abs() <= tol) & same_n]
        if len(hit):
            own = hit[hit["method"] == method]
            return float(factor * (own if len(own) else hit)["std"].iloc[0])
    return math.nan


def _task_std(run_dir: Path, results: pd.DataFrame) -> pd.Series:
    """Per-task std (points) of each row of a run's ``results.csv``.

    From its own ``std`` column when it has one, else from the run's summary or per-task tables
    (:func:`_std_candidates`).
    """
    if "std" in results:
        return pd.to_numeric(results["std"], errors="coerce")
    cands = _std_candidates(run_dir)
    n = results["n"] if "n" in results else pd.Series(math.nan, index=results.index)
    return pd.Series([_find_std(cands, m, a, k) for m, a, k in
                      zip(results["method"], pd.to_numeric(results["accuracy"], errors="coerce"), n)],
                     index=results.index, dtype=float)


# --- how each row was measured, and what differs from the paper ----------------------------

def _plain(value: Any) -> Any:
    """``value`` as JSON reads it back (tuples become lists), so configs compare equal."""
    return json.loads(json.dumps(value, default=str))


@functools.lru_cache(maxsize=16)
def _notebook_defaults(notebook: str) -> dict[str, Any]:
    """The literal defaults of a notebook's ``parameters`` cell (read without starting Jupyter)."""
    from ..runner import NOTEBOOKS

    cells = json.loads((NOTEBOOKS / notebook).read_text())["cells"]
    cell = next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
    out = {}
    for node in ast.parse("".join(cell["source"])).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError):  # not a literal: the notebook computes it
                continue
    return out


@functools.lru_cache(maxsize=64)
def _built_configs(experiment: str, scale: str, params_json: str) -> dict[str, dict[str, Any]] | None:
    """What ``experiment``'s notebook trains at ``scale`` with these parameters (``None``: unknown)."""
    try:
        from ..experiments.registry import EXPERIMENTS, experiment_configs

        exp = EXPERIMENTS[experiment]
        params = {**_notebook_defaults(exp.notebook), **json.loads(params_json)}
        built = experiment_configs(exp, scale, params)
    except Exception:  # an experiment without a builder, an old parameter, ...: no reference
        return None
    return {label: _plain(cfg.to_dict()) for label, cfg in built.items()} or None


def _paper_configs(experiment: str, params: Mapping[str, Any]) -> dict[str, dict[str, Any]] | None:
    """The paper's configurations for a run: its notebook at ``paper`` scale, without overrides."""
    chosen = {k: v for k, v in params.items() if k in _SELECTION}
    return _built_configs(experiment, "paper", json.dumps({**chosen, "overrides": {}},
                                                           sort_keys=True, default=str))


def _spec_reference(cfg: Mapping[str, Any]) -> dict[str, Any] | None:
    """The paper's settings for ``cfg`` from its dataset's spec (Appendix A.1.2), if it has any."""
    try:
        from ..data.registry import get_spec
        from ..experiments.settings import SCALE_EPISODES

        paper = get_spec(str(cfg.get("dataset"))).paper
        iterations = SCALE_EPISODES["paper"]["iterations"]
    except Exception:
        return None
    if paper is None:
        return None
    ref = {**cfg, **paper.episode.as_dict(), "iterations": iterations}
    key = cfg.get("model") if cfg.get("rule") == "maml" else cfg.get("rule")
    if key in paper.alpha:
        ref["alpha"] = paper.alpha[key]
    return ref


def _norm(label: Any) -> str:
    return str(label).replace("-", "").replace(" ", "").lower()


def _labelled(configs: Mapping[str, Any] | None, method: Any) -> tuple[str | None, dict | None]:
    """The configuration labelled ``method`` (``CNN2 w/ MAML`` finds ``CNN-2 w/ MAML``)."""
    if not configs:
        return None, None
    if method in configs:
        return method, configs[method]
    return next(((label, cfg) for label, cfg in configs.items() if _norm(label) == _norm(method)),
                (None, None))


def _config_for(configs: Mapping[str, Any] | None, method: Any) -> tuple[str | None, dict | None]:
    """The configuration of row ``method``, else the run's first (rows such as the upper bound
    share the run's episode and outer loop)."""
    label, cfg = _labelled(configs, method)
    if cfg is None and configs:
        label = next(iter(configs))
        cfg = configs[label]
    return label, cfg


def episode_words(cfg: Mapping[str, Any]) -> str:
    """A configuration's episode in words, as the runner records it: ``"10-way 5-shot, 4 steps"``.

    Args:
        cfg: a training configuration as a dict (``record.json``'s ``config`` entries).

    Returns:
        The episode (synthetic tasks: dimension and points).
    """
    from ..runner import episode_text

    full = {"dataset": None, "dataset_kwargs": {}, "steps": 1, "ways": None, "shots": None, **cfg}
    return episode_text(SimpleNamespace(**full))


def _value(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v).lower() if v is not None else "none"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:g}"
    return json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else str(v)


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def differs_from_paper(cfg: Mapping[str, Any], paper: Mapping[str, Any],
                       test_tasks: int | None = None) -> str:
    """What a run's configuration changes from the paper's, in words.

    Compares the outer loop (iterations, meta-batch), the episode (ways, shots, steps, query
    examples; synthetic: dimension and points), the learning rates, the model, the rule and its
    options, and the number of test tasks (the paper: :data:`PAPER_TEST_TASKS` for image
    datasets; it does not say how many synthetic tasks it tests on).

    Args:
        cfg: the run's configuration (a ``record.json`` ``config`` entry).
        paper: the paper's configuration of the same model and method.
        test_tasks: how many test tasks the row was measured on.

    Returns:
        e.g. ``"500 iterations of 4 tasks vs the paper's 60,000 of 32; episode, learning rates
        and test tasks as in the paper"``, or ``"none: the paper's settings"``.
    """
    parts, same = [], []
    its, mb = cfg.get("iterations"), cfg.get("meta_batch")
    p_its, p_mb = paper.get("iterations"), paper.get("meta_batch")
    if (its, mb) != (p_its, p_mb):
        parts.append(f"{_value(its)} iterations of {_value(mb)} task{'' if mb == 1 else 's'} vs the paper's "
                     f"{_value(p_its)} of {_value(p_mb)}")
    else:
        same.append("iterations, meta-batch")
    episode, p_episode = episode_words(cfg), episode_words(paper)
    kwargs = {k: v for k, v in (cfg.get("dataset_kwargs") or {}).items() if k not in ("root", "cache_dir")}
    p_kwargs = {k: v for k, v in (paper.get("dataset_kwargs") or {}).items()
                if k not in ("root", "cache_dir")}
    episode_same = episode == p_episode
    if not episode_same:
        parts.append(f"{episode} vs the paper's {p_episode}")
    if cfg.get("dataset") != "synthetic" and cfg.get("queries") != paper.get("queries"):
        episode_same = False
        parts.append(f"{_value(cfg.get('queries'))} query examples per class vs the paper's "
                     f"{_value(paper.get('queries'))}")
    for key in sorted(set(kwargs) | set(p_kwargs)):
        if kwargs.get(key) != p_kwargs.get(key) and not (cfg.get("dataset") == "synthetic"
                                                         and key in ("dim", "support", "query")):
            episode_same = False
            parts.append(f"dataset option {key} {_value(kwargs.get(key))} vs the paper's "
                         f"{_value(p_kwargs.get(key))}")
    if episode_same:
        same.append("episode")
    rates = [(name, key) for name, key in (("meta learning rate", "meta_lr"), ("adaptation rate", "alpha"))
             if cfg.get(key) != paper.get(key)]
    parts += [f"{name} {_value(cfg.get(key))} vs the paper's {_value(paper.get(key))}" for name, key in rates]
    if not rates:
        same.append("learning rates")
    parts += [f"{key.replace('_', ' ')} {_value(cfg.get(key))} vs the paper's {_value(paper.get(key))}"
              for key in _OTHER_FIELDS if cfg.get(key) != paper.get(key)]
    if cfg.get("dataset") != "synthetic" and test_tasks is not None and not pd.isna(test_tasks):
        if int(test_tasks) != PAPER_TEST_TASKS:
            parts.append(f"{int(test_tasks):,} test tasks vs the paper's {PAPER_TEST_TASKS}")
        else:
            same.append("test tasks")
    if not parts:
        return "none: the paper's settings"
    return "; ".join(parts) + (f"; {_and(same)} as in the paper" if same else "")


def _run_configs(experiment: str, record: Mapping[str, Any]) -> dict[str, dict[str, Any]] | None:
    """The run's configurations: recorded, or for a ``paper``-scale record without them, rebuilt
    from its parameters (the ``paper`` scale is the paper's settings plus the overrides given)."""
    configs = record.get("config")
    if isinstance(configs, dict) and configs:
        return {label: _plain(cfg) for label, cfg in configs.items() if isinstance(cfg, dict)} or None
    if record.get("scale") == "paper":
        params = _dict(record.get("parameters"))
        return _built_configs(experiment, "paper", json.dumps(params, sort_keys=True, default=str))
    return None


def _meta_batches(run_dir: Path) -> dict[str, int]:
    """``method -> meta_batch`` from the run's ``methods.csv`` (E7, E8, E11 write one)."""
    path = run_dir / "methods.csv"
    if not path.exists() or not {"method", "meta_batch"} <= set(_header(path)):
        return {}
    df = pd.read_csv(path)
    return {m: int(b) for m, b in zip(df["method"], df["meta_batch"]) if pd.notna(b)}


def _row_settings(run_dir: Path, record: dict[str, Any], df: pd.DataFrame) -> pd.DataFrame:
    """``df`` (a run's ``results.csv``) with each row's ``std`` over test tasks and settings.

    ``iterations``, ``meta_batch`` and ``episode`` come from the row's own configuration;
    ``differs_from_paper`` compares it with the paper's (:func:`differs_from_paper`); a record
    without configurations keeps what it says itself (``not recorded`` otherwise).
    """
    experiment = record.get("experiment") or run_dir.parent.name
    configs = _run_configs(experiment, record)
    paper = _paper_configs(experiment, _dict(record.get("parameters"))) if configs else None
    batches = _meta_batches(run_dir)
    recorded = record.get("differs_from_paper")
    unrecorded = "not recorded" + (f" (see {run_dir.parent.name}/{run_dir.name}/README.md)"
                                   if (run_dir / "README.md").exists() else "")
    episodes, its, mbs, differs = [], [], [], []
    n = df["n"] if "n" in df else pd.Series(math.nan, index=df.index)
    for method, tasks in zip(df["method"], n):
        label, cfg = _config_for(configs, method)
        if cfg is None:
            episodes.append(record.get("episode"))
            its.append(record.get("iterations"))
            mbs.append(batches.get(method))
            differs.append(recorded or unrecorded)
            continue
        episodes.append(episode_words(cfg))
        its.append(cfg.get("iterations"))
        mbs.append(cfg.get("meta_batch", batches.get(method)))
        if recorded and not record.get("config"):
            differs.append(recorded)
            continue
        ref = _labelled(paper, label)[1] or _spec_reference(cfg)
        differs.append(differs_from_paper(cfg, ref, tasks) if ref else (recorded or unrecorded))
    return df.assign(std=_task_std(run_dir, df), episode=episodes, iterations=its,
                     meta_batch=mbs, differs_from_paper=differs)
