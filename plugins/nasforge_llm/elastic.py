"""One projection of an elastic LLaMA: a frozen base weight, an elastic LoRA adapter, and
group-wise fake quantisation of the base weight.

:class:`ElasticLoRALinear` computes, for the active output size ``out``, the input size
read from the input (as every :mod:`nasforge.nn` op does), the active ``rank`` and ``bits``::

    y = x Q(W[:out, :in])^T + b[:out] + (x A[:rank, :in]^T) B[:out, :rank]^T * alpha / max_rank

``Q`` is asymmetric min-max quantisation to ``bits`` in groups of ``group_size`` weights
along the input (identity at 16 bits), with a straight-through gradient. The LoRA scale is
``alpha / max_rank`` for every rank, as SQFT's neural low-rank search keeps it: a rank-r
adapter is the first r components of the largest one, so smaller ranks are prefixes of the
same sum (a peft adapter of rank r with ``lora_alpha = alpha * r / max_rank`` is the same
function). Slices are views: activating a subnet copies no weights.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from nasforge.nn import ElasticModule

FULL_PRECISION = 16


def fake_quantize(weight: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    """``weight`` rounded to ``2**bits`` levels per group of ``group_size`` inputs
    (asymmetric min-max), with the gradient of the identity; unchanged at 16 bits."""
    if bits >= FULL_PRECISION:
        return weight
    rows, cols = weight.shape
    pad = (-cols) % group_size
    # a partial last group is padded with copies of its last column: the padding never
    # widens that group's range
    padded = torch.cat([weight, weight[:, -1:].expand(rows, pad)], 1) if pad else weight
    groups = padded.detach().reshape(rows, -1, group_size)
    low = groups.amin(-1, keepdim=True)
    high = groups.amax(-1, keepdim=True)
    levels = 2**bits - 1
    scale = (high - low).clamp(min=1e-8) / levels
    quantized = ((groups - low) / scale).round().clamp(0, levels) * scale + low
    quantized = quantized.reshape(rows, -1)[:, :cols]
    return weight + (quantized - weight).detach()


class ElasticLoRALinear(ElasticModule):
    """A LLaMA projection with a frozen base, an elastic LoRA adapter and fake-quantised
    weights; the parent sets ``active_out``, ``rank`` and ``bits``.

    Without gradients in eval mode (scoring sub-networks) the active weight, quantised and
    with the adapter merged, is built once per configuration and reused; in training with
    a frozen base, the quantised base weight is. Each projection keeps one such copy (of
    its active size); ``cache_weights = False`` turns it off.
    """

    cache_weights: ClassVar[bool] = True

    def __init__(self, base: nn.Linear, max_rank: int, alpha: float, group_size: int = 64):
        super().__init__()
        if max_rank < 0:
            raise ValueError(f"ElasticLoRALinear: max_rank must be >= 0, got {max_rank}")
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight  # the same Parameter: wrapping copies nothing
        self.weight.requires_grad_(False)
        self.bias = base.bias
        if self.bias is not None:
            self.bias.requires_grad_(False)
        self.max_rank = max_rank
        self.alpha = float(alpha)
        self.group_size = group_size
        self.lora_A = nn.Parameter(torch.empty(max_rank, self.in_features))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, max_rank))
        if max_rank:
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as peft initialises A
        self.active_out = self.out_features
        self.rank = max_rank
        self.bits = FULL_PRECISION
        self._cache: tuple[tuple, torch.Tensor] | None = None

    @property
    def scale(self) -> float:
        """The LoRA scale, ``alpha / max_rank`` whatever the active rank."""
        return self.alpha / self.max_rank if self.max_rank else 0.0

    def active_weight(self, in_features: int) -> torch.Tensor:
        """The base weight of the active sizes, quantised to the active bits."""
        weight = self.weight[: self.active_out, :in_features]
        return fake_quantize(weight, self.bits, self.group_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in_features, out = x.shape[-1], self.active_out
        bias = None if self.bias is None else self.bias[:out]
        if not (self.training or torch.is_grad_enabled()) and self.cache_weights:
            return F.linear(x, self._cached("merged", in_features, self.merged_weight), bias)
        if self.weight.requires_grad or not self.cache_weights:
            weight = self.active_weight(in_features)
        else:  # a frozen base: quantise it once per configuration, not once per step
            weight = self._cached("base", in_features, self.active_weight)
        y = F.linear(x, weight, bias)
        if self.rank:
            down = F.linear(x, self.lora_A[: self.rank, :in_features])
            y = y + F.linear(down, self.lora_B[:out, : self.rank]) * self.scale
        return y

    def _cached(self, kind: str, in_features: int, build) -> torch.Tensor:
        """``build(in_features)`` made contiguous, kept until the configuration or any
        weight it reads changes (one entry: the sub-network being scored or trained)."""
        key = (kind, in_features, self.active_out, self.bits, self.weight._version,
               self.weight.data_ptr())  # fmt: skip
        if kind == "merged":
            key += (self.rank, self.lora_A._version, self.lora_B._version)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        with torch.no_grad():
            weight = build(in_features).detach().contiguous()
        self._cache = (key, weight)
        return weight

    def train(self, mode: bool = True) -> ElasticLoRALinear:
        """Set the mode and drop the weight cache."""
        self._cache = None
        return super().train(mode)

    @torch.no_grad()
    def merged_weight(self, in_features: int) -> torch.Tensor:
        """The active weight with the active adapter merged in (a copy)."""
        weight = self.active_weight(in_features).clone()
        if self.rank:
            delta = (
                self.lora_B[: self.active_out, : self.rank] @ self.lora_A[: self.rank, :in_features]
            )
            weight += delta * self.scale
        return weight

    @torch.no_grad()
    def extract(self, in_channels: int) -> nn.Linear:
        """A plain ``nn.Linear`` of the active sizes, adapter merged, weights copied."""
        linear = nn.Linear(in_channels, self.active_out, bias=self.bias is not None)
        linear.weight.copy_(self.merged_weight(in_channels))
        if self.bias is not None:
            linear.bias.copy_(self.bias[: self.active_out])
        return linear

    def extra_repr(self) -> str:
        return (
            f"in={self.in_features}, out={self.active_out}/{self.out_features}, "
            f"rank={self.rank}/{self.max_rank}, bits={self.bits}"
        )
