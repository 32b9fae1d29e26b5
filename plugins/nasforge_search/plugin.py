"""The ``nasforge_search`` plugin's hooks: every built-in strategy and predictor by name.

Registered through the ``nasforge`` entry-point group, exactly as a third party's plugin
is; nothing in the core refers to these names except the default ``search.strategy``.
"""

from __future__ import annotations

from nasforge import RegisterPredictor, RegisterStrategy, hookimpl

from .ehvi import EHVIStrategy
from .linas import LINASStrategy
from .optuna_samplers import GPStrategy, NSGA2Strategy, NSGA3Strategy, RandomStrategy, TPEStrategy
from .predictors import (
    GBTPredictor,
    GPPredictor,
    KernelRidgePredictor,
    MeanPredictor,
    MLPPredictor,
    RidgePredictor,
    SVRPredictor,
)


@hookimpl
def register_strategies(register: RegisterStrategy) -> None:
    register("random", RandomStrategy)
    register("tpe", TPEStrategy)
    register("nsga2", NSGA2Strategy)
    register("nsga3", NSGA3Strategy)
    register("gp", GPStrategy)
    register("linas", LINASStrategy)
    register("ehvi", EHVIStrategy)


@hookimpl
def register_predictors(register: RegisterPredictor) -> None:
    register("mean", MeanPredictor)
    register("ridge", RidgePredictor)
    register("svr", SVRPredictor)
    register("kernel_ridge", KernelRidgePredictor)
    register("gbt", GBTPredictor)
    register("mlp", MLPPredictor)
    register("gp", GPPredictor)
