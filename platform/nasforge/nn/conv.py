"""Elastic convolutions: active output channels and kernel size set by the parent, active
input channels read from the input.

One implementation serves 1-D and 2-D (``dims``) and regular or depthwise convolutions.
Weights are stored at the largest size; a forward slices them in place (``weight[:out,
:in]`` and a centre crop are views, nothing is copied). A smaller kernel is either the
plain centre crop of the largest one (``kernel_mode="crop"``, BigNAS) or, by default, the
Once-for-All *kernel transformation* (``kernel_mode="transform"``): stepping down the
kernel sizes (7 -> 5 -> 3), the centre crop of the next larger transformed kernel is
multiplied by a learnable per-layer ``k'^d x k'^d`` matrix initialised to the identity.

With gradients disabled in eval mode (inference, scoring a subnet) the active weight is
materialised once and cached until the arch, the weights (their version counters) or the
module's mode change, so repeated forwards of one subnet cost what a static conv costs.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Sequence
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .base import ElasticModule, Side, check_active, permute_weight_and_bias

KernelMode = Literal["transform", "crop"]
_CONV = {1: F.conv1d, 2: F.conv2d}


def depthwise_conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: int,
    padding: int,
    dilation: int,
    groups: int,
) -> torch.Tensor:
    """``F.conv1d`` for a depthwise convolution, run as a ``1 x k`` 2-D one on a
    channels-last view: the same result, with a CPU backward several times faster (PyTorch's
    1-D depthwise kernels have no fast path)."""
    x2 = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
    out = F.conv2d(x2, weight.unsqueeze(2), bias, (1, stride), (0, padding), (1, dilation), groups)
    return out.squeeze(2).contiguous()


_STATIC_CONV = {1: nn.Conv1d, 2: nn.Conv2d}


def _kernel_sizes(kernel_sizes: int | Sequence[int]) -> tuple[int, ...]:
    sizes = (kernel_sizes,) if isinstance(kernel_sizes, int) else tuple(kernel_sizes)
    if not sizes or any(not isinstance(k, int) or k < 1 or k % 2 == 0 for k in sizes):
        raise ValueError(f"kernel_sizes must be positive odd integers, got {kernel_sizes!r}")
    return tuple(sorted(set(sizes)))


def centre_crop(weight: torch.Tensor, kernel_size: int, dims: int) -> torch.Tensor:
    """The centre ``kernel_size`` window of the last ``dims`` axes of ``weight`` (a view)."""
    start = (weight.shape[-1] - kernel_size) // 2
    window = slice(start, start + kernel_size)
    return weight[(..., *([window] * dims))]


class _ElasticConvNd(ElasticModule):
    """The shared implementation of :class:`ElasticConv1d`/``2d`` and the depthwise ones."""

    dims: ClassVar[int]
    #: cache the materialised active weight in eval mode without gradients (see module doc)
    cache_eval_weights: ClassVar[bool] = True

    def __init__(
        self,
        max_in_channels: int,
        max_out_channels: int,
        kernel_sizes: int | Sequence[int] = 1,
        stride: int = 1,
        *,
        dilation: int = 1,
        bias: bool = False,
        kernel_mode: KernelMode = "transform",
        depthwise: bool = False,
    ):
        super().__init__()
        for name, value in (
            ("max_in_channels", max_in_channels),
            ("max_out_channels", max_out_channels),
            ("stride", stride),
            ("dilation", dilation),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"{type(self).__name__}: {name} must be an integer >= 1, got {value!r}"
                )
        if kernel_mode not in ("transform", "crop"):
            raise ValueError(f"kernel_mode must be 'transform' or 'crop', got {kernel_mode!r}")
        if depthwise and max_in_channels != max_out_channels:
            raise ValueError("a depthwise convolution has as many outputs as inputs")
        self.max_in_channels = max_in_channels
        self.max_out_channels = max_out_channels
        self.kernel_sizes = _kernel_sizes(kernel_sizes)
        self.max_kernel_size = self.kernel_sizes[-1]
        self.stride = stride
        self.dilation = dilation
        self.kernel_mode: KernelMode = kernel_mode
        self.depthwise = depthwise
        in_per_group = 1 if depthwise else max_in_channels
        self.weight = nn.Parameter(
            torch.empty(max_out_channels, in_per_group, *([self.max_kernel_size] * self.dims))
        )
        self.bias = nn.Parameter(torch.empty(max_out_channels)) if bias else None
        self.kernel_transforms: nn.ParameterDict | None = None
        if kernel_mode == "transform" and len(self.kernel_sizes) > 1:
            self.kernel_transforms = nn.ParameterDict(
                {
                    f"{big}to{small}": nn.Parameter(torch.eye(small**self.dims))
                    for small, big in itertools.pairwise(self.kernel_sizes)
                }
            )
        self.active_out_channels = max_out_channels
        self.active_kernel_size = self.max_kernel_size
        self._conv = depthwise_conv1d if self.dims == 1 and self.depthwise else _CONV[self.dims]
        self._cache: tuple[list, torch.Tensor] | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise like ``torch.nn.Conv*d`` (Kaiming-uniform weight and bias)."""
        with torch.no_grad():
            nn.init.kaiming_uniform_(self.weight, a=5**0.5)
            if self.bias is not None:
                bound = self.weight[0].numel() ** -0.5
                self.bias.uniform_(-bound, bound)
            for matrix in (self.kernel_transforms or {}).values():
                matrix.copy_(torch.eye(matrix.shape[0]))

    # -- the active weight -------------------------------------------------------------
    def active_weight(self, in_channels: int) -> torch.Tensor:
        """The weight of the active configuration for ``in_channels`` inputs: a view of
        the stored weight, or the transformed kernel when the active kernel is smaller."""
        if self.depthwise:
            weight = self.weight[:in_channels]
        else:
            weight = self.weight[: self.active_out_channels, :in_channels]
        if self.active_kernel_size != self.max_kernel_size:
            weight = self._shrink_kernel(weight, self.active_kernel_size)
        return weight

    def _shrink_kernel(self, weight: torch.Tensor, kernel_size: int) -> torch.Tensor:
        if kernel_size not in self.kernel_sizes:
            raise ValueError(
                f"{type(self).__name__}: kernel size {kernel_size} is not one of {self.kernel_sizes}"
            )
        if self.kernel_transforms is None:
            return centre_crop(weight, kernel_size, self.dims)
        sizes = self.kernel_sizes
        for i in range(len(sizes) - 1, 0, -1):
            big, small = sizes[i], sizes[i - 1]
            if big <= kernel_size:
                break
            crop = centre_crop(weight, small, self.dims)
            matrix = self.kernel_transforms[f"{big}to{small}"]
            weight = F.linear(crop.reshape(-1, small**self.dims), matrix).view(crop.shape)
        return weight

    def _forward_weight(self, in_channels: int) -> torch.Tensor:
        if self.training or torch.is_grad_enabled() or not self.cache_eval_weights:
            return self.active_weight(in_channels)
        weight = self.weight
        key = [in_channels, self.active_out_channels, self.active_kernel_size]
        key += (weight.data_ptr(), weight._version)
        if self.kernel_transforms is not None and self.active_kernel_size != self.max_kernel_size:
            key += (m._version for m in self.kernel_transforms.values())
        cache = self._cache
        if cache is not None and cache[0] == key:
            return cache[1]
        weight = self.active_weight(in_channels).contiguous()
        self._cache = (key, weight)
        return weight

    def train(self, mode: bool = True) -> _ElasticConvNd:
        """Set the mode and drop the eval-time weight cache."""
        self._cache = None
        return super().train(mode)

    def padding(self, kernel_size: int | None = None) -> int:
        """The "same" padding of a kernel size (the active one by default)."""
        k = self.active_kernel_size if kernel_size is None else kernel_size
        return self.dilation * (k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in_channels = x.shape[1]
        if in_channels > self.max_in_channels:
            raise ValueError(
                f"{type(self).__name__}: input has {in_channels} channels, "
                f"more than max_in_channels={self.max_in_channels}"
            )
        weight = self._forward_weight(in_channels)
        bias = None if self.bias is None else self.bias[: weight.shape[0]]
        groups = in_channels if self.depthwise else 1
        padding = self.dilation * (self.active_kernel_size // 2)
        return self._conv(x, weight, bias, self.stride, padding, self.dilation, groups)

    # -- extraction and re-ordering ----------------------------------------------------
    @torch.no_grad()
    def extract(self, in_channels: int) -> nn.Module:
        """A ``torch.nn.Conv1d``/``Conv2d`` of the active configuration (weights copied)."""
        check_active("in_channels", in_channels, self.max_in_channels)
        if not self.depthwise:
            check_active("active_out_channels", self.active_out_channels, self.max_out_channels)
        weight = self.active_weight(in_channels).detach().clone()
        out_channels, k = weight.shape[0], self.active_kernel_size
        conv = _STATIC_CONV[self.dims](
            in_channels,
            out_channels,
            k,
            stride=self.stride,
            padding=self.padding(k),
            dilation=self.dilation,
            groups=in_channels if self.depthwise else 1,
            bias=self.bias is not None,
            device=weight.device,
            dtype=weight.dtype,
        )
        conv.weight.copy_(weight)
        if self.bias is not None:
            conv.bias.copy_(self.bias[:out_channels])
        return conv

    def permute_channels(self, index: torch.Tensor, side: Side = "out") -> None:
        """Re-order output (``"out"``) or input (``"in"``) channels; a depthwise conv has
        one set of channels, re-ordered whichever side is named."""
        permute_weight_and_bias(self.weight, self.bias, index, side, depthwise=self.depthwise)

    def extra_repr(self) -> str:
        size = (
            f"{self.max_in_channels}"
            if self.depthwise
            else f"{self.max_in_channels}, {self.max_out_channels}"
        )
        return (
            f"{size}, kernel_sizes={self.kernel_sizes}, stride={self.stride}"
            + (f", dilation={self.dilation}" if self.dilation != 1 else "")
            + (", bias=True" if self.bias is not None else "")
            + (f", kernel_mode={self.kernel_mode}" if len(self.kernel_sizes) > 1 else "")
        )


class _ElasticDepthwiseConvNd(_ElasticConvNd):
    """Depthwise: ``groups`` equals the active channel count, which the input sets."""

    def __init__(
        self,
        max_channels: int,
        kernel_sizes: int | Sequence[int] = 3,
        stride: int = 1,
        *,
        dilation: int = 1,
        bias: bool = False,
        kernel_mode: KernelMode = "transform",
    ):
        super().__init__(
            max_channels,
            max_channels,
            kernel_sizes,
            stride,
            dilation=dilation,
            bias=bias,
            kernel_mode=kernel_mode,
            depthwise=True,
        )


class ElasticConv1d(_ElasticConvNd):
    """1-D convolution with elastic input/output channels and kernel size.

    ``ElasticConv1d(max_in_channels, max_out_channels, kernel_sizes, stride, dilation=,
    bias=, kernel_mode=)``; set ``active_out_channels`` and ``active_kernel_size``.
    """

    dims = 1


class ElasticConv2d(_ElasticConvNd):
    """2-D convolution with elastic input/output channels and kernel size.

    ``ElasticConv2d(max_in_channels, max_out_channels, kernel_sizes, stride, dilation=,
    bias=, kernel_mode=)``; set ``active_out_channels`` and ``active_kernel_size``.
    """

    dims = 2


class ElasticDepthwiseConv1d(_ElasticDepthwiseConvNd):
    """1-D depthwise convolution: channels from the input, kernel size elastic.

    ``ElasticDepthwiseConv1d(max_channels, kernel_sizes, stride, dilation=, bias=,
    kernel_mode=)``; set ``active_kernel_size``.
    """

    dims = 1


class ElasticDepthwiseConv2d(_ElasticDepthwiseConvNd):
    """2-D depthwise convolution: channels from the input, kernel size elastic.

    ``ElasticDepthwiseConv2d(max_channels, kernel_sizes, stride, dilation=, bias=,
    kernel_mode=)``; set ``active_kernel_size``.
    """

    dims = 2


@contextlib.contextmanager
def eval_weight_cache(enabled: bool) -> Iterator[None]:
    """Turn the eval-time weight cache of every elastic convolution on or off inside the
    block (e.g. to measure what it saves); it is on by default."""
    previous = _ElasticConvNd.cache_eval_weights
    _ElasticConvNd.cache_eval_weights = enabled
    try:
        yield
    finally:
        _ElasticConvNd.cache_eval_weights = previous


def elastic_conv(dims: int, *args, depthwise: bool = False, **kwargs) -> _ElasticConvNd:
    """Build the elastic convolution of ``dims`` (1 or 2), depthwise or not."""
    classes = {
        (1, False): ElasticConv1d,
        (2, False): ElasticConv2d,
        (1, True): ElasticDepthwiseConv1d,
        (2, True): ElasticDepthwiseConv2d,
    }
    if (dims, depthwise) not in classes:
        raise ValueError(f"dims must be 1 or 2, got {dims!r}")
    return classes[dims, depthwise](*args, **kwargs)
