"""Elastic linear layer: active input features from the input, active outputs set."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import ElasticModule, Side, check_active, permute_weight_and_bias


class ElasticLinear(ElasticModule):
    """``y = x W[:out, :in]^T + b[:out]`` with ``in = x.shape[-1]`` and
    ``out = active_out_features`` (the largest by default)."""

    def __init__(self, max_in_features: int, max_out_features: int, bias: bool = True):
        super().__init__()
        for name, value in (
            ("max_in_features", max_in_features),
            ("max_out_features", max_out_features),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ElasticLinear: {name} must be an integer >= 1, got {value!r}")
        self.max_in_features = max_in_features
        self.max_out_features = max_out_features
        self.weight = nn.Parameter(torch.empty(max_out_features, max_in_features))
        self.bias = nn.Parameter(torch.empty(max_out_features)) if bias else None
        self.active_out_features = max_out_features
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise like ``torch.nn.Linear``."""
        with torch.no_grad():
            nn.init.kaiming_uniform_(self.weight, a=5**0.5)
            if self.bias is not None:
                bound = self.max_in_features**-0.5
                self.bias.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in_features, out = x.shape[-1], self.active_out_features
        if in_features > self.max_in_features:
            raise ValueError(
                f"ElasticLinear: input has {in_features} features, "
                f"more than max_in_features={self.max_in_features}"
            )
        bias = None if self.bias is None else self.bias[:out]
        return F.linear(x, self.weight[:out, :in_features], bias)

    @torch.no_grad()
    def extract(self, in_channels: int) -> nn.Linear:
        """A ``torch.nn.Linear`` of the active size with copied weights."""
        check_active("in_features", in_channels, self.max_in_features)
        out = self.active_out_features
        check_active("active_out_features", out, self.max_out_features)
        w = self.weight
        linear = nn.Linear(
            in_channels, out, bias=self.bias is not None, device=w.device, dtype=w.dtype
        )
        linear.weight.copy_(w[:out, :in_channels])
        if self.bias is not None:
            linear.bias.copy_(self.bias[:out])
        return linear

    def permute_channels(self, index: torch.Tensor, side: Side = "out") -> None:
        """Re-order output (``"out"``: rows and bias) or input (``"in"``: columns) features."""
        permute_weight_and_bias(self.weight, self.bias, index, side)

    def extra_repr(self) -> str:
        return (
            f"max_in_features={self.max_in_features}, max_out_features={self.max_out_features}, "
            f"bias={self.bias is not None}"
        )
