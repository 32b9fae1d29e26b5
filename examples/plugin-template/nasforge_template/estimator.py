"""The ``template.digits_mlp`` estimator: train the arch, report its validation accuracy.

Each evaluation trains a fresh scikit-learn ``MLPClassifier`` shaped by the arch on a fixed,
seeded split of scikit-learn's bundled digits data set (1,797 images) and scores it on the
held-out part — a real (if tiny) architecture evaluation that takes well under a second.

scikit-learn is imported in :meth:`DigitsMLPAccuracy.setup`, not at module level: the core
builds every component on the driver just to validate an experiment, and ``nasforge
plugins`` imports every plugin, so construction and import must stay cheap.
"""

from __future__ import annotations

import warnings
from typing import Any

from nasforge import Arch, Estimator, EvalContext, Metric
from pydantic import BaseModel, ConfigDict, Field

from .space import MLPSpace


class DigitsMLPAccuracy(Estimator):
    """Validation accuracy (fraction correct) of the arch trained on scikit-learn's digits."""

    class Options(BaseModel):
        """What an experiment may set under ``estimators[i].options``."""

        model_config = ConfigDict(extra="forbid")
        max_iter: int = Field(20, ge=1, le=1000, description="training epochs")
        learning_rate: float = Field(0.01, gt=0, le=1, description="initial step size")
        val_fraction: float = Field(0.25, gt=0, lt=1, description="share held out to score")
        seed: int = Field(0, ge=0, description="seeds the split and the weight init")

    space_types = (MLPSpace,)

    def __init__(self, space: MLPSpace, **options: Any):
        super().__init__(space, **options)  # validated against Options: self.options
        self.metrics = {
            "digits_acc": Metric(
                "digits_acc", "", "maximize", "validation accuracy on digits (fraction)"
            ),
        }

    def setup(self, context: EvalContext) -> None:
        """Load and split the data once per worker; ``context.cache`` keeps it for every trial."""
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        images, labels = load_digits(return_X_y=True)
        context.cache["split"] = train_test_split(
            images / 16.0,  # pixel values are 0..16
            labels,
            test_size=self.options["val_fraction"],
            random_state=self.options["seed"],
            stratify=labels,
        )

    def evaluate(self, arch: Arch, context: EvalContext) -> dict[str, float]:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier
        from threadpoolctl import threadpool_limits

        if "split" not in context.cache:
            self.setup(context)
        x_train, x_val, y_train, y_val = context.cache["split"]
        model = MLPClassifier(
            hidden_layer_sizes=tuple(arch["width"]),
            activation=arch["activation"],
            solver=arch["solver"],
            momentum=arch.get("momentum", 0.0),  # only sgd archs have it; adam ignores it
            learning_rate_init=self.options["learning_rate"],
            max_iter=self.options["max_iter"],
            random_state=self.options["seed"],
        )
        # One BLAS thread: results are bit-for-bit repeatable and concurrent trials on one
        # machine do not oversubscribe its cores. Few epochs is the point, so silence the
        # "did not converge" warning.
        with warnings.catch_warnings(), threadpool_limits(limits=1):
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x_train, y_train)
        return {"digits_acc": float(model.score(x_val, y_val))}
