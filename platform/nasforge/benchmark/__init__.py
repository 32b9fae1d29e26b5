"""Search-quality benchmarking: strategies x seeds x budgets on a tabular space.

This package owns ``nasforge bench-search``: :mod:`.truth` (the whole table, scaled),
:mod:`.runner` (strategy x seed cells, in forked processes), :mod:`.results` (CSV,
summary, anytime plot) and :mod:`.request` (a benchmark from the command line's options). When every objective of an experiment comes
from a finite table (NAS-Bench-Graph now, any future table), a strategy can be scored
against the ground truth. A component (estimator or hardware model) opts in by listing its
whole table: the :class:`Tabular` protocol. The measurement protocol is fixed, so numbers
compare across strategies, seeds and releases:

- **Scale.** Each objective is scaled to [0, 1] as minimisation with the whole table's min
  and max: a maximised metric ``m`` becomes ``(max - m) / (max - min)``, a minimised one
  ``(m - min) / (max - min)``.
- **Hypervolume.** Two objectives: 2-D hypervolume with the reference point
  :data:`nasforge.pareto.REFERENCE_POINT` (1.01) in each objective;
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

from .request import parse_key_values, prepare_bench_search
from .results import space_label, summarise, summary_lines, write_results
from .runner import BenchSearch, Cell, build_strategies, run_cell
from .truth import GroundTruth, ground_truth

__all__ = [
    "BenchSearch",
    "Cell",
    "GroundTruth",
    "build_strategies",
    "ground_truth",
    "parse_key_values",
    "prepare_bench_search",
    "run_cell",
    "space_label",
    "summarise",
    "summary_lines",
    "write_results",
]
