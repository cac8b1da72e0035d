"""E12, beyond the paper: CKA per layer, ANIL/BOIL, the learned update against the Newton step.

:func:`beyond_report` gathers E12's tables from its best run per dataset; ``report.md`` shows
them in a section of their own after the paper's tables (:func:`_beyond_section`).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .markdown import NA, _figure_links, _int_text, _mean_std, _missing, _num, _pivot, _rows_view, to_markdown
from .records import Roots, _dict, _problem, _read_table, _run_dirs, read_record
from .tables import KEY, _best, _integers, aggregate_seeds, collect_results

#: The experiment beyond the paper whose tables get their own section (:func:`beyond_report`).
BEYOND = "E12"


def _optional_table(path: Path, problems: list[str] | None) -> pd.DataFrame | None:
    if not path.exists():
        return None
    try:
        return _read_table(path)
    except ValueError as exc:
        _problem(problems, f"{exc}; skipped")
        return None


def _beyond_tables(run_dir: Path, problems: list[str] | None) -> dict[str, pd.DataFrame]:
    """The summaries of one E12 run folder's tidy tables (each absent table is left out)."""
    out: dict[str, pd.DataFrame] = {}
    sim = _optional_table(run_dir / "similarity.csv", problems)
    if sim is not None and {"method", "layer"} <= set(sim.columns):
        measures = [c for c in ("cka", "svcca", "param_change") if c in sim]
        g = sim.groupby(["method", "layer"], sort=False)
        out["similarity"] = g[measures].mean().assign(tasks=g.size()).reset_index()
    presets = _optional_table(run_dir / "presets.csv", problems)
    if presets is not None and {"method", "preset", "accuracy"} <= set(presets.columns):
        cols = [c for c in ("method", "preset", "phase", "accuracy", "std", "ci95", "n") if c in presets]
        df = presets[cols].copy()
        for c in ("accuracy", "std", "ci95"):
            if c in df:
                df[c] = 100 * df[c]
        out["presets"] = df
    cosines = [t for t in (_optional_table(run_dir / f"{m}_cosines.csv", problems)
                           for m in ("cnn", "linear")) if t is not None]
    if cosines:
        cos = pd.concat(cosines, ignore_index=True)
        g = cos.groupby(["method", "reference"], sort=False)
        wide = g["cos_learned"].mean().unstack("reference")
        newton = pd.DataFrame(index=wide.index)
        for ref in ("gradient", "newton", "gauss-newton"):
            if ref in wide:
                newton[f"cos_update_{ref.replace('-', '_')}"] = wide[ref]
        if "newton" in cos["reference"].values:
            newton["cos_gradient_newton"] = cos[cos["reference"] == "newton"].groupby(
                "method", sort=False)["cos_gradient"].mean()
        keys = [c for c in ("method", "task", "step") if c in cos]
        newton["steps"] = cos.drop_duplicates(keys).groupby("method", sort=False).size()
        gains = _optional_table(run_dir / "gain_correlation.csv", problems)
        if gains is not None and {"method", "spearman"} <= set(gains.columns):
            newton["spearman_gain_newton"] = gains.groupby("method", sort=False)["spearman"].mean()
        out["newton"] = newton.reset_index()
    return out


def beyond_report(root: Roots | None = None, problems: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """E12 (beyond the paper) summarised from its best run per dataset.

    Args:
        root: one folder or several (default :data:`DEFAULT_ROOTS`).
        problems: collects a message per unreadable file (skipped).

    Returns:
        Tidy tables, each with ``dataset`` and ``run`` columns (empty dict when E12 has not
        run): ``accuracy`` (test accuracy per method: mean, std over test tasks, 95% CI, n,
        settings), ``similarity`` (mean CKA / SVCCA of each layer's query activations before
        vs after adaptation, 1 = unchanged, and the relative weight change), ``presets``
        (each trained model adapted as MAML / ANIL / BOIL at test time, percent) and
        ``newton`` (cosines of the learned update with the gradient, the damped Newton and the
        Gauss-Newton step, of the gradient with the Newton step, and the Spearman correlation
        of the learned gains with Newton's along the Hessian's eigenvectors).
    """
    rows = collect_results(root, problems)
    if rows.empty or "experiment" not in rows:
        return {}
    rows = rows[rows["experiment"] == BEYOND]
    first = {m: i for i, m in reversed(list(enumerate(rows["method"])))}
    rows = _best(aggregate_seeds(rows), KEY)
    if rows.empty:
        return {}
    rows = rows.sort_values("method", key=lambda s: s.map(first), kind="stable")
    tables: dict[str, list[pd.DataFrame]] = {"accuracy": []}
    for dataset, part in rows.groupby("dataset", sort=False):
        run, path = part["run"].iloc[0], part["path"].iloc[0]
        tables["accuracy"].append(part)
        if isinstance(path, str):
            for name, df in _beyond_tables(Path(path), problems).items():
                tables.setdefault(name, []).append(df.assign(dataset=dataset, run=run))
    out = {name: pd.concat(frames, ignore_index=True) for name, frames in tables.items()}
    acc = out["accuracy"]
    for col in ("n", "seeds", "iterations", "meta_batch"):
        acc[col] = _integers(acc[col])
    out["accuracy"] = acc.reindex(columns=["dataset", "method", "accuracy", "std", "ci95", "n", "seeds",
                                           "seed_std", "scale", "iterations", "meta_batch", "episode",
                                           "differs_from_paper", "status", "experiment", "run",
                                           "path"])
    return out


# --- its section of report.md --------------------------------------------------------------

def _beyond_figures(dataset: str, run: str, root: Roots | None, out: Path) -> str:
    """Links to the E12 figures of ``run``, else of another E12 run of ``dataset``."""
    dirs = [d for d in _run_dirs(root) if d.parent.name == BEYOND]
    own = [d for d in dirs if d.name == run]
    links = _figure_links(own[0], out) if own else "none"
    if links != "none":
        return f"figures: {links}"
    for d in dirs:
        try:
            same = (_dict(read_record(d).get("parameters")).get("dataset") or dataset) == dataset
        except ValueError:
            continue
        if same and _figure_links(d, out) != "none":
            return f"figures (drawn by {BEYOND}/{d.name}): {_figure_links(d, out)}"
    return ("figures: none saved with this run (`notebooks/report.ipynb` redraws them from "
            "these tables)")


def _beyond_section(beyond: dict[str, pd.DataFrame], root: Roots | None, out: Path) -> str:
    """E12: its test accuracies, CKA per layer, ANIL/BOIL presets and the learned update vs Newton."""
    lines = [f"## Beyond the paper: {BEYOND} (CKA per layer, ANIL/BOIL, learned update vs Newton)", ""]
    if not beyond:
        return "\n".join(lines + [f"- not run yet (`maml-probe run {BEYOND} -p dataset=omniglot`)"])
    acc = beyond["accuracy"]
    for dataset, rows in acc.groupby("dataset", sort=False):
        run = rows["run"].iloc[0]
        first = rows.iloc[0]
        its, mb, ep = first["iterations"], first["meta_batch"], first["episode"]
        settings = [f"scale {first['scale']}",
                    "iterations not recorded" if _missing(its) else f"{int(its):,} iterations",
                    "meta-batch not recorded" if _missing(mb) else f"meta-batch {int(mb)}",
                    "episode not recorded" if _missing(ep) else f"episode {ep}"]
        lines += [f"### {dataset} ({BEYOND}/{run})", "",
                  f"{', '.join(settings).capitalize()}; differs from the paper's settings: "
                  f"{first['differs_from_paper']}. {_beyond_figures(dataset, run, root, out)}", "",
                  "Test accuracy (percent, mean ± std over test tasks):", "",
                  to_markdown(_rows_view(rows, paper=False)[
                      ["method", "ours (mean ± std)", "95% CI", "n", "seeds", "status"]], na_rep=NA), ""]
        sim = beyond.get("similarity")
        sim = sim[sim["dataset"] == dataset] if sim is not None else None
        if sim is not None and len(sim):
            names = {"cka": "linear CKA", "svcca": "SVCCA", "param_change": "relative weight change"}
            tasks = int(sim["tasks"].max())
            for measure in [m for m in names if m in sim]:
                title = (f"Representation change per layer: {names[measure]} of the query activations "
                         f"before vs after adaptation (1 = unchanged; mean over {tasks} tasks):"
                         if measure != "param_change" else
                         f"Weight change per layer during adaptation, ||theta_T - theta_0|| / "
                         f"||theta_0|| (mean over {tasks} tasks):")
                lines += [title, "",
                          to_markdown(_pivot(sim, "layer", [_num(v, ".3f") for v in sim[measure]]),
                                      na_rep=NA), ""]
        presets = beyond.get("presets")
        presets = presets[presets["dataset"] == dataset] if presets is not None else None
        if presets is not None and len(presets):
            phases = presets["phase"] if "phase" in presets else [None] * len(presets)
            shown = presets.assign(preset=[f"{p} (before adaptation)" if ph == "pre" else p
                                           for p, ph in zip(presets["preset"], phases)])
            stds = presets["std"] if "std" in presets else [None] * len(presets)
            tasks = f"{int(presets['n'].max())} " if "n" in presets else ""
            lines += ["ANIL / BOIL: each trained model adapted at test time with all layers (full), the "
                      f"head only (anil) or the body only (boil); percent, mean ± std over {tasks}test "
                      "tasks:", "",
                      to_markdown(_pivot(shown, "preset", [_mean_std(a, s) for a, s in
                                                           zip(presets["accuracy"], stds)]), na_rep=NA), ""]
        newton = beyond.get("newton")
        newton = newton[newton["dataset"] == dataset] if newton is not None else None
        if newton is not None and len(newton):
            names = {"cos_update_gradient": "cos(update, gradient)",
                     "cos_update_newton": "cos(update, Newton)",
                     "cos_update_gauss_newton": "cos(update, Gauss-Newton)",
                     "cos_gradient_newton": "cos(gradient, Newton)",
                     "spearman_gain_newton": "Spearman(gains, Newton gains)", "steps": "task-steps"}
            view = pd.DataFrame({"method": newton["method"]})
            for col, name in names.items():
                if col in newton:
                    view[name] = ([_int_text(v, NA) for v in newton[col]] if col == "steps" else
                                  [_num(v, ".3f") for v in newton[col]])
            lines += ["The learned update against the damped Newton step (mean over test tasks and inner "
                      f"steps; {NA}: undefined, e.g. the constant gains of MAML's isotropic step):", "",
                      to_markdown(view, na_rep=NA), ""]
    return "\n".join(lines).rstrip()
