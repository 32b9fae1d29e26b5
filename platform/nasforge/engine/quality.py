"""A supernet's quality while it trains: what a recipe sweep ranks recipes by.

:class:`SupernetQuality` scores fixed archs (spread over the space) with the experiment's
own estimators — each arch prepared as the estimators prepare it (batch-norm
re-calibration…) — and returns the mean of one quality metric; the supernet's training
state (batch-norm running statistics, train mode, active arch) is restored afterwards so
scoring never changes what is trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..plan import Plan
from ..sdk import EvalContext


class SupernetQuality:
    """``quality(supernet) -> float``: mean ``metric`` over ``archs`` by weight sharing."""

    def __init__(
        self, plan: Plan, archs: list[dict[str, Any]], metric: str, device: str, run_dir: Path
    ):
        self.plan, self.archs, self.metric = plan, archs, metric
        self.device, self.run_dir = device, Path(run_dir)
        self.contexts: list[EvalContext] | None = None

    def __call__(self, supernet: Any) -> float:
        import torch

        if self.contexts is None:
            self.contexts = []
            for estimator in self.plan.estimators:
                context = EvalContext(
                    run_dir=self.run_dir, device=self.device, supernet=supernet, task=self.plan.task
                )
                estimator.setup(context)
                self.contexts.append(context)
        state = supernet.state_dict()
        saved = {k: v.clone() for k, v in state.items() if "running" in k or "num_batches" in k}
        was_training = supernet.training
        values = []
        try:
            for arch in self.archs:
                supernet.set_active(arch)
                metrics: dict[str, float] = {}
                for estimator, context in zip(self.plan.estimators, self.contexts, strict=True):
                    context.supernet = supernet
                    estimator.prepare(arch, context)
                    with torch.no_grad():
                        metrics.update(estimator.evaluate(arch, context))
                values.append(float(metrics[self.metric]))
        finally:
            with torch.no_grad():
                for k, v in saved.items():
                    state[k].copy_(v)
            supernet.train(was_training)
        return sum(values) / len(values)


#: the metric a training run reports each epoch when it is given archs to score
QUALITY = "supernet_quality"


def supernet_quality(
    plan: Plan, score: dict[str, Any] | None, device: str, run_dir: str
) -> SupernetQuality | None:
    """The :class:`SupernetQuality` a run's ``score`` asks for (``{"archs", "metric"}``)."""
    if not score:
        return None
    return SupernetQuality(plan, score["archs"], score["metric"], device, Path(run_dir))
