"""The Once-for-All MobileNetV3 supernet that realises :class:`MobileNetV3Space`.

Stem (3x3 conv, h-swish) -> a fixed first block (depthwise 3x3, expand 1) -> stages of
elastic inverted-residual blocks (per block kernel and expand ratio, per stage depth; the
first, stride-carrying block of a stage is always kept) -> 1x1 final expand -> pooled
features -> classifier. ``width_mult`` scales the stage widths (prefix channels,
``make_divisible(width * mult, 8)``); the stem, first block and head keep their widths.
Every size comes from the space's options; 1-D spaces build 1-D convolutions.
"""

from __future__ import annotations

from torch import nn

from nasforge import Arch
from nasforge.nn import make_divisible

from .blocks import (
    CNNSupernet,
    ElasticBlock,
    ElasticClassifierHead,
    ElasticConvBNAct,
    ElasticMBConv,
    ElasticStem,
)
from .spaces import MobileNetV3Space


class MobileNetV3Supernet(CNNSupernet):
    """Elastic MobileNetV3: ``MobileNetV3Supernet(space)``; see the module docstring."""

    space_type = MobileNetV3Space
    space: MobileNetV3Space

    def __init__(self, space: MobileNetV3Space):
        super().__init__(space)
        c = space.config
        dims, mode = c.dims, c.kernel_mode
        self.stem = ElasticStem(
            dims, c.in_channels, c.stem_width, c.stem_stride, "hswish", pool=False
        )
        self.first_block = ElasticMBConv(
            dims, c.stem_width, c.first_block_width, [3], [1], 1, "relu",
            se=False, residual=c.stem_width == c.first_block_width,
        )  # fmt: skip
        self.stages = nn.ModuleList()
        # a residual needs equal active widths: the first block's input is not scaled by
        # width_mult, so the first stage's first block only adds it when nothing scales
        width, input_scales = c.first_block_width, c.width_mults is None
        for i, stride in enumerate(c.stage_strides):
            out = self.stage_width(i)
            blocks = nn.ModuleList()
            for j in range(max(c.depths)):
                block_stride = stride if j == 0 else 1
                blocks.append(
                    ElasticMBConv(
                        dims, width, out, c.kernels, c.expands, block_stride,
                        c.stage_activations[i], se=c.stage_se[i], kernel_mode=mode,
                        residual=block_stride == 1 and width == out and input_scales,
                    )
                )  # fmt: skip
                width, input_scales = out, True
            self.stages.append(blocks)
        self.final_expand = ElasticConvBNAct(dims, width, c.final_expand_width, 1, 1, "hswish")
        self.head = ElasticClassifierHead(
            c.final_expand_width, c.feature_width, c.num_classes, c.dropout, "hswish"
        )
        self.set_active(space.largest())

    def stage_width(self, stage: int, width_mult: float | None = None) -> int:
        """Output width of ``stage`` (0-based) at ``width_mult`` (the largest by default)."""
        c = self.space.config
        base = c.stage_widths[stage]
        if c.width_mults is None:
            return base
        return make_divisible(base * (max(c.width_mults) if width_mult is None else width_mult), 8)

    def _configure(self, arch: Arch) -> None:
        mult = arch.get("width_mult")
        self._depths = []
        for i, blocks in enumerate(self.stages, start=1):
            out = self.stage_width(i - 1, mult)
            self._depths.append(arch[f"depth_{i}"])
            for block, kernel, expand in zip(
                blocks, arch[f"kernel_{i}"], arch[f"expand_{i}"], strict=False
            ):
                block.active_kernel_size = kernel
                block.active_expand_ratio = expand
                block.active_out_channels = out

    def _path(self) -> list[tuple[str, ElasticBlock]]:
        path: list[tuple[str, ElasticBlock]] = [
            ("stem", self.stem),
            ("first_block", self.first_block),
        ]
        for i, (blocks, depth) in enumerate(zip(self.stages, self._depths, strict=True), start=1):
            path.extend((f"stage{i}_block{j}", blocks[j - 1]) for j in range(1, depth + 1))
        path += [("final_expand", self.final_expand), ("head", self.head)]
        return path
