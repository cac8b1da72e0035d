"""Paper-episode reference runs on one GPU, time-boxed, written as run folders for the report.

    python benchmarks/gpu_reproduce.py --data-root data --out runs_gpu --iterations 800 --budget-s 480

Runs, in order of priority and while the time budget lasts, the experiments' own functions at
``scale="paper"`` (the paper's episode, learning rates, meta-batch and 600 test tasks) with the
iterations cut to ``--iterations``:

1. E6 (Fig 3, Table A2) on Omniglot: the CNN of 1, 2, 3 and 4 conv layers w/ MAML and w/ KFC,
   one depth at a time (both methods), so that the depths done when the budget ends are kept;
2. E7 (Table 2) on Omniglot: SCNN w/ MAML, SCNN w/ KFC, then MSGD and MC;
3. E3-E5 (Fig 2, Fig A.2) on Omniglot: the CNN w/ MAML and its three probes.

``--experiments`` picks and orders them (default ``E7,E3``).

Each experiment leaves ``<out>/<E>/<name>/`` as ``maml-probe run`` does: ``results.csv`` (the
report's rows), the tidy tables, the figures' data and a ``record.json`` that says the scale, the
iterations and what differs from the paper. A job whose estimated time (from the measured
seconds per iteration of a first short call) no longer fits the budget is skipped and listed.
No upper bound in E7 (500 SGD steps on each of 600 tasks does not fit the budget). Where only a
shallow folder comes back from the machine, pass ``--pack FILE``: after every job the output,
checkpoints left out, is packed into that ``.tgz``, so a run stopped by its time limit still
returns what it finished.
"""
from __future__ import annotations

import argparse
import json
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

E7_ORDER = ("maml", "kfc", "metasgd", "mc")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--out", required=True)
    ap.add_argument("--iterations", type=int, default=800)
    ap.add_argument("--budget-s", type=float, default=480.0)
    ap.add_argument("--experiments", default="E7,E3")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--e7-methods", default=",".join(E7_ORDER))
    ap.add_argument("--test-tasks", type=int, default=None, help="E6 and E7; default the paper's 600")
    ap.add_argument("--pack", default=None, help="a .tgz to pack the output into after every job")
    args = ap.parse_args()
    start = time.perf_counter()

    import pandas as pd
    import torch

    from maml_probe.experiments import e3_layer_probes, e6_depth, e7_meta_optimizers
    from maml_probe.runs import device_description, finish, to_results, write_record

    def left() -> float:
        return args.budget_s - (time.perf_counter() - start)

    common = dict(dataset="omniglot", data_root=args.data_root, cache_dir=args.cache_dir,
                  device=args.device, iterations=args.iterations)
    differs = (f"iterations {args.iterations} of the paper's 60,000 (meta-batch, episode, learning "
               f"rates and test tasks as the paper); no upper bound")
    wanted = [e.strip().upper() for e in args.experiments.split(",")]
    name = f"paper-episode-it{args.iterations}-omniglot"
    summary: dict = {"device": device_description(args.device), "torch": torch.__version__,
                     "iterations": args.iterations, "runs": [], "skipped": []}
    seconds_per_it = 0.09  # a first guess (H200, Omniglot SCNN, 32 tasks); replaced once measured

    def pack() -> None:
        if not args.pack:
            return
        summary["wall_s"] = round(time.perf_counter() - start, 1)
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "gpu_reproduce.json").write_text(json.dumps(summary, indent=1))
        tmp = Path(args.pack).with_suffix(".part")
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(args.out, arcname=".", filter=lambda t: None if t.name.endswith(".pt") else t)
        tmp.replace(args.pack)

    def fits(label: str, seconds_per_iteration: float | None = None, overhead_s: float = 30) -> bool:
        need = args.iterations * (seconds_per_iteration or seconds_per_it) * 1.2 + overhead_s
        if left() < need:
            summary["skipped"].append(f"{label}: needs ~{need:.0f} s, {left():.0f} s left")
            print(f"skip {label}: needs ~{need:.0f} s, {left():.0f} s left", flush=True)
            return False
        return True

    def run_e6() -> None:
        run_dir = Path(args.out) / "E6" / name
        # seconds per iteration of both methods at each depth (H200, paper_scale.json)
        guess = {1: 0.06, 2: 0.14, 3: 0.18, 4: 0.21}
        done: list[int] = []
        for depth in e6_depth.DEPTHS["paper"]:
            if not fits(f"E6 depth {depth}", guess[depth], overhead_s=45):
                break
            t0 = time.perf_counter()
            out = e6_depth.run("paper", run_dir, depths=(*done, depth),
                               test_tasks=args.test_tasks, progress=False, **common)
            done.append(depth)
            finish(run_dir, out, device=args.device)
            write_record(run_dir, experiment="E6", scale="paper", status="ok", device=summary["device"],
                         parameters={"dataset": "omniglot", "depths": list(done),
                                     "overrides": {"iterations": args.iterations}},
                         iterations=args.iterations, differs_from_paper=differs.split(";")[0],
                         wall_time_s=round(time.perf_counter() - start, 1))
            rows = out["results"]
            for _, r in rows[rows["method"].str.startswith(f"CNN{depth} ")].iterrows():
                info = {"experiment": "E6", "method": r["method"], "accuracy": round(r["accuracy"], 2),
                        "ci95": round(r["ci95"], 2), "wall_s": round(time.perf_counter() - t0, 1)}
                summary["runs"].append(info)
                print(json.dumps(info), flush=True)
            pack()

    def run_e7() -> None:
        nonlocal seconds_per_it
        run_dir = Path(args.out) / "E7" / name
        parts = []
        for method in [m for m in args.e7_methods.split(",") if m]:
            if not fits(f"E7 {method}"):
                continue
            t0 = time.perf_counter()
            out = e7_meta_optimizers.run("paper", run_dir, methods=(method,), upper_bound=False,
                                         test_tasks=args.test_tasks, progress=False, **common)
            wall = time.perf_counter() - t0
            spi = float(out["methods"]["seconds_per_iteration"].iloc[0])
            seconds_per_it = max(seconds_per_it, spi) if spi == spi else seconds_per_it
            row = out["summary"].query("phase == 'post'").iloc[0]
            info = {"experiment": "E7", "method": row["method"], "accuracy": round(100 * row["accuracy"], 2),
                    "ci95": round(100 * row["ci95"], 2), "seconds_per_iteration": spi,
                    "wall_s": round(wall, 1)}
            summary["runs"].append(info)
            print(json.dumps(info), flush=True)
            parts.append(out)
        if parts:
            merged = {k: pd.concat([p[k] for p in parts], ignore_index=True)
                      for k in ("tests", "summary", "history", "methods")}
            merged["results"] = to_results(merged["summary"].dropna(subset=["accuracy"]),
                                           table="2", dataset="omniglot")
            finish(run_dir, merged, device=args.device)
            write_record(run_dir, experiment="E7", scale="paper", status="ok", device=summary["device"],
                         parameters={"dataset": "omniglot", "upper_bound": False,
                                     "overrides": {"iterations": args.iterations}},
                         iterations=args.iterations, differs_from_paper=differs,
                         methods=[p["methods"]["method"].iloc[0] for p in parts])

    def run_e3() -> None:
        if not fits("E3"):
            return
        run_dir = Path(args.out) / "E3" / name
        t0 = time.perf_counter()
        out = e3_layer_probes.run("paper", run_dir, progress=False, **common)
        finish(run_dir, out, device=args.device)
        write_record(run_dir, experiment="E3", scale="paper", status="ok", device=summary["device"],
                     parameters={"dataset": "omniglot", "overrides": {"iterations": args.iterations}},
                     iterations=args.iterations, differs_from_paper=differs.split(";")[0],
                     wall_time_s=round(time.perf_counter() - t0, 1))
        post = out["tests"].query("phase == 'post'")["accuracy"].mean()
        info = {"experiment": "E3", "method": "CNN w/ MAML", "accuracy": round(100 * post, 2),
                "wall_s": round(time.perf_counter() - t0, 1)}
        summary["runs"].append(info)
        print(json.dumps(info), flush=True)

    for experiment in wanted:
        if experiment == "E6":
            run_e6()
        elif experiment == "E7":
            run_e7()
        elif experiment == "E3":
            run_e3()

    summary["wall_s"] = round(time.perf_counter() - start, 1)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "gpu_reproduce.json").write_text(json.dumps(summary, indent=1))
    pack()
    print(f"done in {summary['wall_s']} s", flush=True)


if __name__ == "__main__":
    main()
