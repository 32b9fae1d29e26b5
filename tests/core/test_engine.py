"""The search engine's contract, on the NAS-Bench-Graph space with its measured tables.

Every search here runs for real: Optuna studies on disk, trials fanned out by Ray Tune on
the session's local Ray (2 CPUs).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import Future
from pathlib import Path

import engine_plugins
import optuna
import pytest
import yaml
from optuna.trial import TrialState

from nasforge.engine import run_search
from nasforge.engine.plain import check_plain
from nasforge.engine.search import _open_search
from nasforge.engine.warm_start import WarmStart
from nasforge.errors import NasforgeError, StudyError
from nasforge.plan import Plan
from nasforge_gnn import nasbench_graph as nbg

pytestmark = pytest.mark.usefixtures("nasforge_ray")


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gnn_nasbench_cora.yaml"


def experiment(options: dict | None = None, **search) -> dict:
    """The shipped Cora example, renamed, with the test plugin and smaller search settings."""
    exp = yaml.safe_load(EXAMPLE.read_text())
    exp["name"] = "engine_test"
    exp["plugins"] = ["engine_plugins"]
    exp["search"] = {"strategy": "nsga2", "n_trials": 40, "seed": 0, "concurrency": 2,
                     "batch_size": 4, "options": {"population_size": 20}, **search}  # fmt: skip
    if not exp["search"]["strategy"].startswith("nsga"):
        exp["search"]["options"] = {}
    if options is not None:
        exp["search"]["options"] = options
    return exp


def plan_of(exp: dict):
    return Plan.from_json(exp)


def trials_of(run_dir: Path, name: str = "engine_test") -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{run_dir / 'study.db'}")
    return study.get_trials()


def faulty(exp: dict, **faults) -> dict:
    exp["estimators"] = [{"name": "testing.table", "options": faults}]
    return exp


def test_every_stored_metric_equals_the_benchmark_table(tmp_path):
    plan = plan_of(experiment(n_trials=120, batch_size=6))
    summary = run_search(plan, tmp_path, progress=False)
    assert summary.complete == 120
    trials = trials_of(tmp_path)
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 120
    table = nbg.load_table("cora")
    for t in trials:
        if t.state == TrialState.FAIL:  # the benchmark never trained the all-skip arch
            assert t.user_attrs["arch"]["ops"] == ["skip"] * 4
            assert "has no entry in the NAS-Bench-Graph cora table" in t.user_attrs["error"]
            continue
        arch = t.user_attrs["arch"]
        row = table[plan.space.bench_hash(arch)]
        assert t.user_attrs["valid_acc"] == row["valid_perf"]
        assert t.user_attrs["test_acc"] == row["perf"]
        assert t.user_attrs["latency_ms"] == row["latency"] * 1000.0
        assert t.user_attrs["params_m"] == row["para"]
        assert t.values == [row["valid_perf"], row["latency"] * 1000.0]
        assert t.user_attrs["key"] == plan.space.key(arch)
        assert t.params == plan.space.to_params(arch)
    # identical archs are evaluated once: every repeat points at the first evaluation
    evaluated = [
        t for t in trials if "duplicate_of" not in t.user_attrs and t.state == TrialState.COMPLETE
    ]
    keys = Counter(t.user_attrs["key"] for t in evaluated)
    assert max(keys.values()) == 1
    by_number = {t.number: t for t in trials}
    for t in trials:
        if "duplicate_of" in t.user_attrs:
            first = by_number[t.user_attrs["duplicate_of"]]
            assert first.user_attrs["key"] == t.user_attrs["key"] and first.values == t.values
    assert all(t.user_attrs["device"] for t in evaluated)
    assert all(t.user_attrs["wall_s"] >= 0 for t in evaluated)


def test_a_raising_estimator_fails_its_trial_and_the_search_goes_on(tmp_path):
    exp = faulty(experiment(n_trials=30, strategy="random"), fail_first_op="gat")
    summary = run_search(plan_of(exp), tmp_path, progress=False)
    trials = trials_of(tmp_path)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert summary.complete == 30 and summary.failed == len(failed) > 0
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 30
    for t in failed:
        assert t.user_attrs["arch"]["ops"][0] == "gat"
        assert t.user_attrs["error"] == "RuntimeError: injected failure for first op 'gat'"
        if "duplicate_of" not in t.user_attrs:  # where it was raised, for the plugin's author
            assert "in evaluate" in t.user_attrs["traceback"]
    assert not any(
        t.user_attrs["arch"]["ops"][0] == "gat" for t in trials if t.state == TrialState.COMPLETE
    )


def test_too_many_failures_stop_the_search_with_a_clear_error(tmp_path):
    exp = faulty(
        experiment(n_trials=30, strategy="random", max_failed_trials=2), fail_first_op="gat"
    )
    exp["space"]["options"]["dataset"] = "cora"
    with pytest.raises(
        Exception, match=r"search stopped: 3 trials failed \(search.max_failed_trials is 2\)"
    ):
        run_search(plan_of(exp), tmp_path, progress=False)
    assert all(t.state.is_finished() for t in trials_of(tmp_path))


def test_a_worker_that_dies_mid_trial_is_retried(tmp_path):
    marker = tmp_path / "killed"
    exp = faulty(experiment(n_trials=20, strategy="random", batch_size=2),
                 kill_once_marker=str(marker))  # fmt: skip
    summary = run_search(plan_of(exp), tmp_path / "run", progress=False)
    assert marker.exists(), "the worker was never killed"
    trials = trials_of(tmp_path / "run")
    assert summary.complete == 20 and summary.failed == 0
    assert [t.state for t in trials] == [TrialState.COMPLETE] * len(trials)


def test_lifecycle_hooks_see_the_search(tmp_path):
    engine_plugins.EVENTS.clear()
    run_search(plan_of(experiment(n_trials=8, batch_size=2)), tmp_path, progress=False)
    names = [name for name, _ in engine_plugins.EVENTS]
    assert names[0] == "experiment_start" and names[-1] == "experiment_end"
    assert names.count("trial_complete") == 8
    summary = engine_plugins.EVENTS[-1][1]
    assert summary["status"] == "ok" and summary["complete"] == 8


def test_rerun_resumes_without_rerunning_completed_trials(tmp_path):
    log = tmp_path / "evaluations.log"
    exp = faulty(experiment(n_trials=20, strategy="random"), log_file=str(log))
    run_search(plan_of(exp), tmp_path / "run", progress=False)
    first = log.read_text().splitlines()
    exp["search"]["n_trials"] = 35
    summary = run_search(plan_of(exp), tmp_path / "run", progress=False)
    assert summary.resumed_complete == 20 and summary.complete == 35
    trials = trials_of(tmp_path / "run")
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 35
    evaluated = Counter(line.split()[1] for line in log.read_text().splitlines())
    assert len(first) == len({line.split()[1] for line in first})
    assert max(evaluated.values()) == 1, "an arch was evaluated twice across the two runs"
    # the resumed sampler explores: the 15 new trials are new archs, not replays of the 20
    assert len(evaluated) >= 33
    # a finished search is a no-op
    again = run_search(plan_of(exp), tmp_path / "run", progress=False)
    assert again.complete == 35 and len(trials_of(tmp_path / "run")) == len(trials)


def kill_driver_and_rerun(tmp_path: Path, env: dict[str, str] | None = None) -> None:
    """SIGKILL the driver mid-search; the same command finishes the search: exactly n
    COMPLETE trials, orphaned RUNNING trials failed and their archs retried, no completed
    arch evaluated again. The strategy's sampler cannot be pickled (a lock, an open file).
    ``env``: the drivers' environment (test_cluster_faults runs it on a multi-node cluster)."""
    log = tmp_path / "evaluations.log"
    # a sampler holding a lock and an open file: nothing of it may reach Ray's pickles
    exp = faulty(experiment(n_trials=24, strategy="testing.locked_random", batch_size=2),
                 delay_s=0.15, log_file=str(log))  # fmt: skip
    exp["run_dir"] = str(tmp_path / "run")
    path = tmp_path / "exp.yaml"
    path.write_text(json.dumps(exp))
    command = [sys.executable, "-m", "nasforge.cli", "search", str(path)]
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    db = tmp_path / "run" / "study.db"
    deadline = time.monotonic() + 120
    complete = 0
    while time.monotonic() < deadline and complete < 12:
        time.sleep(0.3)
        if db.exists():
            try:
                with sqlite3.connect(db) as con:
                    complete = con.execute(
                        "select count(*) from trials where state='COMPLETE'"
                    ).fetchone()[0]
            except sqlite3.OperationalError:  # the driver is still creating the tables
                pass
    assert complete >= 12, driver.communicate(timeout=5)[0].decode()[-2000:]
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    before = {t.number: t for t in trials_of(tmp_path / "run")}
    done_before = {t.user_attrs["key"] for t in before.values() if t.state == TrialState.COMPLETE}
    assert any(t.state == TrialState.RUNNING for t in before.values()), "nothing was in flight"

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "orphaned trials retried" in rerun.stdout
    trials = trials_of(tmp_path / "run")
    states = Counter(t.state for t in trials)
    assert states[TrialState.COMPLETE] == 24
    assert states[TrialState.RUNNING] == 0 and states[TrialState.WAITING] == 0
    orphans = [t for t in trials if t.user_attrs.get("error", "").startswith("orphaned")]
    assert orphans and all(before[t.number].state == TrialState.RUNNING for t in orphans)
    retried = {t.user_attrs["retry_of"]: t for t in trials if "retry_of" in t.user_attrs}
    for orphan in orphans:
        if orphan.user_attrs["key"] not in done_before:
            assert retried[orphan.number].user_attrs["key"] == orphan.user_attrs["key"]
    # completed archs were not evaluated again by the second driver
    evaluations = Counter(line.split()[1] for line in log.read_text().splitlines())
    assert all(evaluations[key] == 1 for key in done_before)


@pytest.mark.smoke
def test_a_driver_killed_mid_search_resumes_to_exactly_n_trials(tmp_path):
    kill_driver_and_rerun(tmp_path)


class _RecordingUnpickler(pickle.Unpickler):
    """Unpickles as usual and notes the module of every class the pickle names."""

    def __init__(self, file):
        super().__init__(file)
        self.modules: set[str] = set()

    def find_class(self, module, name):
        self.modules.add(module)
        return super().find_class(module, name)


def test_ray_tune_pickles_plain_counts_of_the_search_and_never_the_sampler(tmp_path):
    """Tune pickles its searcher into the experiment state: it gets the study's name and
    counts, nothing of the study, its storage or the (unpicklable) sampler."""
    exp = experiment(n_trials=8, strategy="testing.locked_random", batch_size=2)
    run_search(plan_of(exp), tmp_path, progress=False)
    pickles = sorted((tmp_path / "tune").rglob("*.pkl"))
    assert pickles, "Ray Tune wrote no experiment state"
    searchers = []
    for path in pickles:
        unpickler = _RecordingUnpickler(io.BytesIO(path.read_bytes()))
        state = unpickler.load()
        assert not any(m.split(".")[0] in ("optuna", "sqlalchemy", "_thread") or
                       m.startswith(("nasforge.engine.record", "nasforge.experiment", "nasforge.plan"))
                       for m in unpickler.modules), (path, sorted(unpickler.modules))  # fmt: skip
        if isinstance(state, dict) and "_tune_config" in state:
            searchers.append(state["_tune_config"].search_alg)
    assert searchers and all(isinstance(s, WarmStart) for s in searchers)
    for searcher in searchers:
        check_plain(vars(searcher), "the pickled searcher")
        assert len(pickle.dumps(searcher)) < 2000
        with pytest.raises(NasforgeError, match="restored from Ray Tune's pickled state"):
            searcher.suggest("t1")
    # pickled once its study is open, it carries the study's name and counts
    opening = Future()
    more = experiment(n_trials=10, strategy="testing.locked_random", batch_size=2)
    opening.set_result(_open_search(plan_of(more), tmp_path, show_progress=False).searcher)
    restored = pickle.loads(pickle.dumps(WarmStart(opening, concurrency=2)))
    check_plain(vars(restored), "the pickled searcher")
    assert restored.study_name == "engine_test" and restored.n_trials == 10
    assert restored.complete == 8 and restored.failed == 0


def test_whatever_is_not_plain_data_is_refused_before_ray_sees_it():
    check_plain({"archs": [{"depth": [2, 3]}], "n": 1.5, "ok": None}, "config")
    sampler = engine_plugins.LockedRandomSampler(seed=0)
    with pytest.raises(NasforgeError, match=r"config: search\.sampler is a .*LockedRandomSampler"):
        check_plain({"search": {"sampler": sampler}}, "config")
    with pytest.raises(NasforgeError, match=r"config: archs\[1\] is a builtins\.set"):
        check_plain({"archs": [{}, {1, 2}]}, "config")


def test_a_second_driver_on_the_same_run_is_refused(tmp_path):
    from nasforge.engine.runtime import RunLock

    plan = plan_of(experiment(n_trials=4))
    with RunLock(tmp_path), pytest.raises(StudyError, match="another nasforge process"):
        run_search(plan, tmp_path, progress=False)


def test_changing_the_objectives_of_an_existing_study_is_refused(tmp_path):
    run_search(plan_of(experiment(n_trials=4, batch_size=2)), tmp_path, progress=False)
    exp = experiment(n_trials=4)
    exp["objectives"] = [{"metric": "test_acc", "direction": "maximize"}]
    with pytest.raises(StudyError, match=r"set search\.study_name to start a new study"):
        run_search(plan_of(exp), tmp_path, progress=False)


@pytest.mark.parametrize("storage", ["journal:journal.log", "sqlite:///{tmp}/elsewhere.db"])
def test_alternative_storages_hold_the_record(tmp_path, storage):
    storage = storage.format(tmp=tmp_path)
    summary = run_search(
        plan_of(experiment(n_trials=10, storage=storage)), tmp_path, progress=False
    )
    assert summary.complete == 10
    if storage.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        storage = JournalStorage(JournalFileBackend(str(tmp_path / "journal.log")))
    study = optuna.load_study(study_name="engine_test", storage=storage)
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 10
    assert all("arch" in t.user_attrs and "valid_acc" in t.user_attrs for t in study.trials)


def test_environment_storage_overrides_the_experiment(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'from_env.db'}"
    monkeypatch.setenv("NASFORGE_STORAGE", url)
    summary = run_search(
        plan_of(experiment(n_trials=6, batch_size=3)), tmp_path / "run", progress=False
    )
    assert summary.storage == url
    assert len(optuna.load_study(study_name="engine_test", storage=url).trials) >= 6


def test_constraints_are_recorded_and_steer_the_front(tmp_path):
    exp = experiment(n_trials=60, batch_size=5)
    exp["constraints"] = ["latency_ms <= 2"]
    run_search(plan_of(exp), tmp_path, progress=False)
    trials = [t for t in trials_of(tmp_path) if t.state == TrialState.COMPLETE]
    for t in trials:
        assert t.constraints == {"latency_ms <= 2": pytest.approx(t.user_attrs["latency_ms"] - 2)}
    from nasforge.report import write_report

    report = write_report(tmp_path, plan=plan_of(exp))
    assert report.pareto and all(p["latency_ms"] <= 2 for p in report.pareto)


SMALL_OPTIONS = {
    "random": {},
    "tpe": {"n_startup_trials": 4},
    "nsga2": {"population_size": 4},
    "nsga3": {"population_size": 4},
    "gp": {"n_startup_trials": 8},  # each GP proposal fits the model afresh: 4 are enough
    "linas": {"population": 4, "inner_evals": 200},
    "ehvi": {"n_initial": 4, "candidates": 200},
}


def test_the_strategies_tested_here_are_every_registered_strategy():
    from nasforge.plugins import registry

    registered = {n for n in registry().names("strategy") if not n.startswith("testing.")}
    assert registered == set(SMALL_OPTIONS), "add the new strategy to SMALL_OPTIONS"


@pytest.mark.smoke
@pytest.mark.parametrize("strategy", sorted(SMALL_OPTIONS))
def test_every_registered_strategy_searches_through_ray_tune(tmp_path, strategy):
    """Each strategy proposes, Ray Tune fans out, the study records: 12 COMPLETE trials of
    12 distinct archs, with both objectives, and a Pareto front."""
    exp = experiment(n_trials=12, strategy=strategy, concurrency=2, batch_size=2, seed=3)
    exp["search"]["options"] = SMALL_OPTIONS[strategy]
    summary = run_search(plan_of(exp), tmp_path, progress=False)
    trials = trials_of(tmp_path)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert summary.complete == len(complete) == 12 and summary.failed == 0
    assert all(len(t.values) == 2 for t in complete)
    evaluated = [t.user_attrs["key"] for t in complete if "duplicate_of" not in t.user_attrs]
    assert len(evaluated) == len(set(evaluated)) >= 6


@pytest.mark.parametrize("strategy", ["tpe", "linas", "ehvi"])
def test_strategies_run_through_the_engine_and_honour_their_seed(tmp_path, strategy):
    """Same seed, same archs: a one-worker search through Ray Tune proposes the same
    sequence twice (an Optuna sampler, and the two samplers of our own)."""
    runs = []
    for i in range(2):
        exp = experiment(n_trials=12, strategy=strategy, concurrency=1, batch_size=1, seed=7)
        exp["search"]["options"] = SMALL_OPTIONS[strategy]
        run_search(plan_of(exp), tmp_path / str(i), progress=False)
        runs.append([t.user_attrs["arch"] for t in trials_of(tmp_path / str(i))])
    assert runs[0] == runs[1]
    assert len(runs[0]) >= 12


@pytest.mark.parametrize("strategy", sorted(SMALL_OPTIONS))
def test_every_strategy_honours_its_seed(tmp_path, strategy):
    """Every registered strategy's sampler, driven as the engine drives it (one arch per
    trial, metrics from the table), proposes the same 12 archs for the same seed and
    others for another seed. (Through Ray Tune: the test above.)"""
    from nasforge.free_metrics import FreeMetrics, build_sampler
    from nasforge.sdk import EvalContext

    exp = experiment(n_trials=12, strategy=strategy, concurrency=1, batch_size=1)
    exp["search"]["options"] = SMALL_OPTIONS[strategy]
    plan = plan_of(exp)
    context = EvalContext(run_dir=tmp_path)
    estimator, hardware = plan.estimators[0], plan.hardware[0]
    estimator.setup(context)
    hardware.setup(context)
    free = FreeMetrics(plan, tmp_path)

    def proposals(seed: int) -> list[str]:
        sampler = build_sampler(plan.strategy, plan.space, plan.objectives, seed, free)
        directions = [o.direction for o in plan.objectives]
        study = optuna.create_study(directions=directions, sampler=sampler)
        keys = []
        for _ in range(12):
            trial = study.ask()
            arch = plan.space.suggest(trial)
            keys.append(plan.space.key(arch))
            metrics = {**estimator.evaluate(arch, context), **hardware.measure(arch, None, context)}
            study.tell(trial, [metrics[o.metric] for o in plan.objectives])
        return keys

    first = proposals(7)
    assert proposals(7) == first
    assert proposals(8) != first


def test_a_resumed_search_explores_new_archs_instead_of_replaying(tmp_path):
    """The sampler's state (NSGA-II's generation) lives on the trials and its seed moves on
    with the study, so a rerun does not re-propose the first run's archs."""
    plan = plan_of(experiment(n_trials=40, batch_size=4, options={"population_size": 10}))
    run_search(plan, tmp_path, progress=False)
    first = trials_of(tmp_path)
    assert all("NSGAIISampler:generation" in t.system_attrs for t in first)
    exp = experiment(n_trials=70, batch_size=4, options={"population_size": 10})
    run_search(plan_of(exp), tmp_path, progress=False)
    new = [t for t in trials_of(tmp_path)[len(first) :] if t.state == TrialState.COMPLETE]
    replayed = [t for t in new if t.user_attrs.get("duplicate_of", len(first)) < len(first)]
    # a sampler that restarted from generation 0 with the same seed would propose the first
    # run's initial population again, in order; a converging population proposes a few of the
    # first run's archs again by itself (3-6 of 30 on a quiet machine, 11 once under load)
    pairs = zip(first[:10], new[:10], strict=True)
    in_order = sum(a.user_attrs["key"] == b.user_attrs["key"] for a, b in pairs)
    assert len(new) == 30 and in_order <= 2 and len(replayed) < 15
    assert max(t.system_attrs["NSGAIISampler:generation"] for t in new) >= 4


def test_a_study_from_a_different_experiment_is_refused(tmp_path):
    run_search(plan_of(experiment(n_trials=4, batch_size=2)), tmp_path, progress=False)
    written = (tmp_path / "experiment.json").read_text()
    exp = experiment(n_trials=8)
    exp["space"]["options"]["dataset"] = "citeseer"
    with pytest.raises(StudyError, match=r"different 'space' section, so its results do not apply"):
        run_search(plan_of(exp), tmp_path, progress=False)
    assert (tmp_path / "experiment.json").read_text() == written


def test_an_estimator_that_cannot_set_up_stops_the_search_with_its_error(tmp_path):
    bench = tmp_path / "broken.bench"
    bench.write_bytes(b"not a pickle")
    exp = experiment(n_trials=20, strategy="random")
    exp["estimators"] = [{"name": "gnn.nasbench_graph", "options": {"bench_file": str(bench)}}]
    start = time.monotonic()
    with pytest.raises(
        Exception, match=r"setting up the evaluation failed: BenchFileError: .*broken\.bench"
    ):
        run_search(plan_of(exp), tmp_path / "run", progress=False)
    assert time.monotonic() - start < 60
    # usually a warm-up trial meets the error before any arch is handed out (nothing is
    # recorded); archs already handed out are failed with it, none left RUNNING
    trials = trials_of(tmp_path / "run")
    assert all(t.state == TrialState.FAIL for t in trials)
    assert all("setting up the evaluation failed" in t.user_attrs["error"] for t in trials)


def test_an_arch_that_kills_its_worker_does_not_fail_its_batch_mates(tmp_path):
    marker = tmp_path / "killed"
    exp = faulty(experiment(n_trials=12, strategy="random", batch_size=3, max_retries=0),
                 kill_once_marker=str(marker))  # fmt: skip
    summary = run_search(plan_of(exp), tmp_path / "run", progress=False)
    assert marker.exists() and summary.complete == 12
    trials = {t.number: t for t in trials_of(tmp_path / "run")}
    died = [t for t in trials.values() if t.state == TrialState.FAIL]
    assert len(died) == 3
    assert all(t.user_attrs["error"].endswith("the arch is retried alone") for t in died)
    retries = {t.user_attrs["retry_of"]: t for t in trials.values() if "retry_of" in t.user_attrs}
    for t in died:
        assert retries[t.number].state == TrialState.COMPLETE
        assert retries[t.number].user_attrs["key"] == t.user_attrs["key"]


def test_trials_queued_from_outside_are_taken_over(tmp_path):
    plan = plan_of(experiment(n_trials=4, batch_size=2))
    run_search(plan, tmp_path, progress=False)
    arch = {"link": [0, 1, 2, 3], "ops": ["gcn", "gin", "sage", "fc"]}
    study = optuna.load_study(
        study_name="engine_test", storage=f"sqlite:///{tmp_path / 'study.db'}"
    )
    study.enqueue_trial(plan.space.to_params(arch))
    queued = study.trials[-1].number
    run_search(plan_of(experiment(n_trials=8, batch_size=2)), tmp_path, progress=False)
    trials = trials_of(tmp_path)
    assert trials[queued].state == TrialState.FAIL
    taken = [t for t in trials if t.user_attrs.get("retry_of") == queued]
    assert len(taken) == 1 and taken[0].state == TrialState.COMPLETE
    assert taken[0].user_attrs["arch"] == arch


def test_a_trial_bigger_than_a_local_ray_is_refused_before_it_waits_forever(monkeypatch):
    from nasforge.engine.runtime import check_resources, ray_init
    from nasforge.errors import NasforgeError

    monkeypatch.delenv("RAY_ADDRESS")
    with pytest.raises(
        NasforgeError,
        match=r"resources_per_trial.cpu: one trial asks for 64 CPU, but the Ray cluster has 2",
    ):
        ray_init()
        check_resources(64, 0, "search.resources_per_trial.{}", "one trial")


def test_initial_archs_are_evaluated_first_on_a_new_study(tmp_path):
    arch = {"link": [0, 1, 2, 3], "ops": ["gcn", "gat", "sage", "gin"]}
    plan = plan_of(experiment(n_trials=12, strategy="random", batch_size=1, concurrency=1,
                              initial_archs=["largest", arch, "smallest"]))  # fmt: skip
    run_search(plan, tmp_path, progress=False)
    first = [t.user_attrs["arch"] for t in sorted(trials_of(tmp_path), key=lambda t: t.number)][:3]
    assert first == [plan.space.largest(), plan.space.validate(arch), plan.space.smallest()]
    # a resumed study does not evaluate them again
    plan = plan_of(experiment(n_trials=14, strategy="random", batch_size=1, concurrency=1,
                              initial_archs=["largest", arch, "smallest"]))  # fmt: skip
    run_search(plan, tmp_path, progress=False)
    archs = [t.user_attrs["key"] for t in trials_of(tmp_path)]
    assert len(archs) == len(set(archs)) == 14


def test_an_initial_arch_outside_the_space_names_its_position():
    from nasforge.errors import ConfigError

    exp = experiment(initial_archs=["largest", {"link": [0, 1], "ops": ["gcn"]}])
    with pytest.raises(ConfigError, match=r"^search.initial_archs\[1\]: "):
        plan_of(exp)


def test_cheap_evaluations_grow_the_batch_by_themselves_and_a_set_size_wins(tmp_path):
    """Table look-ups cost far less than a Ray Tune trial: without ``batch_size`` the
    engine puts more and more archs in each trial; a user's ``batch_size`` is kept."""
    exp = experiment(strategy="random", n_trials=120)
    del exp["search"]["batch_size"]
    summary = run_search(plan_of(exp), tmp_path / "adaptive", progress=False)
    assert summary.complete == 120
    assert summary.largest_batch >= 8 and summary.tune_trials <= 40, summary
    fixed = run_search(
        plan_of(experiment(strategy="random", n_trials=12, batch_size=3)),
        tmp_path / "fixed",
        progress=False,
    )
    assert (fixed.largest_batch, fixed.tune_trials) == (3, 4)


def test_the_batch_size_follows_the_cost_of_a_tune_trial_against_an_evaluation():
    from nasforge.engine.searcher import BatchSize

    cheap = BatchSize(None, concurrency=2)
    sizes = []
    for _ in range(8):  # 50 ms of Tune overhead around archs of 1 ms each
        size = cheap.next(remaining=10_000)
        cheap.observe(0.05 + 0.001 * size, 0.001 * size, size)
        sizes.append(size)
    assert sizes == [1, 2, 4, 8, 16, 32, 64, 64]  # doubling, up to 64
    assert cheap.next(remaining=20) == 10  # the tail spreads over both workers
    costly = BatchSize(None, concurrency=2)
    costly.observe(3.5 + 1.0, 1.0, 1)  # a first trial that paid for the actor's start
    costly.observe(1.05, 1.0, 2 if costly.next(10_000) == 2 else 1)
    assert costly.next(remaining=10_000) == 1  # 1 s evaluations need no batching
    assert BatchSize(7, concurrency=2).next(remaining=3) == 7  # the user's size wins


def test_warm_start_hands_out_warm_up_trials_until_the_study_is_open(tmp_path):
    """Until the study is open, Tune gets one empty batch per concurrent slot (it starts an
    actor and builds its evaluator) and nothing is recorded; then the study's searcher
    takes over. A worker that cannot set up while warming up ends the search."""
    from ray.tune.search import Searcher

    opening = Future()
    warm = WarmStart(opening, concurrency=2)
    assert warm.suggest("w1") == {"archs": [], "numbers": []}
    assert warm.suggest("w2") == {"archs": [], "numbers": []}
    assert warm.suggest("w3") is None  # both slots warming: Tune asks again later
    warm.on_trial_complete("w1", {"batch": [], "pid": 1})
    plan = plan_of(experiment(n_trials=4, batch_size=2))
    opening.set_result(_open_search(plan, tmp_path, show_progress=False).searcher)
    config = warm.suggest("t1")
    assert len(config["archs"]) == 2 and config["numbers"] == [0, 1]
    assert [t.state for t in trials_of(tmp_path)] == [TrialState.RUNNING] * 2
    warm.on_trial_complete("w2", {"batch": []})  # a late warm-up result is not a batch
    assert [t.state for t in trials_of(tmp_path)] == [TrialState.RUNNING] * 2

    broken = WarmStart(Future(), concurrency=1)
    broken.suggest("w1")
    broken.on_trial_complete("w1", {"fatal": "setting up the evaluation failed: boom"})
    assert broken.suggest("w2") == Searcher.FINISHED
