"""Plan resolution: an experiment's names bound to built plugin objects that fit together.

:func:`resolve` takes a validated :class:`~nasforge.experiment.Experiment` through named
steps — the space, the task, the trainer, the estimators and hardware models with the
metrics they produce, the objectives, the constraints, the strategy — each validating the
plugin's options against its own ``Options`` model and raising a
:class:`~nasforge.errors.ConfigError` that names the YAML path at fault, e.g.
``search.strategy: unknown strategy 'nsga4' (available: gp, nsga2, nsga3, random, tpe)``.
:meth:`Plan.from_json` rebuilds the same plan from the experiment's JSON on a Ray worker,
a training rank or a report.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .errors import ArchError, ConfigError, PluginError
from .experiment import Constraint, Experiment, load_experiment, parse_experiment, validation_error
from .plugins import Registry, registry_for
from .sdk import (
    Component,
    Estimator,
    Hardware,
    Metric,
    Objective,
    Strategy,
    Supernet,
    Task,
    Trainer,
)
from .space import Arch, SearchSpace


@dataclass
class Plan:
    """An experiment bound to built plugin objects, ready to run.

    ``metrics`` maps each produced metric name to its :class:`Metric` and ``producers``
    to the YAML path of the component producing it.
    """

    experiment: Experiment
    space: SearchSpace
    estimators: list[Estimator]
    hardware: list[Hardware]
    strategy: Strategy
    objectives: list[Objective]
    constraints: list[Constraint]
    metrics: dict[str, Metric]
    producers: dict[str, str]
    registry: Registry
    task: Task | None = None
    trainer: Trainer | None = None
    supernet_factory: Callable[[SearchSpace], Supernet] | None = None

    @property
    def needs_supernet(self) -> bool:
        """Whether the search reads trained supernet weights."""
        return any(c.requires_supernet for c in (*self.estimators, *self.hardware))

    @classmethod
    def from_json(cls, experiment: Mapping[str, Any]) -> Plan:
        """The plan of an experiment given as its JSON (``Experiment.model_dump(mode="json")``,
        what travels to Ray workers, training ranks and reports), resolved against the
        plugins installed in this process."""
        return resolve(parse_experiment(experiment))

    def initial_archs(self) -> list[Arch]:
        """``search.initial_archs`` resolved (``largest``/``smallest`` from the space, a
        partial arch completed by :meth:`SearchSpace.complete`): the archs a new study
        evaluates first."""
        named = {"largest": self.space.largest, "smallest": self.space.smallest}
        return [
            named[arch]() if isinstance(arch, str) else self.space.complete(arch)
            for arch in self.experiment.search.initial_archs
        ]

    def to_json(self) -> dict[str, Any]:
        """The experiment as plain JSON data: what crosses a process boundary."""
        return self.experiment.model_dump(mode="json")

    def build_supernet(self) -> Supernet:
        """A freshly initialised supernet for the space (weights are loaded separately)."""
        if self.supernet_factory is None:
            raise ConfigError("space.name", f"space '{self.experiment.space.name}' has no supernet")
        return self.supernet_factory(self.space)


#: trial attributes and report columns the engine owns; no metric may take these names
RESERVED_NAMES = frozenset(
    {"arch", "key", "error", "device", "node", "wall_s", "duplicate_of", "retry_of",
     "number", "state", "feasible", "traceback"}
)  # fmt: skip


def _options(item: Any, options: Mapping[str, Any], path: str) -> dict[str, Any]:
    model = item.options_model
    if model is None:
        return dict(options)
    try:
        return model.model_validate(dict(options)).model_dump()
    except ValidationError as exc:
        raise validation_error(exc, model, prefix=path) from None


def build_registered(
    kind: str,
    name: str,
    name_path: str,
    options_path: str,
    reg: Registry,
    options: Mapping[str, Any],
    expected: type,
    **kwargs: Any,
) -> Any:
    """Look ``name`` up among ``kind``, validate ``options`` against its ``Options`` model
    and build it, checking it is an ``expected``; errors name ``name_path`` or
    ``options_path`` (YAML paths), or the plugin that built something else."""
    try:
        item = reg.get(kind, name)
    except KeyError as exc:
        raise ConfigError(name_path, exc.args[0]) from None
    opts = _options(item, options, options_path)
    try:
        built = item.factory(**kwargs, **opts)
    except (ConfigError, PluginError):
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(options_path, f"{kind} '{name}' rejected its options: {exc}") from None
    except Exception as exc:
        raise PluginError(
            f"{kind} '{name}' from plugin {item.origin} raised while being built: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(built, expected):
        raise PluginError(
            f"{kind} '{name}' from plugin {item.origin} built a {type(built).__name__}, "
            f"expected {expected.__name__}"
        )
    return built


def _check_fits(component: Component, space: SearchSpace, path: str, name: str, kind: str) -> None:
    types = component.space_types
    if types and not isinstance(space, types):
        supported = ", ".join(t.__name__ for t in types)
        raise ConfigError(
            path,
            f"{kind} '{name}' does not support space {type(space).__name__} (it supports: {supported})",
        )


def resolve(experiment: Experiment, reg: Registry | None = None) -> Plan:
    """Bind an experiment's names to installed plugins and check that everything fits, step
    by step in the order the experiment file reads."""
    reg = reg or registry_for(experiment.plugins)
    space, supernet_factory = _space(experiment, reg)
    task = _task(experiment, reg, space)
    trainer = _trainer(experiment, reg, space, task, supernet_factory)
    estimators, hardware, metrics, producers = _components(experiment, reg, space, task)
    objectives = _objectives(experiment, metrics)
    constraints = _constraints(experiment, metrics)
    strategy = _strategy(experiment, reg, space, objectives)
    return Plan(
        experiment=experiment,
        space=space,
        estimators=estimators,
        hardware=hardware,
        strategy=strategy,
        objectives=objectives,
        constraints=constraints,
        metrics=metrics,
        producers=producers,
        registry=reg,
        task=task,
        trainer=trainer,
        supernet_factory=supernet_factory,
    )


def load_plan(path: str | Path, reg: Registry | None = None) -> Plan:
    """:func:`~nasforge.experiment.load_experiment` then :func:`resolve`, errors naming the
    file."""
    experiment = load_experiment(path)
    try:
        return resolve(experiment, reg)
    except ConfigError as exc:
        raise exc.with_file(str(path)) from None


# -- the steps of resolve ----------------------------------------------------------------


def _space(
    experiment: Experiment, reg: Registry
) -> tuple[SearchSpace, Callable[[SearchSpace], Supernet] | None]:
    spec = experiment.space
    space = build_registered(
        "space", spec.name, "space.name", "space.options", reg, spec.options, SearchSpace
    )
    return space, reg.get("space", spec.name).extras.get("supernet")


def _task(experiment: Experiment, reg: Registry, space: SearchSpace) -> Task | None:
    spec = experiment.task
    if spec is None:
        return None
    task = build_registered("task", spec.name, "task.name", "task.options", reg, spec.options, Task)
    check_task = getattr(space, "check_task", None)
    if check_task is not None:
        try:
            check_task(task)
        except ValueError as exc:
            raise ConfigError(
                "task.name",
                f"task '{spec.name}' does not fit space '{experiment.space.name}': {exc}",
            ) from None
    return task


def _trainer(
    experiment: Experiment,
    reg: Registry,
    space: SearchSpace,
    task: Task | None,
    supernet_factory: Callable[[SearchSpace], Supernet] | None,
) -> Trainer | None:
    train = experiment.train
    if train is None:
        return None
    trainer = build_registered(
        "trainer", train.trainer, "train.trainer", "train.options", reg, train.options, Trainer
    )
    if supernet_factory is None:
        raise ConfigError(
            "train.trainer",
            f"space '{experiment.space.name}' has no supernet to train (it is tabular)",
        )
    if task is None:
        raise ConfigError("train", "training a supernet needs data: add a 'task' section")
    _check_trainer_fits(trainer, train.trainer, space, "train.options")
    if train.sweep is not None:  # every recipe must build and fit, before any of them trains
        for i, recipe in enumerate(train.recipes()):
            where = f"train.sweep (recipe {i}: {recipe['trainer']} {recipe['options']})"
            built = build_registered(
                "trainer", recipe["trainer"], where, where, reg, recipe["options"], Trainer
            )
            _check_trainer_fits(built, recipe["trainer"], space, where)
    return trainer


def _check_trainer_fits(trainer: Trainer, name: str, space: SearchSpace, path: str) -> None:
    try:
        trainer.check_space(space)
    except ValueError as exc:
        raise ConfigError(path, f"trainer '{name}' does not fit the space: {exc}") from None


def _components(
    experiment: Experiment, reg: Registry, space: SearchSpace, task: Task | None
) -> tuple[list[Estimator], list[Hardware], dict[str, Metric], dict[str, str]]:
    """The estimators and hardware models, and every metric they produce (each once)."""
    metrics: dict[str, Metric] = {}
    producers: dict[str, str] = {}
    built: dict[str, list[Any]] = {"estimator": [], "hardware": []}
    sections = (("estimator", "estimators", Estimator), ("hardware", "hardware", Hardware))
    for kind, section, base in sections:
        for i, spec in enumerate(getattr(experiment, section)):
            path = f"{section}[{i}]"
            component = build_registered(
                kind, spec.name, f"{path}.name", f"{path}.options", reg, spec.options, base,
                space=space,
            )  # fmt: skip
            _check_fits(component, space, f"{path}.name", spec.name, kind)
            if component.requires_supernet and experiment.train is None:
                raise ConfigError(
                    f"{path}.name",
                    f"{kind} '{spec.name}' needs a trained supernet: add a 'train' section",
                )
            if component.requires_task and task is None:
                raise ConfigError(
                    f"{path}.name", f"{kind} '{spec.name}' reads data: add a 'task' section"
                )
            for metric_name, metric in component.metrics.items():
                if metric_name in RESERVED_NAMES:
                    raise PluginError(
                        f"{kind} '{spec.name}' produces a metric named '{metric_name}', which is "
                        f"reserved for the engine's trial records ({', '.join(sorted(RESERVED_NAMES))})"
                    )
                if metric_name in producers:
                    raise ConfigError(
                        f"{path}.name",
                        f"metric '{metric_name}' is produced twice: by {producers[metric_name]} "
                        f"and by {path} ('{spec.name}')",
                    )
                metrics[metric_name] = metric
                producers[metric_name] = f"{path} ('{spec.name}')"
            built[kind].append(component)
    return built["estimator"], built["hardware"], metrics, producers


def _objectives(experiment: Experiment, metrics: Mapping[str, Metric]) -> list[Objective]:
    available = ", ".join(sorted(metrics)) or "none"
    objectives: list[Objective] = []
    for i, objective in enumerate(experiment.objectives):
        metric = metrics.get(objective.metric)
        if metric is None:
            raise ConfigError(
                f"objectives[{i}].metric",
                f"no estimator or hardware model produces '{objective.metric}' (available: {available})",
            )
        direction = objective.direction or metric.better
        if direction is None:
            raise ConfigError(
                f"objectives[{i}].direction",
                f"metric '{objective.metric}' has no natural direction: set maximize or minimize",
            )
        if any(o.metric == objective.metric for o in objectives):
            raise ConfigError(f"objectives[{i}].metric", f"'{objective.metric}' is listed twice")
        objectives.append(Objective(objective.metric, direction))
    return objectives


def _constraints(experiment: Experiment, metrics: Mapping[str, Metric]) -> list[Constraint]:
    available = ", ".join(sorted(metrics)) or "none"
    constraints = [Constraint.parse(text) for text in experiment.constraints]
    for i, constraint in enumerate(constraints):
        if any((c.metric, c.op, c.bound) == (constraint.metric, constraint.op, constraint.bound)
               for c in constraints[:i]):  # fmt: skip
            raise ConfigError(f"constraints[{i}]", f"'{constraint}' is listed twice")
        if constraint.metric not in metrics:
            raise ConfigError(
                f"constraints[{i}]",
                f"no estimator or hardware model produces '{constraint.metric}' (available: {available})",
            )
    return constraints


def _strategy(
    experiment: Experiment, reg: Registry, space: SearchSpace, objectives: list[Objective]
) -> Strategy:
    search = experiment.search
    for i, arch in enumerate(search.initial_archs):
        if isinstance(arch, dict):
            try:
                space.complete(arch)
            except ArchError as exc:
                raise ConfigError(f"search.initial_archs[{i}]", str(exc)) from None
    strategy = build_registered(
        "strategy", search.strategy, "search.strategy", "search.options", reg, search.options,
        Strategy,
    )  # fmt: skip
    if len(objectives) > 1 and not strategy.multi_objective:
        raise ConfigError(
            "search.strategy",
            f"strategy '{search.strategy}' handles one objective, but {len(objectives)} are given",
        )
    return strategy
