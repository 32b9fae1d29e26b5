"""Channel-importance sorting: Once-for-All's re-organisation of a block's channels.

Before the elastic-width phases, each block's expanded channels are re-ordered so that
the most important ones (largest L1 norm of the weights that *consume* them) come first;
a narrower subnet keeps a prefix, so it keeps the important channels. The same permutation
is applied to every tensor touching those channels — the conv that produces them (output
rows), every op that carries them channel-wise (batch norm weights and running stats, a
depthwise conv, squeeze-and-excitation) and the conv that consumes them (input columns) —
so the network computes the same function at full width.

Modules take part through ``permute_channels(index, side)`` (every elastic op has it);
plain ``torch.nn`` convolutions, linears and batch norms are handled here too. Optimizer
state (momentum) is not permuted: sort before building the optimizer of a phase.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from .base import ElasticModule, Side, permute_, permute_weight_and_bias


def l1_importance(weight: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """The L1 norm of ``weight`` for each index along ``dim`` (summed over other axes)."""
    other = [d for d in range(weight.dim()) if d != dim]
    return weight.detach().abs().sum(dim=other) if other else weight.detach().abs()


def permute_module_channels(module: nn.Module, index: torch.Tensor, side: Side) -> None:
    """Re-order ``module``'s channels on ``side`` (``"out"`` for what it produces or
    carries, ``"in"`` for what it consumes) by ``index``, in place."""
    if isinstance(module, ElasticModule):
        module.permute_channels(index, side)
    elif isinstance(module, _BatchNorm):
        for tensor in (module.weight, module.bias, module.running_mean, module.running_var):
            if tensor is not None:
                permute_(tensor, index, 0)
    elif isinstance(module, _ConvNd | nn.Linear):
        depthwise = isinstance(module, _ConvNd) and module.groups > 1
        if depthwise and module.groups != module.in_channels:
            raise TypeError("grouped (non-depthwise) convolutions cannot be re-ordered")
        permute_weight_and_bias(module.weight, module.bias, index, side, depthwise=depthwise)
    else:
        raise TypeError(f"cannot re-order the channels of a {type(module).__name__}")


def reorder_channels(
    index: torch.Tensor,
    producers: Iterable[nn.Module] = (),
    carriers: Iterable[nn.Module] = (),
    consumers: Iterable[nn.Module] = (),
) -> None:
    """Apply the permutation ``index`` to one set of channels everywhere it appears."""
    for module in (*producers, *carriers):
        permute_module_channels(module, index, "out")
    for module in consumers:
        permute_module_channels(module, index, "in")


def sort_channels(
    producers: Iterable[nn.Module] = (),
    carriers: Iterable[nn.Module] = (),
    consumers: Sequence[nn.Module] = (),
    *,
    nested: Sequence[int] = (),
) -> torch.Tensor:
    """Sort one set of channels by importance, most important first, and return the
    permutation applied (``new[i] = old[index[i]]``).

    Importance is the L1 norm of the ``consumers``' weights over their input channels
    (summed over consumers). ``nested`` lists prefix widths whose members must stay inside
    them (Once-for-All's later expand phase keeps the channels of the widths already
    trained): channels are then sorted within each band ``[0, n1), [n1, n2), ...``.
    """
    consumers = list(consumers)
    if not consumers:
        raise ValueError("sort_channels needs at least one consumer to measure importance")
    importance = sum(l1_importance(m.weight, 1) for m in consumers)
    total = importance.numel()
    bounds = [0, *sorted({n for n in nested if 0 < n < total}), total]
    index = torch.cat(
        [
            lo + torch.argsort(importance[lo:hi], descending=True, stable=True)
            for lo, hi in itertools.pairwise(bounds)
        ]
    )
    reorder_channels(index, producers, carriers, consumers)
    return index
