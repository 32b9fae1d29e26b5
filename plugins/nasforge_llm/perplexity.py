"""``llm.perplexity``: held-out perplexity of a sub-network by weight sharing.

Token-weighted, as WikiText-2 perplexities are reported: the negative log-likelihood of
every predicted token of the held-out blocks (each token from those before it in its
block), summed, divided by the number of predicted tokens, exponentiated. Blocks do not
overlap, so every token but a block's first is scored once.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from nasforge import Arch, Estimator, EvalContext, Metric

from .space import LlamaSpace


class PerplexityOptions(BaseModel):
    """Options of ``llm.perplexity``."""

    model_config = ConfigDict(extra="forbid")
    batch_size: int = Field(8, ge=1, description="blocks per forward")
    max_blocks: int | None = Field(None, ge=1, description="score the first N held-out blocks")


def next_token_loss(logits: torch.Tensor, tokens: torch.Tensor, reduction: str = "mean"):
    """Cross-entropy of each token given those before it (the last logit predicts nothing)."""
    return F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
        tokens[:, 1:].reshape(-1),
        reduction=reduction,
    )


@torch.no_grad()
def token_nll(model: Any, blocks: torch.Tensor, batch_size: int, device: str) -> tuple[float, int]:
    """Summed negative log-likelihood (nats) of the predicted tokens of ``blocks`` under
    ``model`` (a callable from token ids to logits), and how many tokens that is."""
    total, count = 0.0, 0
    for start in range(0, len(blocks), batch_size):
        batch = blocks[start : start + batch_size].to(device)
        total += next_token_loss(model(batch), batch, reduction="sum").item()
        count += batch[:, 1:].numel()
    return total, count


class PerplexityEstimator(Estimator):
    """Held-out perplexity (and mean token NLL) of a sub-network by weight sharing."""

    Options = PerplexityOptions
    requires_supernet = True
    requires_task = True
    space_types = (LlamaSpace,)

    def __init__(self, space: LlamaSpace, **options: Any):
        super().__init__(space, **options)
        self.config = PerplexityOptions(**options)
        self.metrics = {
            "perplexity": Metric("perplexity", "", "minimize", "held-out perplexity"),
            "nll": Metric("nll", "nats", "minimize", "mean held-out negative log-likelihood"),
        }

    def setup(self, context: EvalContext) -> None:
        task = context.task
        if hasattr(task, "use_cache_dir") and context.run_dir is not None:
            task.use_cache_dir(context.run_dir / "data")
        blocks, _ = task.arrays("val")
        if self.config.max_blocks:
            blocks = blocks[: self.config.max_blocks]
        context.cache["heldout"] = blocks

    def evaluate(self, arch: Arch, context: EvalContext) -> dict[str, float]:
        context.supernet.set_active(arch)
        context.supernet.eval()
        return self.evaluate_subnet(context.supernet, arch, context)

    def evaluate_subnet(self, subnet: Any, arch: Arch, context: EvalContext) -> dict[str, float]:
        total, count = token_nll(
            subnet, context.cache["heldout"], self.config.batch_size, context.device
        )
        nll = total / count
        return {"perplexity": math.exp(nll), "nll": nll}
