"""Squeeze-and-excitation: a static module and its elastic-width counterpart.

``y = x * gate(expand(relu(reduce(mean(x)))))`` over the spatial axes (1-D or 2-D). The
elastic one follows Once-for-All's DynamicSE: with ``C`` active channels the hidden width
is ``make_divisible(C // reduction, divisor)``, a prefix of the stored hidden units.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from .base import ElasticModule, Side, check_active, make_divisible
from .linear import ElasticLinear

Gate = Literal["hsigmoid", "sigmoid"]


def _gate(gate: Gate) -> nn.Module:
    if gate == "hsigmoid":
        return nn.Hardsigmoid()
    if gate == "sigmoid":
        return nn.Sigmoid()
    raise ValueError(f"gate must be 'hsigmoid' or 'sigmoid', got {gate!r}")


class SqueezeExcite(nn.Module):
    """Static squeeze-and-excitation over ``channels`` with ``hidden`` units (any of 1-D or
    2-D feature maps); what :class:`ElasticSqueezeExcite` extracts to. Scriptable."""

    def __init__(self, channels: int, hidden: int, gate: Gate = "hsigmoid"):
        super().__init__()
        self.reduce = nn.Linear(channels, hidden)
        self.expand = nn.Linear(hidden, channels)
        self.gate = _gate(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.gate(self.expand(torch.relu(self.reduce(x.flatten(2).mean(-1)))))
        for _ in range(x.dim() - 2):
            scale = scale.unsqueeze(-1)
        return x * scale

    def extra_repr(self) -> str:
        return f"channels={self.reduce.in_features}, hidden={self.reduce.out_features}"


class ElasticSqueezeExcite(ElasticModule):
    """Squeeze-and-excitation whose width follows the input's channel count."""

    def __init__(
        self, max_channels: int, reduction: int = 4, divisor: int = 8, gate: Gate = "hsigmoid"
    ):
        super().__init__()
        if reduction < 1:
            raise ValueError(f"ElasticSqueezeExcite: reduction must be >= 1, got {reduction}")
        self.max_channels = max_channels
        self.reduction = reduction
        self.divisor = divisor
        self.gate_name: Gate = gate
        hidden = self.hidden_for(max_channels)
        self.reduce = ElasticLinear(max_channels, hidden)
        self.expand = ElasticLinear(hidden, max_channels)
        self.gate = _gate(gate)
        self._configured = 0

    def hidden_for(self, channels: int) -> int:
        """The hidden width used with ``channels`` active channels."""
        return make_divisible(channels // self.reduction, self.divisor)

    def _configure(self, channels: int) -> None:
        if channels != self._configured:
            self.reduce.active_out_features = self.hidden_for(channels)
            self.expand.active_out_features = channels
            self._configured = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._configure(x.shape[1])
        return SqueezeExcite.forward(self, x)  # same attribute names, one implementation

    @torch.no_grad()
    def extract(self, in_channels: int) -> SqueezeExcite:
        """A :class:`SqueezeExcite` over ``in_channels`` with copied weights."""
        check_active("in_channels", in_channels, self.max_channels)
        hidden = self.hidden_for(in_channels)
        self._configure(in_channels)
        w = self.reduce.weight
        se = SqueezeExcite(in_channels, hidden, self.gate_name).to(device=w.device, dtype=w.dtype)
        se.reduce = self.reduce.extract(in_channels)
        se.expand = self.expand.extract(hidden)
        return se

    def permute_channels(self, index: torch.Tensor, side: Side = "out") -> None:
        """Re-order the (input = output) channels."""
        self.reduce.permute_channels(index, "in")
        self.expand.permute_channels(index, "out")

    def sort_hidden(self) -> torch.Tensor:
        """Re-order the hidden units by importance (L1 norm of their expand weights), most
        important first; the function is unchanged at full width. Returns the permutation."""
        from .importance import sort_channels

        return sort_channels(producers=[self.reduce], consumers=[self.expand])

    def extra_repr(self) -> str:
        return (
            f"max_channels={self.max_channels}, reduction={self.reduction}, "
            f"divisor={self.divisor}, gate={self.gate_name}"
        )
