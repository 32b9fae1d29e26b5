"""``nasforge.nn``: elastic building blocks for weight-sharing supernets.

An *elastic op* stores the weights of its largest configuration and runs any smaller one
by slicing them in place (prefix views; no copy of a parameter per forward). Its parent
block sets the active output size (``active_out_channels``, ``active_out_features``) and
kernel size (``active_kernel_size``); the active input size is read from the input tensor,
so widths propagate through a network by themselves, as in Once-for-All. Every op has
``extract(in_channels)``, returning the plain static ``torch.nn`` module (``Conv1d``,
``Conv2d``, ``Linear``, ``BatchNorm1d``/``2d``, :class:`SqueezeExcite`) of its active
configuration with copied weights, and ``permute_channels(index, side)`` for importance
sorting. A supernet is usually these ops composed into blocks::

    from nasforge.nn import ElasticConv2d, ElasticBatchNorm2d, make_divisible

    conv = ElasticConv2d(64, 128, kernel_sizes=[3, 5, 7], stride=2)
    bn = ElasticBatchNorm2d(128)
    conv.active_out_channels, conv.active_kernel_size = 96, 5
    y = bn(conv(x))                    # x may have any number of channels <= 64
    static = torch.nn.Sequential(conv.extract(x.shape[1]), bn.extract(96))

What lives where:

- :mod:`~nasforge.nn.conv` — :class:`ElasticConv1d`, :class:`ElasticConv2d`,
  :class:`ElasticDepthwiseConv1d`, :class:`ElasticDepthwiseConv2d` (kernel size by
  Once-for-All kernel transformation or centre crop);
- :mod:`~nasforge.nn.linear` — :class:`ElasticLinear`;
- :mod:`~nasforge.nn.norm` — :class:`ElasticBatchNorm1d`, :class:`ElasticBatchNorm2d`
  (running statistics sliced with the weights);
- :mod:`~nasforge.nn.squeeze_excite` — :class:`ElasticSqueezeExcite` and the static
  :class:`SqueezeExcite`;
- :mod:`~nasforge.nn.importance` — :func:`sort_channels` and friends (re-order channels
  by importance without changing the function);
- :mod:`~nasforge.nn.calibration` — :func:`bn_recalibrate` (batch-norm statistics of the
  active subnet);
- :mod:`~nasforge.nn.base` — :class:`ElasticModule` (the base every op derives from) and
  :func:`make_divisible`;
- :mod:`~nasforge.nn.schedules` — :func:`warmup_cosine` (the trainers' learning-rate
  schedule).
"""

from .base import ElasticModule, Side, make_divisible
from .calibration import bn_recalibrate
from .conv import (
    ElasticConv1d,
    ElasticConv2d,
    ElasticDepthwiseConv1d,
    ElasticDepthwiseConv2d,
    KernelMode,
    centre_crop,
    elastic_conv,
    eval_weight_cache,
)
from .importance import l1_importance, permute_module_channels, reorder_channels, sort_channels
from .linear import ElasticLinear
from .norm import ElasticBatchNorm1d, ElasticBatchNorm2d, elastic_batch_norm
from .schedules import warmup_cosine
from .squeeze_excite import ElasticSqueezeExcite, SqueezeExcite

__all__ = [
    "ElasticBatchNorm1d",
    "ElasticBatchNorm2d",
    "ElasticConv1d",
    "ElasticConv2d",
    "ElasticDepthwiseConv1d",
    "ElasticDepthwiseConv2d",
    "ElasticLinear",
    "ElasticModule",
    "ElasticSqueezeExcite",
    "KernelMode",
    "Side",
    "SqueezeExcite",
    "bn_recalibrate",
    "centre_crop",
    "elastic_batch_norm",
    "elastic_conv",
    "eval_weight_cache",
    "l1_importance",
    "make_divisible",
    "permute_module_channels",
    "reorder_channels",
    "sort_channels",
    "warmup_cosine",
]
