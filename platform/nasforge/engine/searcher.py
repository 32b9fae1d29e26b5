"""The Ray Tune searcher that drives the study record by ask/tell.

Tune asks :class:`StudySearcher` for a trial config; the searcher asks the strategy's
sampler for up to ``batch_size`` archs (:class:`BatchSize`: the experiment's, or grown
while evaluations are cheap compared with a Tune trial's own cost), drops the ones already evaluated (their cached
metrics are told at once) or being evaluated (they wait for that evaluation), and hands the
rest to one Tune trial. When Tune reports the trial done, every Optuna trial it stood for is
told its values — or marked FAIL with the error — and stored with its arch and metrics.

The study, not Tune, is the record: this searcher keeps no state worth checkpointing, so
:meth:`save_to_dir` does nothing and a restarted driver rebuilds everything from the study.
Ray Tune pickles its searcher with the experiment state (``tuner.pkl``); what it gets is
:meth:`StudySearcher.__getstate__`, a few plain counts. The study, its storage and the
strategy's sampler (which may hold locks, open files, database connections) never leave
the driver.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from ..errors import NasforgeError, StudyError
from ..pareto import pareto_mask
from ..plan import Plan
from .plain import check_plain
from .record import StudyRecord

log = logging.getLogger(__name__)


class StudySearcher(Searcher):
    """Ask/tell bridge between Ray Tune and a :class:`StudyRecord`; see the module docstring."""

    def __init__(
        self,
        record: StudyRecord,
        plan: Plan,
        *,
        n_trials: int,
        max_failed_trials: int,
        cache: dict[str, tuple[int, dict[str, float]]],
        complete: int,
        on_told: Callable[[optuna.Trial, TrialState], None] | None = None,
    ):
        super().__init__()
        self.record: StudyRecord | None = record
        self.study_name = record.study.study_name
        self.plan = plan
        self.n_trials = n_trials
        spec = plan.experiment.search
        self.sizer = BatchSize(spec.batch_size, spec.concurrency)
        self.batch_size = self.sizer.size
        self.started: dict[str, tuple[float, int]] = {}  # tune trial id -> (time, archs)
        self.tune_trials = 0
        self.largest_batch = 0
        self.max_failed_trials = max_failed_trials
        self.cache = cache  # canonical key -> (trial number, metrics)
        self.errors: dict[str, tuple[int, str]] = {}  # key -> (trial number, estimator error)
        self.complete = complete
        self.failed = 0
        self.waiting: dict[str, list[optuna.Trial]] = {}  # key -> trials awaiting that eval
        self.live: dict[str, list[str]] = {}  # tune trial id -> keys it evaluates
        self.on_told = on_told
        self.values: list[list[float]] = []
        self.gave_up: str | None = None

    #: what a pickled searcher keeps: the counts a user may look at in Tune's experiment state
    PICKLED = ("study_name", "n_trials", "batch_size", "complete", "failed", "gave_up")

    def __getstate__(self) -> dict[str, Any]:
        """Plain data only, for Ray Tune's experiment state: the study name and counts.
        The live study, storage and sampler stay in this process; resume reads the study."""
        state = {name: getattr(self, name) for name in self.PICKLED}
        state.update(_metric=self._metric, _mode=self._mode)
        return check_plain(state, "the search's state pickled by Ray Tune")

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A detached searcher: it reports its counts but cannot search (see :meth:`suggest`)."""
        self.__dict__.update(state)
        self.record = None

    @property
    def pending(self) -> int:
        return sum(len(trials) for trials in self.waiting.values())

    def _want_more(self) -> bool:
        return self.gave_up is None and self.complete + self.pending < self.n_trials

    # -- Tune's interface ----------------------------------------------------------
    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.record is None:
            raise NasforgeError(
                f"study '{self.study_name}': this searcher was restored from Ray Tune's pickled "
                "state, which holds no study or sampler; run the same nasforge command again to "
                "resume from the study"
            )
        archs: list[dict[str, Any]] = []
        keys: list[str] = []
        numbers: list[int] = []
        attempts = 0
        self.batch_size = self.sizer.next(self.n_trials - self.complete - self.pending)
        while (
            len(archs) < self.batch_size and self._want_more() and attempts < 20 * self.batch_size
        ):
            attempts += 1
            trial = self.record.ask()
            try:
                arch = self.plan.space.suggest(trial)
                key = self.plan.space.key(arch)
            except Exception as exc:  # a space that cannot build an arch from its params
                self._fail(trial, f"{type(exc).__name__}: {exc}")
                continue
            self.record.start(trial, {"arch": arch, "key": key})
            if key in self.cache:
                number, metrics = self.cache[key]
                self._tell(trial, metrics, {"duplicate_of": number})
            elif key in self.errors:
                number, error = self.errors[key]
                self._fail(trial, error, {"duplicate_of": number})
            elif key in self.waiting:
                self.waiting[key].append(trial)
            else:
                self.waiting[key] = [trial]
                archs.append(arch)
                keys.append(key)
                numbers.append(trial.number)
                if trial.user_attrs.get("isolate"):  # its batch died: evaluate it alone
                    break
        try:
            self.record.flush()  # the archs handed out are in the study, RUNNING, before they run
        except StudyError as exc:  # storage gone, or another driver wrote to the study
            self.gave_up = self.gave_up or str(exc)
            return Searcher.FINISHED
        if archs:
            self.live[trial_id] = keys
            self.started[trial_id] = (time.perf_counter(), len(archs))
            self.tune_trials += 1
            self.largest_batch = max(self.largest_batch, len(archs))
            return {"archs": archs, "numbers": numbers}
        if self.gave_up is not None or (self.complete >= self.n_trials and not self.pending):
            return Searcher.FINISHED
        return None  # wait for running trials (their failures may call for more)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        try:
            self._complete(trial_id, result, error)
            self.record.flush()  # the batch's results in one write, before the next ask
        except StudyError as exc:
            # The study storage is gone (its wait ran out). Raising into Ray Tune would make
            # it retry the trial, evaluating archs whose results are already recorded; stop
            # proposing instead: the trials not told stay RUNNING and a rerun retries them.
            self.gave_up = self.gave_up or str(exc)

    def _complete(self, trial_id: str, result: dict | None, error: bool) -> None:
        keys = self.live.pop(trial_id, [])
        result = result or {}
        started = self.started.pop(trial_id, None)
        if started and result.get("batch"):
            evaluating = sum(outcome.get("wall_s", 0.0) for outcome in result["batch"])
            self.sizer.observe(time.perf_counter() - started[0], evaluating, started[1])
        if result.get("fatal"):  # the worker could not even set up: retrying cannot help
            self.gave_up = self.gave_up or result["fatal"]
            for key in keys:
                for trial in self.waiting.pop(key, []):
                    self._fail(trial, result["fatal"])
            return
        batch = result.get("batch")
        if error or not batch or len(batch) != len(keys):
            self._batch_died(keys)
            return
        extra = {"device": result.get("device", ""), "node": result.get("node", "")}
        for key, outcome in zip(keys, batch, strict=True):
            trials = self.waiting.pop(key, [])
            if not outcome["ok"]:
                for trial in trials:
                    self._fail(trial, outcome["error"], {"traceback": outcome.get("traceback", "")})
                if trials:  # the same arch would fail the same way: not evaluated again
                    self.errors[key] = (trials[0].number, outcome["error"])
                continue
            metrics = outcome["metrics"]
            for i, trial in enumerate(trials):
                attrs = {**extra, "wall_s": outcome["wall_s"]}
                if i:
                    attrs["duplicate_of"] = trials[0].number
                self._tell(trial, metrics, attrs)
            if trials:
                self.cache[key] = (trials[0].number, metrics)

    def _batch_died(self, keys: list[str]) -> None:
        """The worker died on this batch (retries exhausted). A lone arch is failed; the
        archs of a larger batch are failed and queued again one per Tune trial, so one arch
        that kills its worker does not take its batch-mates down with it."""
        for key in keys:
            trials = self.waiting.pop(key, [])
            alone = len(keys) == 1 or any(t.user_attrs.get("isolate") for t in trials)
            for trial in trials:
                self._fail(
                    trial,
                    "the worker evaluating it died (retries exhausted)"
                    if alone
                    else "the worker died during its batch; the arch is retried alone",
                )
            if trials and not alone:
                params = self.plan.space.to_params(trials[0].user_attrs["arch"])
                self.record.enqueue(params, {"retry_of": trials[0].number, "isolate": True})

    def save_to_dir(self, checkpoint_dir: str, session_str: str = "default") -> None:
        """Nothing to save: the study is the record and resume rebuilds from it."""

    # -- telling the study ---------------------------------------------------------
    def _tell(self, trial: optuna.Trial, metrics: dict[str, float], attrs: dict[str, Any]) -> None:
        constraints = {str(c): c.violation(metrics[c.metric]) for c in self.plan.constraints}
        values = [metrics[o.metric] for o in self.plan.objectives]
        self.record.finish(trial, values, {**metrics, **attrs}, constraints)
        self.complete += 1
        if "duplicate_of" not in attrs:
            self.values.append(values)
        if self.on_told:
            self.on_told(trial, TrialState.COMPLETE)

    def _fail(self, trial: optuna.Trial, message: str, attrs: dict[str, Any] | None = None) -> None:
        attrs = attrs or {}
        self.record.fail(trial, {"error": message, **attrs})
        if "duplicate_of" not in attrs:  # a known-bad arch proposed again is nothing new
            self.failed += 1
            log.warning("trial %d failed: %s", trial.number, message)
            if self.failed > self.max_failed_trials and self.gave_up is None:
                self.gave_up = (
                    f"{self.failed} trials failed (search.max_failed_trials is "
                    f"{self.max_failed_trials}); last error: {message}"
                )
        if self.on_told:
            self.on_told(trial, TrialState.FAIL)


class BatchSize:
    """How many archs one Ray Tune trial evaluates.

    ``fixed`` (the experiment's ``search.batch_size``) always wins. Otherwise the size
    starts at 1 and follows what the finished Tune trials measured: the trial's own cost
    (its wall time less the evaluations', i.e. scheduling, reporting, the driver's writes)
    against one arch's evaluation. It aims at that overhead being at most ``overhead`` of
    a trial's time, at most doubling per finished trial, up to ``largest``; near the end
    of the search it shrinks so the last archs spread over all ``concurrency`` workers
    (never more than an equal share of what remains).
    """

    def __init__(
        self, fixed: int | None, concurrency: int, *, largest: int = 64, overhead: float = 0.1
    ):
        self.fixed = fixed
        self.concurrency = concurrency
        self.largest = largest
        self.overhead = overhead
        self.size = fixed or 1

    def next(self, remaining: int) -> int:
        """The size of the next batch, with ``remaining`` archs left to hand out."""
        if self.fixed:
            return self.fixed
        return max(1, min(self.size, math.ceil(remaining / self.concurrency)))

    def observe(self, wall_s: float, evaluating_s: float, archs: int) -> None:
        """A Tune trial of ``archs`` archs took ``wall_s``, ``evaluating_s`` of it evaluating."""
        if self.fixed or archs < 1:
            return
        cost = max(wall_s - evaluating_s, 0.0)
        per_arch = max(evaluating_s / archs, 1e-6)
        want = cost * (1 - self.overhead) / self.overhead / per_arch
        self.size = int(min(max(want, 1), 2 * self.size, self.largest))


class Progress:
    """One line at most every ``interval`` seconds: trials done / total and best so far."""

    def __init__(self, plan: Plan, total: int, *, interval: float = 2.0, stream=None):
        import sys

        self.plan = plan
        self.total = total
        self.interval = interval
        self.stream = stream or sys.stderr
        self.last = 0.0

    def update(self, searcher: StudySearcher, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.interval:
            return
        self.last = now
        line = f"search: {searcher.complete}/{self.total} complete"
        if searcher.failed:
            line += f", {searcher.failed} failed"
        if searcher.values:
            values = np.asarray(searcher.values, dtype=float)
            objectives = self.plan.objectives
            best = [
                (np.max if o.direction == "maximize" else np.min)(values[:, i])
                for i, o in enumerate(objectives)
            ]
            line += ", best " + ", ".join(
                f"{o.metric}={_fmt(b)}" for o, b in zip(objectives, best, strict=True)
            )
            if len(objectives) > 1:
                front = pareto_mask(values, [o.direction for o in objectives]).sum()
                line += f", Pareto front {front}"
        print(line, file=self.stream, flush=True)


def _fmt(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else str(value)
