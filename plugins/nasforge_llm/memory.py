"""``llm.memory``: parameters, weight memory at each layer's bits, and KV-cache memory of an
arch, computed exactly from the space's sizes (``free``: no supernet, no weights needed, so
strategies such as ``ehvi`` use them exactly).

Counted as a deployed model stores them:

- every kept layer's seven projections at the layer's ``bits``; a quantised projection
  also stores one 16-bit scale and one 16-bit zero point per group of ``group_size``
  inputs per output row, and keeps its LoRA adapter apart in 16 bits (it cannot be merged
  into quantised weights without leaving the grid); at 16 bits the adapter is merged;
- the embeddings (and the output head unless tied) and the RMSNorm weights in 16 bits;
- the KV cache at ``context_length`` tokens and ``batch`` sequences: keys and values of
  every kept layer's KV heads, ``kv_bits`` each.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from nasforge import Arch, EvalContext, Hardware, Metric

from .space import ADAPTER_GROUP, LlamaSpace

MB = 1e6
HALF = 2  # bytes of a 16-bit number


class LlamaMemory(Hardware):
    """Parameters (M), weight memory (MB) and KV-cache memory (MB) of an arch."""

    class Options(BaseModel):
        """What an experiment may set under ``hardware[].options``."""

        model_config = ConfigDict(extra="forbid")
        context_length: int = Field(2048, ge=1, description="tokens held in the KV cache")
        batch: int = Field(1, ge=1, description="sequences held in the KV cache")
        kv_bits: int = Field(16, ge=1, le=32, description="bits per cached key/value")

    space_types: ClassVar[tuple[type, ...]] = (LlamaSpace,)
    free: ClassVar[bool] = True

    def __init__(self, space: LlamaSpace, **options: Any):
        super().__init__(space, **options)
        self.metrics = {
            m.name: m
            for m in (
                Metric("params_m", "M", "minimize", "parameters (adapters merged)"),
                Metric("weight_mb", "MB", "minimize", "weights as stored at each layer's bits"),
                Metric("kv_cache_mb", "MB", "minimize", "KV cache at the context length"),
            )
        }

    def measure(self, arch: Arch, subnet: Any, context: EvalContext) -> dict[str, float]:
        """The three metrics of ``arch`` (``subnet`` is not needed)."""
        space: LlamaSpace = self.space
        arch = space.canonical(arch)
        sizes = space.sizes
        hidden, head_dim = sizes.hidden_size, sizes.head_dim
        params = 0
        weight_bytes = 0.0
        kv_heads = 0
        for layer in space.kept_layers(arch):
            bits = arch["bits"][layer]
            for name, (out, inputs) in space.projection_shapes(arch, layer).items():
                params += out * inputs
                rank = arch[ADAPTER_GROUP[name]][layer]
                weight_bytes += projection_bytes(out, inputs, bits, rank, space)
            params += 2 * hidden  # the two RMSNorm weights
            weight_bytes += 2 * hidden * HALF
            kv_heads += arch["kv_groups"][layer]
        embedding = sizes.vocab_size * hidden
        tied = sizes.tied_embeddings
        params += embedding * (1 if tied else 2) + hidden  # embeddings, head, final norm
        weight_bytes += (embedding * (1 if tied else 2) + hidden) * HALF
        o = self.options
        kv_bytes = 2 * kv_heads * head_dim * o["context_length"] * o["batch"] * o["kv_bits"] / 8
        return {
            "params_m": params / 1e6,
            "weight_mb": weight_bytes / MB,
            "kv_cache_mb": kv_bytes / MB,
        }


def projection_bytes(out: int, inputs: int, bits: int, rank: int, space: LlamaSpace) -> float:
    """Bytes one projection is stored in: merged at 16 bits; quantised weights with a 16-bit
    scale and zero point per group, and the adapter apart in 16 bits, below."""
    if bits >= 16:
        return out * inputs * HALF
    groups = out * math.ceil(inputs / space.group_size)
    adapter = rank * (inputs + out) * HALF
    return out * inputs * bits / 8 + groups * 2 * HALF + adapter
