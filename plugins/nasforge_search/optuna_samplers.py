"""The strategies that are one Optuna sampler each: random, TPE, NSGA-II, NSGA-III, GP.

Each strategy is one small class: an ``Options`` model (what the experiment file may set,
validated with its YAML path) and the sampler class it builds from them.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import optuna
from pydantic import BaseModel, ConfigDict, Field

from nasforge import Strategy


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OptunaStrategy(Strategy):
    """A strategy that is one Optuna sampler class, built from its validated options."""

    Options = _Options
    sampler_class: ClassVar[type[optuna.samplers.BaseSampler]]
    fixed_kwargs: ClassVar[dict[str, Any]] = {}

    def sampler(self, space, objectives, seed):
        # Optuna flags options such as TPE's multivariate/group/constant_liar as
        # experimental on every construction; they are documented choices here, not news
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return self.sampler_class(**self.options, **self.fixed_kwargs, seed=seed)


class RandomStrategy(OptunaStrategy):
    """Uniform random sampling of the space (the baseline every strategy must beat)."""

    sampler_class = optuna.samplers.RandomSampler


class TPEStrategy(OptunaStrategy):
    """Tree-structured Parzen estimator (multivariate, constant liar for parallel trials)."""

    class Options(_Options):
        n_startup_trials: int = Field(10, ge=0)
        n_ei_candidates: int = Field(24, ge=1)
        multivariate: bool = True
        group: bool = True
        constant_liar: bool = True

    sampler_class = optuna.samplers.TPESampler


class NSGA2Strategy(OptunaStrategy):
    """NSGA-II genetic algorithm (non-dominated sorting, crowding distance)."""

    class Options(_Options):
        population_size: int = Field(50, ge=2)
        mutation_prob: float | None = Field(None, ge=0.0, le=1.0)
        crossover_prob: float = Field(0.9, ge=0.0, le=1.0)
        swapping_prob: float = Field(0.5, ge=0.0, le=1.0)

    sampler_class = optuna.samplers.NSGAIISampler


class NSGA3Strategy(OptunaStrategy):
    """NSGA-III genetic algorithm (reference-point niching, for three or more objectives)."""

    class Options(NSGA2Strategy.Options):
        dividing_parameter: int = Field(3, ge=1)

    sampler_class = optuna.samplers.NSGAIIISampler


class GPStrategy(OptunaStrategy):
    """Gaussian-process Bayesian optimisation (log-EI; EHVI-style for several objectives)."""

    class Options(_Options):
        n_startup_trials: int = Field(10, ge=1)
        deterministic_objective: bool = False

    sampler_class = optuna.samplers.GPSampler
    fixed_kwargs = {"warn_independent_sampling": False}
