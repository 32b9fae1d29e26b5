"""Running the benchmark: one (strategy, seed) cell in process, many in forked workers."""

from __future__ import annotations

import math
import multiprocessing
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from ..errors import ConfigError
from ..free_metrics import FreeMetrics, build_sampler
from ..pareto import Front2D
from ..plan import Plan
from ..sdk import Strategy
from ..space import Arch, SearchSpace
from .truth import GroundTruth

# -- one (strategy, seed) run ------------------------------------------------------------


@dataclass
class Cell:
    """One strategy's run under one seed: the anytime curves and what the sampler did.

    ``hv[i]``, ``best[i]`` and ``asks[i]`` hold after ``i + 1`` evaluations (``hv`` is empty
    with one objective). ``repeats`` counts re-proposals of an arch seen before, ``missing``
    archs with no table entry, ``errors`` proposals the space could not make an arch of.
    """

    strategy: str
    seed: int
    hv: list[float] = field(default_factory=list)
    best: list[float] = field(default_factory=list)
    asks: list[int] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    proposals: int = 0
    repeats: int = 0
    missing: int = 0
    errors: int = 0
    wall_s: float = 0.0
    note: str | None = None

    @property
    def evaluations(self) -> int:
        return len(self.best)

    def at(self, budget: int) -> tuple[float, float]:
        """``(normalised HV, best)`` after ``budget`` evaluations, or at the end of a run
        that stopped before (HV 0 and best NaN before the first evaluation)."""
        n = min(budget, self.evaluations)
        if n == 0:
            return 0.0, math.nan
        return (self.hv[n - 1] if self.hv else math.nan), self.best[n - 1]


def run_cell(
    space: SearchSpace,
    truth: GroundTruth,
    strategy: Strategy,
    name: str,
    seed: int,
    budget: int,
    *,
    max_asks: int,
    initial_archs: Sequence[Arch] = (),
    free_metrics: FreeMetrics | None = None,
) -> Cell:
    """Drive ``strategy``'s sampler until ``budget`` evaluations or ``max_asks`` proposals.

    ``free_metrics`` (the experiment's free hardware models) reach strategies that use them,
    as in the engine; computing them is not an evaluation."""
    start = time.perf_counter()
    cell = Cell(name, seed)
    objectives = truth.objectives
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = build_sampler(strategy, space, objectives, seed, free_metrics)
        study = optuna.create_study(directions=[o.direction for o in objectives], sampler=sampler)
        for arch in initial_archs:
            study.enqueue_trial(space.to_params(arch))
        seen: dict[str, tuple[float, ...] | None] = {}
        front = Front2D() if len(objectives) == 2 else None
        best = math.nan
        while cell.evaluations < budget and cell.proposals < max_asks:
            trial = study.ask()
            cell.proposals += 1
            try:
                key = space.key(space.suggest(trial))
            except Exception:  # the engine fails such a trial too
                cell.errors += 1
                study.tell(trial, state=TrialState.FAIL)
                continue
            new = key not in seen
            if new:
                seen[key] = truth.values.get(key)
                cell.missing += seen[key] is None
            else:
                cell.repeats += 1
            values = seen[key]
            if values is None:
                study.tell(trial, state=TrialState.FAIL)
                continue
            study.tell(trial, list(values))
            if not new:  # a re-proposal: told what it scored before, not counted
                continue
            if math.isnan(best) or truth.better(values[0], best):
                best = values[0]
            cell.best.append(best)
            if front is not None:
                front.add(*truth.scaled(values))
                cell.hv.append(front.hypervolume / truth.hypervolume if truth.hypervolume else 0.0)
            cell.asks.append(cell.proposals)
            cell.wall.append(time.perf_counter() - start)
    cell.wall_s = time.perf_counter() - start
    if cell.evaluations < budget:
        cell.note = (
            f"{name} seed {seed} stopped after {cell.proposals} proposals with "
            f"{cell.evaluations}/{budget} new archs ({cell.repeats} re-proposals, "
            f"{cell.missing} archs not in the table)"
        )
    return cell


# -- strategies x seeds ------------------------------------------------------------------


def build_strategies(
    plan: Plan, names: Sequence[str], options: Mapping[str, Mapping[str, Any]]
) -> dict[str, Strategy]:
    """Each named strategy built from the registry, its options validated by its own
    ``Options`` model: the experiment's ``search.options`` for the experiment's strategy,
    then ``options[name]`` on top. Errors name ``--strategies`` / ``--strategy-option``."""
    from ..plan import build_registered

    search = plan.experiment.search
    strategies: dict[str, Strategy] = {}
    for name in names:
        given = dict(search.options) if name == search.strategy else {}
        given.update(options.get(name, {}))
        strategy = build_registered(
            "strategy", name, "--strategies", f"--strategy-option {name}", plan.registry, given,
            Strategy,
        )  # fmt: skip
        strategies[name] = strategy
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise ConfigError(
            "--strategy-option",
            f"options given for '{unknown[0]}', which is not among the strategies "
            f"benchmarked ({', '.join(names)})",
        )
    return strategies


_SHARED: BenchSearch | None = None  # the benchmark forked workers run cells of


def _run_shared(task: tuple[str, int]) -> Cell:
    assert _SHARED is not None
    return _SHARED.cell(*task)


@dataclass
class BenchSearch:
    """Strategies x seeds, each run to the largest budget; budgets are read off the curves."""

    plan: Plan
    truth: GroundTruth
    strategies: dict[str, Strategy]
    seeds: list[int]
    budgets: list[int]
    max_asks_factor: int = 20

    def __post_init__(self) -> None:
        # one for every cell: its tables load once and its values are cached by arch
        self.free_metrics = FreeMetrics(self.plan, Path(self.plan.experiment.resolved_run_dir))
        if len(self.truth.objectives) > 1:
            for name, strategy in self.strategies.items():
                if not strategy.multi_objective:
                    raise ConfigError(
                        "--strategies",
                        f"strategy '{name}' handles one objective, but "
                        f"{len(self.truth.objectives)} are given (see --objectives)",
                    )

    @property
    def budget(self) -> int:
        return max(self.budgets)

    def cell(self, name: str, seed: int) -> Cell:
        return run_cell(
            self.plan.space,
            self.truth,
            self.strategies[name],
            name,
            seed,
            self.budget,
            max_asks=self.max_asks_factor * self.budget,
            initial_archs=self.plan.initial_archs(),
            free_metrics=self.free_metrics,
        )

    def run(self, processes: int = 1, on_cell: Callable[[Cell], None] | None = None) -> list[Cell]:
        """Every (strategy, seed) cell, in forked worker processes when ``processes > 1``
        (where the platform can fork); results are the same either way."""
        global _SHARED
        tasks = [(name, seed) for name in self.strategies for seed in self.seeds]
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # not one line per trial
        cells: list[Cell] = []
        try:
            if processes > 1 and "fork" in multiprocessing.get_all_start_methods():
                _SHARED = self
                with multiprocessing.get_context("fork").Pool(min(processes, len(tasks))) as pool:
                    for cell in pool.imap_unordered(_run_shared, tasks):
                        cells.append(cell)
                        if on_cell:
                            on_cell(cell)
            else:
                for task in tasks:
                    cells.append(self.cell(*task))
                    if on_cell:
                        on_cell(cells[-1])
        finally:
            _SHARED = None
            optuna.logging.set_verbosity(verbosity)
        order = {task: i for i, task in enumerate(tasks)}
        return sorted(cells, key=lambda c: order[(c.strategy, c.seed)])
