"""``cnn.accuracy``: top-1 (and top-5) validation accuracy of a subnet by weight sharing.

Before each subnet is scored, its batch-norm statistics are re-computed on a fixed
calibration subset of the training data (Once-for-All's ``set_running_statistics``): the
supernet's running statistics were accumulated over many subnets and fit none of them.
The task's data and the supernet stay cached in the worker; nothing is reloaded per trial.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field

from nasforge import Estimator, EvalContext, Metric
from nasforge.nn import bn_recalibrate

from .metrics import top_k_accuracy
from .training import fit_input


class AccuracyOptions(BaseModel):
    """Options of ``cnn.accuracy``."""

    model_config = ConfigDict(extra="forbid")

    calibration_size: int = Field(
        256, ge=1, description="samples of the calib split used to re-calibrate batch norm"
    )
    calibration_batch_size: int = Field(256, ge=1)
    batch_size: int = Field(512, ge=1, description="validation batch size")
    val_size: int | None = Field(None, ge=1, description="score on the first N val samples")


class AccuracyEstimator(Estimator):
    """Top-1 (and top-5 where there are more than 5 classes) validation accuracy [%] of a
    subnet by weight sharing, batch norm re-calibrated per subnet."""

    Options = AccuracyOptions
    requires_supernet = True
    requires_task = True

    def __init__(self, space, **options):
        super().__init__(space, **options)
        self.config = AccuracyOptions(**options)
        classes = getattr(space, "num_classes", None)
        self.metrics = {
            "top1": Metric("top1", "%", "maximize", "top-1 validation accuracy"),
        }
        if classes is None or classes > 5:
            self.metrics["top5"] = Metric("top5", "%", "maximize", "top-5 validation accuracy")

    def setup(self, context: EvalContext) -> None:
        task = context.task
        x, y = task.arrays("val")
        if self.config.val_size:
            x, y = x[: self.config.val_size], y[: self.config.val_size]
        cx, _ = task.arrays("calib")
        cx = cx[: self.config.calibration_size]
        context.cache["val"] = (x.to(context.device), y)
        context.cache["calib"] = cx.to(context.device)

    def prepare(self, arch, context: EvalContext) -> None:
        shape = self.space.input_shape(arch)
        calib = context.cache["calib"]
        size = self.config.calibration_batch_size
        batches = [fit_input(calib[i : i + size], shape) for i in range(0, len(calib), size)]
        bn_recalibrate(context.supernet, batches)
        context.supernet.eval()

    def evaluate(self, arch, context: EvalContext) -> dict[str, float]:
        return self.evaluate_subnet(context.supernet, arch, context)

    def evaluate_subnet(self, subnet, arch, context: EvalContext) -> dict[str, float]:
        shape = self.space.input_shape(arch)
        x, y = context.cache["val"]

        def forward(xb: torch.Tensor) -> torch.Tensor:
            return subnet(fit_input(xb, shape))

        # top-5 of a task with 5 classes or fewer is every sample: report top-1 there
        ks = (1, 5) if "top5" in self.metrics and context.task.num_classes > 5 else (1,)
        scores = top_k_accuracy(
            forward, x, y, ks=ks, batch_size=self.config.batch_size, device=context.device
        )
        out = {"top1": scores[1]}
        if "top5" in self.metrics:
            out["top5"] = scores.get(5, scores[1])
        return out
