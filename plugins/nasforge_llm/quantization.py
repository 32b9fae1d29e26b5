"""Group-wise weight quantisation: the fake quantiser the supernet trains with and the
packed format an export stores, which are the same numbers.

A weight matrix is quantised in groups of ``group_size`` consecutive inputs per output row,
asymmetric min-max: ``code = round((w - low) / scale)`` in ``[0, 2**bits - 1]``, with
``scale = (high - low) / (2**bits - 1)``. ``scale`` and ``low`` are rounded to 16-bit floats
before use, so that a packed export (codes, plus one fp16 scale and one fp16 minimum per
group, what ``llm.memory`` counts) de-quantises to exactly the weights the supernet scored.
A partial last group is padded with copies of its last column (the padding never widens
that group's range).

Codes of 2 to 8 bits are packed densely, ``bits`` bits per weight, least significant first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

FULL_PRECISION = 16


def _groups(weight: torch.Tensor, group_size: int) -> torch.Tensor:
    rows, cols = weight.shape
    pad = (-cols) % group_size
    padded = torch.cat([weight, weight[:, -1:].expand(rows, pad)], 1) if pad else weight
    return padded.reshape(rows, -1, group_size)


def quantize_groups(
    weight: torch.Tensor, bits: int, group_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(codes, scale, low)`` of ``weight`` (no gradient): codes ``(rows, groups,
    group_size)`` as floats, scale and low ``(rows, groups, 1)``, fp16-representable."""
    groups = _groups(weight.detach(), group_size)
    low = groups.amin(-1, keepdim=True)
    high = groups.amax(-1, keepdim=True)
    levels = 2**bits - 1
    scale = ((high - low).clamp(min=1e-8) / levels).half().float().clamp(min=1e-7)
    low = low.half().float()
    codes = ((groups - low) / scale).round().clamp(0, levels)
    return codes, scale, low


def fake_quantize(weight: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    """``weight`` rounded to ``2**bits`` levels per group of ``group_size`` inputs
    (asymmetric min-max), with the gradient of the identity; unchanged at 16 bits."""
    if bits >= FULL_PRECISION:
        return weight
    rows, cols = weight.shape
    codes, scale, low = quantize_groups(weight.float(), bits, group_size)
    quantized = (codes * scale + low).reshape(rows, -1)[:, :cols].to(weight.dtype)
    return weight + (quantized - weight).detach()


@dataclass
class QuantizedWeight:
    """One matrix quantised: ``codes`` (uint8, one per weight, ``(rows, groups *
    group_size)`` with the padding), ``scale`` and ``low`` (fp16, ``(rows, groups)``)."""

    codes: torch.Tensor
    scale: torch.Tensor
    low: torch.Tensor
    bits: int
    shape: tuple[int, int]
    group_size: int

    def dequantize(self) -> torch.Tensor:
        """The float32 weight (what :func:`fake_quantize` gives, to a rounding error)."""
        rows, cols = self.shape
        codes = self.codes.float().reshape(rows, -1, self.group_size)
        weight = codes * self.scale.float()[..., None] + self.low.float()[..., None]
        return weight.reshape(rows, -1)[:, :cols].contiguous()


def quantize(weight: torch.Tensor, bits: int, group_size: int) -> QuantizedWeight:
    """``weight`` as codes, scales and minima (``bits`` from 2 to 8)."""
    if not 2 <= bits <= 8:
        raise ValueError(f"quantize: bits must be 2 to 8, got {bits}")
    codes, scale, low = quantize_groups(weight.float(), bits, group_size)
    return QuantizedWeight(
        codes=codes.reshape(weight.shape[0], -1).to(torch.uint8),
        scale=scale.squeeze(-1).half(),
        low=low.squeeze(-1).half(),
        bits=bits,
        shape=(int(weight.shape[0]), int(weight.shape[1])),
        group_size=group_size,
    )


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """``codes`` (uint8, each below ``2**bits``) packed densely: ``bits`` bits per code,
    least significant first, into a flat uint8 tensor."""
    flat = codes.reshape(-1).numpy()
    stream = np.unpackbits(flat[:, None], axis=1, bitorder="little")[:, :bits]
    return torch.from_numpy(np.packbits(stream.reshape(-1), bitorder="little"))


def unpack_codes(packed: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """The ``count`` codes :func:`pack_codes` packed, as a flat uint8 tensor."""
    stream = np.unpackbits(packed.numpy(), bitorder="little")[: count * bits]
    codes = np.packbits(stream.reshape(count, bits), axis=1, bitorder="little")
    return torch.from_numpy(codes.reshape(-1))
