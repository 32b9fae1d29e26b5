"""nasforge: one-shot, hardware-aware neural architecture search on Ray and Optuna.

This module is the whole SDK a plugin imports (with :mod:`nasforge.nn`, the elastic
PyTorch ops for supernets, and :mod:`nasforge.testing`, the conformance suite):

- the search-space algebra: :class:`SearchSpace` (and :class:`GroupedSpace`, whose dimension
  groups :meth:`~GroupedSpace.restrict` narrows), its dimensions (:class:`Categorical`,
  :class:`IntRange`, :class:`PerLayer`, :class:`Dimension`) and :data:`Arch`;
- the component types and their one constructor convention (:class:`Configurable`):
  :class:`Estimator`, :class:`Hardware`, :class:`Strategy`, :class:`Trainer`,
  :class:`Task`, :class:`Supernet` (and :class:`SubnetFormats`), :class:`Predictor`, :class:`Tabular`, :class:`Baselines`
  (and :class:`Baseline`);
- the values the core hands them: :class:`Metric`, :class:`Objective`,
  :class:`EvalContext`, :class:`TrainContext`, :class:`FreeMetrics`;
- the hooks: :data:`hookimpl`, the typed ``register`` callbacks (:class:`RegisterSpace`, …)
  and :class:`lazy` factories; the registry (:func:`registry`, :func:`build_predictor`);
- Pareto maths (:func:`pareto_mask`, :func:`non_dominated_ranks`, :func:`hypervolume`, …)
  and helpers: :func:`load_checkpoint`, :func:`cpu_name`, :func:`local_run_dir` (a run
  directory, a path or a cloud URI, as a local folder); an experiment resolved to plugin
  objects (:class:`Plan`, :func:`load_plan`, for commands a plugin adds); the errors;
- an experiment run end to end from Python (:func:`run_experiment`, :func:`with_budget`,
  :class:`RunResult` of :class:`TrialRecord` values), which the pytest plugin
  (:mod:`nasforge.pytest_plugin`: fixtures ``nasforge_ray`` and ``run_experiment``) uses.

Names that pull in heavier libraries (Optuna, moocore, torch) are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from .devices import cpu_name
from .errors import ArchError, ConfigError, NasforgeError, PluginError, StudyError
from .hookspecs import (
    RegisterCommand,
    RegisterEstimator,
    RegisterHardware,
    RegisterPredictor,
    RegisterSpace,
    RegisterStrategy,
    RegisterTask,
    RegisterTrainer,
    hookimpl,
)
from .plugins import Registry, build_predictor, lazy, registry
from .sdk import (
    Baseline,
    Baselines,
    Component,
    Configurable,
    Estimator,
    EvalContext,
    Hardware,
    Metric,
    Objective,
    Predictor,
    Strategy,
    SubnetFormats,
    Supernet,
    Tabular,
    Task,
    TrainContext,
    Trainer,
)
from .space import Arch, Categorical, Dimension, GroupedSpace, IntRange, PerLayer, SearchSpace

__version__ = "0.1.0"

#: public names imported on first use: ``name -> (module, attribute)``
_LAZY = {
    "FreeMetrics": (".free_metrics", "FreeMetrics"),
    "Plan": (".plan", "Plan"),
    "load_plan": (".plan", "load_plan"),
    "run_experiment": (".runner", "run_experiment"),
    "with_budget": (".runner", "with_budget"),
    "RunResult": (".runner", "RunResult"),
    "TrialRecord": (".report", "TrialRecord"),
    "load_checkpoint": (".engine.weights", "load_state"),
    "local_run_dir": (".engine.run_location", "local_run_dir"),
    "REFERENCE_POINT": (".pareto", "REFERENCE_POINT"),
    "Front2D": (".pareto", "Front2D"),
    "crowding_distance": (".pareto", "crowding_distance"),
    "dominates": (".pareto", "dominates"),
    "hypervolume": (".pareto", "hypervolume"),
    "hypervolume_improvement_2d": (".pareto", "hypervolume_improvement_2d"),
    "non_dominated": (".pareto", "non_dominated"),
    "non_dominated_ranks": (".pareto", "non_dominated_ranks"),
    "pareto_mask": (".pareto", "pareto_mask"),
    "staircase_2d": (".pareto", "staircase_2d"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module, __name__), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nasforge' has no attribute {name!r}")


__all__ = [
    "REFERENCE_POINT",
    "Arch",
    "ArchError",
    "Baseline",
    "Baselines",
    "Categorical",
    "Component",
    "ConfigError",
    "Configurable",
    "Dimension",
    "Estimator",
    "EvalContext",
    "FreeMetrics",
    "Front2D",
    "GroupedSpace",
    "Hardware",
    "IntRange",
    "Metric",
    "NasforgeError",
    "Objective",
    "PerLayer",
    "Plan",
    "PluginError",
    "Predictor",
    "RegisterCommand",
    "RegisterEstimator",
    "RegisterHardware",
    "RegisterPredictor",
    "RegisterSpace",
    "RegisterStrategy",
    "RegisterTask",
    "RegisterTrainer",
    "Registry",
    "RunResult",
    "SearchSpace",
    "Strategy",
    "StudyError",
    "SubnetFormats",
    "Supernet",
    "Tabular",
    "Task",
    "TrainContext",
    "Trainer",
    "TrialRecord",
    "__version__",
    "build_predictor",
    "cpu_name",
    "crowding_distance",
    "dominates",
    "hookimpl",
    "hypervolume",
    "hypervolume_improvement_2d",
    "lazy",
    "load_checkpoint",
    "load_plan",
    "local_run_dir",
    "non_dominated",
    "non_dominated_ranks",
    "pareto_mask",
    "registry",
    "run_experiment",
    "staircase_2d",
    "with_budget",
]
