"""Search-quality benchmarking: strategies x seeds x budgets on a tabular space.

This module owns ``nasforge bench-search``. When every objective of an experiment comes
from a finite table (NAS-Bench-Graph now, any future table), a strategy can be scored
against the ground truth. A component (estimator or hardware model) opts in by listing its
whole table: the :class:`Tabular` protocol. The measurement protocol is fixed, so numbers
compare across strategies, seeds and releases:

- **Scale.** Each objective is scaled to [0, 1] as minimisation with the whole table's min
  and max: a maximised metric ``m`` becomes ``(max - m) / (max - min)``, a minimised one
  ``(m - min) / (max - min)``.
- **Hypervolume.** Two objectives: 2-D hypervolume with reference point ``(1.01, 1.01)``;
  the normalised HV is the HV of every evaluated point divided by the HV of the whole table.
- **Evaluations.** One evaluation is one proposed arch whose canonical key (``space.key``)
  was not evaluated before in that run. A re-proposal is told the values found before (as
  the engine's duplicate cache does) and is free; an arch with no table entry is told FAIL,
  free, and so are its re-proposals.
- **Quality.** The first objective's best value found after each evaluation, and its gap
  to the table's best (``>= 0``; with one objective this is the whole measurement).

Everything runs in this process, without Ray: one (strategy, seed) cell is an in-memory
Optuna study driven by ask/tell with the strategy's sampler, built as the engine builds it
(``strategy.sampler(space, objectives, seed)``), archs made from the trial as the engine
makes them (``space.suggest(trial)``), the experiment's ``search.initial_archs`` queued
first. Cells are independent, so ``processes > 1`` runs them in forked workers.
"""

from __future__ import annotations

import bisect
import csv
import json
import math
import multiprocessing
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import optuna
from optuna.trial import TrialState

from .config import Plan
from .errors import ConfigError, PluginError
from .free_metrics import FreeMetrics, build_sampler
from .sdk import EvalContext, Objective, Strategy
from .space import Arch, SearchSpace

#: the hypervolume's reference point, in scaled (minimised, [0, 1]) objective space
REFERENCE = (1.01, 1.01)


@runtime_checkable
class Tabular(Protocol):
    """An estimator or hardware model whose every answer is a row of a table it can list.

    ``table(context)`` is called once, after ``setup(context)``, and yields every arch the
    table measures (each inside the space; one per canonical class is enough) with the
    component's metrics for it, exactly what ``evaluate``/``measure`` would return.
    """

    def table(self, context: EvalContext) -> Iterable[tuple[Arch, Mapping[str, float]]]: ...


# -- hypervolume -------------------------------------------------------------------------


class Front2D:
    """The non-dominated set of 2-D minimisation points and its hypervolume, kept as
    points are added one at a time (``O(front)`` per point that changes the front)."""

    def __init__(self, reference: Sequence[float] = REFERENCE):
        self.reference = (float(reference[0]), float(reference[1]))
        self.xs: list[float] = []  # ascending
        self.ys: list[float] = []  # strictly descending
        self.hypervolume = 0.0

    def __len__(self) -> int:
        return len(self.xs)

    def add(self, x: float, y: float) -> bool:
        """Add a point; return whether it changed the front (a dominated point or one equal
        to a front point does not). Points outside the reference box add no volume."""
        rx, ry = self.reference
        if not (x < rx and y < ry):
            return False
        i = bisect.bisect_right(self.xs, x)
        if i and self.ys[i - 1] <= y:  # a front point with x' <= x and y' <= y
            return False
        j = bisect.bisect_left(self.xs, x)
        end = j
        while end < len(self.xs) and self.ys[end] >= y:  # x' >= x and y' >= y: dominated
            end += 1
        self.xs[j:end] = [x]
        self.ys[j:end] = [y]
        self.hypervolume = _area(self.xs, self.ys, self.reference)
        return True


def _area(xs: Sequence[float], ys: Sequence[float], reference: Sequence[float]) -> float:
    """Hypervolume of a front sorted by ascending x (so descending y), all inside the box."""
    rx, ry = reference
    total = 0.0
    for k, (x, y) in enumerate(zip(xs, ys, strict=True)):
        right = xs[k + 1] if k + 1 < len(xs) else rx
        total += (right - x) * (ry - y)
    return total


def hypervolume_2d(
    points: Iterable[Sequence[float]], reference: Sequence[float] = REFERENCE
) -> float:
    """The area dominated by ``points`` (2-D, minimisation) and bounded by ``reference``."""
    front = Front2D(reference)
    for x, y in sorted((float(p[0]), float(p[1])) for p in points):
        front.add(x, y)
    return front.hypervolume


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
                "`table(context)` method, the nasforge.benchmark.Tabular protocol)",
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
        truth.hypervolume = hypervolume_2d(truth.scaled(v) for v in values.values())
    return truth


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
    from .config import _build

    search = plan.experiment.search
    strategies: dict[str, Strategy] = {}
    for name in names:
        given = dict(search.options) if name == search.strategy else {}
        given.update(options.get(name, {}))
        strategy = _build(
            "strategy", name, "--strategies", f"--strategy-option {name}", plan.registry, given
        )
        if not isinstance(strategy, Strategy):
            raise PluginError(f"strategy '{name}' did not build a Strategy")
        strategies[name] = strategy
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise ConfigError(
            "--strategy-option",
            f"options given for '{unknown[0]}', which is not among the strategies "
            f"benchmarked ({', '.join(names)})",
        )
    return strategies


def _initial_archs(plan: Plan) -> list[Arch]:
    """``search.initial_archs`` resolved, as the engine queues them on a new study."""
    space = plan.space
    named = {"largest": space.largest, "smallest": space.smallest}
    return [
        named[arch]() if isinstance(arch, str) else space.validate(arch)
        for arch in plan.experiment.search.initial_archs
    ]


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
            initial_archs=_initial_archs(self.plan),
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


# -- results -----------------------------------------------------------------------------


def _quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, q25, q75) ignoring NaN; NaN when nothing is left."""
    array = np.asarray(values, dtype=float)
    if np.isnan(array).all():
        return math.nan, math.nan, math.nan
    q25, median, q75 = np.nanpercentile(array, [25, 50, 75])
    return float(median), float(q25), float(q75)


def summarise(bench: BenchSearch, cells: Sequence[Cell]) -> list[dict[str, Any]]:
    """One row per strategy x budget: median and interquartile range over seeds of the
    normalised HV (two objectives) and of the first objective's best and gap."""
    truth = bench.truth
    metric = truth.objectives[0].metric
    rows = []
    for name in bench.strategies:
        runs = [c for c in cells if c.strategy == name]
        for budget in sorted(bench.budgets):
            at = [c.at(budget) for c in runs]
            row: dict[str, Any] = {
                "strategy": name,
                "budget": budget,
                "runs": len(runs),
                "short": sum(c.evaluations < budget for c in runs),
            }
            if truth.hypervolume is not None:
                med, q25, q75 = _quartiles([hv for hv, _ in at])
                row.update(hv_median=med, hv_q25=q25, hv_q75=q75)
            best = [b for _, b in at]
            row[f"best_{metric}_median"] = _quartiles(best)[0]
            med, q25, q75 = _quartiles([truth.gap(b) for b in best])
            row.update({f"gap_{metric}_median": med, f"gap_{metric}_q25": q25,
                        f"gap_{metric}_q75": q75})  # fmt: skip
            rows.append(row)
    return rows


def _anytime(runs: Sequence[Cell], budget: int, truth: GroundTruth) -> tuple[np.ndarray, ...]:
    """Per run, HV and gap after 1..budget evaluations (a run that stopped keeps its last)."""
    hv = np.zeros((len(runs), budget))
    gap = np.full((len(runs), budget), np.nan)
    for r, cell in enumerate(runs):
        n = min(cell.evaluations, budget)
        if n == 0:
            continue
        gaps = [truth.gap(b) for b in cell.best[:n]]
        gap[r, :n], gap[r, n:] = gaps, gaps[-1]
        if cell.hv:
            hv[r, :n], hv[r, n:] = cell.hv[:n], cell.hv[n - 1]
    return hv, gap


def space_label(plan: Plan) -> str:
    """The space's name and options, e.g. ``gnn.nasbench_graph dataset=cora``."""
    spec = plan.experiment.space
    return " ".join([spec.name, *(f"{k}={v}" for k, v in spec.options.items())])


def _plot(path: Path, bench: BenchSearch, cells: Sequence[Cell], log_x: bool) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    truth = bench.truth
    metric = truth.objectives[0].metric
    two = truth.hypervolume is not None
    fig, axes = plt.subplots(1, 2 if two else 1, figsize=(12 if two else 6.5, 4.8), dpi=120)
    axes = list(np.atleast_1d(axes))
    x = np.arange(1, bench.budget + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns before a first eval
        for i, name in enumerate(bench.strategies):
            runs = [c for c in cells if c.strategy == name]
            hv, gap = _anytime(runs, bench.budget, truth)
            color = f"C{i}"
            panels = [(axes[0], hv), (axes[1], gap)] if two else [(axes[0], gap)]
            for ax, data in panels:
                q25, med, q75 = np.nanpercentile(data, [25, 50, 75], axis=0)
                ax.plot(x, med, color=color, lw=1.6, label=f"{name} ({len(runs)} seeds)")
                ax.fill_between(x, q25, q75, color=color, alpha=0.2, lw=0)
    if two:
        axes[0].set_ylabel("normalised hypervolume (median, IQR)")
        axes[0].set_title(
            f"{' vs '.join(o.metric for o in truth.objectives)}: HV / HV of the whole table"
        )
    gap_ax = axes[-1]
    gap_ax.set_ylabel(f"gap to the table's best {metric} (median, IQR)")
    gap_ax.set_title(f"best {metric} found: table best {truth.best:.4g}")
    for ax in axes:
        ax.set_xlabel("evaluations (new archs)")
        if log_x:
            ax.set_xscale("log")
        for budget in bench.budgets:
            ax.axvline(budget, color="#999999", lw=0.6, ls=":")
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
    fig.suptitle(f"{bench.plan.experiment.name} ({space_label(bench.plan)}): search quality")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_results(
    run_dir: Path, bench: BenchSearch, cells: Sequence[Cell], *, log_x: bool = False
) -> tuple[list[dict[str, Any]], list[Path]]:
    """``curves.csv``, ``summary.csv``, ``anytime.png`` and ``bench.json`` (what was run,
    the table's normalisation, each cell's counts) in ``run_dir``; returns the summary rows
    and the files."""
    run_dir.mkdir(parents=True, exist_ok=True)
    truth = bench.truth
    metric = truth.objectives[0].metric
    curves = run_dir / "curves.csv"
    with curves.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["strategy", "seed", "evaluations", "proposals", "hv", f"best_{metric}",
                         "wall_s"])  # fmt: skip
        for cell in cells:
            for i in range(cell.evaluations):
                hv = f"{cell.hv[i]:.6f}" if cell.hv else ""
                writer.writerow([cell.strategy, cell.seed, i + 1, cell.asks[i], hv,
                                 repr(cell.best[i]), f"{cell.wall[i]:.3f}"])  # fmt: skip
    rows = summarise(bench, cells)
    summary = run_dir / "summary.csv"
    with summary.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot = _plot(run_dir / "anytime.png", bench, cells, log_x)
    meta = run_dir / "bench.json"
    meta.write_text(
        json.dumps(
            {
                "experiment": bench.plan.experiment.name,
                "space": bench.plan.experiment.space.model_dump(),
                "objectives": [
                    {"metric": o.metric, "direction": o.direction} for o in truth.objectives
                ],
                "table": {
                    "archs": len(truth.values),
                    "low": truth.low,
                    "high": truth.high,
                    "best": truth.best,
                    "hypervolume": truth.hypervolume,
                    "reference": REFERENCE,
                },
                "strategies": {n: dict(s.options) for n, s in bench.strategies.items()},
                "seeds": bench.seeds,
                "budgets": sorted(bench.budgets),
                "max_proposals": bench.max_asks_factor * bench.budget,
                "cells": [
                    {
                        "strategy": c.strategy,
                        "seed": c.seed,
                        "evaluations": c.evaluations,
                        "proposals": c.proposals,
                        "repeats": c.repeats,
                        "missing": c.missing,
                        "errors": c.errors,
                        "wall_s": round(c.wall_s, 3),
                        "note": c.note,
                    }
                    for c in cells
                ],
            },
            indent=2,
        )
    )
    return rows, [curves, summary, plot, meta]


def summary_lines(bench: BenchSearch, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The summary as an aligned text table (median [q25, q75] over seeds)."""
    metric = bench.truth.objectives[0].metric
    two = bench.truth.hypervolume is not None
    header = ["strategy", "budget", *(["HV median [IQR]"] if two else []),
              f"best {metric}", f"gap {metric} [IQR]"]  # fmt: skip
    table = [header]
    for row in rows:
        cells = [row["strategy"], str(row["budget"])]
        if two:
            cells.append(f"{row['hv_median']:.4f} [{row['hv_q25']:.4f}, {row['hv_q75']:.4f}]")
        cells.append(f"{row[f'best_{metric}_median']:.4f}")
        cells.append(
            f"{row[f'gap_{metric}_median']:.4f} "
            f"[{row[f'gap_{metric}_q25']:.4f}, {row[f'gap_{metric}_q75']:.4f}]"
        )
        if row["short"]:
            cells[-1] += f"  ({row['short']} run(s) stopped short)"
        table.append(cells)
    widths = [max(len(r[c]) for r in table) for c in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]
