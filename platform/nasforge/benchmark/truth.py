"""The ground truth of a tabular space: every arch of its table, objectives scaled to [0, 1]."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, PluginError
from ..pareto import hypervolume
from ..plan import Plan
from ..sdk import EvalContext, Objective, Tabular

# -- the ground truth --------------------------------------------------------------------


@dataclass
class GroundTruth:
    """The whole table, reduced to the benchmarked objectives.

    ``values`` maps each canonical key to the objectives' raw values; ``low``/``high`` are
    their min and max over the table, ``hypervolume`` the whole table's (two objectives),
    ``best`` the table's best value of the first objective.
    """

    objectives: list[Objective]
    values: dict[str, tuple[float, ...]]
    low: tuple[float, ...]
    high: tuple[float, ...]
    hypervolume: float | None
    best: float

    def scaled(self, values: Sequence[float]) -> tuple[float, ...]:
        """Each objective as minimisation in [0, 1] (the table's min and max)."""
        out = []
        for o, v, lo, hi in zip(self.objectives, values, self.low, self.high, strict=True):
            span = hi - lo
            if span == 0:
                out.append(0.0)
            elif o.direction == "maximize":
                out.append((hi - v) / span)
            else:
                out.append((v - lo) / span)
        return tuple(out)

    def gap(self, best: float) -> float:
        """How far ``best`` (a first-objective value) is from the table's best (``>= 0``)."""
        if self.objectives[0].direction == "maximize":
            return self.best - best
        return best - self.best

    def better(self, a: float, b: float) -> bool:
        """Whether first-objective value ``a`` beats ``b``."""
        return a > b if self.objectives[0].direction == "maximize" else a < b


def _producers(plan: Plan) -> dict[str, tuple[str, str, Any]]:
    """metric -> (YAML path of the producing component, its name, the component)."""
    out: dict[str, tuple[str, str, Any]] = {}
    exp = plan.experiment
    for section, specs, built in (
        ("estimators", exp.estimators, plan.estimators),
        ("hardware", exp.hardware, plan.hardware),
    ):
        for i, (spec, component) in enumerate(zip(specs, built, strict=True)):
            for metric in component.metrics:
                out[metric] = (f"{section}[{i}].name", spec.name, component)
    return out


def ground_truth(plan: Plan, objectives: Sequence[Objective], run_dir: Path) -> GroundTruth:
    """Read the table of every component an objective comes from and join them by key.

    Raises :class:`ConfigError` naming the component when one is not :class:`Tabular`.
    """
    objectives = list(objectives)
    if not 1 <= len(objectives) <= 2:
        raise ConfigError(
            "objectives",
            f"bench-search measures one or two objectives, got {len(objectives)} "
            "(choose them with --objectives)",
        )
    producers = _producers(plan)
    needed: dict[int, tuple[str, str, Any]] = {}
    for o in objectives:
        path, name, component = producers[o.metric]
        kind = "estimator" if path.startswith("estimators") else "hardware model"
        if not isinstance(component, Tabular):
            raise ConfigError(
                path,
                f"{kind} '{name}' (which gives '{o.metric}') is not tabular: bench-search "
                "needs every objective read from a table the component can list (a "
                "`table(context)` method, the nasforge.Tabular protocol)",
            )
        needed[id(component)] = (path, name, component)
    space = plan.space
    keys: dict[str, str] = {}  # the arch as listed -> its canonical key (tables share archs)
    rows: dict[str, dict[str, float]] | None = None
    for _, name, component in needed.values():
        context = EvalContext(run_dir=run_dir)
        component.setup(context)
        listed: dict[str, dict[str, float]] = {}
        try:
            for arch, metrics in component.table(context):
                listed_as = json.dumps(arch, sort_keys=True)
                key = keys.get(listed_as)
                if key is None:
                    key = keys[listed_as] = space.key(arch)
                listed.setdefault(key, dict(metrics))
        except Exception as exc:
            raise PluginError(
                f"'{name}' failed to list its table: {type(exc).__name__}: {exc}"
            ) from exc
        rows = (
            listed if rows is None else {k: {**rows[k], **listed[k]} for k in rows if k in listed}
        )
    values: dict[str, tuple[float, ...]] = {}
    for key, metrics in (rows or {}).items():
        row = tuple(float(metrics[o.metric]) for o in objectives)
        if all(math.isfinite(v) for v in row):
            values[key] = row
    if not values:
        names = ", ".join(f"'{n}'" for _, n, _ in needed.values())
        raise PluginError(f"the tables of {names} list no arch with every objective measured")
    matrix = np.asarray(list(values.values()))
    low, high = tuple(matrix.min(axis=0).tolist()), tuple(matrix.max(axis=0).tolist())
    first = matrix[:, 0]
    best = float(first.max() if objectives[0].direction == "maximize" else first.min())
    truth = GroundTruth(objectives, values, low, high, None, best)
    if len(objectives) == 2:
        truth.hypervolume = hypervolume([truth.scaled(v) for v in values.values()])
    return truth
