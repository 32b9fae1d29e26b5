"""A plugin for engine tests: table-backed metrics with injectable faults.

Loaded through an experiment's ``plugins: [engine_plugins]`` (the test session puts this
folder on every Ray worker's PYTHONPATH). The estimator ``testing.table`` returns the real
NAS-Bench-Graph validation/test accuracy, and can also sleep, raise for chosen archs, kill
its own worker process once, and log every evaluation to a file. The strategy
``testing.locked_random`` builds a sampler that cannot be pickled (it holds a
``threading.Lock`` and an open file), as Optuna 5.1's NSGA-II sampler cannot.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import optuna
from pydantic import BaseModel, ConfigDict

from nasforge import Baseline, Strategy, hookimpl
from nasforge_gnn.plugin import NasBenchGraphAccuracy, NasBenchGraphCost

#: lifecycle calls seen by this process (the driver): (hook name, detail)
EVENTS: list[tuple[str, object]] = []


class FaultyTableAccuracy(NasBenchGraphAccuracy):
    """NAS-Bench-Graph accuracy with injectable delay, errors and worker deaths."""

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        dataset: str | None = None
        bench_file: str | None = None
        delay_s: float = 0.0
        fail_first_op: str | None = None
        kill_once_marker: str | None = None
        log_file: str | None = None

    def __init__(self, space, **options):
        self.faults = {
            k: options.pop(k) for k in ("delay_s", "fail_first_op", "kill_once_marker", "log_file")
        }
        super().__init__(space, **options)

    def evaluate(self, arch, context):
        faults = self.faults
        if faults["log_file"]:
            with open(faults["log_file"], "a") as f:
                f.write(f"{os.getpid()} {self.space.key(arch)}\n")
        if faults["delay_s"]:
            time.sleep(faults["delay_s"])
        if faults["fail_first_op"] and arch["ops"][0] == faults["fail_first_op"]:
            raise RuntimeError(f"injected failure for first op {arch['ops'][0]!r}")
        marker = faults["kill_once_marker"]
        if marker and not Path(marker).exists():
            Path(marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return super().evaluate(arch, context)


#: the hand-designed reference of ``testing.table_baselines``: four GCN layers in a chain
GCN_CHAIN = {"link": [0, 1, 2, 3], "ops": ["gcn", "gcn", "gcn", "gcn"]}


class TableAccuracyWithBaselines(NasBenchGraphAccuracy):
    """NAS-Bench-Graph accuracy whose baseline is a hand-designed 4-layer GCN chain, looked
    up in the same tables (accuracy and cost); it can log its calls to ``calls_file`` and
    fail on purpose (``fail``)."""

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        dataset: str | None = None
        calls_file: str | None = None
        fail: bool = False

    def __init__(self, space, **options):
        self.calls_file, self.fail = options.pop("calls_file", None), options.pop("fail", False)
        super().__init__(space, **options)

    def baselines(self, context):
        if self.calls_file:
            with open(self.calls_file, "a") as f:
                f.write(f"{os.getpid()}\n")
        if self.fail:
            raise RuntimeError("injected baseline failure")
        self.setup(context)
        cost = NasBenchGraphCost(self.space, dataset=self.options["dataset"])
        cost.setup(context)
        metrics = {**self.evaluate(GCN_CHAIN, context), **cost.measure(GCN_CHAIN, None, context)}
        return [Baseline("GCN x4", metrics, "four GCN layers in a chain")]


class LockedRandomSampler(optuna.samplers.RandomSampler):
    """Random sampling that logs every proposal to an open file under a lock: it works in
    the driver and cannot be pickled, so it must never reach Ray."""

    def __init__(self, seed=None):
        super().__init__(seed=seed)
        self.lock = threading.Lock()
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (lives as long as the sampler)

    def sample_independent(self, study, trial, param_name, param_distribution):
        with self.lock:
            self.log.write(f"{trial.number} {param_name}\n")
        return super().sample_independent(study, trial, param_name, param_distribution)


class LockedRandomStrategy(Strategy):
    """Uniform random sampling through :class:`LockedRandomSampler`."""

    def sampler(self, space, objectives, seed):
        return LockedRandomSampler(seed=seed)


@hookimpl
def register_estimators(register):
    register("testing.table", FaultyTableAccuracy)
    register("testing.table_baselines", TableAccuracyWithBaselines)


@hookimpl
def register_strategies(register):
    register("testing.locked_random", LockedRandomStrategy)


@hookimpl
def experiment_start(experiment, run_dir):
    EVENTS.append(("experiment_start", experiment.name))


@hookimpl
def trial_complete(experiment, trial):
    EVENTS.append(("trial_complete", trial.number))


@hookimpl
def experiment_end(experiment, run_dir, summary):
    EVENTS.append(("experiment_end", summary))


def delayed_table_experiment(name: str, delay_s: float, **search) -> dict:
    """An experiment over the NAS-Bench-Graph Cora table whose estimator sleeps ``delay_s``
    per arch (what the engine benchmarks time); ``search`` fields are added to a random
    search with seed 0."""
    return {
        "name": name,
        "plugins": ["engine_plugins"],
        "space": {"name": "gnn.nasbench_graph", "options": {"dataset": "cora"}},
        "estimators": [{"name": "testing.table", "options": {"delay_s": delay_s}}],
        "hardware": [{"name": "gnn.nasbench_graph"}],
        "objectives": [{"metric": "valid_acc"}, {"metric": "latency_ms"}],
        "search": {"strategy": "random", "seed": 0, **search},
    }
