"""The paper's convolutional networks (Finn et al., 2017; paper Sections 3.2, 5.2, A.1).

Each block is ``conv3x3 -> BatchNorm -> ReLU`` (+ max-pool for mini-ImageNet), followed by a
linear head. ``depth`` (1..4) is the number of conv blocks: 4 is the paper's "CNN", 2 its
"SCNN". Three variants:

================  ========  =======  ===========================================  ============
variant           input     filters  spatial reduction                            head input
================  ========  =======  ===========================================  ============
``omniglot``      1x28x28   64       stride-2 convs, then mean over H, W          64
``cifarfs``       3x32x32   32       stride-2 convs (no max-pool), mean over H, W 32
``miniimagenet``  3x84x84   32       2x2 max-pool per block; adaptive max-pool    800 (32x5x5)
                                     to 5x5 when depth < 4 (keeps the FC size)
================  ========  =======  ===========================================  ============

With a 10-way head the parameter counts are the paper's: Omniglot 112,586 (4 conv) and 38,474
(2 conv); CIFAR-FS 29,226 and 10,602; mini-ImageNet 36,906 and 18,282.

Choices the paper leaves open (documented here, pinned by tests): CIFAR-FS convs use stride 2
like the Omniglot net (the paper only says "no max-pooling"); the mini-ImageNet SCNN keeps the
800-feature head through an adaptive max-pool to 5x5.

**BatchNorm** follows the MAML convention: statistics of the current batch are used in every
forward pass, in training and evaluation alike, and no running statistics are kept
(``track_running_stats=False``). Its affine weight and bias are ordinary (adaptable)
parameters. A model therefore has no buffers, and its whole state is its parameter dict.

**Task-stacked forward** (:meth:`ConvNet.stacked_forward`, see :mod:`maml_probe.models.stacked`):
the ``T`` tasks' images are laid side by side on the channel axis, ``[N, T*C, H, W]``, and every
conv is one grouped convolution (``groups=T``, weight ``[T*out, in, 3, 3]``). BatchNorm with
batch statistics normalises each channel over ``(N, H, W)``, so one ``batch_norm`` over the
``T*C`` channels *is* the per-task BatchNorm. The head is a batched matmul.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .stacked import StackedForward, overrides_forward

VARIANTS: dict[str, dict] = {
    "omniglot": dict(in_channels=1, image_size=28, filters=64, pool=False),
    "cifarfs": dict(in_channels=3, image_size=32, filters=32, pool=False),
    "miniimagenet": dict(in_channels=3, image_size=84, filters=32, pool=True),
}


class ConvBlock(nn.Module):
    """``conv3x3 -> BatchNorm(batch statistics) -> ReLU [-> max-pool 2x2]``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, pool: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)
        self.bn = nn.BatchNorm2d(out_channels, track_running_stats=False)
        self.pool = pool

    def forward(self, x: Tensor) -> Tensor:
        """``[N, C_in, H, W] -> [N, C_out, H', W']``."""
        x = F.relu(self.bn(self.conv(x)))
        return F.max_pool2d(x, 2) if self.pool else x


class ConvNet(nn.Module):
    """Few-shot CNN of ``depth`` conv blocks for one of the :data:`VARIANTS`."""

    def __init__(self, variant: str = "omniglot", depth: int = 4, num_outputs: int = 5,
                 filters: int | None = None) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        if not 1 <= depth <= 4:
            raise ValueError(f"depth must be 1..4 conv layers, got {depth}")
        if num_outputs <= 0:
            raise ValueError(f"num_outputs must be positive, got {num_outputs}")
        spec = VARIANTS[variant]
        self.variant, self.depth = variant, depth
        self.input_shape = (spec["in_channels"], spec["image_size"], spec["image_size"])
        width = filters or spec["filters"]
        stride = 1 if spec["pool"] else 2
        channels = [spec["in_channels"]] + [width] * depth
        self.blocks = nn.Sequential(*[ConvBlock(a, b, stride, spec["pool"])
                                      for a, b in zip(channels[:-1], channels[1:])])
        self.feature_size = width * 25 if spec["pool"] else width
        self.fc = nn.Linear(self.feature_size, num_outputs)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[N, outputs]`` of images ``[N, *input_shape]`` (``ValueError`` on another shape)."""
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"input must have shape [batch, {', '.join(map(str, self.input_shape))}] "
                             f"for the {self.variant} CNN, got {list(x.shape)}")
        return self.fc(_head_input(self.blocks(x), VARIANTS[self.variant]["pool"]))

    def stacked_forward(self) -> StackedForward | None:
        """This network's task-stacked forward (module docstring), or ``None`` if it has none.

        There is none once the structure differs from the one built here (a replaced or
        reconfigured layer, an added parameter, an overridden ``forward``).

        Returns:
            ``(params [T, *shape] each, x [T, N, C, H, W]) -> logits [T, N, outputs]``, or
            ``None``.
        """
        if overrides_forward(self, ConvNet) or not self._stackable():
            return None
        return _stacked_convnet(
            [(f"blocks.{i}.", blk.conv.stride, blk.conv.padding, blk.bn.eps, blk.pool)
             for i, blk in enumerate(self.blocks)],
            tuple(self.input_shape), VARIANTS[self.variant]["pool"])

    def _stackable(self) -> bool:
        for blk in self.blocks:
            if type(blk) is not ConvBlock:
                return False
            conv, bn = blk.conv, blk.bn
            if (type(conv) is not nn.Conv2d or conv.groups != 1 or conv.dilation != (1, 1)
                    or conv.padding_mode != "zeros" or isinstance(conv.padding, str)):
                return False
            if type(bn) is not nn.BatchNorm2d or bn.track_running_stats or not bn.affine:
                return False
        if type(self.fc) is not nn.Linear or self.fc.bias is None:
            return False
        expected = {f"blocks.{i}.{m}.{k}" for i in range(len(self.blocks))
                    for m in ("conv", "bn") for k in ("weight", "bias")} | {"fc.weight", "fc.bias"}
        return {name for name, _ in self.named_parameters()} == expected

    def layer_names(self) -> list[str]:
        """Paper names of the layers in order: ``C1..C{depth}``, ``FC``."""
        return [f"C{i + 1}" for i in range(self.depth)] + ["FC"]

    def layer_of(self, param_name: str) -> str:
        """Paper layer name (``C1``.., ``FC``) that a parameter name belongs to."""
        if param_name.startswith("fc."):
            return "FC"
        return f"C{int(param_name.split('.')[1]) + 1}"


def _head_input(h: Tensor, pool: bool) -> Tensor:
    """Head features of ``[N, C, H, W]``: ``C x 5 x 5`` row-major if ``pool``, else the mean over H, W."""
    if pool:
        if h.shape[-1] != 5:
            h = F.adaptive_max_pool2d(h, 5)
        return h.flatten(1)
    return h.mean(dim=(2, 3))


def _stacked_convnet(blocks: list[tuple[str, tuple, tuple, float, bool]],
                     in_shape: tuple[int, ...], pool: bool) -> StackedForward:
    """The stacked forward of a ConvNet with ``blocks`` = (prefix, stride, padding, eps, pool)."""

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
        feats = _head_input(h, pool).reshape(N, T, -1)  # per task: its own channels, in order
        return torch.baddbmm(p["fc.bias"].unsqueeze(1), feats.transpose(0, 1),
                             p["fc.weight"].transpose(1, 2))

    return forward
