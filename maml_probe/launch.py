"""Train an experiment's models from the command line, in one process or data-parallel over many.

    python -m maml_probe.launch E7 --scale smoke -p dataset=omniglot
    python -m maml_probe.launch E7 --scale cpu --nproc 2          # starts torchrun itself
    torchrun --nproc-per-node 4 -m maml_probe.launch E7 --scale paper
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29400 \\
        --rdzv-id e7 -m maml_probe.launch E7 --scale paper        # two machines

Calls the experiment's own ``run`` function (:mod:`maml_probe.experiments`) without a
notebook: every rank runs it, the ranks share each meta-batch and the test tasks
(:mod:`maml_probe.distributed`), and rank 0 writes the run folder ``runs/<E>/<name>/`` (the
same folder ``maml-probe run`` uses for these parameters, so either one resumes the other's
checkpoints): tables, ``results.csv`` and ``record.json`` with the number of processes and the
engine. Probes after training (E3's, E8's pruning) run on every rank alike; their results are the
same on each.
"""
from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

__all__ = ["EXPERIMENT_MODULES", "main", "train_experiment"]

#: Experiments whose ``run`` trains through :func:`maml_probe.experiments.common.train_and_evaluate`.
EXPERIMENT_MODULES = {"E1": "e1_synthetic", "E2": "e2_omniglot_linear", "E3": "e3_layer_probes",
                      "E6": "e6_depth", "E7": "e7_meta_optimizers", "E8": "e8_cholesky_pruning",
                      "E9": "e9_width"}


def train_experiment(experiment: str, scale: str, params: dict[str, Any], *, name: str | None = None,
                     root: str | os.PathLike | None = None, progress: bool = True) -> str:
    """Run ``experiment`` at ``scale`` with ``params`` into its run folder; returns the folder.

    Args:
        experiment: an id of :data:`EXPERIMENT_MODULES`.
        scale: ``smoke``, ``cpu`` or ``paper``.
        params: keyword arguments of the experiment's ``run`` (e.g. ``dataset``, ``data_root``,
            ``methods``, and config overrides such as ``iterations`` or ``engine``).
        name: the run folder's name (default: from the scale and parameters, as ``maml-probe run``).
        root: the runs folder (default ``runs/``).
        progress: show progress bars (rank 0 only).

    Returns:
        The run folder.
    """
    from .distributed import init_from_env
    from .io import RunDir, now_iso
    from .runner import claimed
    from .runs import RUNS_ROOT, device_description, finish, run_dir_for, run_name

    exp = experiment.upper()
    if exp not in EXPERIMENT_MODULES:
        raise ValueError(f"train supports {sorted(EXPERIMENT_MODULES)}, not {experiment!r}")
    module = importlib.import_module(f".experiments.{EXPERIMENT_MODULES[exp]}", __package__)
    run_dir = run_dir_for(root or RUNS_ROOT, exp, name or run_name(scale, params))
    device = params.get("device", "auto")
    device = device if device != "auto" else ("cuda" if _cuda() else "cpu")
    world = init_from_env(device)
    run = RunDir(run_dir)
    # rank 0 owns the folder (its lock and record; a failure is recorded there)
    owner = claimed(run, experiment=exp, scale=scale, parameters=params, processes=world.size,
                    launcher="maml_probe.launch", engine=params.get("engine", "auto")) \
        if world.is_main else nullcontext(run)
    start = time.perf_counter()
    with owner:
        out = module.run(scale, str(run_dir), progress=progress and world.is_main, **params)
        if world.is_main:
            finish(run_dir, out)
            run.update_record(status="ok", error=None, finished=now_iso(), heartbeat=None,
                              wall_time_s=round(time.perf_counter() - start, 2),
                              device=device_description(device))
    return str(run_dir)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m maml_probe.launch`` (and ``maml-probe train``)."""
    p = argparse.ArgumentParser(prog="maml-probe train", description=__doc__.split("\n\n")[0])
    p.add_argument("experiment", help=f"one of {', '.join(EXPERIMENT_MODULES)}")
    p.add_argument("--scale", default="cpu", choices=["smoke", "cpu", "paper"])
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a keyword of the experiment's run() (repeatable), e.g. dataset=omniglot")
    p.add_argument("--engine", default=os.environ.get("MAML_PROBE_IMPL"),
                   choices=["auto", "loop", "batched", "graph"],
                   help="how the meta-gradient is computed (default $MAML_PROBE_IMPL or auto)")
    p.add_argument("--nproc", type=int, default=1,
                   help="processes on this machine: starts torchrun with this many (gloo on CPU, "
                        "NCCL on GPUs); leave at 1 when launched by torchrun")
    p.add_argument("--name", default=None, help="run folder name (default: from the parameters)")
    p.add_argument("--root", default=None, help="runs folder (default: runs/)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        rest = [a for i, a in enumerate(argv)
                if not (a.startswith("--nproc") or (i and argv[i - 1] == "--nproc"))]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={args.nproc}", "-m", "maml_probe.launch", *rest]
        return subprocess.call(cmd)
    from .runner import parse_params

    params = {k: v[0] if len(v) == 1 else v for k, v in parse_params(args.param).items()}
    if args.engine and args.engine != "auto":
        params["engine"] = args.engine
    run_dir = train_experiment(args.experiment, args.scale, params, name=args.name, root=args.root)
    import torch.distributed as dist

    if dist.is_initialized():
        if dist.get_rank() == 0:
            print(f"done: {run_dir}")
        dist.destroy_process_group()
    else:
        print(f"done: {run_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
