"""`nasforge bench-search`: strategies scored against a tabular space's whole table.

- **Hypervolume.** The 2-D hypervolume equals a hand-computed example and a brute-force
  count of grid cells, whatever the order points arrive in; feeding every arch of the table
  gives a normalised hypervolume of exactly 1.
- **Counting.** With Optuna's real RandomSampler on a tiny table, an evaluation is a new
  canonical key found in the table: re-proposals are told the values found before and are
  free, archs missing from the table are told FAIL and are free, and a strategy that can
  find nothing new stops at the proposal cap with a note.
- **Command line.** One run writes curves.csv, summary.csv (one row per strategy x budget)
  and anytime.png; a non-tabular objective names its estimator, an unknown strategy gets
  the registry's error.
"""

from __future__ import annotations

import csv
import itertools
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml

from nasforge import Categorical, NasforgeError, Objective, SearchSpace
from nasforge.benchmark import BenchSearch, GroundTruth, ground_truth, run_cell
from nasforge.cli import build_parser
from nasforge.pareto import REFERENCE_POINT, Front2D, hypervolume
from nasforge.plan import load_plan
from nasforge_search.optuna_samplers import RandomStrategy

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gnn_nasbench_cora.yaml"


@pytest.fixture(scope="module")
def cora():
    plan = load_plan(EXAMPLE)
    return plan, ground_truth(plan, plan.objectives, Path("unused"))


def test_the_whole_table_normalises_to_exactly_one(cora):
    _, truth = cora
    assert len(truth.values) == 26_206  # every row of NAS-Bench-Graph's Cora table
    scaled = np.array([truth.scaled(v) for v in truth.values.values()])
    assert scaled.min(axis=0).tolist() == [0.0, 0.0]
    assert scaled.max(axis=0).tolist() == [1.0, 1.0]
    valid_acc = np.array([v[0] for v in truth.values.values()])  # maximised: best scales to 0
    assert scaled[valid_acc.argmax(), 0] == 0.0 and truth.best == valid_acc.max()
    front = Front2D()
    for point in scaled:  # every arch "evaluated", in table order
        front.add(*point)
    assert front.hypervolume / truth.hypervolume == 1.0
    assert 0 < truth.hypervolume <= REFERENCE_POINT**2


# -- counting evaluations ----------------------------------------------------------------


class RecordingRandom(optuna.samplers.RandomSampler):
    """Optuna's RandomSampler, noting how each trial ended."""

    def __init__(self, seed, log):
        super().__init__(seed=seed)
        self.log = log

    def after_trial(self, study, trial, state, values):
        self.log.append((trial.params["width"], state, values))
        super().after_trial(study, trial, state, values)


class RecordingRandomStrategy(RandomStrategy):
    def __init__(self, log):
        super().__init__()
        self.log = log

    def sampler(self, space, objectives, seed):
        return RecordingRandom(seed, self.log)


def tiny_table() -> tuple[SearchSpace, GroundTruth]:
    """Widths 1..4, every one measured but 4 (like an untrained arch)."""
    space = SearchSpace([Categorical("width", [1, 2, 3, 4])])
    values = {space.key({"width": w}): (0.5 + 0.1 * w, float(w)) for w in (1, 2, 3)}
    objectives = [Objective("acc", "maximize"), Objective("cost", "minimize")]
    truth = GroundTruth(objectives, values, (0.6, 1.0), (0.8, 3.0), None, 0.8)
    truth.hypervolume = hypervolume(truth.scaled(v) for v in values.values())
    return space, truth


def test_reproposals_are_told_their_values_but_not_counted():
    space, truth = tiny_table()
    log: list = []
    cell = run_cell(space, truth, RecordingRandomStrategy(log), "random", 0, 3, max_asks=100)
    assert cell.evaluations == 3 and cell.note is None
    complete = [(w, v) for w, state, v in log if state == optuna.trial.TrialState.COMPLETE]
    assert len({w for w, _ in complete}) == cell.evaluations  # counted == distinct archs
    assert len(complete) > cell.evaluations  # random re-proposed some: told, not counted
    for width, values in complete:  # a re-proposal is told what it scored the first time
        assert tuple(values) == truth.values[space.key({"width": width})]
    assert cell.proposals == len(log) == cell.evaluations + cell.repeats + cell.missing
    assert cell.hv[-1] == 1.0  # the whole (tiny) table found
    assert cell.best[-1] == pytest.approx(0.8)
    assert all(a <= b for a, b in itertools.pairwise(cell.hv))
    assert all(a <= b for a, b in itertools.pairwise(cell.asks))


def test_archs_missing_from_the_table_fail_free_and_a_stuck_run_stops_with_a_note():
    space, truth = tiny_table()
    log: list = []
    strategy = RecordingRandomStrategy(log)
    cell = run_cell(space, truth, strategy, "random", 1, 4, max_asks=60)
    assert cell.evaluations == 3 and cell.proposals == 60  # only 3 archs can be evaluated
    failed = [w for w, state, _ in log if state == optuna.trial.TrialState.FAIL]
    assert failed and set(failed) == {4} and cell.missing == 1  # one new arch, failed
    assert "random seed 1 stopped after 60 proposals with 3/4 new archs" in cell.note
    assert "1 archs not in the table" in cell.note


def test_a_seed_gives_the_same_curves_in_one_process_or_several(cora):
    plan, truth = cora
    strategies = {"random": RandomStrategy()}
    bench = BenchSearch(plan, truth, strategies, seeds=[0, 1], budgets=[5, 15])
    serial = bench.run()
    forked = bench.run(processes=2)
    assert [(c.strategy, c.seed) for c in forked] == [("random", 0), ("random", 1)]
    for a, b in zip(serial, forked, strict=True):
        assert (a.hv, a.best, a.asks) == (b.hv, b.best, b.asks)
        assert a.evaluations == 15 and 0 < a.hv[-1] <= 1
    assert serial[0].best != serial[1].best or serial[0].hv != serial[1].hv


def test_one_objective_reports_the_best_found_and_its_gap(cora):
    plan, _ = cora
    truth = ground_truth(plan, [Objective("valid_acc", "maximize")], Path("unused"))
    assert truth.hypervolume is None and truth.best == pytest.approx(0.8193333, abs=1e-6)
    cell = BenchSearch(plan, truth, {"random": RandomStrategy()}, [0], [20]).cell("random", 0)
    assert cell.hv == [] and cell.evaluations == 20
    assert all(a <= b for a, b in itertools.pairwise(cell.best))
    assert 0 <= truth.gap(cell.best[-1]) < 0.2


# -- the command line ---------------------------------------------------------------------


def test_the_command_writes_curves_summary_and_plot(tmp_path):
    run_dir = tmp_path / "bench"
    result = subprocess.run(
        [sys.executable, "-m", "nasforge.cli", "bench-search", str(EXAMPLE), "--strategies",
         "random,tpe", "--seeds", "2", "--budgets", "5,20", "--run-dir", str(run_dir),
         "--strategy-option", "tpe.n_startup_trials=5"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("curves.csv", "summary.csv", "anytime.png"):
        assert f"  {run_dir / name}" in result.stdout
    assert (run_dir / "anytime.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with (run_dir / "curves.csv").open() as f:
        curves = list(csv.DictReader(f))
    assert len(curves) == 2 * 2 * 20  # strategies x seeds x evaluations
    assert [int(r["evaluations"]) for r in curves[:20]] == list(range(1, 21))
    with (run_dir / "summary.csv").open() as f:
        summary = list(csv.DictReader(f))
    assert [(r["strategy"], r["budget"]) for r in summary] == [
        ("random", "5"), ("random", "20"), ("tpe", "5"), ("tpe", "20")
    ]  # fmt: skip
    for row in summary:
        assert float(row["hv_q25"]) <= float(row["hv_median"]) <= float(row["hv_q75"]) <= 1
        assert float(row["gap_valid_acc_median"]) >= 0 and row["short"] == "0"
    assert "random    20" in result.stdout  # the printed table
    assert "tpe seed 1: 20 evaluations" in result.stderr  # progress


def bench_search(*argv: str):
    args = build_parser().parse_args(["bench-search", *argv])
    return args.func(args)


def test_an_objective_without_a_table_names_its_estimator(tmp_path, monkeypatch):
    (tmp_path / "untabled_plugin.py").write_text(
        textwrap.dedent(
            """
            from nasforge import Estimator, Metric, hookimpl

            class OpCount(Estimator):
                def __init__(self, space, **options):
                    super().__init__(space, **options)
                    self.metrics = {"n_gcn": Metric("n_gcn", "", "maximize")}

                def evaluate(self, arch, context):
                    return {"n_gcn": float(arch["ops"].count("gcn"))}

            @hookimpl
            def register_estimators(register):
                register("testing.op_count", OpCount)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    experiment = yaml.safe_load(EXAMPLE.read_text())
    experiment["plugins"] = ["untabled_plugin"]
    experiment["estimators"] = [{"name": "testing.op_count"}]
    experiment["objectives"] = [{"metric": "n_gcn"}, {"metric": "latency_ms"}]
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(experiment))
    with pytest.raises(NasforgeError) as error:
        bench_search(str(path), "--run-dir", str(tmp_path / "out"))
    assert str(error.value).startswith(
        f"{path}: estimators[0].name: estimator 'testing.op_count' (which gives 'n_gcn') "
        "is not tabular"
    )
    assert not (tmp_path / "out").exists()


def test_an_unknown_strategy_gets_the_registry_error(tmp_path):
    with pytest.raises(NasforgeError) as error:
        bench_search(str(EXAMPLE), "--strategies", "random,nsga4", "--run-dir", str(tmp_path))
    message = str(error.value)  # what `nasforge` prints after "error: "
    assert message.startswith("--strategies: unknown strategy 'nsga4' (available: ")
    assert "nsga2, nsga3, random, tpe" in message
    with pytest.raises(NasforgeError, match=r"--strategy-option tpe.n_ei_candidates: must be >= 1"):
        bench_search(str(EXAMPLE), "--strategy-option", "tpe.n_ei_candidates=0")


def test_summary_values_are_read_at_each_budget():
    space, truth = tiny_table()
    cell = run_cell(space, truth, RandomStrategy(), "random", 0, 3, max_asks=100)
    assert cell.at(1) == (cell.hv[0], cell.best[0])
    assert cell.at(99) == (cell.hv[-1], cell.best[-1])  # a run that stopped keeps its last
    assert not math.isnan(cell.at(2)[0])
