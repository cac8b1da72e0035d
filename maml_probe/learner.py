"""A meta-learner: the model and its update rule, built from a config and saved as one module."""
from __future__ import annotations

import math
from collections.abc import Collection, Iterator, Mapping

from torch import nn

from .models import build_model, layer_of
from .rules import make_rule
from .rules.base import UpdateRule


def _image_shapes() -> dict[str, tuple[int, ...]]:
    from .data.registry import dataset_specs  # on use: synthetic runs load no image code

    return {spec.name: spec.input_shape for spec in dataset_specs(on_disk=True)}


class _InputShapes(Mapping[str, tuple[int, ...]]):
    """``(C, H, W)`` of every image dataset, read from its spec in the dataset registry."""

    def __getitem__(self, name: str) -> tuple[int, ...]:
        return _image_shapes()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(_image_shapes())

    def __len__(self) -> int:
        return len(_image_shapes())

    def __repr__(self) -> str:
        return repr(dict(self))


#: Input shape of each image dataset (``input_shape`` of its ``DatasetSpec``), e.g.
#: ``INPUT_SHAPES["omniglot"] == (1, 28, 28)``; datasets registered later appear at once.
INPUT_SHAPES: Mapping[str, tuple[int, ...]] = _InputShapes()


class MetaLearner(nn.Module):
    """Holds ``model`` (theta) and ``rule`` (xi); ``parameters()`` is everything meta-learned."""

    def __init__(self, model: nn.Module, rule: UpdateRule) -> None:
        super().__init__()
        self.model = model
        self.rule = rule

    def param_counts(self) -> dict[str, int]:
        """Scalar parameter counts of the model and of the meta-optimizer."""
        return {"model_params": sum(p.numel() for p in self.model.parameters()),
                "optimizer_params": sum(p.numel() for p in self.rule.parameters())}

    def resolve_mask(self, layers: Collection[str] | None) -> frozenset[str] | None:
        """Parameter names selected by paper layer names (``C1``, ``FC``, ``H2``) or parameter names."""
        return resolve_mask(self.model, layers)


def resolve_mask(model: nn.Module, layers: Collection[str] | None) -> frozenset[str] | None:
    """Names of ``model``'s parameters in ``layers`` (layer or parameter names); ``None`` = all."""
    if layers is None:
        return None
    names = [n for n, _ in model.named_parameters()]
    known_layers = {layer_of(model, n) for n in names}
    unknown = [x for x in layers if x not in known_layers and x not in names]
    if unknown:
        raise ValueError(f"adapt_layers has unknown entries {unknown}; layers are {sorted(known_layers)}, "
                         f"parameters are {names}")
    return frozenset(n for n in names if n in layers or layer_of(model, n) in layers)


def build_learner(model: str, rule: str, *, dataset: str, input_shape: tuple[int, ...],
                  num_outputs: int, alpha: float, model_kwargs: dict | None = None,
                  rule_kwargs: dict | None = None) -> MetaLearner:
    """Build model ``model`` for a task source's shapes and rule ``rule`` over its parameters.

    Linear models get ``in_features`` from ``input_shape``; CNNs get ``variant=dataset``.
    """
    kwargs = dict(model_kwargs or {})
    if model in ("lr", "linnet"):
        kwargs.setdefault("in_features", math.prod(input_shape))
    elif model in ("cnn", "scnn"):
        kwargs.setdefault("variant", dataset)
    net = build_model(model, num_outputs, **kwargs)
    return MetaLearner(net, make_rule(rule, net, alpha, **(rule_kwargs or {})))
