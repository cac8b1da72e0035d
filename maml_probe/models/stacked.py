"""Task-stacked forwards: one call runs a model for all ``T`` tasks of a meta-batch.

Parameters are *stacked*: every entry of the dict has a leading task dimension ``[T, *shape]``
(task ``k`` uses slice ``k``; parameters shared by all tasks are ``expand`` views, which cost no
memory and sum their gradients over tasks). Inputs are ``[T, N, *input_shape]``; logits come out
as ``[T, N, outputs]``. Task ``k``'s logits equal ``functional_call(model, params_k, (x_k,))``.

A model offers this by a method ``stacked_forward()`` that returns such a function, or ``None``
while its structure is one the stacked function does not reproduce (a replaced layer, an
overridden ``forward``); the models of this package define it beside their ``forward``
(:class:`~maml_probe.models.cnn.ConvNet`, :class:`~maml_probe.models.linear.LinNet`,
:class:`~maml_probe.models.linear.LogisticRegression`). The stacked engine of
:mod:`maml_probe.fast` asks :func:`stacked_forward` for it and uses the reference per-task loop
when there is none.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

#: ``(stacked params, x [T, N, ...]) -> logits [T, N, outputs]``.
StackedForward = Callable[[Mapping[str, Tensor], Tensor], Tensor]


def stacked_forward(model: nn.Module) -> StackedForward | None:
    """The task-stacked forward that ``model`` provides, or ``None`` if it provides none.

    Args:
        model: any module; only models with a ``stacked_forward()`` method can provide one.

    Returns:
        The model's :data:`StackedForward`, or ``None``.
    """
    method = getattr(model, "stacked_forward", None)
    return method() if callable(method) else None


def overrides_forward(model: nn.Module, base: type[nn.Module]) -> bool:
    """Whether ``model``'s class replaces ``base.forward`` (its stacked forward would then differ)."""
    return type(model).forward is not base.forward


def linear_parameter_names(model: nn.Module, layers: Iterable[str]) -> set[str]:
    """The parameter names that the ``nn.Linear`` submodules ``layers`` of ``model`` hold."""
    return {f"{layer}.{kind}" for layer in layers for kind in ("weight", "bias")
            if getattr(model.get_submodule(layer), kind) is not None}


def stacked_linear(layers: list[str], in_features: int) -> StackedForward:
    """A stack of affine layers without activation, one ``baddbmm`` (or ``bmm``) per layer.

    Args:
        layers: the ``nn.Linear`` submodule names, in order (``"hidden.0"``, ..., ``"fc"``).
        in_features: features of one input after flattening.

    Returns:
        The :data:`StackedForward` ``h <- h W_k^T + b_k`` over the layers, per task.
    """
    def forward(p: Mapping[str, Tensor], x: Tensor) -> Tensor:
        h = x.flatten(2)
        if h.shape[-1] != in_features:
            raise ValueError(f"input has {h.shape[-1]} features after flattening; "
                             f"the model expects in_features={in_features}")
        for name in layers:
            w, b = p[name + ".weight"], p.get(name + ".bias")
            h = torch.bmm(h, w.transpose(1, 2)) if b is None else \
                torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
        return h

    return forward
