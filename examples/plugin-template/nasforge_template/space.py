"""The ``template.mlp`` search space: fully connected classifiers of 8x8 digit images.

An arch is a plain JSON dict, for example::

    {"depth": 2, "width": [32, 64], "activation": "relu", "solver": "sgd", "momentum": 0.9}

``width`` has one entry per hidden layer (its length is ``depth``), and ``momentum`` exists
only when ``solver`` is ``"sgd"`` — a conditional dimension. The space knows nothing about
training: that is the estimator's job.
"""

from __future__ import annotations

from typing import Any

from nasforge import Arch, Categorical, IntRange, PerLayer, SearchSpace
from pydantic import BaseModel, ConfigDict, Field, field_validator

#: The task every arch of this space is built for: 8x8 images, ten digit classes.
N_INPUTS = 64
N_CLASSES = 10


class MLPSpace(SearchSpace):
    """MLP classifiers of 8x8 digits: depth, per-layer width, activation and optimiser."""

    class Options(BaseModel):
        """What an experiment may set under ``space.options``."""

        model_config = ConfigDict(extra="forbid")
        max_depth: int = Field(3, ge=1, le=8, description="most hidden layers an arch has")
        widths: list[int] = Field(
            default_factory=lambda: [16, 32, 64],
            min_length=1,
            description="the width choices of every hidden layer, smallest first",
        )

        @field_validator("widths")
        @classmethod
        def _increasing(cls, widths: list[int]) -> list[int]:
            if any(w < 1 for w in widths) or widths != sorted(set(widths)):
                raise ValueError(f"expected distinct positive widths, smallest first, got {widths}")
            return widths

    def __init__(self, **options: Any):
        # Validating here too means building the space by hand gets the same checks and
        # defaults as building it from an experiment file.
        opts = self.Options.model_validate(options)
        self.max_depth = opts.max_depth
        self.widths = list(opts.widths)
        super().__init__(
            [
                IntRange("depth", 1, opts.max_depth),
                PerLayer("width", opts.widths, length="depth", max_length=opts.max_depth),
                Categorical("activation", ["relu", "tanh"]),
                Categorical("solver", ["sgd", "adam"]),
                Categorical("momentum", [0.0, 0.9], when={"solver": ["sgd"]}),
            ]
        )

    def layer_sizes(self, arch: Arch) -> list[int]:
        """Units of every layer of ``arch``, input and output included."""
        arch = self.validate(arch)
        return [N_INPUTS, *arch["width"], N_CLASSES]
