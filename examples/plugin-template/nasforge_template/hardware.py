"""The ``template.params`` cost model: the parameter count of an arch, computed exactly.

A cost model that needs no network at all: weights and biases follow from the layer sizes.
Models that time a real network receive it as ``subnet`` when the space has a supernet.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from nasforge import Arch, EvalContext, Hardware, Metric
from pydantic import BaseModel, ConfigDict

from .space import MLPSpace


class MLPParams(Hardware):
    """Trainable parameters (weights and biases) of the arch's MLP."""

    class Options(BaseModel):
        """No options: an experiment setting any is told so, naming the field."""

        model_config = ConfigDict(extra="forbid")

    space_types = (MLPSpace,)

    def __init__(self, space: MLPSpace, **options: Any):
        super().__init__(space, **options)  # validated against Options: self.options
        self.metrics = {"params": Metric("params", "", "minimize", "trainable parameters")}

    def measure(self, arch: Arch, subnet: object, context: EvalContext) -> dict[str, float]:
        sizes = self.space.layer_sizes(arch)
        count = sum((fan_in + 1) * fan_out for fan_in, fan_out in pairwise(sizes))
        return {"params": float(count)}
