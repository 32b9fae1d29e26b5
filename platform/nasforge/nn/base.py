"""What every elastic op shares: the :class:`ElasticModule` contract and small helpers.

An elastic op holds the weights of its largest configuration. Its parent sets the active
size (output channels, kernel size) through attributes; the active *input* size is read
from the input tensor, as Once-for-All does. ``extract(in_channels)`` returns the plain
static ``torch.nn`` module of the active configuration with copied weights.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Side = Literal["in", "out"]


class ElasticModule(nn.Module):
    """Base of the elastic ops: weights of the largest size, sliced in place per forward.

    Subclasses implement :meth:`extract` and :meth:`permute_channels`. The conformance
    suite uses this class to check that an extracted subnet holds no elastic op.
    """

    def extract(self, in_channels: int) -> nn.Module:
        """A static module of the active configuration for ``in_channels`` inputs, with
        copied weights (so training the supernet later leaves it unchanged)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement extract()")

    def permute_channels(self, index: torch.Tensor, side: Side = "out") -> None:
        """Re-order this op's channels on ``side`` by ``index`` (a permutation of all of
        them) in place; see :mod:`nasforge.nn.importance`."""
        raise NotImplementedError(f"{type(self).__name__} does not implement permute_channels()")


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """``v`` rounded to the nearest multiple of ``divisor`` (at least ``min_value``, by
    default ``divisor``), never more than 10% below ``v`` — the MobileNet channel rule."""
    if divisor < 1:
        raise ValueError(f"make_divisible: divisor must be >= 1, got {divisor}")
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * v:
        rounded += divisor
    return int(rounded)


@torch.no_grad()
def permute_(tensor: torch.Tensor, index: torch.Tensor, dim: int) -> None:
    """Re-order ``tensor`` along ``dim`` by ``index`` in place (the storage, and so every
    view and optimizer reference of it, is kept; its version counter is bumped)."""
    if index.numel() != tensor.shape[dim]:
        raise ValueError(
            f"permutation of {index.numel()} channels does not fit a tensor of shape "
            f"{tuple(tensor.shape)} along dim {dim}"
        )
    tensor.copy_(tensor.index_select(dim, index.to(tensor.device)))


def permute_weight_and_bias(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    index: torch.Tensor,
    side: Side,
    *,
    depthwise: bool = False,
) -> None:
    """Re-order a conv's or linear layer's output channels (``"out"``: weight rows and
    bias) or input channels (``"in"``: weight columns) by ``index``, in place. A depthwise
    conv has one set of channels, re-ordered whichever side is named."""
    if side == "in" and not depthwise:
        permute_(weight, index, 1)
        return
    permute_(weight, index, 0)
    if bias is not None:
        permute_(bias, index, 0)


def check_active(name: str, value: int, maximum: int) -> None:
    """Raise ``ValueError`` naming ``name`` when an active size is outside ``1..maximum``."""
    if not 1 <= value <= maximum:
        raise ValueError(f"{name}={value} is outside 1..{maximum}")
