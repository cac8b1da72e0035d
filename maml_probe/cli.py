"""The ``maml-probe`` command line.

``maml-probe synthetic``        the main job: E1 on synthetic tasks (no data needed)
``maml-probe run E7 ...``       execute experiment notebooks with papermill (``--list`` for all)
``maml-probe report``           set every run under runs/ beside the paper's numbers
``maml-probe data ...``         install, prepare and check datasets
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _synthetic(args: argparse.Namespace) -> int:
    import pandas as pd

    from .experiments import e1_synthetic

    overrides = {}
    if args.iterations:
        overrides["iterations"] = args.iterations
    out = e1_synthetic.run(args.scale, args.out, test_tasks=args.test_tasks, seed=args.seed,
                           device=args.device, methods=args.methods, support=args.support,
                           query=args.query, **overrides)
    with pd.option_context("display.width", 120, "display.max_columns", 20):
        table = out["summary"].query("phase == 'post' or phase != phase")
        print("\nPost-adaptation test accuracy on synthetic tasks "
              f"(d=100, {args.support} support / {args.query} query points per task):")
        print(table[["method", "accuracy", "ci95", "n", "status"]].to_string(index=False))
        print(f"\nOne-step ceiling for this protocol: {out['ceiling']['accuracy'][0]:.4f}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import runner

    if args.list or not args.experiments:
        print(runner.list_experiments())
        return 0
    grid = runner.parse_params(args.param)
    outcomes = runner.run_many(args.experiments, args.scale, grid,
                               root=Path(args.root) if args.root else runner.RUNS_ROOT,
                               name=args.name, progress=not args.no_progress)
    failed = [o for o in outcomes if not o.ok]
    for o in failed:
        print(f"FAILED {o.experiment}: {o.error}\n  executed notebook with the traceback: "
              f"{o.run_dir}", file=sys.stderr)
    print(f"{len(outcomes) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .report import write_report
    from .runs import RUNS_ROOT

    root = Path(args.root) if args.root else RUNS_ROOT
    path = write_report(root)
    print(path.read_text())
    print(f"written to {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maml-probe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    syn = sub.add_parser("synthetic", help="E1: meta-learn linear models on synthetic tasks")
    syn.add_argument("--scale", default="cpu", choices=["smoke", "cpu", "paper"])
    syn.add_argument("--iterations", type=int, default=None, help="override the scale's iterations")
    syn.add_argument("--methods", nargs="*", default=None,
                     help="subset of: 'LR w/ MAML' 'LR+LinNet w/ MAML' 'LR w/ KLin' 'LR w/ KFC'")
    syn.add_argument("--support", type=int, default=100, help="adaptation points per task")
    syn.add_argument("--query", type=int, default=100, help="evaluation points per task")
    syn.add_argument("--test-tasks", type=int, default=None)
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--device", default="auto")
    syn.add_argument("--out", default=None, help="run directory (checkpoints; rerun resumes)")
    syn.set_defaults(func=_synthetic)

    run = sub.add_parser("run", help="execute experiment notebooks (papermill) into runs/")
    run.add_argument("experiments", nargs="*", help="E1 E2 E3 E6 E7 E8 E9 E11, or all")
    run.add_argument("--scale", default="cpu", choices=["smoke", "cpu", "paper"])
    run.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE[,VALUE...]",
                     help="notebook parameter; a comma-separated list makes a grid")
    run.add_argument("--list", action="store_true", help="list experiments and their cost per scale")
    run.add_argument("--name", default=None, help="run name (default: from scale and parameters)")
    run.add_argument("--root", default=None, help="runs directory (default: runs/ or $MAML_PROBE_RUNS)")
    run.add_argument("--no-progress", action="store_true")
    run.set_defaults(func=_run)

    rep = sub.add_parser("report", help="gather runs into the paper's tables (writes runs/report.md)")
    rep.add_argument("--root", default=None, help="runs directory (default: runs/ or $MAML_PROBE_RUNS)")
    rep.set_defaults(func=_report)

    try:
        from .data.cli import add_data_parser, run_data_command
    except ImportError:  # pragma: no cover - the data package is always shipped
        pass
    else:
        data = add_data_parser(sub)
        data.set_defaults(func=run_data_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"maml-probe: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
