"""A benchmark from ``nasforge bench-search``'s options: the experiment resolved with its
space options overridden, the objectives picked, the strategies built with their options,
the run directory named."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, NasforgeError
from ..experiment import is_uri, load_experiment
from ..plan import Plan, resolve
from ..sdk import Objective
from .runner import BenchSearch, build_strategies
from .truth import ground_truth


def parse_key_values(items: Sequence[str], flag: str) -> dict[str, Any]:
    """``KEY=VALUE`` pairs, each value read as JSON when it parses (``5``, ``true``,
    ``[1, 2]``) and as a string otherwise; ``flag`` names the option in errors."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise NasforgeError(f"{flag}: expected KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def prepare_bench_search(
    experiment_file: str | Path,
    *,
    strategies: Sequence[str],
    strategy_options: Sequence[str] = (),
    space_options: Sequence[str] = (),
    objectives: Sequence[str] = (),
    seeds: Sequence[int],
    budgets: Sequence[int],
    max_proposals: int = 20,
    run_dir: str | Path | None = None,
) -> tuple[BenchSearch, Path]:
    """The benchmark the options describe and where its results go. ``strategy_options``
    are ``NAME.KEY=VALUE``, ``space_options`` ``KEY=VALUE``; ``objectives`` (metric names)
    replace the experiment's. Errors in the file name the file; errors in an option name
    the option (``--objectives``, ``--strategy-option``…)."""
    experiment = load_experiment(experiment_file)
    overrides = parse_key_values(space_options, "--space-option")
    experiment.space.options.update(overrides)
    try:
        plan = resolve(experiment)
        picked = _objectives(plan, objectives)
        options: dict[str, dict[str, Any]] = {}
        for item in strategy_options:
            name, dot, rest = item.partition(".")
            if not dot:
                raise NasforgeError(f"--strategy-option: expected NAME.KEY=VALUE, got {item!r}")
            options.setdefault(name, {}).update(parse_key_values([rest], "--strategy-option"))
        built = build_strategies(plan, strategies, options)
        suffix = "".join(f"-{k}-{v}" for k, v in overrides.items())  # dataset=x: -dataset-x
        suffix = re.sub(r"[^A-Za-z0-9_.-]+", "_", suffix)
        default = experiment.resolved_run_dir
        if run_dir is None and is_uri(default):
            raise NasforgeError(
                "bench-search keeps its tables in a local folder and this experiment's run "
                "directory is a cloud URI: pass --run-dir PATH"
            )
        out = Path(run_dir or f"{default}-bench-search{suffix}")
        truth = ground_truth(plan, picked, out)
        budgets = sorted(set(budgets))
        if not seeds or not budgets or budgets[0] < 1:
            raise NasforgeError("bench-search needs at least one seed and budgets >= 1")
        return BenchSearch(plan, truth, built, list(seeds), budgets, max_proposals), out
    except ConfigError as exc:
        if exc.path.startswith("--"):  # a command-line flag, not the file, is at fault
            raise
        raise exc.with_file(str(experiment_file)) from None


def _objectives(plan: Plan, names: Sequence[str]) -> list[Objective]:
    """The experiment's objectives, or the named metrics (each with a direction)."""
    if not names:
        return list(plan.objectives)
    given = {o.metric: o.direction for o in plan.objectives}
    objectives = []
    for name in names:
        metric = plan.metrics.get(name)
        if metric is None or (given.get(name) or metric.better) is None:
            raise ConfigError(
                "--objectives",
                f"'{name}' is not a metric with a direction here (available: "
                f"{', '.join(m for m, v in plan.metrics.items() if v.better or m in given)})",
            )
        objectives.append(Objective(name, given.get(name) or metric.better))
    return objectives
