"""E1 readings: Table 1's synthetic row under each reading of Appendix A.1.1, as tidy CSV.

The grid is labels (``01``, ``pm1``) x model bias (off, on) x the four E1 methods, on tasks of
``--points`` points (A.1.1: 1,000) of which ``--support`` adapt and the rest are held out.
Every cell first trains at the paper's rates (plain SGD, meta-batch 1, one step): LR w/ MAML
for ``--lr-iterations`` (the paper's 30,000), the others for ``--budget`` iterations. A run that
diverges (non-finite meta-loss) records the iteration and is trained again at the paper's
adaptation rate with the next meta learning rate of ``--fallback-meta-lr`` (the ``cpu``
scale's 0.1, then 0.01) until one does not diverge.
Each trained learner is scored on ``--test-tasks`` fresh tasks (the same tasks for every row),
on the held-out and on the adaptation points
(:func:`maml_probe.experiments.e1_synthetic.evaluate_points`).

Writes ``readings.csv`` (one row per cell and rate setting) and ``ceiling.csv`` (the one-step
ceiling for each label encoding and number of adaptation points, on held-out and on
adaptation points) into ``--out``; finished rows are appended to ``readings.partial.jsonl`` as
they come, so a long run can be polled. Usage::

    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE python benchmarks/e1_readings.py \\
        --out results/E1/readings --jobs 2
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import platform
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import pandas as pd
import torch

from maml_probe.experiments import e1_synthetic

CEILING_SUPPORTS = (10, 20, 50, 100, 200, 500, 900, 1000)
COLUMNS = ["labels", "lr_bias", "method", "rates", "alpha", "meta_lr", "support", "query"]


def cell_rows(labels: str, lr_bias: bool, method: str, *, support: int, points: int,
              iterations: int, fallback_meta_lrs: tuple[float, ...], test_tasks: int,
              seed: int = 0) -> list[dict]:
    """Train and score one cell of the grid: the paper's rates, then the fallbacks while they diverge.

    Args:
        labels: ``"01"`` or ``"pm1"``.
        lr_bias: a bias on the model.
        method: a label of :data:`maml_probe.experiments.e1_synthetic.METHODS`.
        support: adaptation points per task.
        points: points per task (the rest are held out).
        iterations: meta-training iterations.
        fallback_meta_lrs: meta learning rates tried in turn (each below the paper's) after a
            run diverges; the adaptation rate stays the paper's.
        test_tasks: test tasks per trained learner.
        seed: training seed.

    Returns:
        One row per run: ``rates="paper"`` first, then ``rates="meta_lr=<fallback>"`` for each
        fallback tried (the last is the first that did not diverge); columns :data:`COLUMNS` then
        :func:`~maml_probe.experiments.e1_synthetic.measure_reading`'s.
    """
    cfg = e1_synthetic.configs("paper", support=support, points=points, labels=labels,
                               lr_bias=lr_bias, methods=[method], seed=seed, device="cpu",
                               iterations=iterations, log_every=max(1, min(250, iterations)),
                               checkpoint_every=iterations)[method]
    rows = []
    paper_meta_lr = cfg.meta_lr
    tries = [("paper", paper_meta_lr)] + [(f"meta_lr={lr:g}", lr) for lr in fallback_meta_lrs
                                          if lr < paper_meta_lr]
    for rates, meta_lr in tries:
        cfg = cfg.replace(meta_lr=meta_lr)
        key = {"labels": labels, "lr_bias": lr_bias, "method": method, "rates": rates,
               "alpha": cfg.alpha, "meta_lr": cfg.meta_lr, "support": support,
               "query": cfg.dataset_kwargs["query"]}
        row = {**key, **e1_synthetic.measure_reading(cfg, test_tasks=test_tasks)}
        rows.append(row)
        if math.isnan(row["diverged_at"]):
            break
    return rows


def tidy(table: pd.DataFrame) -> pd.DataFrame:
    """Rows in table order: labels, bias, the methods as in Table 1, then the paper's rates
    before each lower fallback.

    Args:
        table: rows of :func:`cell_rows`.

    Returns:
        The rows sorted, with a fresh index.
    """
    order = {m: i for i, m in enumerate(e1_synthetic.METHODS)}
    return (table.assign(_method=table["method"].map(order), _lr=-table["meta_lr"])
            .sort_values(["labels", "lr_bias", "_method", "_lr"])
            .drop(columns=["_method", "_lr"]).reset_index(drop=True))


def _one_thread() -> None:
    torch.set_num_threads(1)


def ceiling_table(dim: int = 100, supports=CEILING_SUPPORTS, num_tasks: int = 2000) -> pd.DataFrame:
    """The one-step ceiling for both label encodings, on held-out and on adaptation points.

    Args:
        dim: input dimension.
        supports: adaptation point counts.
        num_tasks: simulated tasks per entry.

    Returns:
        Columns ``dim``, ``support``, ``labels``, ``points``, ``accuracy``.
    """
    return pd.concat([e1_synthetic.ceiling_curve(dim, supports, num_tasks, labels=labels, points=where)
                      for labels in ("01", "pm1") for where in ("held-out", "adaptation")],
                     ignore_index=True)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    """Run the grid (see the module docstring) and write the CSVs.

    Args:
        argv: command-line arguments (``None``: ``sys.argv``).

    Returns:
        The readings table.
    """
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="results/E1/readings")
    p.add_argument("--support", type=int, default=100, help="adaptation points per task")
    p.add_argument("--points", type=int, default=e1_synthetic.PAPER_POINTS, help="points per task")
    p.add_argument("--lr-iterations", type=int, default=30000, help="iterations of LR w/ MAML")
    p.add_argument("--budget", type=int, default=10000, help="iterations of the other methods")
    p.add_argument("--fallback-meta-lr", type=float, nargs="*", default=[0.1, 0.01],
                   help="meta learning rates tried in turn after a divergence")
    p.add_argument("--test-tasks", type=int, default=1000)
    p.add_argument("--labels", nargs="*", default=["01", "pm1"])
    p.add_argument("--bias", nargs="*", type=int, default=[0, 1], help="0: no model bias, 1: bias")
    p.add_argument("--methods", nargs="*", default=list(e1_synthetic.METHODS))
    p.add_argument("--ceiling-tasks", type=int, default=2000)
    p.add_argument("--jobs", type=int, default=1, help="worker processes (one thread each)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    partial = out / "readings.partial.jsonl"
    partial.unlink(missing_ok=True)
    start = time.perf_counter()
    cells = [(labels, bool(bias), method) for method in args.methods for labels in args.labels
             for bias in args.bias]
    cells.sort(key=lambda c: c[2] != "LR w/ MAML")  # the longest runs first

    def cell_options(cell: tuple[str, bool, str]) -> dict:
        iterations = args.lr_iterations if cell[2] == "LR w/ MAML" else args.budget
        return dict(support=args.support, points=args.points, iterations=iterations,
                    fallback_meta_lrs=tuple(args.fallback_meta_lr), test_tasks=args.test_tasks)

    rows = []

    def record(cell_result: list[dict]) -> None:
        for row in cell_result:
            rows.append(row)
            with partial.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"[{time.perf_counter() - start:7.0f}s] {row['labels']} bias={row['lr_bias']} "
                  f"{row['method']} ({row['rates']}): diverged_at={row['diverged_at']} "
                  f"held-out={row['acc_post']:.4f} adaptation={row['acc_post_support']:.4f} "
                  f"({row['seconds']:.0f}s)", flush=True)

    if args.jobs <= 1:  # in this process, one cell after another
        for cell in cells:
            record(cell_rows(*cell, **cell_options(cell)))
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context,
                                 initializer=_one_thread) as pool:
            futures = [pool.submit(cell_rows, *cell, **cell_options(cell)) for cell in cells]
            for future in as_completed(futures):
                record(future.result())
    table = tidy(pd.DataFrame(rows))
    table.to_csv(out / "readings.csv", index=False)
    ceiling_table(num_tasks=args.ceiling_tasks).to_csv(out / "ceiling.csv", index=False)
    partial.unlink(missing_ok=True)
    wall = time.perf_counter() - start
    print(f"wall time {wall:.0f}s on {platform.processor() or platform.machine()}, "
          f"{args.jobs} worker(s), torch {torch.__version__}")
    return table


if __name__ == "__main__":
    main()
