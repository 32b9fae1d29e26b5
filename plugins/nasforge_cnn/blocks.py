"""The CNN supernets' blocks, elastic and static, and the scaffolding both supernets share.

Each elastic block (:class:`ElasticBlock`) is built from :mod:`nasforge.nn` ops, runs the
configuration its supernet set (``active_*`` attributes; input channels come from the
input) and ``extract(in_channels)``s to a small static module of this file with a one-line
repr that names its configuration — the hardware look-up tables key their entries by it:

- :class:`ElasticStem` -> :class:`Stem` (conv-BN-act, optional max pool);
- :class:`ElasticMBConv` -> :class:`MBConv` (MobileNetV3 inverted residual);
- :class:`ElasticBottleneck` -> :class:`Bottleneck` (ResNet bottleneck);
- :class:`ElasticConvBNAct` -> :class:`ConvBNAct`;
- :class:`ElasticClassifierHead` -> :class:`ClassifierHead` (pool, features, classifier).

:class:`CNNSupernet` runs the active path and extracts it as an ``nn.Sequential`` whose
top-level children are these static modules, one per stem, block and head.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from nasforge import Arch, SearchSpace, Supernet
from nasforge.nn import (
    ElasticLinear,
    ElasticModule,
    ElasticSqueezeExcite,
    KernelMode,
    Side,
    SqueezeExcite,
    elastic_batch_norm,
    elastic_conv,
    make_divisible,
    sort_channels,
)

ActivationName = Literal["relu", "hswish", "none"]


def activation(name: ActivationName) -> nn.Module:
    """The activation module called ``name`` (``"relu"``, ``"hswish"`` or ``"none"``)."""
    if name == "relu":
        return nn.ReLU()
    if name == "hswish":
        return nn.Hardswish()
    if name == "none":
        return nn.Identity()
    raise ValueError(f"activation must be 'relu', 'hswish' or 'none', got {name!r}")


def _pool(dims: int, kernel_size: int, stride: int, *, average: bool) -> nn.Module:
    if average:
        cls = nn.AvgPool1d if dims == 1 else nn.AvgPool2d
        return cls(kernel_size, stride, ceil_mode=True)
    cls = nn.MaxPool1d if dims == 1 else nn.MaxPool2d
    return cls(kernel_size, stride, padding=kernel_size // 2)


def _ratio(value: float) -> str:
    return f"{value:g}"


# ------------------------------------------------------------------------- static modules
class ConvBNAct(nn.Sequential):
    """Static convolution, batch norm and activation (``act`` omitted for none)."""

    def __init__(self, conv: nn.Module, bn: nn.Module, act: nn.Module | None = None):
        layers: OrderedDict[str, nn.Module] = OrderedDict(conv=conv, bn=bn)
        if act is not None and not isinstance(act, nn.Identity):
            layers["act"] = act
        super().__init__(layers)
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size, self.stride = conv.kernel_size[0], conv.stride[0]
        self.activation = type(act).__name__.lower() if "act" in self._modules else "none"

    def __repr__(self) -> str:
        depthwise = ", depthwise" if self.conv.groups > 1 else ""
        return (
            f"ConvBNAct({self.in_channels}->{self.out_channels}, k{self.kernel_size}, "
            f"stride {self.stride}{depthwise}, {self.activation})"
        )


class Stem(nn.Sequential):
    """Static stem: a :class:`ConvBNAct` and, for ImageNet-style ResNets, a max pool."""

    def __init__(self, conv: ConvBNAct, pool: nn.Module | None = None):
        layers: OrderedDict[str, nn.Module] = OrderedDict(conv=conv)
        if pool is not None:
            layers["pool"] = pool
        super().__init__(layers)
        c = conv.conv
        self.in_channels, self.out_channels, self.stride = (
            c.in_channels,
            c.out_channels,
            c.stride[0],
        )

    def __repr__(self) -> str:
        pool = ", max pool" if "pool" in self._modules else ""
        return f"Stem({self.in_channels}->{self.out_channels}, stride {self.stride}{pool})"


class MBConv(nn.Module):
    """Static MobileNetV3 inverted residual: [1x1 expand] -> depthwise kxk -> [SE] ->
    1x1 project, plus the input when ``residual``. Its attributes describe it for cost
    models: channels, ``kernel_size``, ``expand_ratio``, ``stride``, ``activation``,
    ``se``, ``residual``."""

    def __init__(
        self,
        expand: ConvBNAct | None,
        depthwise: ConvBNAct,
        se: SqueezeExcite | None,
        project: ConvBNAct,
        *,
        residual: bool,
        expand_ratio: float,
        activation: str,
    ):
        super().__init__()
        self.expand = expand
        self.depthwise = depthwise
        self.se = se
        self.project = project
        self.residual = residual
        self.expand_ratio = expand_ratio
        self.activation = activation
        dw = depthwise.conv
        self.in_channels = expand.conv.in_channels if expand is not None else dw.in_channels
        self.mid_channels = dw.in_channels
        self.out_channels = project.conv.out_channels
        self.kernel_size, self.stride = dw.kernel_size[0], dw.stride[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.expand is None else self.expand(x)
        y = self.depthwise(y)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return y + x if self.residual else y

    def __repr__(self) -> str:
        extras = f", {self.activation}" + (", SE" if self.se is not None else "")
        extras += ", residual" if self.residual else ""
        return (
            f"MBConv({self.in_channels}->{self.out_channels}, k{self.kernel_size}, "
            f"e{_ratio(self.expand_ratio)} (mid {self.mid_channels}), stride {self.stride}{extras})"
        )


class Bottleneck(nn.Module):
    """Static ResNet bottleneck: 1x1 -> kxk (stride) -> 1x1, plus the shortcut (identity,
    or average pool + 1x1 conv-BN), then ReLU. Attributes: channels, ``stride``,
    ``expand_ratio``, ``projection``."""

    def __init__(
        self,
        conv1: ConvBNAct,
        conv2: ConvBNAct,
        conv3: ConvBNAct,
        shortcut: nn.Module,
        *,
        expand_ratio: float,
    ):
        super().__init__()
        self.conv1, self.conv2, self.conv3, self.shortcut = conv1, conv2, conv3, shortcut
        self.act = nn.ReLU()
        self.expand_ratio = expand_ratio
        self.in_channels = conv1.conv.in_channels
        self.mid_channels = conv1.conv.out_channels
        self.out_channels = conv3.conv.out_channels
        self.kernel_size, self.stride = conv2.conv.kernel_size[0], conv2.conv.stride[0]
        self.projection = not isinstance(shortcut, nn.Identity)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))

    def __repr__(self) -> str:
        shortcut = ", projection" if self.projection else ""
        return (
            f"Bottleneck({self.in_channels}->{self.out_channels}, e{_ratio(self.expand_ratio)} "
            f"(mid {self.mid_channels}), stride {self.stride}{shortcut})"
        )


class ClassifierHead(nn.Module):
    """Static head: global average pool -> [linear + activation] -> dropout -> linear."""

    def __init__(
        self, feature: nn.Linear | None, act: nn.Module, dropout: float, classifier: nn.Linear
    ):
        super().__init__()
        self.feature, self.act = feature, act
        self.dropout = nn.Dropout(dropout)
        self.classifier = classifier
        self.in_channels = (feature or classifier).in_features
        self.num_classes = classifier.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(2).mean(-1)
        if self.feature is not None:
            x = self.act(self.feature(x))
        return self.classifier(self.dropout(x))

    def __repr__(self) -> str:
        feature = f" -> {self.feature.out_features}" if self.feature is not None else ""
        return f"ClassifierHead({self.in_channels}{feature} -> {self.num_classes})"


# ------------------------------------------------------------------------- elastic blocks
class ElasticBlock(ElasticModule):
    """An elastic block: ``extract(in_channels)`` gives its static module and
    ``out_channels_for(in_channels)`` its active output width (to chain extraction)."""

    def out_channels_for(self, in_channels: int) -> int:
        """Output channels of the active configuration for ``in_channels`` inputs."""
        raise NotImplementedError


class ElasticConvBNAct(ElasticBlock):
    """Elastic conv (regular or depthwise), elastic batch norm and an activation."""

    def __init__(
        self,
        dims: int,
        max_in: int,
        max_out: int,
        kernel_sizes: int | Sequence[int] = 1,
        stride: int = 1,
        act: ActivationName = "relu",
        *,
        depthwise: bool = False,
        kernel_mode: KernelMode = "transform",
    ):
        super().__init__()
        if depthwise:
            self.conv = elastic_conv(
                dims, max_in, kernel_sizes, stride, depthwise=True, kernel_mode=kernel_mode
            )
        else:
            self.conv = elastic_conv(
                dims, max_in, max_out, kernel_sizes, stride, kernel_mode=kernel_mode
            )
        self.bn = elastic_batch_norm(dims, max_out)
        self.act_name: ActivationName = act
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    def out_channels_for(self, in_channels: int) -> int:
        return in_channels if self.conv.depthwise else self.conv.active_out_channels

    def extract(self, in_channels: int) -> ConvBNAct:
        out = self.out_channels_for(in_channels)
        return ConvBNAct(
            self.conv.extract(in_channels), self.bn.extract(out), activation(self.act_name)
        )

    def permute_channels(self, index: torch.Tensor, side: Side = "out") -> None:
        """Re-order output channels (conv rows and batch norm) or input channels."""
        self.conv.permute_channels(index, side)
        if side == "out" or self.conv.depthwise:
            self.bn.permute_channels(index)


class ElasticStem(ElasticBlock):
    """Elastic stem: a 3x3 conv-BN-act of fixed width (the input fixes its channels),
    optionally followed by a 3x3 stride-2 max pool."""

    def __init__(
        self, dims: int, in_channels: int, width: int, stride: int, act: ActivationName, pool: bool
    ):
        super().__init__()
        self.conv = ElasticConvBNAct(dims, in_channels, width, 3, stride, act)
        self.pool = _pool(dims, 3, 2, average=False) if pool else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return x if self.pool is None else self.pool(x)

    def out_channels_for(self, in_channels: int) -> int:
        return self.conv.out_channels_for(in_channels)

    def extract(self, in_channels: int) -> Stem:
        return Stem(self.conv.extract(in_channels), copy.deepcopy(self.pool))


class ElasticMBConv(ElasticBlock):
    """Elastic MobileNetV3 inverted residual (Once-for-All DynamicMBConvLayer).

    Active: ``active_kernel_size``, ``active_expand_ratio`` and ``active_out_channels``;
    the expanded width is ``make_divisible(round(in_channels * expand_ratio), 8)``. A
    block whose only expand ratio is 1 has no expand conv (MobileNetV3's first block).
    """

    def __init__(
        self,
        dims: int,
        max_in: int,
        max_out: int,
        kernel_sizes: Sequence[int],
        expand_ratios: Sequence[float],
        stride: int,
        act: ActivationName,
        *,
        se: bool,
        residual: bool,
        kernel_mode: KernelMode = "transform",
    ):
        super().__init__()
        if residual and (stride != 1 or max_in != max_out):
            raise ValueError("a residual MBConv needs stride 1 and as many inputs as outputs")
        self.max_in, self.max_out = max_in, max_out
        self.expand_ratios = tuple(sorted(expand_ratios))
        self.has_expand = self.expand_ratios != (1,)
        max_mid = self.mid_channels(max_in, self.expand_ratios[-1])
        self.expand = (
            ElasticConvBNAct(dims, max_in, max_mid, 1, 1, act) if self.has_expand else None
        )
        self.depthwise = ElasticConvBNAct(
            dims, max_mid, max_mid, kernel_sizes, stride, act,
            depthwise=True, kernel_mode=kernel_mode,
        )  # fmt: skip
        self.se = ElasticSqueezeExcite(max_mid) if se else None
        self.project = ElasticConvBNAct(dims, max_mid, max_out, 1, 1, "none")
        self.residual = residual
        self.act_name = act
        self.active_kernel_size = max(kernel_sizes)
        self.active_expand_ratio = self.expand_ratios[-1]
        self.active_out_channels = max_out
        self._configured: tuple = ()

    def mid_channels(self, in_channels: int, expand_ratio: float | None = None) -> int:
        """The expanded width for ``in_channels`` inputs (active expand ratio by default)."""
        ratio = self.active_expand_ratio if expand_ratio is None else expand_ratio
        if not self.has_expand:
            return in_channels
        return make_divisible(round(in_channels * ratio), 8)

    def _configure(self, in_channels: int) -> None:
        """Pass the active configuration down to the ops (only when it changed: setting a
        module attribute is slow enough to show in a forward)."""
        key = (
            in_channels,
            self.active_kernel_size,
            self.active_expand_ratio,
            self.active_out_channels,
        )
        if key == self._configured:
            return
        if self.expand is not None:
            self.expand.conv.active_out_channels = self.mid_channels(in_channels)
        self.depthwise.conv.active_kernel_size = self.active_kernel_size
        self.project.conv.active_out_channels = self.active_out_channels
        self._configured = key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._configure(x.shape[1])
        return MBConv.forward(self, x)  # same attribute names, one implementation

    def out_channels_for(self, in_channels: int) -> int:
        return self.active_out_channels

    def extract(self, in_channels: int) -> MBConv:
        self._configure(in_channels)
        mid = self.mid_channels(in_channels)
        return MBConv(
            None if self.expand is None else self.expand.extract(in_channels),
            self.depthwise.extract(mid),
            None if self.se is None else self.se.extract(mid),
            self.project.extract(mid),
            residual=self.residual,
            expand_ratio=self.active_expand_ratio if self.has_expand else 1,
            activation=self.act_name,
        )

    def sort_channels(self, keep_expand_ratios: Sequence[float] = ()) -> None:
        """Re-order the expanded channels by importance (and the SE's hidden units);
        channels of the widths of ``keep_expand_ratios`` stay within them."""
        if self.expand is None:
            return
        nested = [self.mid_channels(self.max_in, e) for e in keep_expand_ratios]
        carriers: list[nn.Module] = [self.expand.bn, self.depthwise]
        if self.se is not None:
            carriers.append(self.se)
        sort_channels([self.expand.conv], carriers, [self.project.conv], nested=nested)
        if self.se is not None:
            self.se.sort_hidden()


class ElasticBottleneck(ElasticBlock):
    """Elastic ResNet bottleneck (Once-for-All DynamicResNetBottleneckBlock).

    Active: ``active_expand_ratio`` and ``active_out_channels``; the middle width is
    ``make_divisible(round(out_channels * expand_ratio), 8)``. ``projection`` gives the
    shortcut an average pool (when strided) and a 1x1 conv-BN, else it is the identity.
    """

    def __init__(
        self,
        dims: int,
        max_in: int,
        max_out: int,
        expand_ratios: Sequence[float],
        stride: int,
        *,
        projection: bool,
        kernel_size: int = 3,
    ):
        super().__init__()
        if not projection and (stride != 1 or max_in != max_out):
            raise ValueError("an identity shortcut needs stride 1 and as many inputs as outputs")
        self.expand_ratios = tuple(sorted(expand_ratios))
        self.max_in, self.max_out = max_in, max_out
        max_mid = self.mid_channels(max_out, self.expand_ratios[-1])
        self.conv1 = ElasticConvBNAct(dims, max_in, max_mid, 1, 1, "relu")
        self.conv2 = ElasticConvBNAct(dims, max_mid, max_mid, kernel_size, stride, "relu")
        self.conv3 = ElasticConvBNAct(dims, max_mid, max_out, 1, 1, "none")
        self.projection = projection
        self.shortcut: nn.Module = nn.Identity()
        if projection:
            conv = ElasticConvBNAct(dims, max_in, max_out, 1, 1, "none")
            pool = _pool(dims, stride, stride, average=True) if stride > 1 else nn.Identity()
            self.shortcut = nn.Sequential(OrderedDict(pool=pool, conv=conv))
        self.act = nn.ReLU()
        self.active_expand_ratio = self.expand_ratios[-1]
        self.active_out_channels = max_out
        self._configured: tuple = ()

    def mid_channels(self, out_channels: int, expand_ratio: float | None = None) -> int:
        """The middle width for ``out_channels`` outputs (active ratio by default)."""
        ratio = self.active_expand_ratio if expand_ratio is None else expand_ratio
        return make_divisible(round(out_channels * ratio), 8)

    def _configure(self) -> None:
        """Pass the active configuration down to the ops (only when it changed)."""
        key = (self.active_expand_ratio, self.active_out_channels)
        if key == self._configured:
            return
        out = self.active_out_channels
        mid = self.mid_channels(out)
        self.conv1.conv.active_out_channels = mid
        self.conv2.conv.active_out_channels = mid
        self.conv3.conv.active_out_channels = out
        if self.projection:
            self.shortcut.conv.conv.active_out_channels = out
        self._configured = key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._configure()
        return Bottleneck.forward(self, x)  # same attribute names, one implementation

    def out_channels_for(self, in_channels: int) -> int:
        return self.active_out_channels

    def extract(self, in_channels: int) -> Bottleneck:
        self._configure()
        mid = self.mid_channels(self.active_out_channels)
        shortcut: nn.Module = nn.Identity()
        if self.projection:
            pool = copy.deepcopy(self.shortcut.pool)
            conv = self.shortcut.conv.extract(in_channels)
            shortcut = nn.Sequential(OrderedDict(pool=pool, conv=conv))
        return Bottleneck(
            self.conv1.extract(in_channels),
            self.conv2.extract(mid),
            self.conv3.extract(mid),
            shortcut,
            expand_ratio=self.active_expand_ratio,
        )

    def sort_channels(self, keep_expand_ratios: Sequence[float] = ()) -> None:
        """Re-order both middle channel sets by importance, last one first (as
        Once-for-All); widths of ``keep_expand_ratios`` keep their channels."""
        nested = [self.mid_channels(self.max_out, e) for e in keep_expand_ratios]
        sort_channels([self.conv2.conv], [self.conv2.bn], [self.conv3.conv], nested=nested)
        sort_channels([self.conv1.conv], [self.conv1.bn], [self.conv2.conv], nested=nested)


class ElasticClassifierHead(ElasticBlock):
    """Elastic head: global average pool -> [linear + activation] -> dropout -> linear;
    the input width is elastic, the feature and class counts are fixed."""

    def __init__(
        self,
        max_in: int,
        feature_width: int | None,
        num_classes: int,
        dropout: float,
        act: ActivationName = "hswish",
    ):
        super().__init__()
        self.feature = ElasticLinear(max_in, feature_width, bias=False) if feature_width else None
        self.act_name: ActivationName = act
        self.act = activation(act)
        self.dropout = nn.Dropout(dropout)
        self.classifier = ElasticLinear(feature_width or max_in, num_classes)
        self.num_classes = num_classes

    forward = ClassifierHead.forward  # same attribute names, one implementation

    def out_channels_for(self, in_channels: int) -> int:
        return self.num_classes

    def extract(self, in_channels: int) -> ClassifierHead:
        feature = None if self.feature is None else self.feature.extract(in_channels)
        width = in_channels if feature is None else feature.out_features
        return ClassifierHead(
            feature, activation(self.act_name), self.dropout.p, self.classifier.extract(width)
        )


# ------------------------------------------------------------------------------ supernets
class CNNSupernet(nn.Module, Supernet):
    """What both CNN supernets share: validate and apply an arch, run the active path,
    extract it, sort channels. Subclasses build their modules in ``__init__`` and
    implement :meth:`_configure` (set every block's active attributes from a validated
    arch) and :meth:`_path` (the active ``(name, block)`` sequence, stem to head)."""

    space_type: ClassVar[type[SearchSpace]]

    def __init__(self, space: SearchSpace):
        if not isinstance(space, self.space_type):
            raise TypeError(
                f"{type(self).__name__} realises {self.space_type.__name__}, "
                f"not {type(space).__name__}"
            )
        super().__init__()
        self.space: Any = space
        self.active_arch: Arch = {}
        self._active_path: list[ElasticBlock] = []

    def _configure(self, arch: Arch) -> None:
        raise NotImplementedError

    def _path(self) -> list[tuple[str, ElasticBlock]]:
        raise NotImplementedError

    def set_active(self, arch: Arch) -> None:
        """Validate ``arch`` against the space (an ``ArchError`` names a bad key) and make
        it the subnet that forward passes run."""
        arch = self.space.validate(arch)
        self._configure(arch)
        self.active_arch = arch
        self._active_path = [block for _, block in self._path()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the active subnet on ``x`` (any spatial size; the resolution is the
        data feeder's business)."""
        for block in self._active_path:
            x = block(x)
        return x

    @torch.no_grad()
    def extract(self, arch: Arch) -> nn.Sequential:
        """The static subnet of ``arch``: an ``nn.Sequential`` of a stem, one module per
        block and the head, with copied weights, in this supernet's train/eval mode. The
        supernet's active arch is left as it was."""
        previous = self.active_arch
        self.set_active(arch)
        try:
            channels = self.space.config.in_channels
            children: OrderedDict[str, nn.Module] = OrderedDict()
            for name, block in self._path():
                children[name] = block.extract(channels)
                channels = block.out_channels_for(channels)
        finally:
            self.set_active(previous)
        return nn.Sequential(children).train(self.training)

    def sort_channels(self, keep_expand_ratios: Sequence[float] = ()) -> None:
        """Re-order every block's inner channels by importance (Once-for-All, before the
        elastic-width phases); the largest subnet computes the same function afterwards.
        ``keep_expand_ratios`` keeps the channels of already-trained widths in place."""
        for module in self.modules():
            if isinstance(module, ElasticMBConv | ElasticBottleneck):
                module.sort_channels(keep_expand_ratios)
