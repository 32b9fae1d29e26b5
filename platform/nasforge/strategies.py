"""Built-in search strategies: Optuna's random, TPE, NSGA-II, NSGA-III and GP samplers.

Registered through the ``nasforge`` entry point like any third-party plugin. Each strategy
is one small class: an ``Options`` model (what the experiment file may set, validated with
its YAML path) and ``sampler(...)``.
"""

from __future__ import annotations

import optuna
from pydantic import BaseModel, ConfigDict, Field

from .hookspecs import hookimpl
from .sdk import Strategy


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RandomStrategy(Strategy):
    """Uniform random sampling of the space (the baseline every strategy must beat)."""

    Options = _Options
    supports_constraints = False

    def sampler(self, space, objectives, seed, constraints_func):
        return optuna.samplers.RandomSampler(seed=seed)


class TPEStrategy(Strategy):
    """Tree-structured Parzen estimator (multivariate, constant liar for parallel trials)."""

    class Options(_Options):
        n_startup_trials: int = Field(10, ge=0)
        n_ei_candidates: int = Field(24, ge=1)
        multivariate: bool = True
        group: bool = True
        constant_liar: bool = True

    def sampler(self, space, objectives, seed, constraints_func):
        return optuna.samplers.TPESampler(
            **self.options, seed=seed, constraints_func=constraints_func
        )


class NSGA2Strategy(Strategy):
    """NSGA-II genetic algorithm (non-dominated sorting, crowding distance)."""

    class Options(_Options):
        population_size: int = Field(50, ge=2)
        mutation_prob: float | None = Field(None, ge=0.0, le=1.0)
        crossover_prob: float = Field(0.9, ge=0.0, le=1.0)
        swapping_prob: float = Field(0.5, ge=0.0, le=1.0)

    def sampler(self, space, objectives, seed, constraints_func):
        return optuna.samplers.NSGAIISampler(
            **self.options, seed=seed, constraints_func=constraints_func
        )


class NSGA3Strategy(Strategy):
    """NSGA-III genetic algorithm (reference-point niching, for three or more objectives)."""

    class Options(_Options):
        population_size: int = Field(50, ge=2)
        mutation_prob: float | None = Field(None, ge=0.0, le=1.0)
        crossover_prob: float = Field(0.9, ge=0.0, le=1.0)
        swapping_prob: float = Field(0.5, ge=0.0, le=1.0)
        dividing_parameter: int = Field(3, ge=1)

    def sampler(self, space, objectives, seed, constraints_func):
        return optuna.samplers.NSGAIIISampler(
            **self.options, seed=seed, constraints_func=constraints_func
        )


class GPStrategy(Strategy):
    """Gaussian-process Bayesian optimisation (log-EI; EHVI-style for several objectives)."""

    class Options(_Options):
        n_startup_trials: int = Field(10, ge=1)
        deterministic_objective: bool = False

    def sampler(self, space, objectives, seed, constraints_func):
        return optuna.samplers.GPSampler(
            **self.options,
            seed=seed,
            constraints_func=constraints_func,
            warn_independent_sampling=False,
        )


@hookimpl
def register_strategies(register):
    register("random", RandomStrategy)
    register("tpe", TPEStrategy)
    register("nsga2", NSGA2Strategy)
    register("nsga3", NSGA3Strategy)
    register("gp", GPStrategy)
