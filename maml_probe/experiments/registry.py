"""The experiments of the paper (E1..E11), their notebooks and what they need."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


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


EXPERIMENTS: dict[str, Experiment] = {e.id: e for e in [
    Experiment("E1", "E1_synthetic.ipynb", "Fig 1 left, Table 1 synthetic row",
               cost={"smoke": "15 s", "cpu": "10 min", "paper": "2 min"}),
    Experiment("E2", "E2_omniglot_linear.ipynb", "Fig 1 right, Table 1 Omniglot row", ("omniglot",),
               cost={"smoke": "30 s", "cpu": "40 min", "paper": "~days"}),
    Experiment("E3", "E3_E5_layer_probes.ipynb", "Fig 2 (freeze/adapt-only, FC noise), Fig A.2",
               ("omniglot", "cifarfs"), cost={"smoke": "40 s", "cpu": "12 min", "paper": "~1 day"}),
    Experiment("E6", "E6_depth.ipynb", "Fig 3, Table A2", ("omniglot", "cifarfs"),
               cost={"smoke": "40 s", "cpu": "~1 h", "paper": "~days"}),
    Experiment("E7", "E7_meta_optimizers.ipynb", "Table 2", ("omniglot", "cifarfs", "miniimagenet"),
               cost={"smoke": "40 s", "cpu": "5 min", "paper": "~days"}),
    Experiment("E8", "E8_E10_cholesky_pruning.ipynb", "Table A1, Fig A.3",
               ("omniglot", "cifarfs", "miniimagenet"),
               cost={"smoke": "40 s", "cpu": "22 min", "paper": "~days"}),
    Experiment("E9", "E9_width.ipynb", "Fig A.1", cost={"smoke": "15 s", "cpu": "1.5 min", "paper": "~3 h"}),
    Experiment("E11", "E11_compute.ipynb", "Table A3 (random inputs: no data needed)",
               cost={"smoke": "30 s", "cpu": "~15 min", "paper": "~15 min"}),
]}
