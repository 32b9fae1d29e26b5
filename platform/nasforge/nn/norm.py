"""Elastic batch norm: the active channels are the input's, a prefix of the stored ones.

Weight, bias *and* running statistics are prefix views, so a training-mode forward updates
the running statistics of the active channels in the shared buffers and leaves the others
untouched. ``momentum=None`` gives the cumulative average, as in ``torch.nn.BatchNorm*``
(what :func:`nasforge.nn.bn_recalibrate` uses).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .base import ElasticModule, Side, check_active, permute_


class _ElasticBatchNorm(ElasticModule, _BatchNorm):
    """Shared implementation; a ``_BatchNorm``, so code that finds batch norms by type
    (weight-decay filters, :func:`~nasforge.nn.bn_recalibrate`) finds these too."""

    input_dims: ClassVar[tuple[int, ...]]
    static: ClassVar[type[_BatchNorm]]

    def __init__(self, max_features: int, eps: float = 1e-5, momentum: float | None = 0.1):
        super().__init__(max_features, eps, momentum, affine=True, track_running_stats=True)

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() not in self.input_dims:
            raise ValueError(
                f"{type(self).__name__}: expected a {' or '.join(map(str, self.input_dims))}-D "
                f"input, got {x.dim()}-D"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if c > self.num_features or x.dim() not in self.input_dims:
            self._check_input_dim(x)
            raise ValueError(
                f"{type(self).__name__}: input has {c} channels, more than {self.num_features}"
            )
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else factor
        if c == self.num_features:
            mean, var, weight, bias = self.running_mean, self.running_var, self.weight, self.bias
        else:
            mean, var = self.running_mean[:c], self.running_var[:c]
            weight, bias = self.weight[:c], self.bias[:c]
        return F.batch_norm(x, mean, var, weight, bias, self.training, factor, self.eps)

    @torch.no_grad()
    def extract(self, in_channels: int) -> nn.Module:
        """A ``torch.nn.BatchNorm*`` over ``in_channels`` with copied weights and stats."""
        check_active("in_channels", in_channels, self.num_features)
        w = self.weight
        bn = self.static(
            in_channels, eps=self.eps, momentum=self.momentum, device=w.device, dtype=w.dtype
        )
        bn.weight.copy_(self.weight[:in_channels])
        bn.bias.copy_(self.bias[:in_channels])
        bn.running_mean.copy_(self.running_mean[:in_channels])
        bn.running_var.copy_(self.running_var[:in_channels])
        bn.num_batches_tracked.copy_(self.num_batches_tracked)
        bn.train(self.training)
        return bn

    def permute_channels(self, index: torch.Tensor, side: Side = "out") -> None:
        """Re-order the channels (weight, bias and running statistics alike)."""
        for tensor in (self.weight, self.bias, self.running_mean, self.running_var):
            permute_(tensor, index, 0)


class ElasticBatchNorm1d(_ElasticBatchNorm):
    """Batch norm over ``(N, C)`` or ``(N, C, L)`` inputs with elastic ``C``."""

    input_dims = (2, 3)
    static = nn.BatchNorm1d


class ElasticBatchNorm2d(_ElasticBatchNorm):
    """Batch norm over ``(N, C, H, W)`` inputs with elastic ``C``."""

    input_dims = (4,)
    static = nn.BatchNorm2d


def elastic_batch_norm(dims: int, max_features: int, **kwargs) -> _ElasticBatchNorm:
    """The elastic batch norm for feature maps of ``dims`` (1 or 2) spatial dimensions."""
    if dims not in (1, 2):
        raise ValueError(f"dims must be 1 or 2, got {dims!r}")
    return (ElasticBatchNorm1d if dims == 1 else ElasticBatchNorm2d)(max_features, **kwargs)
