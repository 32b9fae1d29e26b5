"""An experiment run end to end from Python: train, search, report, and what came of it.

``nasforge run EXP.yaml`` and :func:`run_experiment` are the same sequence (the command
prints each phase's summary through ``on_phase``); the result is what a user would look
at afterwards, as plain values::

    from nasforge import run_experiment, with_budget

    result = run_experiment(with_budget("experiment.yaml", n_trials=20), "runs/smoke")
    assert len(result.complete) == 20 and result.front

:func:`with_budget` shrinks an experiment for a quick run (trials, epochs, concurrency, or
any field by its dotted path) without editing its file; the pytest plugin
(:mod:`nasforge.pytest_plugin`) builds its ``run_experiment`` fixture on both.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .experiment import read_experiment_file

if TYPE_CHECKING:
    import optuna

    from .engine.search import SearchSummary
    from .engine.train import TrainSummary
    from .plan import Plan
    from .report import Report, TrialRecord


@dataclass
class RunResult:
    """What an experiment run left: the run directory, the study (the record), every trial
    as a plain :class:`~nasforge.report.TrialRecord`, the Pareto front's records (best first
    by the first objective), and each phase's summary."""

    run_dir: Path | str  # a URI for a cloud run directory
    plan: Plan
    study: optuna.Study
    trials: list[TrialRecord]
    front: list[TrialRecord]
    search: SearchSummary
    training: TrainSummary | None
    report: Report

    @property
    def complete(self) -> list[TrialRecord]:
        """The COMPLETE trials."""
        return [t for t in self.trials if t.state == "COMPLETE"]

    @property
    def failed(self) -> list[TrialRecord]:
        """The FAIL trials (their ``error`` says why)."""
        return [t for t in self.trials if t.state == "FAIL"]

    @property
    def files(self) -> list[Path]:
        """The report's files: ``trials.csv``, ``pareto.csv``, ``pareto.json``, ``pareto.png``."""
        return list(self.report.files)


def run_experiment(
    experiment: str | Path | Mapping[str, Any] | Plan,
    run_dir: str | Path | None = None,
    *,
    progress: bool = True,
    on_phase: Callable[[str, Any], None] | None = None,
) -> RunResult:
    """Run ``experiment`` as ``nasforge run`` does, in this process: train its supernet when
    it has a ``train`` section (Ray Train; skipped when already trained), search (Ray Tune,
    the study recording every trial; resumed when the run directory has one), report.

    ``run_dir`` (default: the experiment's own) is where weights, study and reports go.
    Ray is started locally on 127.0.0.1, or joined (``RAY_ADDRESS``, or a Ray this process
    already started). ``on_phase(name, summary)`` is called after ``"train"``, ``"search"``
    and ``"report"``. Errors are :class:`~nasforge.NasforgeError` naming the file or field.
    """
    from .engine.run_location import durable, local_run_dir
    from .engine.search import run_search
    from .engine.study import open_study
    from .engine.train import run_training
    from .report import write_report

    plan = load_experiment_plan(experiment)
    notify = on_phase or (lambda name, summary: None)
    training = None
    # a cloud run directory is mirrored once for the three phases
    with local_run_dir(run_dir or plan.experiment.resolved_run_dir) as local:
        if plan.experiment.train is not None:
            training = run_training(plan, local, progress=progress)
            notify("train", training)
        search = run_search(plan, local, progress=progress)
        notify("search", search)
        study, _ = open_study(plan, local, create=False)
        report = write_report(local, plan=plan, study=study)
        notify("report", report)
        where = durable(local.resolve())
    return RunResult(where, plan, study, report.records, report.front, search, training, report)


def load_experiment_plan(experiment: str | Path | Mapping[str, Any] | Plan) -> Plan:
    """A plan from a YAML path (errors name the file), a mapping, or a plan as it is."""
    from .plan import Plan, load_plan

    if isinstance(experiment, Plan):
        return experiment
    if isinstance(experiment, (str, Path)):
        return load_plan(experiment)
    if isinstance(experiment, Mapping):
        return Plan.from_json(experiment)
    raise TypeError(
        f"expected an experiment file, a mapping or a Plan, got {type(experiment).__name__}"
    )


def with_budget(
    experiment: str | Path | Mapping[str, Any],
    *,
    n_trials: int | None = None,
    concurrency: int | None = None,
    batch_size: int | None = None,
    epochs: int | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A copy of ``experiment`` (a YAML path or a mapping) with a smaller budget.

    ``n_trials``, ``concurrency`` and ``batch_size`` set the ``search`` fields of those
    names; ``epochs`` sets ``train.options.epochs``, or every phase's ``epochs`` when the
    trainer's options have ``phases`` (progressive shrinking); ``overrides`` sets any field by
    its dotted path, list items by index (``{"estimators.0.options.max_iter": 3}``), after
    the others. The result is validated when it is run, with errors naming the field.
    """
    data = _as_mapping(experiment)
    changes: dict[str, Any] = {}
    for name, value in (
        ("n_trials", n_trials),
        ("concurrency", concurrency),
        ("batch_size", batch_size),
    ):
        if value is not None:
            changes[f"search.{name}"] = value
    if epochs is not None:
        train = data.get("train")
        if not isinstance(train, Mapping):
            raise ConfigError("train", "epochs given, but the experiment has no 'train' section")
        phases = (train.get("options") or {}).get("phases")
        if isinstance(phases, list):
            for i in range(len(phases)):
                changes[f"train.options.phases.{i}.epochs"] = epochs
        else:
            changes["train.options.epochs"] = epochs
    changes.update(overrides or {})
    for path, value in changes.items():
        _set(data, path, value)
    return data


def _as_mapping(experiment: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(experiment, Mapping):
        return copy.deepcopy(dict(experiment))
    return read_experiment_file(experiment)


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    """Set ``data[a][b]...`` for ``path`` ``"a.b..."``; missing mappings are created."""
    keys = path.split(".")
    node: Any = data
    for depth, key in enumerate(keys[:-1]):
        where = ".".join(keys[: depth + 1])
        if isinstance(node, list):
            node = node[_index(node, key, where)]
            if not isinstance(node, (dict, list)):
                raise ConfigError(where, f"cannot set '{path}': '{where}' is not a mapping or list")
            continue
        if node.get(key) is None:
            node[key] = {}
        node = node[key]
        if not isinstance(node, (dict, list)):
            raise ConfigError(where, f"cannot set '{path}': '{where}' is not a mapping or list")
    last = keys[-1]
    if isinstance(node, list):
        node[_index(node, last, path)] = copy.deepcopy(value)
    else:
        node[last] = copy.deepcopy(value)


def _index(items: list[Any], key: str, where: str) -> int:
    if not key.isdigit() or int(key) >= len(items):
        raise ConfigError(where, f"expected an index below {len(items)}, got '{key}'")
    return int(key)
