"""Multiply-accumulates and parameters counted on the model actually built (``hw.macs``).

MACs are counted by running one forward at batch size 1 under PyTorch's
:class:`~torch.utils.flop_counter.FlopCounterMode`, which sees every aten operator the
forward dispatches, so functional code (``F.linear``, ``matmul``, attention) counts as
well as modules do. MACs are its FLOPs / 2; it counts matrix products and convolutions
(``mm``, ``addmm``, ``bmm``, ``baddbmm``, ``convolution``, scaled-dot-product attention on
CPU and GPU), the usual convention for NAS MACs (Once-for-All, BigNAS): bias additions,
normalisation, activations, pooling and element-wise ops are not counted. A grouped or
depthwise convolution counts ``C_out * prod(out spatial) * C_in / groups * prod(kernel)``.

The counter is a ``TorchDispatchMode``: its first use in a process imports
``torch._dynamo`` (a few seconds, once).

Parameters are the distinct ``nn.Parameter`` elements (shared weights once); buffers such
as batch-norm running statistics are not parameters.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nasforge import Arch, EvalContext, Metric

from .base import SubnetHardware, SubnetOptions


def _attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of scaled-dot-product attention: ``Q @ K^T`` then ``softmax @ V``."""
    heads = math.prod(query_shape[:-2])
    queries, depth = query_shape[-2:]
    return 2 * heads * queries * key_shape[-2] * (depth + value_shape[-1])


#: formulas PyTorch's counter lacks: the CPU kernel of scaled-dot-product attention
_EXTRA_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _attention_flops}


def count_macs(module: nn.Module, inputs: Any) -> int:
    """Multiply-accumulates of one forward ``module(inputs)`` (FLOPs / 2, see module doc)."""
    counter = FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS)
    with torch.inference_mode(), counter:
        module(inputs)
    return counter.get_total_flops() // 2


def count_params(module: nn.Module) -> int:
    """Distinct parameter elements of ``module`` (buffers excluded)."""
    return sum(p.numel() for p in module.parameters())


class MacsModel(SubnetHardware):
    """MACs (batch size 1) and parameters of the built subnet, in millions."""

    Options = SubnetOptions
    METRICS = {
        "macs_m": Metric(
            "macs_m", "M", "minimize", "multiply-accumulates of one sample (conv/linear/matmul)"
        ),
        "params_m": Metric("params_m", "M", "minimize", "parameters (millions)"),
    }

    def measure_subnet(self, arch: Arch, subnet: nn.Module, context: EvalContext):
        """``macs_m`` and ``params_m`` of ``subnet``, counted where it already is."""
        tensors = [*subnet.parameters(), *subnet.buffers()]
        device = str(tensors[0].device) if tensors else "cpu"
        x = self.input_for(arch, context, batch_size=1, device=device)
        return {
            "macs_m": count_macs(subnet, x) / 1e6,
            "params_m": count_params(subnet) / 1e6,
        }
