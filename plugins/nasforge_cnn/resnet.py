"""The Once-for-All ResNet supernet that realises :class:`ResNetSpace`.

Stem (3x3 conv-BN-ReLU, optional max pool) -> stages of elastic bottleneck blocks (per
stage depth ``base + extra`` and width multiplier, per block bottleneck ratio; the first,
stride-carrying block of a stage is always kept and has a projection shortcut: average
pool when strided, then 1x1 conv-BN) -> pooled classifier. Every size comes from the
space's options; 1-D spaces build 1-D convolutions.
"""

from __future__ import annotations

from torch import nn

from nasforge import Arch
from nasforge.nn import make_divisible

from .blocks import CNNSupernet, ElasticBlock, ElasticBottleneck, ElasticClassifierHead, ElasticStem
from .spaces import ResNetSpace


class ResNetSupernet(CNNSupernet):
    """Elastic ResNet: ``ResNetSupernet(space)``; see the module docstring."""

    space_type = ResNetSpace
    space: ResNetSpace

    def __init__(self, space: ResNetSpace):
        super().__init__(space)
        c = space.config
        self.stem = ElasticStem(
            c.dims, c.in_channels, c.stem_width, c.stem_stride, "relu", c.stem_pool
        )
        self.stages = nn.ModuleList()
        width = c.stem_width
        max_extra = max(c.depth_extras)
        for i, (stride, base) in enumerate(zip(c.stage_strides, c.base_depths, strict=True)):
            out = self.stage_width(i)
            blocks = nn.ModuleList()
            for j in range(base + max_extra):
                blocks.append(
                    ElasticBottleneck(
                        c.dims, width, out, c.expands, stride if j == 0 else 1, projection=j == 0
                    )
                )
                width = out
            self.stages.append(blocks)
        self.head = ElasticClassifierHead(width, None, c.num_classes, c.dropout)
        self.set_active(space.largest())

    def stage_width(self, stage: int, width_mult: float | None = None) -> int:
        """Output width of ``stage`` (0-based) at ``width_mult`` (the largest by default)."""
        c = self.space.config
        mult = max(c.width_mults) if width_mult is None else width_mult
        return make_divisible(c.stage_widths[stage] * mult, 8)

    def _configure(self, arch: Arch) -> None:
        self._depths = []
        for i, blocks in enumerate(self.stages, start=1):
            out = self.stage_width(i - 1, arch[f"width_{i}"])
            self._depths.append(arch[f"depth_{i}"])
            for block, expand in zip(blocks, arch[f"expand_{i}"], strict=False):
                block.active_expand_ratio = expand
                block.active_out_channels = out

    def _path(self) -> list[tuple[str, ElasticBlock]]:
        path: list[tuple[str, ElasticBlock]] = [("stem", self.stem)]
        for i, (blocks, depth) in enumerate(zip(self.stages, self._depths, strict=True), start=1):
            path.extend((f"stage{i}_block{j}", blocks[j - 1]) for j in range(1, depth + 1))
        path.append(("head", self.head))
        return path
