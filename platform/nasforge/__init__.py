"""nasforge: one-shot, hardware-aware neural architecture search on Ray and Optuna.

The SDK a plugin author needs is importable from here: the search-space algebra
(:class:`SearchSpace` and its dimensions), the component types (:class:`Estimator`,
:class:`Hardware`, :class:`Strategy`, :class:`Trainer`, :class:`Supernet`,
:class:`Predictor`), the values the core hands them (:class:`Metric`, :class:`Objective`,
:class:`EvalContext`, :class:`TrainContext`), and :data:`hookimpl` to mark hook
implementations.
"""

from .errors import ArchError, ConfigError, NasforgeError, PluginError, StudyError
from .hookspecs import hookimpl
from .sdk import (
    Component,
    Estimator,
    EvalContext,
    Hardware,
    Metric,
    Objective,
    Predictor,
    Strategy,
    Supernet,
    Task,
    TrainContext,
    Trainer,
)
from .space import Arch, Categorical, Dimension, IntRange, PerLayer, SearchSpace

__version__ = "0.1.0"

__all__ = [
    "Arch",
    "ArchError",
    "Categorical",
    "Component",
    "ConfigError",
    "Dimension",
    "Estimator",
    "EvalContext",
    "Hardware",
    "IntRange",
    "Metric",
    "NasforgeError",
    "Objective",
    "PerLayer",
    "PluginError",
    "Predictor",
    "SearchSpace",
    "Strategy",
    "StudyError",
    "Supernet",
    "Task",
    "TrainContext",
    "Trainer",
    "__version__",
    "hookimpl",
]
