"""Every hook a nasforge plugin can implement, documented where it is declared.

Plugins are modules (or objects) listed in the ``nasforge`` entry-point group and decorated
with :data:`nasforge.hookimpl`. Registration hooks take a ``register`` callback so one
module can provide many things and the core decides when to build them::

    from nasforge import hookimpl

    @hookimpl
    def register_spaces(register):
        register("acme.tiny", TinySpace)

A registered name must be unique across all installed plugins; a second registration of
the same name fails naming both plugins. Names are conventionally ``<plugin>.<thing>``.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("nasforge")
hookimpl = pluggy.HookimplMarker("nasforge")


@hookspec
def register_spaces(register: Any) -> None:
    """Register search spaces.

    Called once when the plugin manager is built. Call
    ``register(name, factory, supernet=None)`` for each space: ``factory(**options)`` returns
    a :class:`nasforge.SearchSpace`; ``supernet``, when given, is a factory
    ``supernet(space)`` returning the :class:`nasforge.Supernet` (an ``nn.Module``) that
    realises the space (omit it for tabular spaces). A space may define
    ``check_task(task)`` raising :class:`ValueError` when a task's data does not fit it.
    Return value is ignored.
    """


@hookspec
def register_tasks(register: Any) -> None:
    """Register tasks: datasets with fixed splits that trainers and estimators read.

    Called once when the plugin manager is built. Call ``register(name, factory)``;
    ``factory(**options)`` returns a :class:`nasforge.Task`. Return value is ignored.
    """


@hookspec
def register_trainers(register: Any) -> None:
    """Register supernet training procedures.

    Called once when the plugin manager is built. Call ``register(name, factory)``;
    ``factory(**options)`` returns a :class:`nasforge.Trainer`. Return value is ignored.
    """


@hookspec
def register_estimators(register: Any) -> None:
    """Register quality metrics of an arch.

    Called once when the plugin manager is built. Call ``register(name, factory)``;
    ``factory(space=space, **options)`` returns a :class:`nasforge.Estimator` whose
    ``metrics`` name what it produces. Return value is ignored.
    """


@hookspec
def register_hardware(register: Any) -> None:
    """Register cost metrics (MACs, parameters, latency, memory, look-up tables).

    Called once when the plugin manager is built. Call ``register(name, factory)``;
    ``factory(space=space, **options)`` returns a :class:`nasforge.Hardware`. Return value
    is ignored.
    """


@hookspec
def register_strategies(register: Any) -> None:
    """Register search algorithms.

    Called once when the plugin manager is built. Call ``register(name, factory)``;
    ``factory(**options)`` returns a :class:`nasforge.Strategy`, whose ``sampler(...)`` yields
    the Optuna sampler. Return value is ignored.
    """


@hookspec
def register_predictors(register: Any) -> None:
    """Register learned predictors: regression models from encoded archs to one metric.

    Called once when the plugin manager is built. Call ``register(name, factory)``;
    ``factory(seed=None, **options)`` returns an unfitted :class:`nasforge.Predictor`.
    Strategies build predictors by name, fit one per objective on ``SearchSpace.encode``
    rows of the archs evaluated so far, and can pick the best per objective by
    cross-validation (:func:`nasforge.predictors.select_predictor`). Building the registry
    must stay cheap: import heavy libraries (torch, scikit-learn) in ``fit``, or register
    with :class:`nasforge.plugins.lazy`. Return value is ignored.
    """


@hookspec
def experiment_start(experiment: Any, run_dir: Any) -> None:
    """Called on the driver when a phase (``search``) of an experiment starts.

    ``experiment`` is the validated :class:`nasforge.config.Experiment`; ``run_dir`` the run
    directory (a :class:`pathlib.Path`). Use it to open a logger run. Return value is ignored;
    an exception aborts the run before any trial starts and is reported naming the plugin.
    """


@hookspec
def trial_complete(experiment: Any, trial: Any) -> None:
    """Called on the driver after each Optuna trial is finished and stored.

    ``trial`` is the :class:`optuna.trial.FrozenTrial` as recorded (state COMPLETE or FAIL;
    the arch is ``trial.user_attrs["arch"]``, every metric under ``trial.user_attrs``).
    Keep it cheap: it runs in the search loop. Return value is ignored; an exception is
    logged naming the plugin and the search goes on.
    """


@hookspec
def experiment_end(experiment: Any, run_dir: Any, summary: Any) -> None:
    """Called on the driver when a phase ends, successfully or not.

    ``summary`` is a dict: ``{"phase", "status" ("ok" or "error"), "complete", "failed",
    "wall_s", "error"}``. Return value is ignored.
    """
