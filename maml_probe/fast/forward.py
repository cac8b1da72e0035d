"""Task-stacked functional forwards: one call runs a model for all ``T`` tasks of a meta-batch.

Parameters are *stacked*: every entry of the dict has a leading task dimension ``[T, *shape]``
(task ``k`` uses slice ``k``; shared parameters are ``expand`` views, which cost no memory and
sum their gradient over tasks). Inputs are ``[T, N, *input_shape]``; logits come out as
``[T, N, outputs]``. Task ``k``'s logits equal ``functional_call(model, params_k, x_k)``.

* :class:`~maml_probe.models.ConvNet` - the ``T`` tasks' images are laid side by side on the
  channel axis, ``[N, T*C, H, W]``, and every conv is one grouped convolution (``groups=T``,
  weight ``[T*out, in, k, k]``). BatchNorm (batch statistics, no running stats) normalises each
  channel over ``(N, H, W)``, so one ``batch_norm`` over the ``T*C`` channels *is* the per-task
  BatchNorm. The head is a batched matmul.
* :class:`~maml_probe.models.LinNet` / :class:`~maml_probe.models.LogisticRegression` -
  ``baddbmm`` per layer.

:func:`stacked_forward` returns ``None`` for any other model (or a ConvNet/linear model whose
structure has been changed), and the engine then uses the reference per-task loop.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.cnn import VARIANTS, ConvBlock, ConvNet
from ..models.linear import LinNet, LogisticRegression

StackedForward = Callable[[Mapping[str, Tensor], Tensor], Tensor]


def _convnet_supported(model: ConvNet) -> bool:
    for blk in model.blocks:
        if type(blk) is not ConvBlock:
            return False
        conv, bn = blk.conv, blk.bn
        if (type(conv) is not nn.Conv2d or conv.groups != 1 or conv.dilation != (1, 1)
                or conv.padding_mode != "zeros" or isinstance(conv.padding, str)):
            return False
        if type(bn) is not nn.BatchNorm2d or bn.track_running_stats or not bn.affine:
            return False
    return type(model.fc) is nn.Linear and model.fc.bias is not None


def _convnet_forward(model: ConvNet) -> StackedForward:
    pool = VARIANTS[model.variant]["pool"]
    blocks = [(f"blocks.{i}.", blk.conv.stride, blk.conv.padding, blk.bn.eps, blk.pool)
              for i, blk in enumerate(model.blocks)]
    in_shape = tuple(model.input_shape)

    def forward(p: Mapping[str, Tensor], x: Tensor) -> Tensor:
        if x.dim() != 5 or tuple(x.shape[2:]) != in_shape:
            raise ValueError(f"stacked input must be [tasks, batch, {in_shape}], got {list(x.shape)}")
        T, N = x.shape[:2]
        h = x.transpose(0, 1).reshape(N, T * x.shape[2], *x.shape[3:])
        for prefix, stride, padding, eps, do_pool in blocks:
            w = p[prefix + "conv.weight"]
            b = p[prefix + "conv.bias"]
            h = F.conv2d(h, w.reshape(-1, *w.shape[2:]), None if b is None else b.reshape(-1),
                         stride=stride, padding=padding, groups=T)
            h = F.batch_norm(h, None, None, p[prefix + "bn.weight"].reshape(-1),
                             p[prefix + "bn.bias"].reshape(-1), True, 0.0, eps)
            h = F.relu(h)
            if do_pool:
                h = F.max_pool2d(h, 2)
        if pool:
            if h.shape[-1] != 5:
                h = F.adaptive_max_pool2d(h, 5)
            feats = h.reshape(N, T, -1)                       # per task: C x 5 x 5, row-major
        else:
            feats = h.mean(dim=(2, 3)).view(N, T, -1)
        return torch.baddbmm(p["fc.bias"].unsqueeze(1), feats.transpose(0, 1),
                             p["fc.weight"].transpose(1, 2))

    return forward


def _linear_forward(layers: list[str], in_features: int) -> StackedForward:
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


def _linear_names(layers: list[str], model: nn.Module) -> set[str]:
    return {f"{layer}.{kind}" for layer in layers for kind in ("weight", "bias")
            if getattr(model.get_submodule(layer), kind) is not None}


def stacked_forward(model: nn.Module) -> StackedForward | None:
    """The task-stacked forward of ``model``, or ``None`` if the model is not supported.

    Only the exact classes of :mod:`maml_probe.models` qualify (a subclass may change
    ``forward``), and only while their parameters are exactly the ones this forward reads.
    """
    names = set(dict(model.named_parameters()))
    if type(model) is ConvNet and _convnet_supported(model):
        expected = {f"blocks.{i}.{m}.{k}" for i in range(len(model.blocks))
                    for m in ("conv", "bn") for k in ("weight", "bias")} | {"fc.weight", "fc.bias"}
        return _convnet_forward(model) if names == expected else None
    if type(model) is LogisticRegression and type(model.fc) is nn.Linear:
        return _linear_forward(["fc"], model.in_features) \
            if names == _linear_names(["fc"], model) else None
    if type(model) is LinNet and type(model.fc) is nn.Linear and \
            all(type(m) is nn.Linear for m in model.hidden):
        layers = [f"hidden.{i}" for i in range(len(model.hidden))] + ["fc"]
        return _linear_forward(layers, model.in_features) \
            if names == _linear_names(layers, model) else None
    return None
