"""Paper-scale cost of every experiment, projected from measured seconds per training iteration.

    python benchmarks/paper_scale.py --device cuda --json OUT.json        # measure (GPU machine)
    python benchmarks/paper_scale.py --render OUT.json [--update-md BENCHMARKS.md]

Every meta-training run that ``maml-probe run EX --scale paper`` performs is listed from the
experiments' own config builders (:mod:`maml_probe.experiments`), one training iteration of each
distinct configuration (sampling aside: ``zero_grad``, :func:`~maml_probe.maml.meta_backward` with
the engine ``auto`` picks, the outer optimiser's step) is timed on random inputs of the paper's
episode shapes (synthetic tasks are drawn as in training), and the experiment's training time
is ``sum over its runs of iterations x seconds per iteration``. Evaluation (600 test tasks per
run, no meta-gradient) and E7's per-task upper bound are not included.

The Titan XP column uses the paper's own Table A3 seconds per meta-batch where the paper has the
row; for a configuration it does not list (other depths, Meta-SGD, Meta-Curvature) it scales
our time by the paper/ours ratio of the nearest listed row of the same dataset (same model size,
MAML), marked "≈". Linear models (E1, E2, E9) have no Titan XP figure.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: Image shape per dataset, for models that do not carry one (the linear models of E2).
INPUT_SHAPES = {"omniglot": (1, 28, 28), "cifarfs": (3, 32, 32), "miniimagenet": (3, 84, 84)}


def trainings() -> list[tuple[str, str, object]]:
    """``(experiment, label, TrainConfig)`` for every meta-training run at ``paper`` scale."""
    from maml_probe.probes.sweeps import depth_configs, width_configs

    from maml_probe.experiments import e1_synthetic, e2_omniglot_linear, e7_meta_optimizers
    from maml_probe.experiments.e6_depth import ALPHA, RULE_OPTIONS
    from maml_probe.experiments.settings import image_config, method_label

    out: list[tuple[str, str, object]] = []
    out += [("E1", k, c) for k, c in e1_synthetic.configs("paper").items()]
    out += [("E2", k, c) for k, c in e2_omniglot_linear.configs("paper").items()]
    for d in ("omniglot", "cifarfs"):
        out.append(("E3-E5", f"{d} CNN w/ MAML", image_config(d, "cnn", "maml", "paper")))
        base = image_config(d, "cnn", "maml", "paper")
        methods = {"MAML": {"rule": "maml", "alpha": ALPHA[d]["cnn"]},
                   "KFC": {"rule": "kfc", "rule_kwargs": dict(RULE_OPTIONS["kfc"]),
                           "alpha": ALPHA[d]["kfc"]}}
        members = depth_configs(base, methods=methods,
                                per_depth={("MAML", 2): {"alpha": ALPHA[d]["scnn"]}})
        out += [("E6", f"{d} {k}", c) for k, (_, c) in members.items()]
    for d in ("omniglot", "cifarfs", "miniimagenet"):
        out += [("E7", f"{d} {k}", c) for k, c in
                e7_meta_optimizers.configs("paper", dataset=d).items()]
        out += [("E8", f"{d} {method_label('scnn', m)}", image_config(d, "scnn", m, "paper"))
                for m in ("cfc1", "cfc10")]
        out.append(("E8", f"{d} CNN w/ MAML (pruned)", image_config(d, "cnn", "maml", "paper")))
    base = e1_synthetic.configs("paper", methods=["LR+LinNet w/ MAML"])["LR+LinNet w/ MAML"]
    out += [("E9", k, c) for k, (_, c) in width_configs(base).items()]
    return out


def _signature(cfg) -> str:
    d = cfg.to_dict()
    keep = ("dataset", "dataset_kwargs", "ways", "shots", "queries", "model", "model_kwargs", "rule",
            "rule_kwargs", "steps", "meta_batch", "first_order", "dtype", "outer_optimizer")
    return json.dumps({k: d[k] for k in keep}, sort_keys=True, default=str)


def time_iteration(cfg, device: str, repeats: int) -> dict:
    """Median seconds of one training iteration (sampling aside) and which engine ran."""
    import torch

    from maml_probe import fast
    from maml_probe.experiments.e11_compute import random_batch
    from maml_probe.losses import task_loss
    from maml_probe.maml import meta_backward
    from maml_probe.train import DTYPES, _outer_optimizer, build_task_source, learner_from_config

    cfg = cfg.replace(device=device)
    dev = torch.device(device)
    torch.manual_seed(cfg.seed)
    learner = learner_from_config(cfg).to(dev, DTYPES[cfg.dtype])
    model = learner.model
    if cfg.dataset == "synthetic":
        batch = build_task_source(cfg, "train", dev).sample(cfg.meta_batch,
                                                           torch.Generator().manual_seed(0))
    else:  # linear models read flattened images of the dataset's shape
        shape = getattr(model, "input_shape", None) or INPUT_SHAPES[cfg.dataset]
        batch = random_batch(cfg, tuple(shape), dev)
    opt = _outer_optimizer(cfg, learner)
    choice = fast.choose_impl(model, learner.rule, dev, loss_fn=task_loss,
                              support_size=batch.support_x.shape[1], steps=cfg.steps,
                              tasks=len(batch))
    times = []
    first = None
    for i in range(repeats + 1):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        meta_backward(model, learner.rule, batch, steps=cfg.steps, first_order=cfg.first_order)
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
        else:
            first = time.perf_counter() - t0
    recs = fast.graphs.describe(model)
    return {"seconds": statistics.median(times), "first_seconds": first,
            "engine": choice.describe(), "recordings": recs}


def measure(args: argparse.Namespace) -> None:
    import torch
    from tqdm.auto import tqdm

    runs = [r for r in trainings() if not args.experiments or r[0] in args.experiments]
    distinct: dict[str, object] = {}
    for _, _, cfg in runs:
        distinct.setdefault(_signature(cfg), cfg)
    timed: dict[str, dict] = {}
    out = Path(args.json) if args.json else None
    started = time.time()
    for sig, cfg in tqdm(list(distinct.items()), desc="time per iteration"):
        if time.time() - started > args.budget_s:
            timed[sig] = {"error": f"skipped: time budget of {args.budget_s:.0f} s spent"}
            continue
        try:
            timed[sig] = time_iteration(cfg, args.device, args.repeats)
        except Exception as err:  # noqa: BLE001 - keep measuring the others
            timed[sig] = {"error": f"{type(err).__name__}: {str(err)[-300:]}"}
        if args.device.startswith("cuda"):
            from maml_probe.fast import clear_recordings
            clear_recordings()
        if out:
            _save(out, runs, timed, args, torch)
    if out:
        _save(out, runs, timed, args, torch)


def _save(out: Path, runs, timed: dict, args, torch) -> None:
    rows = []
    for exp, label, cfg in runs:
        t = timed.get(_signature(cfg), {})
        rows.append({"experiment": exp, "label": label, "dataset": cfg.dataset,
                     "model": cfg.model, "rule": cfg.rule,
                     "depth": cfg.model_kwargs.get("depth"), "rank": cfg.rule_kwargs.get("rank"),
                     "iterations": cfg.iterations,
                     "meta_batch": cfg.meta_batch, **t})
    machine = {"torch": torch.__version__, "device": args.device,
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if args.device.startswith("cuda"):
        machine["gpu"] = torch.cuda.get_device_name()
    out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))


def _depth(r: dict) -> int | None:
    if r["model"] not in ("cnn", "scnn"):
        return None
    return r["depth"] if r["depth"] is not None else (4 if r["model"] == "cnn" else 2)


def _a3_method(r: dict) -> str | None:
    """Table A3's name for a timed CNN row (depth 2 or 4, MAML/KFC/CFC), else ``None``."""
    depth = _depth(r)
    if depth not in (2, 4):
        return None
    size = "CNN" if depth == 4 else "SCNN"
    if r["rule"] == "cfc":
        return f"{size} w/ CFC{r['rank']}"
    return {"maml": f"{size} w/ MAML", "kfc": f"{size} w/ KFC"}.get(r["rule"])


def render(path: str) -> str:
    from maml_probe.paper import compute_table

    saved = json.loads(Path(path).read_text())
    rows, machine = saved["rows"], saved["machine"]
    a3 = {(r.dataset, r.method): r.paper_seconds for r in compute_table().itertuples()}
    ours_maml = {(r["dataset"], _depth(r)): r["seconds"] for r in rows
                 if "seconds" in r and r["rule"] == "maml" and _depth(r) in (2, 4)}
    per_exp: dict[str, dict] = {}
    for r in rows:
        e = per_exp.setdefault(r["experiment"], {"runs": 0, "its": 0, "gpu_s": 0.0, "titan_s": 0.0,
                                                 "approx": False, "linear": False, "missing": 0,
                                                 "s_per_it": []})
        e["runs"] += 1
        e["its"] += r["iterations"]
        if "seconds" not in r:
            e["missing"] += 1
            continue
        e["gpu_s"] += r["iterations"] * r["seconds"]
        e["s_per_it"].append(r["seconds"])
        depth = _depth(r)
        if depth is None:
            e["linear"] = True
            continue
        method = _a3_method(r)
        if method and (r["dataset"], method) in a3:
            e["titan_s"] += r["iterations"] * a3[(r["dataset"], method)]
            continue
        ref = 2 if depth <= 2 else 4   # nearest listed size, MAML
        paper = a3.get((r["dataset"], f"{'SCNN' if ref == 2 else 'CNN'} w/ MAML"))
        mine = ours_maml.get((r["dataset"], ref))
        if paper and mine:
            e["titan_s"] += r["iterations"] * r["seconds"] * paper / mine
            e["approx"] = True
    gpu = machine.get("gpu", machine["device"])
    lines = [f"| experiment | training runs | iterations in all | seconds per iteration (min-max) "
             f"| {gpu} hours | Titan XP hours (paper's Table A3 times) |", "|---|---|---|---|---|---|"]
    for exp in sorted(per_exp, key=lambda k: int(k[1:].split("-")[0])):
        e = per_exp[exp]
        spi = e["s_per_it"]
        span = f"{min(spi):.4f}-{max(spi):.4f}" if spi else "-"
        miss = f" ({e['missing']} runs not timed)" if e["missing"] else ""
        titan = "-" if e["linear"] or not spi else \
            f"{'≈' if e['approx'] else ''}{e['titan_s'] / 3600:.1f}"
        gpu_h = "not timed" if not spi else f"{e['gpu_s'] / 3600:.2f}{miss}"
        lines.append(f"| {exp} | {e['runs']} | {e['its']:,} | {span} | {gpu_h} | {titan} |")
    total = sum(e["gpu_s"] for e in per_exp.values())
    lines.append(f"| all | {sum(e['runs'] for e in per_exp.values())} | "
                 f"{sum(e['its'] for e in per_exp.values()):,} | | {total / 3600:.1f} | |")
    head = (f"Measured on {gpu}, torch {machine['torch']}, {machine['date']} "
            f"(`python benchmarks/paper_scale.py --device cuda`).")
    return head + "\n\n" + "\n".join(lines)


def render_a3(path: str, bench: str | None = None) -> str:
    """Table A3's time column beside ours: the benchmark's median meta-step where it has the
    row (``--bench``), else the projection's training iteration (meta-step + Adam step)."""
    from maml_probe.paper import compute_table

    rows = [r for r in json.loads(Path(path).read_text())["rows"] if "seconds" in r]
    steps = {}
    if bench:
        names = {"omniglot": "Omniglot", "cifarfs": "CIFAR-FS", "miniimagenet": "mini-ImageNet"}
        for res in json.loads(Path(bench).read_text())["results"]:
            st = res["setting"]
            size = "CNN" if st["depth"] == 4 else "SCNN"
            if not st["title"].startswith(f"{names[st['variant']]} {size} 10w"):
                continue  # only the paper's episode
            for w in res["workers"]:
                if w["impl"] == "auto" and w["times"] and not w["error"]:
                    method = {"maml": "MAML", "kfc": "KFC"}.get(w["rule"], w["rule"].upper())
                    steps[(st["variant"], f"{size} w/ {method}")] = statistics.median(w["times"])
    lines = ["| dataset | method | paper, Titan XP (s) | ours (s) | measured as | paper / ours |",
             "|---|---|---|---|---|---|"]
    for t in compute_table().itertuples():
        ours, how = steps.get((t.dataset, t.method)), "meta-step (benchmark)"
        if ours is None:
            match = [r for r in rows if r["dataset"] == t.dataset and _a3_method(r) == t.method]
            if match:
                ours = match[0]["seconds"]
                captured = all(x["captured"] for x in match[0].get("recordings") or [])
                how = "training iteration" + ("" if captured else " (eager: replay check)")
        if ours is None:
            lines.append(f"| {t.dataset} | {t.method} | {t.paper_seconds:.2f} | not measured | | |")
            continue
        lines.append(f"| {t.dataset} | {t.method} | {t.paper_seconds:.2f} | {ours:.4f} | {how} | "
                     f"{t.paper_seconds / ours:.0f}x |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget-s", type=float, default=150.0,
                    help="stop timing new configurations after this many seconds")
    ap.add_argument("--experiments", default="", help="comma-separated subset, e.g. E1,E7")
    ap.add_argument("--json", default=None)
    ap.add_argument("--render", default=None, help="render a saved --json file")
    ap.add_argument("--bench", default=None,
                    help="with --render: a bench_maml.py --json file for Table A3's meta-step rows")
    ap.add_argument("--update-md", default=None)
    args = ap.parse_args()
    args.experiments = [e for e in args.experiments.split(",") if e]
    if args.render:
        table, a3 = render(args.render), render_a3(args.render, args.bench)
        print(table, a3, sep="\n\n")
        if args.update_md:
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from bench_maml import update_md
            update_md(Path(args.update_md), table, "projection")
            update_md(Path(args.update_md), a3, "a3")
        return
    measure(args)


if __name__ == "__main__":
    main()
