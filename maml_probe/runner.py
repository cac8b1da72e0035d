"""Batch runs of the experiment notebooks through papermill.

``maml-probe run E7 --scale cpu -p dataset=omniglot`` executes ``notebooks/E7.ipynb`` with those
parameters into ``runs/E7/<name>/``, where ``<name>`` is derived from the scale and the
parameters so that running the same command again resumes the same run (each notebook's
training resumes from its checkpoints and skips finished models). A parameter given as a
comma-separated list (``-p seed=0,1,2``) becomes a grid: one run per combination.
"""
from __future__ import annotations

import ast
import itertools
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .experiments.registry import EXPERIMENTS, Experiment
from .runs import RUNS_ROOT, run_dir_for, run_name, write_record

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def parse_value(text: str) -> Any:
    """``'3' -> 3``, ``'0.5' -> 0.5``, ``'true' -> True``, ``'none' -> None``, JSON, else the string."""
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_params(items: Sequence[str]) -> dict[str, list[Any]]:
    """``['seed=0,1', 'dataset=omniglot'] -> {'seed': [0, 1], 'dataset': ['omniglot']}``."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"parameter {item!r} must look like name=value (or name=v1,v2 for a grid)")
        key, value = item.split("=", 1)
        values = [value] if value.strip().startswith(("[", "{")) else value.split(",")
        grid[key.strip()] = [parse_value(v) for v in values]
    return grid


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


@dataclass
class RunOutcome:
    experiment: str
    run_dir: Path
    ok: bool
    wall_time_s: float
    error: str | None = None


def resolve_experiments(ids: Sequence[str]) -> list[Experiment]:
    if list(ids) == ["all"]:
        return list(EXPERIMENTS.values())
    unknown = [i for i in ids if i.upper() not in EXPERIMENTS]
    if unknown:
        raise ValueError(f"unknown experiment(s) {unknown}; choose from {list(EXPERIMENTS)} or 'all'")
    return [EXPERIMENTS[i.upper()] for i in ids]


def notebook_parameters(exp: Experiment) -> set[str]:
    """Names of the parameters that ``exp``'s notebook declares in its ``parameters`` cell."""
    return set(notebook_defaults(exp))


def notebook_defaults(exp: Experiment) -> dict[str, Any]:
    """``name -> default`` of ``exp``'s notebook parameters (``...`` where not a literal)."""
    from papermill.inspection import inspect_notebook

    out = {}
    for name, info in inspect_notebook(str(NOTEBOOKS / exp.notebook)).items():
        try:
            out[name] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError, TypeError):
            out[name] = ...
    return out


def _kind(value: Any) -> str | None:
    """The type family a parameter's default asks for (``None``: anything goes)."""
    if value is None or value is ...:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return None


def check_parameters(exp: Experiment, params: Mapping[str, Any]) -> None:
    """Refuse unknown parameters and values of another type than the notebook's default.

    Runs before anything is created, so a bad value leaves no run folder behind.
    """
    defaults = notebook_defaults(exp)
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(f"{exp.id} has no parameter(s) {unknown}; its parameters are {sorted(defaults)}")
    accepts = {"bool": (bool,), "int": (int,), "number": (int, float), "str": (str,),
               "list": (list, tuple), "dict": (dict,)}
    for name, value in params.items():
        kind = _kind(defaults[name])
        if kind is None or value is None:
            continue
        ok = isinstance(value, accepts[kind]) and not (kind in ("int", "number")
                                                        and isinstance(value, bool))
        if not ok:
            raise ValueError(f"{exp.id}: parameter {name}={value!r} must be a {kind} like its "
                             f"default ({defaults[name]!r})")


def run_notebook(exp: Experiment, scale: str, params: Mapping[str, Any], *,
                 root: Path = RUNS_ROOT, name: str | None = None, progress: bool = True,
                 kernel_name: str | None = None) -> RunOutcome:
    """Execute ``exp``'s notebook at ``scale`` with ``params`` into its run directory."""
    import papermill as pm

    check_parameters(exp, params)
    run_dir = run_dir_for(root, exp.id, name or run_name(scale, params))  # validated first,
    run_dir.mkdir(parents=True, exist_ok=True)                            # created after
    parameters = {**params, "scale": scale, "run_dir": str(run_dir.resolve())}
    write_record(run_dir, experiment=exp.id, scale=scale, parameters=parameters, status="running")
    start = time.perf_counter()
    error = None
    try:
        pm.execute_notebook(str(NOTEBOOKS / exp.notebook), str(run_dir / exp.notebook),
                            parameters=parameters, progress_bar=progress, cwd=os.getcwd(),
                            kernel_name=kernel_name, log_output=False)
    except pm.PapermillExecutionError as exc:
        error = f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
    except Exception as exc:  # the kernel died, the notebook is unreadable, ...
        error = f"{type(exc).__name__}: {exc}"
    wall = time.perf_counter() - start
    device = None
    record_path = run_dir / "record.json"
    if record_path.exists():
        device = json.loads(record_path.read_text()).get("device")
    write_record(run_dir, status="ok" if error is None else "failed", error=error,
                 wall_time_s=round(wall, 2), device=device)
    return RunOutcome(exp.id, run_dir, error is None, wall, error)


def run_many(ids: Sequence[str], scale: str, grid: Mapping[str, Sequence[Any]] | None = None, *,
             root: Path = RUNS_ROOT, name: str | None = None, progress: bool = True,
             skip_missing_data: bool = True) -> list[RunOutcome]:
    """Run every experiment of ``ids`` for every combination of ``grid``.

    Experiments whose datasets are absent are skipped with a message (``skip_missing_data``)
    rather than failing the batch, unless they were asked for by name.
    """
    from tqdm.auto import tqdm

    exps = resolve_experiments(ids)
    combos = expand_grid(grid or {})
    declared = {e.id: notebook_parameters(e) for e in exps}
    unused = sorted(set(grid or {}) - set().union(*declared.values()))
    if unused:
        raise ValueError(f"no selected notebook has parameter(s) {unused}")
    # a parameter goes to the notebooks that declare it (e.g. data_root is not E1's)
    jobs = []
    for e in exps:
        for c in combos:
            job = (e, {k: v for k, v in c.items() if k in declared[e.id]})
            if job not in jobs:
                jobs.append(job)
    for exp, combo in jobs:  # every job's parameters and folder before the first one starts
        check_parameters(exp, combo)
        run_dir_for(root, exp.id, name or run_name(scale, combo))
    outcomes = []
    bar = tqdm(jobs, desc=f"run {scale}", disable=not progress)
    for exp, combo in bar:
        bar.set_postfix_str(exp.id)
        missing = exp.missing_data(combo)
        if missing and skip_missing_data and list(ids) == ["all"]:
            print(f"skip {exp.id}: {missing}")
            continue
        outcomes.append(run_notebook(exp, scale, combo, root=root, name=name, progress=False))
        o = outcomes[-1]
        status = "ok" if o.ok else f"FAILED ({o.error})"
        print(f"{exp.id} [{', '.join(f'{k}={v}' for k, v in combo.items()) or 'defaults'}] "
              f"{status} in {o.wall_time_s:.1f} s -> {o.run_dir}")
    return outcomes


def list_experiments() -> str:
    """A table of experiments with what they reproduce and their estimated cost per scale."""
    lines = [f"{'id':<5}{'notebook':<31}{'smoke':>7}{'cpu':>9}{'paper':>9}  reproduces"]
    for e in EXPERIMENTS.values():
        lines.append(f"{e.id:<5}{e.notebook:<31}{e.cost['smoke']:>7}{e.cost['cpu']:>9}"
                     f"{e.cost['paper']:>9}  {e.reproduces}")
    lines.append("cost: wall time on a shared 2-core CPU (no GPU); '~' marks an estimate, not a "
                 "measurement. 'paper' on a CPU: E1 only (the others are meant for a GPU).")
    return "\n".join(lines)


os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
