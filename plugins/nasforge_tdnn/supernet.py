"""The EfficientTDNN supernet: an elastic ECAPA-TDNN on :mod:`nasforge.nn` 1-D ops.

Input ``[B, n_mels, T]`` mean-normalised log-mel filterbanks; output ``[B, embedding_dim]``
speaker embeddings (the AAM-softmax head over the training speakers belongs to the trainer).

- **stem**: conv (``kernel_0``) → ReLU → BN, ``n_mels`` → width;
- **SE-Res2 blocks** (``depth`` of them, dilations fixed): 1x1 conv → Res2 (``res2_scale``
  groups; group ``i`` convolves its channels plus group ``i-1``'s output with the block's
  ``kernel``) → 1x1 conv → squeeze-excitation, plus the block's input; block ``i`` reads
  the stem's output plus every earlier block's output (dense residual sums);
- **concatenation** of the blocks' outputs → 1x1 conv → ReLU to three times the width;
- **attentive statistics pooling** with global context (ECAPA) → BN → linear → BN.

Kernels shrink 5 → 3 → 1 by Once-for-All kernel transforms (``kernel_mode``). Widths are
prefixes of the stored channels, except where an input is a concatenation of parts that each
shrink (the blocks' outputs, ECAPA's global context, mean and standard deviation): there a
:class:`SegmentConv1d` takes the prefix of each part's own stored columns, so every part
keeps its weights at every width. The Res2 groups split the active width evenly, each group's
convolution sliced as a prefix of its own.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nasforge import Supernet
from nasforge.nn import (
    ElasticBatchNorm1d,
    ElasticConv1d,
    ElasticModule,
    ElasticSqueezeExcite,
)

from .space import TDNNSpace


class SegmentConv1d(ElasticModule):
    """1x1 convolution over an input made of ``active_segments`` equal parts (each at most
    ``max_in_channels`` wide, e.g. concatenated block outputs): part ``s`` meets the prefix
    of its own stored columns ``[s * max_in, s * max_in + width)``. Set
    ``active_out_channels`` and ``active_segments``."""

    def __init__(self, max_in_channels: int, max_segments: int, max_out_channels: int):
        super().__init__()
        self.max_in_channels = max_in_channels
        self.max_segments = max_segments
        self.max_out_channels = max_out_channels
        self.weight = nn.Parameter(torch.empty(max_out_channels, max_segments * max_in_channels))
        self.bias = nn.Parameter(torch.empty(max_out_channels))
        self.active_out_channels = max_out_channels
        self.active_segments = max_segments
        bound = 1 / (max_segments * max_in_channels) ** 0.5
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def active_weight(self, in_channels: int) -> torch.Tensor:
        """The ``[out, in_channels]`` weight of the active parts."""
        segments = self.active_segments
        width, rest = divmod(in_channels, segments)
        if rest or not 1 <= width <= self.max_in_channels or segments > self.max_segments:
            raise ValueError(
                f"SegmentConv1d: {in_channels} input channels are not {segments} parts of at "
                f"most {self.max_in_channels}"
            )
        out = self.weight[: self.active_out_channels]
        if width == self.max_in_channels:
            return out[:, : segments * width]
        view = out.view(out.shape[0], self.max_segments, self.max_in_channels)
        return view[:, :segments, :width].reshape(out.shape[0], segments * width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.active_weight(x.shape[1])
        return F.conv1d(x, weight.unsqueeze(-1), self.bias[: weight.shape[0]])

    @torch.no_grad()
    def extract(self, in_channels: int) -> nn.Conv1d:
        """A ``torch.nn.Conv1d`` (kernel 1) of the active parts with copied weights."""
        weight = self.active_weight(in_channels)
        conv = nn.Conv1d(in_channels, weight.shape[0], 1, device=weight.device)
        conv.weight.copy_(weight.unsqueeze(-1))
        conv.bias.copy_(self.bias[: weight.shape[0]])
        return conv

    def extra_repr(self) -> str:
        return f"{self.max_segments} x {self.max_in_channels} -> {self.max_out_channels}, kernel 1"


class ConvReluNorm(nn.Module):
    """A TDNN layer: convolution → ReLU → batch norm (elastic or static parts)."""

    def __init__(self, conv: nn.Module, norm: nn.Module):
        super().__init__()
        self.conv = conv
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(torch.relu(self.conv(x)))

    def extract(self, in_channels: int) -> ConvReluNorm:
        """The static layer of the active configuration (weights copied)."""
        conv = self.conv.extract(in_channels)
        return ConvReluNorm(conv, self.norm.extract(conv.out_channels))


def elastic_layer(
    max_in: int, max_out: int, kernels: list[int], dilation: int = 1, kernel_mode: str = "transform"
) -> ConvReluNorm:
    """An elastic TDNN layer with "same" padding."""
    conv = ElasticConv1d(
        max_in, max_out, kernels, dilation=dilation, bias=True, kernel_mode=kernel_mode
    )
    return ConvReluNorm(conv, ElasticBatchNorm1d(max_out))


class Res2(nn.Module):
    """Res2Net's hierarchical convolution: the input split into ``len(layers) + 1`` groups;
    the first passes through, group ``i`` is convolved after adding group ``i-1``'s output."""

    def __init__(self, layers: nn.ModuleList):
        super().__init__()
        self.layers = layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = x.chunk(len(self.layers) + 1, dim=1)
        outputs = [groups[0]]
        previous = None
        for layer, group in zip(self.layers, groups[1:], strict=True):
            previous = layer(group if previous is None else group + previous)
            outputs.append(previous)
        return torch.cat(outputs, dim=1)

    def extract(self, in_channels: int) -> Res2:
        width = in_channels // (len(self.layers) + 1)
        return Res2(nn.ModuleList(layer.extract(width) for layer in self.layers))


class SERes2Block(nn.Module):
    """ECAPA's SE-Res2 block: 1x1 layer → Res2 → 1x1 layer → squeeze-excitation, plus the
    input."""

    def __init__(self, pre: ConvReluNorm, res2: Res2, post: ConvReluNorm, se: nn.Module):
        super().__init__()
        self.pre, self.res2, self.post, self.se = pre, res2, post, se

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.se(self.post(self.res2(self.pre(x))))

    def extract(self, in_channels: int) -> SERes2Block:
        pre = self.pre.extract(in_channels)
        width = pre.conv.out_channels
        return SERes2Block(
            pre, self.res2.extract(width), self.post.extract(width), self.se.extract(width)
        )


class AttentiveStatsPool(nn.Module):
    """ECAPA's attentive statistics pooling with global context: attention weights over
    time from each frame with the utterance's mean and standard deviation; returns the
    weighted mean and standard deviation, concatenated."""

    def __init__(self, attend: ConvReluNorm, score: nn.Module):
        super().__init__()
        self.attend = attend
        self.score = score

    @staticmethod
    def _stats(x: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = (x * weights).sum(-1)
        var = ((x * x) * weights).sum(-1) - mean * mean
        return mean, var.clamp(min=1e-4).sqrt()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        uniform = torch.full_like(x[:, :1], 1.0 / x.shape[-1])
        mean, std = self._stats(x, uniform)
        context = torch.cat(
            [x, mean.unsqueeze(-1).expand_as(x), std.unsqueeze(-1).expand_as(x)], dim=1
        )
        weights = torch.softmax(self.score(torch.tanh(self.attend(context))), dim=-1)
        mean, std = self._stats(x, weights)
        return torch.cat([mean, std], dim=1)

    def extract(self, in_channels: int) -> AttentiveStatsPool:
        attend = self.attend.extract(3 * in_channels)
        return AttentiveStatsPool(attend, self.score.extract(attend.conv.out_channels))


class SpeakerEmbedding(nn.Module):
    """Pooled statistics → BN (mean and deviation apart) → 1x1 projection → BN."""

    def __init__(self, norm_mean: nn.Module, norm_std: nn.Module, project: nn.Module, out: int):
        super().__init__()
        self.norm_mean, self.norm_std, self.project = norm_mean, norm_std, project
        self.norm = nn.BatchNorm1d(out)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        mean, std = pooled.chunk(2, dim=1)
        x = torch.cat([self.norm_mean(mean), self.norm_std(std)], dim=1)
        return self.norm(self.project(x.unsqueeze(-1)).squeeze(-1))

    def extract(self, in_channels: int) -> SpeakerEmbedding:
        width = in_channels // 2
        project = self.project.extract(in_channels)
        static = SpeakerEmbedding(
            self.norm_mean.extract(width),
            self.norm_std.extract(width),
            project,
            self.norm.num_features,
        ).to(project.weight.device)
        static.norm.load_state_dict(self.norm.state_dict())
        return static


class TDNN(nn.Module):
    """The network (elastic in the supernet, static once extracted); ``depth`` of the
    ``blocks`` run."""

    def __init__(
        self,
        stem: ConvReluNorm,
        blocks: nn.ModuleList,
        aggregate: nn.Module,
        pool: AttentiveStatsPool,
        embed: SpeakerEmbedding,
    ):
        super().__init__()
        self.stem, self.blocks, self.aggregate = stem, blocks, aggregate
        self.pool, self.embed = pool, embed
        self.depth = len(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = self.stem(x)
        outputs = []
        for block in self.blocks[: self.depth]:
            out = block(total)
            outputs.append(out)
            total = total + out
        frames = torch.relu(self.aggregate(torch.cat(outputs, dim=1)))
        return self.embed(self.pool(frames))


class TDNNSupernet(TDNN, Supernet):
    """The elastic EfficientTDNN of a :class:`~nasforge_tdnn.space.TDNNSpace` (built from its
    options): ``set_active(arch)`` selects depth, kernels and width; ``extract(arch)`` a
    static :class:`TDNN` with copied weights."""

    def __init__(self, space: TDNNSpace):
        c = space.config
        width, depth, kernels, mode = c.max_channels, max(c.depths), c.kernels, c.kernel_mode
        group = width // c.res2_scale
        blocks = nn.ModuleList(
            SERes2Block(
                elastic_layer(width, width, [1]),
                Res2(
                    nn.ModuleList(
                        elastic_layer(group, group, kernels, dilation, mode)
                        for _ in range(c.res2_scale - 1)
                    )
                ),
                elastic_layer(width, width, [1]),
                ElasticSqueezeExcite(width, reduction=c.se_reduction, gate="sigmoid"),
            )
            for dilation in c.dilations[:depth]
        )
        cat_width = 3 * width
        super().__init__(
            elastic_layer(c.n_mels, width, kernels, 1, mode),
            blocks,
            SegmentConv1d(width, depth, cat_width),
            AttentiveStatsPool(
                ConvReluNorm(
                    SegmentConv1d(cat_width, 3, c.attention_channels),
                    ElasticBatchNorm1d(c.attention_channels),
                ),
                ElasticConv1d(c.attention_channels, cat_width, 1, bias=True),
            ),
            SpeakerEmbedding(
                ElasticBatchNorm1d(cat_width),
                ElasticBatchNorm1d(cat_width),
                SegmentConv1d(cat_width, 2, c.embedding_dim),
                c.embedding_dim,
            ),
        )
        self.space = space
        self.res2_scale = c.res2_scale
        self.active_arch: dict[str, Any] | None = None
        self.set_active(space.largest())

    def set_active(self, arch: dict[str, Any]) -> None:
        """Select depth, the stem's and blocks' kernels, and the width (see the space)."""
        arch = self.space.validate(arch)
        width = arch["width"]
        self.depth = arch["depth"]
        self.stem.conv.active_out_channels = width
        self.stem.conv.active_kernel_size = arch["kernel_0"]
        for block, kernel in zip(self.blocks, arch["kernel"], strict=False):
            block.pre.conv.active_out_channels = width
            block.post.conv.active_out_channels = width
            for layer in block.res2.layers:
                layer.conv.active_out_channels = width // self.res2_scale
                layer.conv.active_kernel_size = kernel
        self.aggregate.active_segments = self.depth
        self.aggregate.active_out_channels = 3 * width
        self.pool.score.active_out_channels = 3 * width
        self.active_arch = arch

    @torch.no_grad()
    def extract(self, arch: dict[str, Any]) -> TDNN:
        """A static :class:`TDNN` of ``arch`` (weights copied); the active arch is kept."""
        previous = self.active_arch
        self.set_active(arch)
        try:
            stem = self.stem.extract(self.space.config.n_mels)
            width = arch["width"]
            blocks = nn.ModuleList(block.extract(width) for block in self.blocks[: self.depth])
            aggregate = self.aggregate.extract(self.depth * width)
            static = TDNN(
                stem,
                blocks,
                aggregate,
                self.pool.extract(3 * width),
                self.embed.extract(6 * width),
            )
            return static.train(self.training)
        finally:
            if previous is not None:
                self.set_active(previous)
