"""Classification metrics shared by training (per-epoch validation) and the estimator."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch


def top_k_accuracy(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    ks: Sequence[int] = (1,),
    batch_size: int = 512,
    device: Any = "cpu",
) -> dict[int, float]:
    """For each ``k`` in ``ks``, the percentage of samples whose label is among ``model``'s
    ``k`` highest logits — all from one pass over the data."""
    correct = dict.fromkeys(ks, 0)
    with torch.inference_mode():
        for i in range(0, len(y), batch_size):
            logits = model(x[i : i + batch_size].to(device))
            hits = logits.topk(max(ks), dim=1).indices.cpu() == y[i : i + batch_size, None]
            for k in ks:
                correct[k] += int(hits[:, :k].any(dim=1).sum())
    return {k: 100.0 * c / max(1, len(y)) for k, c in correct.items()}
