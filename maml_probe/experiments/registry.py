"""The experiments of the paper (E1..E11), their notebooks, what they need and what they train.

Some notebooks hold several experiments: E3-E5 share ``E3_E5_layer_probes.ipynb`` and E8 and
E10 share ``E8_E10_cholesky_pruning.ipynb``; :data:`ALIASES` maps E4, E5 and E10 to them.
:func:`experiment_configs` builds the training configurations a notebook would build from its
parameters, so they can be checked (and recorded) before the notebook starts.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import TrainConfig


@dataclass(frozen=True)
class Experiment:
    """One notebook: its id, what it reproduces, the datasets it reads and its cost per scale."""

    id: str
    notebook: str
    reproduces: str
    datasets: tuple[str, ...] = ()
    cost: Mapping[str, str] = field(default_factory=dict)

    def datasets_for(self, params: Mapping[str, Any]) -> tuple[str, ...]:
        """Datasets a run with ``params`` reads: its ``dataset`` parameter, else the notebook's
        default (the first of :attr:`datasets`; the others are reached through ``dataset``)."""
        if "dataset" in params:
            return (params["dataset"],)
        return self.datasets[:1]

    def missing_data(self, params: Mapping[str, Any]) -> str | None:
        """Why a run with ``params`` cannot find its data here, or ``None`` when it can."""
        from ..data import dataset_available

        problems = []
        for name in self.datasets_for(params):
            reason = dataset_available(name, params.get("data_root"))
            if reason:
                problems.append(reason)
        return "; ".join(problems) or None


#: ``cpu`` costs of the image experiments (E3, E6, E7, E8, E12) are estimates of meta-training
#: alone on the notebooks' default dataset, Omniglot, at the ``cpu`` scale (the paper's episode,
#: 500 iterations of 4 tasks): the seconds per meta-batch of 4 tasks measured with 2 threads in
#: ``results/cpu/paper_episode_step_times.csv`` (s: CNN w/ MAML 1.34, CNN w/ KFC 3.26, SCNN w/
#: MAML 1.24, w/ KFC 2.00, w/ CFC1 1.80, w/ CFC10 1.99) x 500 x the models each trains. Testing
#: (600 tasks per model), E3's probes, E7's upper bound and E12's probes come on top. A method
#: the file does not time is counted at the time of the one named beside it:
#:   E3:  CNN w/ MAML: 500 x 1.34 s = 11 min.
#:   E6:  depths 1-4 x {MAML, KFC}, every depth at the 4-conv CNN's time (the shallower ones are
#:        cheaper, not timed): 4 x 500 x (1.34 + 3.26) s = 2.6 h, an overestimate.
#:   E7:  SCNN w/ MAML, MSGD (as MAML), MC (as KFC), KFC: 500 x (2 x 1.24 + 2 x 2.00) s = 54 min
#:        (mini-ImageNet, 100 iterations: 100 x (2 x 5.92 + 2 x 7.74) s = 46 min).
#:   E8:  SCNN w/ MAML, CFC1, CFC10, CFC1n (as CFC1), KFC and CNN w/ MAML: 500 x (1.24 + 2 x 1.80
#:        + 1.99 + 2.00 + 1.34) s = 1.4 h (mini-ImageNet: 100 x 40.2 s = 1.1 h).
#:   E12: SCNN w/ MAML, ANIL and BOIL (as MAML), MC (as KFC), KFC: 500 x (3 x 1.24 + 2 x 2.00) s
#:        = 1.1 h, plus E1's linear models.
#: CIFAR-FS has no row in that file. Measured wall times are to replace these estimates.
EXPERIMENTS: dict[str, Experiment] = {e.id: e for e in [
    Experiment("E1", "E1_synthetic.ipynb", "Fig 1 left, Table 1 synthetic row",
               cost={"smoke": "15 s", "cpu": "10 min", "paper": "2 min"}),
    Experiment("E2", "E2_omniglot_linear.ipynb", "Fig 1 right, Table 1 Omniglot row", ("omniglot",),
               cost={"smoke": "30 s", "cpu": "17 min", "paper": "~days"}),
    Experiment("E3", "E3_E5_layer_probes.ipynb", "Fig 2 (freeze/adapt-only, FC noise), Fig A.2",
               ("omniglot", "cifarfs"), cost={"smoke": "40 s", "cpu": "~11 min", "paper": "~1 day"}),
    Experiment("E6", "E6_depth.ipynb", "Fig 3, Table A2", ("omniglot", "cifarfs"),
               cost={"smoke": "40 s", "cpu": "~2.6 h", "paper": "~days"}),
    Experiment("E7", "E7_meta_optimizers.ipynb", "Table 2", ("omniglot", "cifarfs", "miniimagenet"),
               cost={"smoke": "40 s", "cpu": "~54 min", "paper": "~days"}),
    Experiment("E8", "E8_E10_cholesky_pruning.ipynb", "Table A1, Fig A.3",
               ("omniglot", "cifarfs", "miniimagenet"),
               cost={"smoke": "40 s", "cpu": "~1.4 h", "paper": "~days"}),
    Experiment("E9", "E9_width.ipynb", "Fig A.1", cost={"smoke": "15 s", "cpu": "1.5 min", "paper": "~3 h"}),
    Experiment("E11", "E11_compute.ipynb", "Table A3 (random inputs: no data needed)",
               cost={"smoke": "30 s", "cpu": "~15 min", "paper": "~15 min"}),
    Experiment("E12", "E12_beyond.ipynb", "beyond the paper: per-layer CKA before/after "
               "adaptation, ANIL/BOIL, the learned update against the Newton step",
               ("omniglot", "cifarfs"), cost={"smoke": "~60 s", "cpu": "~1.1 h", "paper": "~days"}),
]}

#: Experiments that live in another experiment's notebook.
ALIASES: dict[str, str] = {"E4": "E3", "E5": "E3", "E10": "E8"}


def get_experiment(name: str) -> Experiment:
    """The experiment named ``name`` (case-insensitive; E4, E5 and E10 name their notebooks).

    Args:
        name: an id such as ``E7`` or ``e5``.

    Returns:
        Its :class:`Experiment`.

    Raises:
        ValueError: no experiment has that id; the message lists the ids.
    """
    key = name.strip().upper()
    key = ALIASES.get(key, key)
    if key not in EXPERIMENTS:
        ids = sorted({*EXPERIMENTS, *ALIASES}, key=lambda i: int(i[1:]))
        raise ValueError(f"unknown experiment {name!r}; choose from {', '.join(ids)} or 'all'")
    return EXPERIMENTS[key]


def _image_kwargs(p: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("data_root", "cache_dir", "seed", "device")
    return {k: p[k] for k in keys if k in p} | dict(p.get("overrides") or {})


def _e1(scale: str, p: Mapping[str, Any]) -> dict[str, TrainConfig]:
    from .e1_synthetic import configs

    return configs(scale, support=p["support"], query=p["query"], methods=p["methods"],
                   seed=p["seed"], device=p["device"], **(p["overrides"] or {}))


def _e2(scale: str, p: Mapping[str, Any]) -> dict[str, TrainConfig]:
    from .e2_omniglot_linear import configs

    return configs(scale, methods=p["methods"], **_image_kwargs(p))


def _e3(scale: str, p: Mapping[str, Any]) -> dict[str, TrainConfig]:
    from .settings import image_config

    return {"CNN w/ MAML": image_config(p["dataset"], "cnn", "maml", scale, **_image_kwargs(p))}


def _e6(scale: str, p: Mapping[str, Any]) -> dict[str, TrainConfig]:
    from .e6_depth import DEPTHS
    from .settings import ALPHA, RULE_OPTIONS, image_config
    from .sweeps import depth_configs

    dataset = p["dataset"]
    base = image_config(dataset, "cnn", "maml", scale, **_image_kwargs(p))
    # the members e6_depth.run trains: each method at its paper rate, the paper's KFC, and the
    # 2-conv MAML model at the SCNN's rate (tests/test_cifarfs_experiments.py compares them)
    methods = {"MAML": {"rule": "maml", "alpha": ALPHA[dataset]["cnn"]},
               "KFC": {"rule": "kfc", "rule_kwargs": dict(RULE_OPTIONS["kfc"]),
                       "alpha": ALPHA[dataset]["kfc"]}}
    per_depth = {("MAML", 2): {"alpha": ALPHA[dataset]["scnn"]}}
    members = depth_configs(base, depths=p["depths"] or DEPTHS[scale], methods=methods,
                            per_depth=per_depth)
    return {label: cfg for label, (_, cfg) in members.items()}


def _e7(scale: str, p: Mapping[str, Any]) -> dict[str, TrainConfig]:
    from .e7_meta_optimizers import configs

    return configs(scale, dataset=p["dataset"], methods=p["methods"], **_image_kwargs(p))


def _e8(scale: str, p: Mapping[str, Any]) -> dict[str, TrainConfig]:
    from .settings import image_config, method_label

    kw = _image_kwargs(p)
    out = {method_label("scnn", m): image_config(p["dataset"], "scnn", m, scale, **kw)
           for m in p["methods"]}
    if p["prune"]:
        out["CNN w/ MAML"] = image_config(p["dataset"], "cnn", "maml", scale, **kw)
    return out


def _e9(scale: str, p: Mapping[str, Any]) -> dict[str, TrainConfig]:
    from .e1_synthetic import configs
    from .e9_width import GRID
    from .sweeps import width_configs

    grid = GRID[scale]
    overrides = {"iterations": grid["iterations"], **(p["overrides"] or {})}
    base = configs(scale, methods=["LR+LinNet w/ MAML"], seed=p["seed"], device=p["device"],
                   **overrides)["LR+LinNet w/ MAML"]
    members = width_configs(base, depths=p["depths"] or grid["depths"],
                            widths=p["widths"] or grid["widths"])
    return {label: cfg for label, (_, cfg) in members.items()}


def _e11(scale: str, p: Mapping[str, Any]) -> dict[str, TrainConfig]:
    from .e11_compute import ROWS
    from .settings import image_config, method_label

    episode_scale = "smoke" if scale == "smoke" else "paper"
    return {f"{dataset}: {method_label(model, rule)}": image_config(
                dataset, model, rule, episode_scale, device=p["device"], **(p["overrides"] or {}))
            for dataset in p["datasets"] for model, rule in ROWS}


_BUILDERS: dict[str, Callable[[str, Mapping[str, Any]], dict[str, TrainConfig]]] = {
    "E1": _e1, "E2": _e2, "E3": _e3, "E6": _e6, "E7": _e7, "E8": _e8, "E9": _e9, "E11": _e11}


def experiment_configs(exp: Experiment, scale: str,
                       params: Mapping[str, Any]) -> dict[str, TrainConfig]:
    """The training configurations ``exp``'s notebook builds at ``scale`` from ``params``.

    Args:
        exp: the experiment.
        scale: ``smoke``, ``cpu`` or ``paper``.
        params: every parameter of its notebook (defaults merged with what was given).

    Returns:
        ``label -> TrainConfig``, each validated (empty for an experiment without a builder
        here: its notebook checks its own parameters).

    Raises:
        ValueError: a parameter or override gives an invalid configuration (the message names
            the field and what is allowed).
    """
    from .common import check_scale

    check_scale(scale)
    build = _BUILDERS.get(exp.id)
    if build is None:
        return {}
    return {label: cfg.validate() for label, cfg in build(scale, params).items()}
