"""The study record: a persistent Optuna study written in batches, sampled in memory.

The strategy's sampler works on an in-memory mirror of the persistent study, so proposing
an arch never reads the database (a sampler re-reads every unfinished trial on every
suggestion, and a fanned-out search always has many in flight). Every event is written
through to the persistent study — the record users open in optuna-dashboard — in batches:
the events since the last :meth:`StudyRecord.flush` go in one storage round-trip
(:mod:`nasforge.engine.trial_writes`):

- :meth:`StudyRecord.start`: the trial will appear RUNNING with its params and arch;
- :meth:`StudyRecord.finish` / :meth:`StudyRecord.fail`: its metrics, constraint values and
  COMPLETE or FAIL (a trial started and finished between two flushes is written once,
  finished).

The search driver flushes after handing out a batch of archs (before they are evaluated)
and after recording a batch of results (before the next is asked for), so every arch being
evaluated is in the study as RUNNING, and a driver that dies loses no recorded result.

Both studies number trials identically: the mirror is loaded from the persistent study at
start, and each flush checks, under the study's lock, that the persistent study holds
exactly the trials the mirror expects (another driver writing to it is refused with one
line, before anything is written). Archs queued for retry wait in the mirror and are
handed out first, in number order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from ..errors import StudyError
from .trial_writes import TrialResult, write_trials

#: prefix of the system attributes where Optuna keeps constraint values (``<= 0`` feasible)
CONSTRAINT_PREFIX = "constraints:"


class StudyRecord:
    """Ask from an in-memory mirror; write every trial through to ``study``'s storage in
    batches (:meth:`flush`)."""

    def __init__(self, study: optuna.Study, sampler: optuna.samplers.BaseSampler):
        self.study = study
        self.storage: BaseStorage = study._storage
        self.study_id: int = study._study_id
        self.mirror = optuna.create_study(
            directions=study.directions, sampler=sampler, study_name=study.study_name
        )
        existing = study.get_trials(deepcopy=False)
        if any(not t.state.is_finished() for t in existing):
            raise StudyError("the study has unfinished trials; recover it before searching")
        self.mirror.add_trials(existing)
        self.trial_ids: dict[int, int] = {t.number: t._trial_id for t in existing}
        self._unwritten: dict[int, optuna.Trial] = {}  # number -> trial not yet in the study
        self._results: dict[int, TrialResult] = {}  # number -> result of a written trial

    def ask(self) -> optuna.Trial:
        """A new trial from the sampler (not yet written: call :meth:`start` or :meth:`fail`)."""
        return self.mirror.ask()

    def enqueue(self, params: Mapping[str, Any], user_attrs: Mapping[str, Any]) -> None:
        """Have the next :meth:`ask` return these params first (an arch to retry)."""
        self.mirror.enqueue_trial(dict(params), user_attrs=dict(user_attrs))

    def start(self, trial: optuna.Trial, user_attrs: Mapping[str, Any]) -> None:
        """Record ``trial`` as RUNNING with its params and ``user_attrs`` (at the next flush)."""
        for key, value in user_attrs.items():
            trial.set_user_attr(key, value)
        self._unwritten[trial.number] = trial

    def finish(
        self,
        trial: optuna.Trial,
        values: Sequence[float],
        user_attrs: Mapping[str, Any],
        constraints: Mapping[str, float],
    ) -> None:
        """Store ``user_attrs`` (metrics…) and constraint values (name -> value, ``<= 0``
        feasible, where every Optuna sampler reads them), then mark COMPLETE (at the next
        flush)."""
        for key, value in user_attrs.items():
            trial.set_user_attr(key, value)
        for name, value in constraints.items():
            trial.set_constraint(name, value)
        self.mirror.tell(trial, list(values))
        if trial.number not in self._unwritten:
            self._results[trial.number] = TrialResult(
                self.trial_ids[trial.number],
                TrialState.COMPLETE,
                list(values),
                dict(user_attrs),
                {CONSTRAINT_PREFIX + name: float(v) for name, v in constraints.items()},
            )

    def fail(self, trial: optuna.Trial, user_attrs: Mapping[str, Any]) -> None:
        """Mark ``trial`` FAIL with ``user_attrs`` (the error), at the next flush; a trial
        never started is written too."""
        for key, value in user_attrs.items():
            trial.set_user_attr(key, value)
        self.mirror.tell(trial, state=TrialState.FAIL)
        if trial.number in self.trial_ids:
            self._results[trial.number] = TrialResult(
                self.trial_ids[trial.number], TrialState.FAIL, None, dict(user_attrs)
            )
        else:
            self._unwritten[trial.number] = trial

    def flush(self) -> None:
        """Write every event since the last flush to the study, in one storage round-trip."""
        if not self._unwritten and not self._results:
            return
        new = [self.frozen(self._unwritten[n]) for n in sorted(self._unwritten)]
        ids = write_trials(self.storage, self.study_id, new, list(self._results.values()))
        self.trial_ids.update((t.number, i) for t, i in zip(new, ids, strict=True))
        self._unwritten.clear()
        self._results.clear()

    def frozen(self, trial: optuna.Trial) -> FrozenTrial:
        """The trial as recorded: the mirror's trial as it is now (params, attributes, and
        state, values and constraints when told), what the study holds after the next flush."""
        return self.mirror._storage.get_trial(trial._trial_id)
