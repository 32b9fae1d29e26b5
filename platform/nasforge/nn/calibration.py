"""Batch-norm re-calibration: running statistics recomputed for the active subnet.

A subnet shares its batch-norm weights with the supernet but not the statistics of its
own activations, so the estimator re-computes them before scoring each subnet (Once-for-
All, BigNAS): reset, then forward a fixed calibration set with batch statistics and keep
their exact cumulative average (``momentum=None``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def _input_of(batch: Any) -> torch.Tensor:
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, Sequence) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    raise TypeError(
        f"bn_recalibrate: a batch must be a tensor or an (inputs, ...) pair, got {type(batch).__name__}"
    )


def bn_recalibrate(model: nn.Module, batches: Iterable[Any]) -> int:
    """Reset every batch norm of ``model`` and set its running statistics to the exact
    average of the batch statistics over ``batches`` (tensors, or ``(x, y)`` pairs).

    Runs under ``torch.no_grad()`` with the batch norms in train mode and every other
    module in eval mode (so dropout does not perturb the statistics); afterwards each
    module's mode and each batch norm's momentum are restored. Inputs are moved to the
    model's device. Returns the number of batches used; no batches is a ``ValueError``
    raised before anything is reset.
    """
    iterator = iter(batches)
    first = next(iterator, None)
    if first is None:
        raise ValueError("bn_recalibrate: no batches were given")
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    if not norms:
        return 0
    modes = [(m, m.training) for m in model.modules()]
    momenta = [(m, m.momentum) for m in norms]
    param = next(model.parameters(), None)
    device = param.device if param is not None else None
    count = 0
    try:
        model.eval()
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        with torch.no_grad():
            for batch in itertools.chain([first], iterator):
                x = _input_of(batch)
                model(x if device is None else x.to(device))
                count += 1
    finally:
        for m, momentum in momenta:
            m.momentum = momentum
        for m, training in modes:
            m.training = training
    return count
