"""Reports of a run: the Pareto front, the trials table, the plot, and the CLI around them.

- :func:`nasforge.report.write_report` reads a run directory's study and writes
  ``trials.csv`` (one row per trial), ``pareto.csv`` / ``pareto.json`` (the feasible
  non-dominated COMPLETE trials, one per distinct arch, best first objective first) and
  ``pareto.png`` (axes named with metric, unit and direction).
- ``nasforge report RUN_DIR`` writes them and prints their paths; ``nasforge export RUN_DIR
  --trial N`` writes ``subnets/N/arch.json``; a trial that failed or does not exist is one
  line on stderr and exit status 2.

The run directory is recorded here without Ray, the way the engine records it: the
experiment as ``experiment.json``, the study opened by ``open_study``, every trial asked,
started, then finished (metrics from the NAS-Bench-Graph tables, constraint values) or
failed through :class:`~nasforge.engine.record.StudyRecord`.
"""

from __future__ import annotations

import csv
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import yaml
from test_pareto import brute_force_front

from nasforge import ArchError, EvalContext, StudyError
from nasforge.cli import main
from nasforge.engine.record import StudyRecord
from nasforge.engine.study import open_study
from nasforge.plan import Plan
from nasforge.report import load_run, write_report
from nasforge_gnn import nasbench_graph as nbg

# -- a run directory recorded without Ray ------------------------------------------------

BOUND_MS = 3.5  # about half of the cora archs are slower: those trials are infeasible
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gnn_nasbench_cora.yaml"
EXPERIMENT: dict[str, Any] = {
    **yaml.safe_load(EXAMPLE.read_text()),
    "name": "gnn_report",
    "constraints": [f"latency_ms <= {BOUND_MS}"],
    "search": {"strategy": "nsga2", "options": {"population_size": 50}, "n_trials": 40, "seed": 0},
}
METRICS = ["valid_acc", "test_acc", "latency_ms", "params_m"]


@dataclass
class Expected:
    """What the test recorded for one trial, kept independently of the study."""

    number: int
    state: str
    arch: dict | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    duplicate_of: int | None = None

    @property
    def feasible(self) -> bool:
        return self.metrics["latency_ms"] <= BOUND_MS


@dataclass
class Run:
    run_dir: Path
    plan: Plan
    trials: dict[int, Expected]

    def by_state(self, state: str) -> list[Expected]:
        return [t for t in self.trials.values() if t.state == state]

    def front(self, *, constrained: bool = True) -> list[Expected]:
        """Brute force: feasible, distinct, COMPLETE trials no other such trial dominates."""
        candidates = [
            t
            for t in self.by_state("COMPLETE")
            if t.duplicate_of is None and (t.feasible or not constrained)
        ]
        directions = ["maximize", "minimize"]
        values = [[t.metrics["valid_acc"], t.metrics["latency_ms"]] for t in candidates]
        on = brute_force_front(values, directions)
        return [t for t, keep in zip(candidates, on, strict=True) if keep]


class Recorder:
    """Does what the engine's searcher does for each trial, minus Ray."""

    def __init__(self, run_dir: Path, experiment: dict[str, Any]):
        data = {**experiment, "run_dir": str(run_dir)}
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "experiment.json").write_text(json.dumps(data, indent=2))
        self.plan = Plan.from_json(data)
        study, _ = open_study(self.plan, run_dir)
        self.record = StudyRecord(study, optuna.samplers.RandomSampler(seed=0))
        (self.estimator,) = self.plan.estimators
        (self.hardware,) = self.plan.hardware
        self.contexts = EvalContext(run_dir=run_dir), EvalContext(run_dir=run_dir)
        self.cache: dict[str, int] = {}  # canonical key -> first trial that evaluated it
        self.trials: dict[int, Expected] = {}
        self.run_dir = run_dir

    def metrics(self, arch: dict) -> dict[str, float]:
        quality = self.estimator.evaluate(arch, self.contexts[0])
        cost = self.hardware.measure(arch, None, self.contexts[1])
        return {**quality, **cost}

    def _finish(self, trial: optuna.Trial, metrics: dict[str, float], attrs: dict) -> None:
        constraints = {str(c): c.violation(metrics[c.metric]) for c in self.plan.constraints}
        values = [metrics[o.metric] for o in self.plan.objectives]
        self.record.finish(trial, values, {**metrics, **attrs}, constraints)

    def trial(self, arch: dict | None = None) -> Expected:
        """Ask (the sampler's arch, or ``arch`` enqueued first), start, evaluate, tell."""
        if arch is not None:
            self.record.enqueue(self.plan.space.to_params(arch), {})
        trial = self.record.ask()
        arch = self.plan.space.suggest(trial)
        key = self.plan.space.key(arch)
        self.record.start(trial, {"arch": arch, "key": key})
        expected = Expected(trial.number, "COMPLETE", arch)
        if key in self.cache:
            first = self.trials[self.cache[key]]
            expected.metrics, expected.duplicate_of = first.metrics, first.number
            self._finish(trial, first.metrics, {"duplicate_of": first.number})
        else:
            try:
                expected.metrics = self.metrics(arch)
            except ArchError as exc:
                expected.state, expected.error = "FAIL", f"ArchError: {exc}"
                self.record.fail(trial, {"error": expected.error})
            else:
                self.cache[key] = trial.number
                self._finish(trial, expected.metrics, {"device": "cpu", "wall_s": 0.001})
        self.trials[trial.number] = expected
        self.record.flush()
        return expected

    def trial_failing_before_start(self, error: str) -> Expected:
        """A trial whose arch could not even be built: failed without being started."""
        trial = self.record.ask()
        self.record.fail(trial, {"error": error})
        expected = Expected(trial.number, "FAIL", error=error)
        self.trials[trial.number] = expected
        self.record.flush()
        return expected

    def run(self) -> Run:
        return Run(self.run_dir, self.plan, self.trials)


def fast_accurate_and_slow_accurate(space, table) -> tuple[dict, dict]:
    """Among 2,000 seeded samples, the most accurate arch within the latency bound and the
    most accurate one beyond it."""
    rng = np.random.default_rng(0)
    best: dict[bool, tuple[float, dict]] = {}
    for _ in range(2000):
        arch = space.sample(rng)
        if set(arch["ops"]) == {"skip"}:
            continue
        row = table[space.bench_hash(arch)]
        feasible = row["latency"] * 1000 <= BOUND_MS
        if feasible not in best or row["valid_perf"] > best[feasible][0]:
            best[feasible] = (row["valid_perf"], arch)
    return best[True][1], best[False][1]


def equivalent_variant(space, arch: dict) -> dict:
    """Another arch with the same canonical key if one exists (reordered ops or another
    link pattern), else ``arch`` itself."""
    key = space.key(arch)
    for link in nbg.LINKS:
        for ops in itertools.permutations(arch["ops"]):
            other = {"link": list(link), "ops": list(ops)}
            if other != arch and space.key(other) == key:
                return other
    return arch


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    """24 sampled trials, the most accurate slow arch (infeasible), a trial that fails before
    it starts, the all-skip arch (no table row: FAIL), a duplicate of a front arch written
    differently, then 10 more sampled trials."""
    recorder = Recorder(tmp_path_factory.mktemp("runs") / "gnn_report", EXPERIMENT)
    space = recorder.plan.space
    fast, slow = fast_accurate_and_slow_accurate(space, nbg.load_table("cora"))
    for _ in range(24):
        recorder.trial()
    recorder.trial(slow)
    recorder.trial_failing_before_start("ValueError: the space could not build an arch")
    recorder.trial({"link": [0, 1, 2, 3], "ops": ["skip"] * 4})
    recorder.trial(fast)
    front_arch = recorder.run().front()[0].arch
    recorder.trial(equivalent_variant(space, front_arch))
    for _ in range(10):
        recorder.trial()
    return recorder.run()


@pytest.fixture(scope="module")
def report(run):
    return write_report(run.run_dir)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_the_recorded_run_exercises_every_rule_of_the_front(run):
    """Guards the scenario: without these, the report tests below could pass vacuously."""
    complete, failed = run.by_state("COMPLETE"), run.by_state("FAIL")
    assert len(run.trials) == 39 and len(failed) == 2 and len(complete) == 37
    assert any(not t.feasible for t in complete) and any(t.feasible for t in complete)
    unconstrained = run.front(constrained=False)
    assert any(not t.feasible for t in unconstrained), "the constraint changes the front"
    (duplicate,) = [t for t in complete if t.duplicate_of is not None]
    assert duplicate.duplicate_of in {t.number for t in run.front()}, "a front arch, twice"
    assert duplicate.arch != run.trials[duplicate.duplicate_of].arch, "written differently"
    assert len(run.front()) >= 3


def test_report_counts_trials_and_lists_its_files(run, report):
    assert (report.trials, report.complete, report.failed) == (39, 37, 2)
    names = [p.name for p in report.files]
    assert names == ["trials.csv", "pareto.csv", "pareto.json", "pareto.png"]
    assert all(p.parent == run.run_dir and p.is_file() for p in report.files)


def test_trials_csv_has_one_row_per_trial_with_every_metric(run, report):
    rows = read_csv(run.run_dir / "trials.csv")
    assert list(rows[0]) == [
        "number", "state", *METRICS, "feasible", "arch", "duplicate_of", "device", "wall_s", "error",
    ]  # fmt: skip
    assert [int(r["number"]) for r in rows] == sorted(run.trials)
    for row in rows:
        expected = run.trials[int(row["number"])]
        assert row["state"] == expected.state
        assert json.loads(row["arch"]) == expected.arch
        if expected.state == "COMPLETE":
            for m in METRICS:
                assert float(row[m]) == pytest.approx(expected.metrics[m], rel=1e-12), m
            assert row["feasible"] == str(expected.feasible)
            assert row["error"] == ""
        else:
            assert all(row[m] == "" for m in METRICS)
            assert row["feasible"] == ""
            assert row["error"] == expected.error
        if expected.duplicate_of is None:
            assert row["duplicate_of"] == ""
        else:
            assert float(row["duplicate_of"]) == expected.duplicate_of


def test_trial_numbers_in_trials_csv_are_written_as_integers(run, report):
    rows = [r for r in read_csv(run.run_dir / "trials.csv") if r["duplicate_of"]]
    assert rows, "the run has a duplicate"
    for row in rows:
        assert row["duplicate_of"] == str(run.trials[int(row["number"])].duplicate_of)


def test_the_all_skip_trial_failed_with_the_estimators_error(run, report):
    rows = {int(r["number"]): r for r in read_csv(run.run_dir / "trials.csv")}
    (all_skip,) = [t for t in run.by_state("FAIL") if t.arch is not None]
    assert "has no entry in the NAS-Bench-Graph cora table" in rows[all_skip.number]["error"]


def test_pareto_csv_and_json_hold_exactly_the_feasible_non_dominated_distinct_trials(run, report):
    expected = {t.number: t for t in run.front()}
    csv_rows = read_csv(run.run_dir / "pareto.csv")
    document = json.loads((run.run_dir / "pareto.json").read_text())
    assert list(csv_rows[0]) == ["number", *METRICS, "arch"]
    assert [r["number"] for r in report.pareto] == [t["number"] for t in document["trials"]]
    assert [int(r["number"]) for r in csv_rows] == [t["number"] for t in document["trials"]]
    assert set(int(r["number"]) for r in csv_rows) == set(expected)
    for row, entry in zip(csv_rows, document["trials"], strict=True):
        trial = expected[entry["number"]]
        assert entry["arch"] == trial.arch and json.loads(row["arch"]) == trial.arch
        for m in METRICS:
            assert entry[m] == trial.metrics[m]
            assert float(row[m]) == pytest.approx(trial.metrics[m], rel=1e-12)
    # best first objective first: valid_acc is maximised, so it falls down the file
    accuracies = [t["valid_acc"] for t in document["trials"]]
    assert accuracies == sorted(accuracies, reverse=True)
    # and along the front, each step down in accuracy buys lower latency
    latencies = [t["latency_ms"] for t in document["trials"]]
    assert latencies == sorted(latencies, reverse=True)


def test_pareto_json_lists_objectives_and_constraints(run, report):
    document = json.loads((run.run_dir / "pareto.json").read_text())
    assert document["objectives"] == [
        {"metric": "valid_acc", "direction": "maximize"},
        {"metric": "latency_ms", "direction": "minimize"},
    ]
    assert document["constraints"] == [f"latency_ms <= {BOUND_MS:g}"]


def test_pareto_png_is_a_png(run, report):
    data = (run.run_dir / "pareto.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_the_plot_names_metrics_units_and_directions_and_draws_the_front(run, monkeypatch):
    import matplotlib.pyplot as plt

    made = []
    subplots = plt.subplots

    def capture(*args, **kwargs):
        fig, ax = subplots(*args, **kwargs)
        made.append(ax)
        return fig, ax

    monkeypatch.setattr(plt, "subplots", capture)
    write_report(run.run_dir)
    (ax,) = made
    assert ax.get_xlabel() == "latency_ms [ms] (minimize)"
    assert ax.get_ylabel() == "valid_acc (maximize)"
    _, labels = ax.get_legend_handles_labels()
    front = run.front()
    infeasible = [t for t in run.by_state("COMPLETE") if not t.feasible]
    assert labels == [
        f"trials ({len(run.by_state('COMPLETE'))})",
        f"infeasible ({len(infeasible)})",
        f"Pareto front ({len(front)})",
    ]
    (line,) = ax.get_lines()
    joined = sorted((t.metrics["latency_ms"], t.metrics["valid_acc"]) for t in front)
    assert line.get_xydata().tolist() == [list(p) for p in joined]


def test_a_run_without_complete_trials_reports_an_empty_front_and_no_plot(tmp_path):
    recorder = Recorder(tmp_path / "all_failed", {**EXPERIMENT, "name": "all_failed"})
    recorder.trial({"link": [0, 0, 0, 0], "ops": ["skip"] * 4})
    recorder.trial_failing_before_start("ValueError: no arch")
    report = write_report(recorder.run_dir)
    assert (report.trials, report.complete, report.failed, report.pareto) == (2, 0, 2, [])
    assert [p.name for p in report.files] == ["trials.csv", "pareto.csv", "pareto.json"]
    assert not (recorder.run_dir / "pareto.png").exists()
    assert read_csv(recorder.run_dir / "pareto.csv") == []
    assert json.loads((recorder.run_dir / "pareto.json").read_text())["trials"] == []
    assert len(read_csv(recorder.run_dir / "trials.csv")) == 2


# -- the CLI ---------------------------------------------------------------------------


def test_cli_report_writes_the_files_and_prints_their_paths(run, capsys):
    for name in ("trials.csv", "pareto.csv", "pareto.json", "pareto.png"):
        (run.run_dir / name).unlink(missing_ok=True)
    assert main(["report", str(run.run_dir)]) == 0
    out = capsys.readouterr().out
    assert f"37 complete / 39 trials, {len(run.front())} on the Pareto front" in out
    for name in ("trials.csv", "pareto.csv", "pareto.json", "pareto.png"):
        assert str(run.run_dir / name) in out
        assert (run.run_dir / name).is_file()


def test_cli_report_of_an_experiment_reads_its_study_where_it_lives(run, report, tmp_path, capsys):
    """`nasforge report EXP.yaml`: the experiment's study wherever its storage says, the
    report into --out (a laptop's copy of a cluster run); a study that is a file in a run
    directory that is not here is one line naming the fix."""
    experiment = {**EXPERIMENT, "run_dir": str(tmp_path / "elsewhere")}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(experiment))
    assert main(["report", str(tmp_path / "exp.yaml")]) == 2
    err = capsys.readouterr().err
    assert "its study is a file in the run directory" in err and "NASFORGE_STORAGE" in err
    assert not (tmp_path / "elsewhere").exists()  # nothing half-written
    experiment["search"] = {**EXPERIMENT["search"], "storage": f"sqlite:///{run.run_dir}/study.db"}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(experiment))
    assert main(["report", str(tmp_path / "exp.yaml"), "--out", str(tmp_path / "here")]) == 0
    assert capsys.readouterr().out.startswith(f"report: {report.complete} complete")
    here = tmp_path / "here"
    assert (here / "pareto.csv").read_bytes() == (run.run_dir / "pareto.csv").read_bytes()
    assert json.loads((here / "experiment.json").read_text())["name"] == EXPERIMENT["name"]


def test_cli_export_writes_the_trials_arch_and_metrics(run, capsys):
    trial = run.front()[0]
    assert main(["export", str(run.run_dir), "--trial", str(trial.number)]) == 0
    path = run.run_dir / "subnets" / str(trial.number) / "arch.json"
    assert str(path) in capsys.readouterr().out
    exported = json.loads(path.read_text())
    assert exported["trial"] == trial.number
    assert exported["arch"] == trial.arch
    assert exported["metrics"] == trial.metrics
    assert exported["space"] == {"name": "gnn.nasbench_graph", "options": {"dataset": "cora"}}
    # the exported arch is the network the metrics belong to
    space = run.plan.space
    row = nbg.load_table("cora")[space.bench_hash(exported["arch"])]
    assert exported["metrics"]["valid_acc"] == row["valid_perf"]


@pytest.mark.parametrize("which", ["failed", "started-and-failed", "missing"])
def test_cli_export_of_a_failed_or_missing_trial_is_one_line_and_status_2(run, capsys, which):
    failed = run.by_state("FAIL")
    number = {
        "failed": next(t.number for t in failed if t.arch is None),
        "started-and-failed": next(t.number for t in failed if t.arch is not None),
        "missing": 999,
    }[which]
    assert main(["export", str(run.run_dir), "--trial", str(number)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert f"trial {number} does not exist or did not complete" in err
    assert not (run.run_dir / "subnets" / str(number)).exists()


def test_a_folder_without_experiment_json_is_not_a_run(tmp_path, capsys):
    with pytest.raises(StudyError, match=r"not a nasforge run directory \(no experiment\.json\)"):
        load_run(tmp_path)
    with pytest.raises(StudyError, match=r"no experiment\.json"):
        write_report(tmp_path)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path}: not a nasforge run directory (no experiment.json)\n"
    assert not (tmp_path / "study.db").exists(), "nothing is created in a non-run folder"


# -- baselines beside the front ----------------------------------------------------------


def baseline_run(tmp_path: Path, **options) -> Recorder:
    """Six recorded trials of an experiment whose estimator scores a baseline."""
    experiment = {
        **EXPERIMENT,
        "name": "gnn_baselines",
        "plugins": ["engine_plugins"],
        "estimators": [{"name": "testing.table_baselines", "options": options}],
    }
    recorder = Recorder(tmp_path / "gnn_baselines", experiment)
    for _ in range(6):
        recorder.trial()
    return recorder


def test_an_estimators_baselines_are_measured_once_and_shown_beside_the_front(tmp_path, capsys):
    from engine_plugins import GCN_CHAIN

    calls = tmp_path / "calls"
    recorder = baseline_run(tmp_path, calls_file=str(calls))
    report = write_report(recorder.run_dir)
    expected = recorder.metrics(GCN_CHAIN)  # the same tables, looked up by the test
    (baseline,) = report.baselines
    assert baseline["name"] == "GCN x4" and baseline["estimator"] == "testing.table_baselines"
    assert baseline["metrics"] == pytest.approx(expected)
    assert json.loads((recorder.run_dir / "pareto.json").read_text())["baselines"] == [baseline]
    assert report.warnings == [] and (recorder.run_dir / "pareto.png").exists()
    # kept in the run directory: a later report (the CLI's) does not measure again
    assert main(["report", str(recorder.run_dir)]) == 0
    assert "baseline GCN x4: valid_acc" in capsys.readouterr().out
    assert len(calls.read_text().splitlines()) == 1


def test_a_failing_baseline_is_a_warning_and_the_report_is_still_written(tmp_path, capsys):
    recorder = baseline_run(tmp_path, fail=True)
    report = write_report(recorder.run_dir)
    assert report.baselines == [] and report.complete == 6
    assert report.warnings == [
        "estimator 'testing.table_baselines': baselines failed: "
        "RuntimeError: injected baseline failure"
    ]
    assert "baselines" not in json.loads((recorder.run_dir / "pareto.json").read_text())
    assert not (recorder.run_dir / "baselines.json").exists()  # the next report tries again
    assert main(["report", str(recorder.run_dir)]) == 0
    assert "warning: estimator 'testing.table_baselines'" in capsys.readouterr().out
