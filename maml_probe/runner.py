"""Batch runs of the experiment notebooks through papermill, and the main job without a notebook.

``maml-probe run E7 --scale cpu -p dataset=omniglot`` executes ``notebooks/E7.ipynb`` with those
parameters into ``runs/E7/<name>/``, where ``<name>`` is derived from the scale and the
parameters so that running the same command again resumes the same run (each notebook's
training resumes from its checkpoints and skips finished models). A parameter given as a
comma-separated list (``-p seed=0,1,2``) becomes a grid: one run per combination.

Before the first notebook of a batch starts, every run of it is checked: parameter names and
types, the training configurations the notebook would build from them (a bad value is named
with what is allowed), its data and its folder. A refused batch creates nothing.

While a run executes it holds its folder's lock (a second run into the same folder is refused),
and ``record.json`` says who runs it (``pid``, ``host``, a ``heartbeat`` every 30 s) with which
effective configuration. New outputs are written into a staging folder and replace the old ones
only when the notebook succeeded: a failed rerun keeps the last good outputs and leaves its own
executed notebook, with the traceback, in ``failed-attempt/``. A method that diverged is a failed
row: the run's status is then ``partial`` and the batch counts it as failed.
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import json
import os
import re
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .experiments.registry import ALIASES, EXPERIMENTS, Experiment, experiment_configs, get_experiment
from .io import RunBusyError, RunDir, now_iso
from .runs import (
    HEARTBEAT_S,
    RUNS_ROOT,
    STAGING_ENV,
    device_description,
    finish,
    run_dir_for,
    run_name,
)

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
#: Notebook parameters that the runner sets itself, and the option that sets each.
RUNNER_OWNED = {"scale": "--scale", "run_dir": "--root and --name"}
#: Run inside each notebook's kernel before its first cell: progress bars as plain text, which a
#: terminal shows live and a saved notebook keeps readable (widgets would stay frozen at 0%).
TEXT_PROGRESS = ("import tqdm.auto, tqdm.std; tqdm.auto.tqdm = tqdm.std.tqdm; "
                 "tqdm.auto.trange = tqdm.std.trange")


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
    """Every combination of a parameter grid, one dict per run."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


@dataclass
class RunOutcome:
    """How one run ended.

    ``ok`` is false when the notebook failed or any method in it failed (``failed_rows``, e.g.
    a diverged one). ``notebook`` is the executed notebook (in ``failed-attempt/`` after a
    failure); ``kept_previous`` says that the folder still holds the outputs of an earlier
    successful attempt.
    """
    experiment: str
    run_dir: Path
    ok: bool
    wall_time_s: float
    error: str | None = None
    failed_rows: list[str] = field(default_factory=list)
    notebook: Path | None = None
    kept_previous: bool = False
    params: dict[str, Any] = field(default_factory=dict)


def resolve_experiments(ids: Sequence[str]) -> list[Experiment]:
    """The experiments named by ``ids``.

    Args:
        ids: ids such as ``E7`` (case-insensitive; E4, E5 and E10 name the notebooks that hold
            them), or ``["all"]`` for every experiment.

    Returns:
        The experiments, each once, in the order named.

    Raises:
        ValueError: an id names no experiment (the message lists the valid ones).
    """
    if [i.lower() for i in ids] == ["all"]:
        return list(EXPERIMENTS.values())
    out: list[Experiment] = []
    for exp in (get_experiment(i) for i in ids):
        if exp not in out:
            out.append(exp)
    return out


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


_ACCEPTS = {"bool": (bool,), "int": (int,), "number": (int, float), "str": (str,),
            "list": (list, tuple), "dict": (dict,)}
_ARTICLE = {"bool": "a bool", "int": "an integer", "number": "a number", "str": "a string",
            "list": "a list", "dict": "a dict"}


def check_parameters(exp: Experiment, params: Mapping[str, Any]) -> None:
    """Refuse parameters the runner owns, unknown ones, and values of another type than the default.

    Runs before anything is created, so a bad value leaves no run folder behind.

    Args:
        exp: the experiment.
        params: the parameters given for its notebook.

    Raises:
        ValueError: naming the parameter and what is allowed (the valid names, or the type).
    """
    defaults = notebook_defaults(exp)
    for name, option in RUNNER_OWNED.items():
        if name in params:
            raise ValueError(f"{name} is set by the runner, not with -p: use {option}")
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        valid = sorted(set(defaults) - set(RUNNER_OWNED))
        raise ValueError(f"{exp.id} has no parameter(s) {unknown}; its parameters are "
                         f"{', '.join(valid)}{_overrides_hint(unknown)}")
    for name, value in params.items():
        kind = _kind(defaults[name])
        if kind is None or value is None:
            continue
        ok = isinstance(value, _ACCEPTS[kind]) and not (kind in ("int", "number")
                                                         and isinstance(value, bool))
        if not ok:
            raise ValueError(f"{exp.id}: parameter {name}={value!r} must be {_ARTICLE[kind]} like "
                             f"its default ({defaults[name]!r})")


def _overrides_hint(names: Sequence[str]) -> str:
    """A hint when unknown parameter names are training settings (they go in ``overrides``)."""
    from .config import TrainConfig

    fields = [n for n in names if n in {f.name for f in dataclasses.fields(TrainConfig)}]
    if not fields:
        return ""
    example = ", ".join(f'"{n}": ...' for n in fields)
    return f" ({', '.join(fields)}: a training setting, pass -p 'overrides={{{example}}}')"


def check_overrides(exp: Experiment, overrides: Mapping[str, Any]) -> None:
    """Refuse ``overrides`` keys that are not fields of a training configuration.

    Args:
        exp: the experiment (named in the message).
        overrides: the notebook's ``overrides`` parameter.

    Raises:
        ValueError: naming the unknown keys and listing the valid ones.
    """
    from .config import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"{exp.id}: overrides has unknown field(s) {unknown}; the fields of a "
                         f"training configuration are {', '.join(sorted(fields))}")


def preflight(exp: Experiment, scale: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Check a run completely before its notebook starts; returns its training configurations.

    Args:
        exp: the experiment.
        scale: ``smoke``, ``cpu`` or ``paper``.
        params: the parameters given for its notebook.

    Returns:
        ``label -> TrainConfig`` that the notebook will train (validated).

    Raises:
        ValueError: a parameter or override is invalid (the message names it).
        FileNotFoundError: the run's dataset is not installed where it will look.
    """
    check_parameters(exp, params)
    full = {**notebook_defaults(exp), **params}
    check_overrides(exp, full.get("overrides") or {})
    missing = exp.missing_data(params)
    if missing:
        raise FileNotFoundError(f"{exp.id}: {missing}; or pass -p data_root=FOLDER")
    try:
        return experiment_configs(exp, scale, full)
    except KeyError as exc:
        raise ValueError(f"{exp.id}: unknown entry {exc} in its parameters") from None
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{exp.id}: {exc}") from None


def describe_configs(configs: Mapping[str, Any]) -> dict[str, Any]:
    """What ``record.json`` says about a run's configurations: episode, iterations and each config.

    Args:
        configs: ``label -> TrainConfig``.

    Returns:
        ``{"episode": ..., "iterations": ..., "config": {label: fields}}`` (empty without configs).
    """
    if not configs:
        return {}
    cfgs = list(configs.values())
    return {"episode": episode_text(cfgs[0]), "iterations": max(c.iterations for c in cfgs),
            "config": {label: cfg.to_dict() for label, cfg in configs.items()}}


def episode_text(cfg: Any) -> str:
    """A configuration's episode in words: ``"5-way 1-shot, 2 steps"`` (synthetic: points)."""
    steps = f"{cfg.steps} step{'s' if cfg.steps != 1 else ''}"
    if cfg.dataset == "synthetic":
        kw = cfg.dataset_kwargs
        return f"d={kw.get('dim', 100)}, {kw.get('support', 100)}+{kw.get('query', 100)} points, {steps}"
    return f"{cfg.ways}-way {cfg.shots}-shot, {steps}"


def resume_points(run_dir: str | os.PathLike) -> list[str]:
    """One line per model checkpoint under ``run_dir``: where a rerun resumes it.

    Args:
        run_dir: a run folder.

    Returns:
        e.g. ``["lr-w-maml: resumed from iteration 2000 of 5000"]``; an unreadable checkpoint
        gives a line saying to delete it.
    """
    from .checkpoint import load_checkpoint

    lines = []
    for path in sorted(Path(run_dir).glob("*/checkpoint.pt")):
        try:
            state = load_checkpoint(path)
        except (ValueError, OSError) as exc:
            lines.append(f"{path.parent.name}: unreadable checkpoint ({str(exc).splitlines()[0]}); "
                         f"delete {path} to train that model again")
            continue
        total = state.get("config", {}).get("iterations", "?")
        done = state.get("iteration", 0)
        if isinstance(total, int) and done >= total:
            lines.append(f"{path.parent.name}: finished ({done} iterations), read back")
        else:
            lines.append(f"{path.parent.name}: resumed from iteration {done} of {total}")
    return lines


def failed_rows(folder: str | os.PathLike) -> list[str]:
    """Methods (or sweep members) whose ``status`` in the run's tables is not ``ok``.

    Args:
        folder: where the run's ``methods.csv`` / ``summary.csv`` are.

    Returns:
        ``"label: status"`` lines, each method once.
    """
    import pandas as pd

    found: dict[str, str] = {}
    for name in ("methods.csv", "summary.csv"):
        path = Path(folder) / name
        if not path.exists():
            continue
        df = pd.read_csv(path)
        label = next((c for c in ("label", "method") if c in df), None)
        if "status" not in df or label is None:
            continue
        for row in df[df["status"].astype(str) != "ok"].itertuples(index=False):
            found.setdefault(str(getattr(row, label)), str(row.status))
    return [f"{label}: {status}" for label, status in found.items()]


def advice(error: str) -> str:
    """What to do about a failed run's ``error`` (empty when there is nothing specific)."""
    bad = re.search(r"(\S*checkpoint\.pt)\S* (is not a (readable )?maml_probe checkpoint|refers to)",
                    error)
    if bad:
        return (f"delete {bad.group(1)} to train that model again (the others resume), then "
                f"rerun the same command")
    if "different config" in error:
        return "the folder holds another configuration's checkpoints: pass --name for a new folder"
    return ""


@contextmanager
def _env(values: Mapping[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def _heartbeat(run: RunDir, every: float = HEARTBEAT_S) -> Iterator[None]:
    """Write ``heartbeat`` into the record every ``every`` seconds while the block runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            try:
                run.update_record(heartbeat=now_iso())
            except (OSError, ValueError):
                pass

    thread = threading.Thread(target=beat, name="maml-probe heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextmanager
def claimed(run: RunDir, **fields: Any) -> Iterator[RunDir]:
    """Own ``run``'s folder for the block: its lock, and a ``running`` record with pid and host.

    An unreadable ``record.json`` is set aside as ``record.json.corrupt`` (with a message); a
    lock left by a dead process on this machine is taken over. When the block raises, the record
    says ``failed`` (or ``interrupted``) with the error.

    Args:
        run: the run folder.
        **fields: what to record about the run (experiment, scale, parameters, config...).

    Yields:
        ``run``.

    Raises:
        RunBusyError: another live run holds the folder.
    """
    with run.lock() as stale:
        if stale is not None:
            print(f"note: {run.path} was left by a run that died (pid {stale.get('pid')}); "
                  f"taking over", file=sys.stderr)
        bad = run.set_aside_corrupt_record()
        if bad is not None:
            print(f"warning: {run.record_path} was unreadable; moved to {bad}, starting a new "
                  f"record", file=sys.stderr)
        run.update_record(**fields, status="running", error=None, failed_rows=[], pid=os.getpid(),
                          started=now_iso(), heartbeat=now_iso())
        try:
            yield run
        except BaseException as exc:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            run.update_record(status=status, error=f"{type(exc).__name__}: {exc}",
                              finished=now_iso())
            raise


def _conclude(run: RunDir, error: str | None, wall: float, device: str) -> tuple[list[str], bool]:
    """Swap staged outputs in (or keep them aside on failure) and write the final record.

    Returns:
        The failed rows and whether earlier good outputs were kept.
    """
    rows = failed_rows(run.staging_path) if error is None else []
    kept = False
    if error is None:
        run.commit_staging()
        outputs = {"outputs_from": now_iso()}
    else:
        kept = run.has_outputs()
        run.keep_failed_staging()
        outputs = {}
        if kept:
            error = f"{error} (the outputs of the last successful attempt are kept)"
    status = "failed" if error else ("partial" if rows else "ok")
    run.update_record(status=status, error=error, failed_rows=rows, wall_time_s=round(wall, 2),
                      device=device, finished=now_iso(), heartbeat=None, **outputs)
    return rows, kept


def _execute(exp: Experiment, run: RunDir, parameters: Mapping[str, Any], *, progress: bool,
             kernel_name: str | None) -> str | None:
    """Run the notebook into the staging folder; returns the error, ``None`` on success."""
    import papermill as pm

    staging = run.begin_staging()
    stream = sys.stderr if progress else None
    try:
        with _env({STAGING_ENV: str(staging), "TQDM_MININTERVAL": "1"}):
            pm.execute_notebook(str(NOTEBOOKS / exp.notebook), str(staging / exp.notebook),
                                parameters=dict(parameters), progress_bar=False, cwd=os.getcwd(),
                                kernel_name=kernel_name, log_output=False, stdout_file=stream,
                                stderr_file=stream, coalesce_streams=True,
                                extra_arguments=[f"--IPKernelApp.exec_lines={[TEXT_PROGRESS]!r}"])
    except pm.PapermillExecutionError as exc:
        return f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
    except Exception as exc:  # the kernel died, the notebook is unreadable, ...
        return f"{type(exc).__name__}: {exc}"
    return None


def _configs_or_none(exp: Experiment, scale: str, params: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return experiment_configs(exp, scale, {**notebook_defaults(exp), **params})
    except Exception:  # the notebook will report it
        return {}


def run_notebook(exp: Experiment, scale: str, params: Mapping[str, Any], *,
                 root: Path = RUNS_ROOT, name: str | None = None, progress: bool = True,
                 kernel_name: str | None = None,
                 configs: Mapping[str, Any] | None = None) -> RunOutcome:
    """Execute ``exp``'s notebook at ``scale`` with ``params`` into its run folder.

    Args:
        exp: the experiment.
        scale: ``smoke``, ``cpu`` or ``paper``.
        params: its notebook's parameters (names and types are checked first).
        root: the runs folder.
        name: the run folder's name (default: from the scale and parameters).
        progress: show the notebook's progress (training bars, messages) on stderr.
        kernel_name: the Jupyter kernel (default: the notebook's).
        configs: its training configurations if already built (:func:`preflight`), for the record.

    Returns:
        How the run ended.

    Raises:
        ValueError: a parameter is unknown or of the wrong type (nothing is created).
        RunBusyError: another run is writing into the same folder.
    """
    check_parameters(exp, params)
    run = RunDir(run_dir_for(root, exp.id, name or run_name(scale, params)))
    configs = configs if configs is not None else _configs_or_none(exp, scale, params)
    parameters = {**params, "scale": scale, "run_dir": str(run.path)}
    device = params.get("device", "auto")
    with claimed(run, experiment=exp.id, scale=scale, parameters=dict(params),
                 **describe_configs(configs)):
        for line in resume_points(run.path):
            print(f"{exp.id}: {line}", file=sys.stderr)
        start = time.perf_counter()
        with _heartbeat(run):
            error = _execute(exp, run, parameters, progress=progress, kernel_name=kernel_name)
        wall = time.perf_counter() - start
        rows, kept = _conclude(run, error, wall, device_description(device))
    if error:
        hint = advice(error)
        error = f"{error}\n  {hint}" if hint else error
    elif rows:
        error = f"{len(rows)} of {max(len(configs), len(rows))} methods failed"
    notebook = (run.failed_path if error and not rows else run.path) / exp.notebook
    return RunOutcome(exp.id, run.path, error is None, wall, error, rows, notebook, kept,
                      dict(params))


@dataclass
class PlannedRun:
    """One run of a batch, checked: experiment, parameters, configurations and folder."""
    experiment: Experiment
    params: dict[str, Any]
    configs: dict[str, Any]
    run_dir: Path


def _jobs(exps: Sequence[Experiment], grid: Mapping[str, Sequence[Any]]) -> list[tuple[Experiment, dict]]:
    """Each experiment with each combination of the parameters its notebook declares."""
    declared = {e.id: notebook_parameters(e) for e in exps}
    unused = sorted(set(grid) - set().union(*declared.values()))
    if unused:
        valid = "; ".join(f"{e.id}: {', '.join(sorted(declared[e.id] - set(RUNNER_OWNED)))}"
                          for e in exps)
        raise ValueError(f"no selected notebook has parameter(s) {unused}; valid parameters are "
                         f"{valid}{_overrides_hint(unused)}")
    jobs: list[tuple[Experiment, dict]] = []
    for e in exps:  # a parameter goes to the notebooks that declare it (data_root is not E1's)
        for combo in expand_grid(grid):
            job = (e, {k: v for k, v in combo.items() if k in declared[e.id]})
            if job not in jobs:
                jobs.append(job)
    return jobs


def plan_runs(ids: Sequence[str], scale: str, grid: Mapping[str, Sequence[Any]] | None = None, *,
              root: Path = RUNS_ROOT, name: str | None = None,
              skip_missing_data: bool = True) -> tuple[list[PlannedRun], list[str]]:
    """Check every run of a batch before any starts.

    Args:
        ids: experiment ids, or ``["all"]``.
        scale: ``smoke``, ``cpu`` or ``paper``.
        grid: ``name -> values``; one run per combination.
        root: the runs folder.
        name: one folder name for every run (refused when two runs would share a folder).
        skip_missing_data: with ``["all"]``, skip (with a message) experiments whose data is
            absent instead of refusing the batch.

    Returns:
        The planned runs, and one message per skipped run.

    Raises:
        ValueError: a parameter, override or name is invalid.
        FileNotFoundError: a named experiment's data is missing.
        RunBusyError: a live run is writing into one of the folders.
    """
    from .experiments.common import check_scale

    check_scale(scale)
    is_all = [i.lower() for i in ids] == ["all"]
    planned, skipped = [], []
    for exp, combo in _jobs(resolve_experiments(ids), grid or {}):
        check_parameters(exp, combo)
        missing = exp.missing_data(combo) if skip_missing_data and is_all else None
        if missing:
            skipped.append(f"skip {exp.id}: {missing}")
            continue
        configs = preflight(exp, scale, combo)
        run_dir = run_dir_for(root, exp.id, name or run_name(scale, combo))
        clash = next((p for p in planned if p.run_dir == run_dir), None)
        if clash is not None:
            raise ValueError(f"{clash.params} and {combo} would both write into {run_dir}; "
                             f"drop --name so that each run gets its own folder")
        RunDir(run_dir).check_free()  # a dead run's lock is taken over when the run starts
        planned.append(PlannedRun(exp, combo, configs, run_dir))
    return planned, skipped


def _describe(combo: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in combo.items()) or "defaults"


def run_many(ids: Sequence[str], scale: str, grid: Mapping[str, Sequence[Any]] | None = None, *,
             root: Path = RUNS_ROOT, name: str | None = None, progress: bool = True,
             skip_missing_data: bool = True) -> list[RunOutcome]:
    """Run every experiment of ``ids`` for every combination of ``grid``.

    Every run is checked before the first starts (:func:`plan_runs`). Experiments whose
    datasets are absent are skipped with a message when ``ids`` is ``["all"]``
    (``skip_missing_data``); named ones are refused.

    Args:
        ids: experiment ids, or ``["all"]``.
        scale: ``smoke``, ``cpu`` or ``paper``.
        grid: ``name -> values``; one run per combination.
        root: the runs folder.
        name: the run folder name (default: from the scale and parameters).
        progress: show each notebook's progress on stderr.
        skip_missing_data: see above.

    Returns:
        One outcome per run that started.
    """
    planned, skipped = plan_runs(ids, scale, grid, root=root, name=name,
                                 skip_missing_data=skip_missing_data)
    for line in skipped:
        print(line)
    outcomes = []
    for i, job in enumerate(planned, 1):
        print(f"[{i}/{len(planned)}] {job.experiment.id} [{_describe(job.params)}] at {scale} "
              f"-> {job.run_dir}", flush=True)
        try:
            o = run_notebook(job.experiment, scale, job.params, root=root, name=name,
                             progress=progress, configs=job.configs)
        except RunBusyError as exc:  # claimed since the batch was planned: the others still run
            o = RunOutcome(job.experiment.id, job.run_dir, False, 0.0, str(exc), params=job.params)
        outcomes.append(o)
        status = "ok" if o.ok else "FAILED"
        print(f"{o.experiment} [{_describe(job.params)}] {status} in {o.wall_time_s:.1f} s -> "
              f"{o.run_dir}", flush=True)
    return outcomes


def synthetic_figures(out: Mapping[str, Any]) -> dict[str, Any]:
    """The figures of the main job: Fig 1 left (learning curves) and the test accuracies."""
    from . import plots

    figures = {}
    if len(out["history"]):
        figures["learning_curves"] = plots.learning_curves(
            out["history"], "Synthetic: post-adaptation accuracy (Fig 1 left)")
    if len(out["tests"]):
        figures["test_accuracy"] = plots.accuracy_bars(out["tests"], "Synthetic: test tasks")
    return figures


def run_synthetic(scale: str = "cpu", *, root: Path = RUNS_ROOT, out: str | os.PathLike | None = None,
                  test_tasks: int | None = None, progress: bool = True,
                  **kwargs: Any) -> tuple[dict[str, Any], RunOutcome]:
    """The main job: E1 on synthetic tasks, saved as a run folder like ``maml-probe run`` makes.

    The folder (default ``root/E1/synthetic-<scale>-<parameters other than defaults>``)
    receives ``record.json``,
    the tidy CSVs (``results.csv``, ``summary.csv``, ``history.csv``...), the figures (Fig 1
    left as ``figures/learning_curves.png``) and the checkpoints; rerunning resumes it.

    Args:
        scale: ``smoke``, ``cpu`` or ``paper``.
        root: the runs folder.
        out: the run folder itself (overrides ``root`` and the derived name).
        test_tasks: test tasks per method (default: the scale's).
        progress: show progress bars.
        **kwargs: :func:`maml_probe.experiments.e1_synthetic.configs` options (``seed``,
            ``device``, ``methods``, ``support``, ``query``) and config overrides
            (``iterations``).

    Returns:
        The experiment's tables and the outcome.

    Raises:
        ValueError: an option gives an invalid configuration (nothing is created).
        RunBusyError: another run is writing into the folder.
    """
    from .experiments import e1_synthetic

    configs = {k: c.validate() for k, c in e1_synthetic.configs(scale, **kwargs).items()}
    defaults = {k: p.default for k, p in inspect.signature(e1_synthetic.configs).parameters.items()}
    params = {k: v for k, v in {**kwargs, "test_tasks": test_tasks}.items()
              if v is not None and not (k in defaults and v == defaults[k])}
    run = RunDir(Path(out) if out else run_dir_for(root, "E1", "synthetic-" + run_name(scale, params)))
    with claimed(run, experiment="E1", scale=scale, parameters=params,
                 command="maml-probe synthetic", **describe_configs(configs)):
        for line in resume_points(run.path):
            print(f"E1: {line}", file=sys.stderr)
        start = time.perf_counter()
        staging = run.begin_staging()
        try:
            with _heartbeat(run), _env({STAGING_ENV: str(staging)}):
                result = e1_synthetic.run(scale, run.path, test_tasks=test_tasks,
                                          progress=progress, **kwargs)
                finish(run.path, result, synthetic_figures(result))
        except Exception:
            run.keep_failed_staging()
            raise
        wall = time.perf_counter() - start
        rows, _ = _conclude(run, None, wall, device_description(kwargs.get("device", "auto")))
    error = f"{len(rows)} of {len(configs)} methods failed" if rows else None
    return result, RunOutcome("E1", run.path, not rows, wall, error, rows, None, False, params)


def list_experiments() -> str:
    """A table of experiments with what they reproduce and their estimated cost per scale."""
    lines = [f"{'id':<5}{'notebook':<31}{'smoke':>7}{'cpu':>9}{'paper':>9}  reproduces"]
    for e in EXPERIMENTS.values():
        lines.append(f"{e.id:<5}{e.notebook:<31}{e.cost['smoke']:>7}{e.cost['cpu']:>9}"
                     f"{e.cost['paper']:>9}  {e.reproduces}")
    aliases = ", ".join(f"{a} runs {t}'s notebook" for a, t in ALIASES.items())
    lines.append(f"{aliases}.")
    lines.append("cost: wall time on a shared 2-core CPU (no GPU); '~' marks an estimate, not a "
                 "measurement. 'paper' on a CPU: E1 only (the others are meant for a GPU).")
    return "\n".join(lines)


os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
