"""Model zoo: :func:`build_model` makes any model of the paper by name.

========  =========================================================  ==========================
name      class                                                      required keyword arguments
========  =========================================================  ==========================
``lr``    :class:`~maml_probe.models.linear.LogisticRegression`      ``in_features``
``linnet`` :class:`~maml_probe.models.linear.LinNet`                 ``in_features``, ``widths``
``cnn``   :class:`~maml_probe.models.cnn.ConvNet` (4 conv blocks)    ``variant``
``scnn``  :class:`~maml_probe.models.cnn.ConvNet` (2 conv blocks)    ``variant``
========  =========================================================  ==========================

Every model also offers a task-stacked forward for the meta-batch engines
(:func:`~maml_probe.models.stacked.stacked_forward`, :mod:`maml_probe.models.stacked`).
"""
from __future__ import annotations

from typing import Any

from torch import nn

from .cnn import VARIANTS, ConvNet
from .linear import LinNet, LogisticRegression
from .stacked import StackedForward, stacked_forward

MODEL_NAMES = ("lr", "linnet", "cnn", "scnn")


#: Keyword arguments each model name implies (the 4-conv CNN and the 2-conv SCNN).
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {"cnn": {"depth": 4}, "scnn": {"depth": 2}}


def build_model(name: str, num_outputs: int, **kwargs: Any) -> nn.Module:
    """Build model ``name`` (one of :data:`MODEL_NAMES`) with a head of ``num_outputs`` logits."""
    if name == "lr":
        return LogisticRegression(num_outputs=num_outputs, **kwargs)
    if name == "linnet":
        return LinNet(num_outputs=num_outputs, **kwargs)
    if name == "cnn":
        return ConvNet(num_outputs=num_outputs, **{**MODEL_DEFAULTS["cnn"], **kwargs})
    if name == "scnn":
        return ConvNet(num_outputs=num_outputs, **{**MODEL_DEFAULTS["scnn"], **kwargs})
    raise ValueError(f"unknown model name {name!r}: model must be one of {list(MODEL_NAMES)}")


def layer_of(model: nn.Module, param_name: str) -> str:
    """Paper layer name of a parameter: ``C1``..``C4``/``FC`` for CNNs, ``H1``../``FC`` for LinNet."""
    if hasattr(model, "layer_of"):
        return model.layer_of(param_name)
    if param_name.startswith("hidden."):
        return f"H{int(param_name.split('.')[1]) + 1}"
    return "FC"


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


__all__ = ["MODEL_DEFAULTS", "MODEL_NAMES", "VARIANTS", "ConvNet", "LinNet", "LogisticRegression",
           "StackedForward",
           "build_model", "count_parameters", "layer_of", "stacked_forward"]
