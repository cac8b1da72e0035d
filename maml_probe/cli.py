"""The ``maml-probe`` command line.

``maml-probe synthetic``        the main job: E1 on synthetic tasks (no data needed), saved to runs/E1/
``maml-probe run E7 ...``       execute experiment notebooks with papermill (``--list`` for all)
``maml-probe train E7 ...``     train an experiment's models without a notebook, on one process or
                                many (``--nproc N``, or under ``torchrun``; :mod:`maml_probe.launch`)
``maml-probe report``           set results/ (reference) and runs/ (yours) beside the paper's numbers
``maml-probe explore``          copy the explorer notebook to runs/explore.ipynb (outside git) and
                                print the ``jupyter lab`` command that opens it
``maml-probe data ...``         install, prepare and check datasets

Exit status: 0 success, 1 a run failed (or a method in it diverged), 2 the input was refused.
"""
from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Sequence
from pathlib import Path


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1 (``0`` is refused, not read as "default")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _print_synthetic_table(out: dict, support: int, query: int) -> None:
    import pandas as pd

    table = out["summary"].query("phase == 'post' or phase != phase")
    with pd.option_context("display.width", 120, "display.max_columns", 20,
                           "display.float_format", "{:.4f}".format):
        print("\nPost-adaptation test accuracy on synthetic tasks "
              f"(d=100, {support} support / {query} query points per task):")
        print(table[["method", "accuracy", "ci95", "n", "status"]].to_string(index=False))
    print(f"\nOne-step ceiling for this protocol: {out['ceiling']['accuracy'][0]:.4f}")


def _synthetic(args: argparse.Namespace) -> int:
    from . import runner

    options = {"seed": args.seed, "device": args.device, "methods": args.methods,
               "support": args.support, "labels": args.labels, "lr_bias": args.lr_bias}
    if args.points is not None:   # support + held-out = points (the query count follows)
        options["points"] = args.points
    else:
        options["query"] = args.query
    if args.iterations is not None:
        options["iterations"] = args.iterations
    out, outcome = runner.run_synthetic(args.scale, root=_runs_root(args), out=args.out,
                                        test_tasks=args.test_tasks, **options)
    held_out = args.points - args.support if args.points is not None else args.query
    _print_synthetic_table(out, args.support, held_out)
    print(f"\nrun folder: {outcome.run_dir} (record.json, results.csv, "
          f"figures/learning_curves.png); `maml-probe report` sets it beside the paper")
    for row in outcome.failed_rows:
        print(f"FAILED {row}", file=sys.stderr)
    return 0 if outcome.ok else 1


def _runs_root(args: argparse.Namespace) -> Path:
    from .runs import RUNS_ROOT

    return Path(args.root) if args.root else RUNS_ROOT


def _print_failure(o) -> None:
    print(f"FAILED {o.experiment} [{', '.join(f'{k}={v}' for k, v in o.params.items()) or 'defaults'}]: "
          f"{o.error}", file=sys.stderr)
    for row in o.failed_rows:
        print(f"  failed row: {row.splitlines()[0][:300]}", file=sys.stderr)
    if o.notebook is not None:
        print(f"  executed notebook: {o.notebook}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    from . import runner

    if args.list or not args.experiments:
        print(runner.list_experiments())
        return 0
    grid = runner.parse_params(args.param)
    outcomes = runner.run_many(args.experiments, args.scale, grid, root=_runs_root(args),
                               name=args.name, progress=not args.no_progress)
    failed = [o for o in outcomes if not o.ok]
    for o in failed:
        _print_failure(o)
    print(f"{len(outcomes) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def _train(args: argparse.Namespace) -> int:
    from .launch import main as launch

    return launch(args.args)


def _report(args: argparse.Namespace) -> int:
    from .report import write_report

    path = write_report(Path(args.root) if args.root else None)
    print(path.read_text())
    print(f"written to {path}")
    return 0


def _explore(args: argparse.Namespace) -> int:
    from .explorer.notebook import copy_notebook, copy_target, lab_command

    existed = copy_target(args.dest).exists()
    path = copy_notebook(args.dest, overwrite=args.fresh)
    if existed and not args.fresh:
        print(f"kept your copy {path} (--fresh replaces it with a new one)")
    else:
        print(f"copied the explorer notebook to {path} (outside git: its outputs stay out of "
              f"notebooks/)")
    print(f"open it with:\n  {lab_command(path)}")
    return 0


def _add_synthetic(sub) -> None:
    syn = sub.add_parser("synthetic", help="E1: meta-learn linear models on synthetic tasks")
    syn.add_argument("--scale", default="cpu", choices=["smoke", "cpu", "paper"])
    syn.add_argument("--iterations", type=positive_int, default=None,
                     help="override the scale's iterations")
    syn.add_argument("--methods", nargs="*", default=None,
                     help="subset of: 'LR w/ MAML' 'LR+LinNet w/ MAML' 'LR w/ KLin' 'LR w/ KFC'")
    syn.add_argument("--support", type=positive_int, default=100, help="adaptation points per task")
    syn.add_argument("--query", type=positive_int, default=100, help="evaluation points per task")
    syn.add_argument("--points", type=positive_int, default=None,
                     help="points per task, split into --support and held-out ones (A.1.1: 1000)")
    syn.add_argument("--labels", default="01", choices=["01", "pm1"],
                     help="binary labels {0,1} or {-1,1} (A.1.1's reading) fed to the loss")
    syn.add_argument("--lr-bias", action="store_true", help="give logistic regression a bias")
    syn.add_argument("--test-tasks", type=positive_int, default=None,
                     help="test tasks per method (default: the scale's)")
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--device", default="auto")
    syn.add_argument("--root", default=None, help="runs folder (default: runs/ or $MAML_PROBE_RUNS)")
    syn.add_argument("--out", default=None,
                     help="the run folder itself (default: <root>/E1/synthetic-<scale>-...); "
                          "a rerun resumes it")
    syn.set_defaults(func=_synthetic)


def _add_run(sub) -> None:
    run = sub.add_parser("run", help="execute experiment notebooks (papermill) into runs/")
    run.add_argument("experiments", nargs="*",
                     help="E1 E2 E3 (E4 E5) E6 E7 E8 (E10) E9 E11, or all")
    run.add_argument("--scale", default="cpu", choices=["smoke", "cpu", "paper"])
    run.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE[,VALUE...]",
                     help="notebook parameter; a comma-separated list makes a grid")
    run.add_argument("--list", action="store_true", help="list experiments and their cost per scale")
    run.add_argument("--name", default=None, help="run name (default: from scale and parameters)")
    run.add_argument("--root", default=None, help="runs folder (default: runs/ or $MAML_PROBE_RUNS)")
    run.add_argument("--no-progress", action="store_true", help="do not show the notebooks' progress")
    run.set_defaults(func=_run)


def build_parser() -> argparse.ArgumentParser:
    """The ``maml-probe`` argument parser: ``synthetic``, ``run``, ``report``, ``explore``, ``data``.

    Returns:
        The parser; each subcommand sets ``func``, which runs it and returns the exit status.
    """
    parser = argparse.ArgumentParser(prog="maml-probe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_synthetic(sub)
    _add_run(sub)
    train = sub.add_parser("train", add_help=False,
                           help="train an experiment's models on one or many processes (torchrun)")
    train.add_argument("args", nargs=argparse.REMAINDER)
    train.set_defaults(func=_train)
    rep = sub.add_parser("report", help="gather runs into the paper's tables (writes runs/report.md)")
    rep.add_argument("--root", default=None,
                     help="one runs folder (default: the committed results/ and your runs/)")
    rep.set_defaults(func=_report)
    exp = sub.add_parser("explore", help="copy the explorer notebook to runs/ and print the "
                                         "command that opens it in JupyterLab")
    exp.add_argument("--dest", default=None,
                     help="where the copy goes (default: runs/explore.ipynb)")
    exp.add_argument("--fresh", action="store_true",
                     help="replace an existing copy with a fresh one")
    exp.set_defaults(func=_explore)
    pub = sub.add_parser("publish", help="copy a finished run's record and tables into results/ "
                                         "(the committed reference results; no checkpoints)")
    pub.add_argument("run_dir", help="the run folder, e.g. runs/E7/cpu")
    pub.add_argument("--name", default=None, help="its name under results/<experiment>/ "
                                                  "(default: the run's name)")
    pub.add_argument("--root", default=None, help="the results folder (default: results/)")
    pub.add_argument("--replace", action="store_true", help="overwrite a result of that name")
    pub.set_defaults(func=_publish)
    try:
        from .data.cli import add_data_parser, run_data_command
    except ImportError:  # pragma: no cover - the data package is always shipped
        pass
    else:
        data = add_data_parser(sub)
        data.set_defaults(func=run_data_command)
    return parser


def _publish(args: argparse.Namespace) -> int:
    from .runs import publish_run

    target = publish_run(args.run_dir, args.name, root=args.root, replace=args.replace)
    files = sorted(p.name for p in target.iterdir())
    print(f"published {args.run_dir} -> {target} ({', '.join(files)})")
    return 0


def os_error_message(exc: OSError) -> str:
    """One line for a file-system error: what failed, on which path, and what to do."""
    path = exc.filename or ""
    if isinstance(exc, PermissionError) or exc.errno == errno.EROFS:
        return (f"cannot write {path} ({exc.strerror}); choose a writable folder (--root, "
                f"--out, $MAML_PROBE_RUNS, or $MAML_PROBE_DATA / $MAML_PROBE_CACHE for data)")
    return f"{path}: {exc.strerror or exc}" if path else str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``maml-probe`` command line.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 success, 1 a run or a method in it failed, 2 refused input or an
        error before anything ran (one line on stderr).
    """
    from .io import RunBusyError

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:  # its own parser (python -m maml_probe.launch), options included
        args = argparse.Namespace(func=_train, args=argv[1:])
    else:
        args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, RunBusyError) as exc:
        print(f"maml-probe: error: {exc}", file=sys.stderr)
    except OSError as exc:  # a missing dataset's message is its own; a failed write is one line
        message = os_error_message(exc) if exc.filename else str(exc)
        print(f"maml-probe: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
