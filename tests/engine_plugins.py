"""A plugin for engine tests: table-backed metrics with injectable faults.

Loaded through an experiment's ``plugins: [engine_plugins]`` (the test session puts this
folder on every Ray worker's PYTHONPATH). The estimator ``testing.table`` returns the real
NAS-Bench-Graph validation/test accuracy, and can also sleep, raise for chosen archs, kill
its own worker process once, and log every evaluation to a file.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from nasforge import hookimpl
from nasforge_gnn.plugin import NasBenchGraphAccuracy

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


@hookimpl
def register_estimators(register):
    register("testing.table", FaultyTableAccuracy)


@hookimpl
def experiment_start(experiment, run_dir):
    EVENTS.append(("experiment_start", experiment.name))


@hookimpl
def trial_complete(experiment, trial):
    EVENTS.append(("trial_complete", trial.number))


@hookimpl
def experiment_end(experiment, run_dir, summary):
    EVENTS.append(("experiment_end", summary))
