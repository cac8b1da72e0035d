"""Linear models: logistic regression and LinNet (Sections 3.1 and 5.1 of the paper).

*Logistic regression* maps ``x in R^d`` to logits ``W x + b``; with ``num_outputs=1`` it is the
binary model (one logit, sigmoid/BCE loss), with ``num_outputs=N`` the multinomial one
(softmax/cross-entropy).

*LinNet* is logistic regression with hidden linear layers and **no nonlinearity**::

    f(x) = W_h ... W_1 x (+ biases)

It collapses to a single affine map, so it models nothing logistic regression cannot; any gain
it shows under MAML comes from adaptation dynamics alone (Section 3.1).

Both provide a task-stacked forward (:mod:`maml_probe.models.stacked`): one ``baddbmm`` per
layer for all tasks of a meta-batch.
"""
from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from .stacked import StackedForward, linear_parameter_names, overrides_forward, stacked_linear


def _stacked_layers(model: nn.Module, base: type[nn.Module], layers: list[str]) -> StackedForward | None:
    """:func:`stacked_linear` over ``layers`` while ``model`` is exactly those ``nn.Linear`` layers."""
    if overrides_forward(model, base):
        return None
    if any(type(model.get_submodule(layer)) is not nn.Linear for layer in layers):
        return None
    if {name for name, _ in model.named_parameters()} != linear_parameter_names(model, layers):
        return None
    return stacked_linear(layers, model.in_features)


class LogisticRegression(nn.Module):
    """Affine map to ``num_outputs`` logits. Inputs of any shape are flattened after the batch dim."""

    def __init__(self, in_features: int, num_outputs: int = 1, bias: bool = True) -> None:
        super().__init__()
        if in_features <= 0:
            raise ValueError(f"in_features must be positive, got {in_features}")
        if num_outputs <= 0:
            raise ValueError(f"num_outputs must be positive, got {num_outputs}")
        self.in_features = in_features
        self.fc = nn.Linear(in_features, num_outputs, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[N, outputs]`` of inputs ``[N, ...]`` flattened to ``in_features``."""
        x = x.flatten(1)
        if x.shape[1] != self.in_features:
            raise ValueError(f"input has {x.shape[1]} features after flattening; "
                             f"the model expects in_features={self.in_features}")
        return self.fc(x)

    def stacked_forward(self) -> StackedForward | None:
        """The task-stacked forward (:mod:`maml_probe.models.stacked`), ``None`` if modified.

        Returns:
            ``(params [T, *shape] each, x [T, N, ...]) -> logits [T, N, outputs]``, or ``None``.
        """
        return _stacked_layers(self, LogisticRegression, ["fc"])


class LinNet(nn.Module):
    """Logistic regression preceded by hidden linear layers of the given ``widths`` (no activation).

    The paper's synthetic LinNet is ``widths=(64, 64, 64)``; its Omniglot LinNet is
    ``in_features=784, widths=(256, 128, 64, 64)``.
    """

    def __init__(self, in_features: int, widths: Sequence[int], num_outputs: int = 1,
                 bias: bool = True) -> None:
        super().__init__()
        if in_features <= 0:
            raise ValueError(f"in_features must be positive, got {in_features}")
        widths = list(widths)
        if any(w <= 0 for w in widths):
            raise ValueError(f"widths must all be positive, got {widths}")
        self.in_features = in_features
        dims = [in_features, *widths]
        self.hidden = nn.Sequential(*[nn.Linear(a, b, bias=bias) for a, b in zip(dims[:-1], dims[1:])])
        self.fc = nn.Linear(dims[-1], num_outputs, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[N, outputs]`` of inputs ``[N, ...]`` flattened to ``in_features``."""
        x = x.flatten(1)
        if x.shape[1] != self.in_features:
            raise ValueError(f"input has {x.shape[1]} features after flattening; "
                             f"the model expects in_features={self.in_features}")
        return self.fc(self.hidden(x))

    def stacked_forward(self) -> StackedForward | None:
        """The task-stacked forward (:mod:`maml_probe.models.stacked`), ``None`` if modified.

        Returns:
            ``(params [T, *shape] each, x [T, N, ...]) -> logits [T, N, outputs]``, or ``None``.
        """
        if type(self.hidden) is not nn.Sequential:
            return None
        layers = [f"hidden.{i}" for i in range(len(self.hidden))] + ["fc"]
        return _stacked_layers(self, LinNet, layers)
