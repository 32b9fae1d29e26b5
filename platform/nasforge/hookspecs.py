"""Every hook a nasforge plugin can implement, documented and typed where it is declared.

Plugins are modules (or objects) listed in the ``nasforge`` entry-point group and decorated
with :data:`nasforge.hookimpl`. Registration hooks take a ``register`` callback so one
module can provide many things and the core decides when to build them::

    from nasforge import RegisterSpace, hookimpl

    @hookimpl
    def register_spaces(register: RegisterSpace) -> None:
        register("acme.tiny", TinySpace)

A registered name must be unique across all installed plugins; a second registration of
the same name fails naming both plugins. Names are conventionally ``<plugin>.<thing>``.
Every factory is called with keyword arguments only (:class:`nasforge.Configurable`): its
validated options, plus ``space=`` for estimators and hardware models and ``seed=`` for
predictors. Every hook is called once, when the plugin manager is built, unless it says
otherwise; return values of registration hooks are ignored.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from .experiment import Experiment
    from .sdk import Estimator, Hardware, Predictor, Strategy, Supernet, Task, Trainer
    from .space import SearchSpace

hookspec = pluggy.HookspecMarker("nasforge")
hookimpl = pluggy.HookimplMarker("nasforge")


# -- the register callbacks, one per kind --------------------------------------------------


class RegisterSpace(Protocol):
    """``register(name, factory, supernet=None)``: ``factory(**options)`` returns a
    :class:`nasforge.SearchSpace`; ``supernet(space)`` the :class:`nasforge.Supernet` that
    realises it (omit it for tabular spaces)."""

    def __call__(
        self,
        name: str,
        factory: Callable[..., SearchSpace],
        *,
        supernet: Callable[[SearchSpace], Supernet] | None = None,
    ) -> None: ...


class RegisterTask(Protocol):
    """``register(name, factory)``: ``factory(**options)`` returns a :class:`nasforge.Task`."""

    def __call__(self, name: str, factory: Callable[..., Task]) -> None: ...


class RegisterTrainer(Protocol):
    """``register(name, factory)``: ``factory(**options)`` returns a :class:`nasforge.Trainer`."""

    def __call__(self, name: str, factory: Callable[..., Trainer]) -> None: ...


class RegisterEstimator(Protocol):
    """``register(name, factory)``: ``factory(space=space, **options)`` returns a
    :class:`nasforge.Estimator`."""

    def __call__(self, name: str, factory: Callable[..., Estimator]) -> None: ...


class RegisterHardware(Protocol):
    """``register(name, factory)``: ``factory(space=space, **options)`` returns a
    :class:`nasforge.Hardware`."""

    def __call__(self, name: str, factory: Callable[..., Hardware]) -> None: ...


class RegisterStrategy(Protocol):
    """``register(name, factory)``: ``factory(**options)`` returns a :class:`nasforge.Strategy`."""

    def __call__(self, name: str, factory: Callable[..., Strategy]) -> None: ...


class RegisterPredictor(Protocol):
    """``register(name, factory)``: ``factory(seed=None, **options)`` returns an unfitted
    :class:`nasforge.Predictor`."""

    def __call__(self, name: str, factory: Callable[..., Predictor]) -> None: ...


class RegisterCommand(Protocol):
    """``register(name, run, arguments=None, help="")``: adds ``nasforge <name>``.
    ``arguments(parser)`` adds the command's arguments to its :class:`argparse.ArgumentParser`;
    ``run(args)`` runs it with the parsed :class:`argparse.Namespace` and returns the exit
    status. A :class:`nasforge.NasforgeError` it raises is printed as one line, exit status 2.
    """

    def __call__(
        self,
        name: str,
        run: Callable[[argparse.Namespace], int],
        *,
        arguments: Callable[[argparse.ArgumentParser], None] | None = None,
        help: str = "",
    ) -> None: ...


# -- registration hooks ------------------------------------------------------------------


@hookspec
def register_spaces(register: RegisterSpace) -> None:
    """Register search spaces, each with the supernet that realises it.

    A space may define ``check_task(task)`` raising :class:`ValueError` when a task's data
    does not fit it (checked when an experiment is validated).
    """


@hookspec
def register_tasks(register: RegisterTask) -> None:
    """Register tasks: datasets with fixed splits that trainers and estimators read."""


@hookspec
def register_trainers(register: RegisterTrainer) -> None:
    """Register supernet training procedures (run on Ray Train workers)."""


@hookspec
def register_estimators(register: RegisterEstimator) -> None:
    """Register quality metrics of an arch; an estimator's ``metrics`` name what it produces."""


@hookspec
def register_hardware(register: RegisterHardware) -> None:
    """Register cost metrics (MACs, parameters, latency, memory, look-up tables)."""


@hookspec
def register_strategies(register: RegisterStrategy) -> None:
    """Register search algorithms; a strategy's ``sampler(...)`` yields the Optuna sampler."""


@hookspec
def register_predictors(register: RegisterPredictor) -> None:
    """Register learned predictors: regression models from encoded archs to one metric.

    Strategies build predictors by name (:func:`nasforge.build_predictor`), fit one per
    objective on ``SearchSpace.encode`` rows of the archs evaluated so far. Building the
    registry must stay cheap: import heavy libraries (torch, scikit-learn) in ``fit``, or
    register with :class:`nasforge.lazy`.
    """


@hookspec
def register_commands(register: RegisterCommand) -> None:
    """Register CLI commands: ``nasforge <name>`` runs the plugin's ``run(args)``.

    The command line loads them when it meets a command that is not one of the core's, and
    for ``nasforge --help``. A name the core or another plugin already uses is an error
    naming both. Keep imports of heavy libraries inside ``run``.
    """


# -- lifecycle hooks -----------------------------------------------------------------------


@hookspec
def experiment_start(experiment: Experiment, run_dir: Path) -> None:
    """Called on the driver when a phase (``search``) of an experiment starts.

    ``experiment`` is the validated :class:`nasforge.experiment.Experiment`; ``run_dir`` the
    run directory. Use it to open a logger run. An exception aborts the run before any trial
    starts and is reported naming the plugin.
    """


@hookspec
def trial_complete(experiment: Experiment, trial: FrozenTrial) -> None:
    """Called on the driver after each Optuna trial is finished and stored.

    ``trial`` is the :class:`optuna.trial.FrozenTrial` as recorded (state COMPLETE or FAIL;
    the arch is ``trial.user_attrs["arch"]``, every metric under ``trial.user_attrs``).
    Keep it cheap: it runs in the search loop. An exception is logged naming the plugin and
    the search goes on.
    """


@hookspec
def experiment_end(experiment: Experiment, run_dir: Path, summary: Mapping[str, Any]) -> None:
    """Called on the driver when a phase ends, successfully or not.

    ``summary`` is ``{"phase", "status" ("ok" or "error"), "complete", "failed", "wall_s",
    "error"}``.
    """
