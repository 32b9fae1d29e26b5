"""A benchmark's results: curves.csv, summary.csv (median and IQR per budget), the anytime
plot and the lines printed at the end."""

from __future__ import annotations

import csv
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..pareto import REFERENCE_POINT
from ..plan import Plan
from .runner import BenchSearch, Cell
from .truth import GroundTruth

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
                    "reference": [REFERENCE_POINT] * len(truth.objectives),
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
