"""One projection of an elastic LLaMA: a frozen base weight, an elastic LoRA adapter, and
group-wise fake quantisation of the base weight.

:class:`ElasticLoRALinear` computes, for the active output size ``out``, the input size
read from the input (as every :mod:`nasforge.nn` op does), the active ``rank`` and ``bits``::

    y = x Q(W[:out, :in])^T + b[:out] + (x A[:rank, :in]^T) B[:out, :rank]^T * alpha / max_rank

``Q`` is asymmetric min-max quantisation to ``bits`` in groups of ``group_size`` weights
along the input (identity at 16 bits; :mod:`.quantization`), with a straight-through
gradient. The LoRA scale is
``alpha / max_rank`` for every rank, as SQFT's neural low-rank search keeps it: a rank-r
adapter is the first r components of the largest one, so smaller ranks are prefixes of the
same sum (a peft adapter of rank r with ``lora_alpha = alpha * r / max_rank`` is the same
function). Slices are views: activating a subnet copies no weights.

A projection holds ``adapters`` LoRA adapters (``lora_A``: ``(adapters, max_rank, in)``,
``lora_B``: ``(adapters, out, max_rank)``) and runs the one ``adapter`` selects: one shared by
every bit-width, or one per bit-width (LLM-QFA's decoupled adapters, so that what corrects a
2-bit weight does not have to correct a 16-bit one too).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from nasforge.nn import ElasticModule

from .quantization import FULL_PRECISION, QuantizedWeight, fake_quantize, quantize


class ElasticLoRALinear(ElasticModule):
    """A LLaMA projection with a frozen base, an elastic LoRA adapter and fake-quantised
    weights; the parent sets ``active_out``, ``rank`` and ``bits``.

    Without gradients in eval mode (scoring sub-networks) the active weight, quantised and
    with the adapter merged, is built once per configuration and reused; in training with
    a frozen base, the quantised base weight is. Each projection keeps one such copy (of
    its active size); ``cache_weights = False`` turns it off.
    """

    cache_weights: ClassVar[bool] = True

    def __init__(
        self, base: nn.Linear, max_rank: int, alpha: float, group_size: int = 64, adapters: int = 1
    ):
        super().__init__()
        if max_rank < 0:
            raise ValueError(f"ElasticLoRALinear: max_rank must be >= 0, got {max_rank}")
        if adapters < 1:
            raise ValueError(f"ElasticLoRALinear: adapters must be >= 1, got {adapters}")
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight  # the same Parameter: wrapping copies nothing
        self.weight.requires_grad_(False)
        self.bias = base.bias
        if self.bias is not None:
            self.bias.requires_grad_(False)
        self.max_rank = max_rank
        self.alpha = float(alpha)
        self.group_size = group_size
        self.lora_A = nn.Parameter(
            torch.empty(adapters, max_rank, self.in_features, dtype=torch.float32)
        )
        self.lora_B = nn.Parameter(
            torch.zeros(adapters, self.out_features, max_rank, dtype=torch.float32)
        )
        for a in self.lora_A if max_rank else ():
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))  # as peft initialises A
        self.active_out = self.out_features
        self.rank = max_rank
        self.adapter = 0
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
        if self.rank:  # the adapter in its own dtype (float32 over a bf16 base)
            a = self.lora_A[self.adapter, : self.rank, :in_features]
            down = F.linear(x.to(a.dtype), a)
            up = F.linear(down, self.lora_B[self.adapter, :out, : self.rank]) * self.scale
            y = y + up.to(y.dtype)
        return y

    def _cached(self, kind: str, in_features: int, build) -> torch.Tensor:
        """``build(in_features)`` made contiguous, kept until the configuration or any
        weight it reads changes (one entry: the sub-network being scored or trained)."""
        key = (kind, in_features, self.active_out, self.bits, self.weight._version,
               self.weight.data_ptr())  # fmt: skip
        if kind == "merged":
            key += (self.rank, self.adapter, self.lora_A._version, self.lora_B._version)
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
            a, b = self.lora_A[self.adapter], self.lora_B[self.adapter]
            delta = b[: self.active_out, : self.rank] @ a[: self.rank, :in_features]
            weight += (delta * self.scale).to(weight.dtype)
        return weight

    @torch.no_grad()
    def quantized_parts(
        self, in_features: int
    ) -> tuple[QuantizedWeight, torch.Tensor, torch.Tensor] | None:
        """How a deployment stores this projection below 16 bits (``None`` at 16): the
        quantised base weight and the active adapter apart, ``(weight, A, B * scale)``, as
        ``llm.memory`` counts it (an adapter merged into quantised weights leaves the grid)."""
        if self.bits >= FULL_PRECISION:
            return None
        weight = quantize(self.weight[: self.active_out, :in_features], self.bits, self.group_size)
        a = self.lora_A[self.adapter, : self.rank, :in_features].clone()
        b = self.lora_B[self.adapter, : self.active_out, : self.rank] * self.scale
        return weight, a, b.clone()

    @torch.no_grad()
    def extract(self, in_channels: int) -> nn.Linear:
        """A plain ``nn.Linear`` of the active sizes, adapter merged, weights copied."""
        linear = nn.Linear(
            in_channels, self.active_out, bias=self.bias is not None, dtype=self.weight.dtype
        )
        linear.weight.copy_(self.merged_weight(in_channels))
        if self.bias is not None:
            linear.bias.copy_(self.bias[: self.active_out])
        return linear

    def extra_repr(self) -> str:
        return (
            f"in={self.in_features}, out={self.active_out}/{self.out_features}, "
            f"rank={self.rank}/{self.max_rank}, bits={self.bits}, "
            f"adapter={self.adapter}/{len(self.lora_A)}"
        )
