"""The study record: a persistent Optuna study written once per event, sampled in memory.

The strategy's sampler works on an in-memory mirror of the persistent study, so proposing
an arch never reads the database (a sampler re-reads every unfinished trial on every
suggestion, and a fanned-out search always has many in flight). Every event is written
through to the persistent study — the record users open in optuna-dashboard:

- :meth:`StudyRecord.start`: the trial appears RUNNING with its params and arch, in one write;
- :meth:`StudyRecord.finish` / :meth:`StudyRecord.fail`: its metrics, then COMPLETE or FAIL.

Both studies number trials identically: the mirror is loaded from the persistent study at
start, and each mirror trial is created in the persistent study before the next is asked
(archs queued for retry wait in the mirror and are handed out first, in number order).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from ..errors import StudyError

#: prefix of the system attributes where Optuna keeps constraint values (``<= 0`` feasible)
CONSTRAINT_PREFIX = "constraints:"


class StudyRecord:
    """Ask from an in-memory mirror; write every trial through to ``study``'s storage."""

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

    def ask(self) -> optuna.Trial:
        """A new trial from the sampler (not yet written: call :meth:`start` or :meth:`fail`)."""
        return self.mirror.ask()

    def enqueue(self, params: Mapping[str, Any], user_attrs: Mapping[str, Any]) -> None:
        """Have the next :meth:`ask` return these params first (an arch to retry)."""
        self.mirror.enqueue_trial(dict(params), user_attrs=dict(user_attrs))

    def _write(self, trial: optuna.Trial, state: TrialState, user_attrs: Mapping[str, Any]) -> int:
        frozen = FrozenTrial(
            number=trial.number,
            state=state,
            value=None,
            values=None,
            datetime_start=datetime.datetime.now(),
            datetime_complete=datetime.datetime.now() if state.is_finished() else None,
            params=dict(trial.params),
            distributions=dict(trial.distributions),
            user_attrs={**trial.user_attrs, **user_attrs},
            # the sampler's own per-trial state (NSGA-II's generation…), so a resumed search
            # carries on where it was instead of starting its algorithm over
            system_attrs=dict(self.mirror._storage.get_trial_system_attrs(trial._trial_id)),
            intermediate_values={},
            trial_id=0,
        )
        trial_id = self.storage.create_new_trial(self.study_id, template_trial=frozen)
        number = self.storage.get_trial_number_from_id(trial_id)
        if number != trial.number:
            raise StudyError(
                f"study '{self.study.study_name}' was written to by another process "
                f"(trial {number} appeared where {trial.number} was expected); run one "
                "search per study at a time"
            )
        self.trial_ids[trial.number] = trial_id
        return trial_id

    def start(self, trial: optuna.Trial, user_attrs: Mapping[str, Any]) -> None:
        """Record ``trial`` as RUNNING with its params and ``user_attrs`` (one write)."""
        for key, value in user_attrs.items():
            trial.set_user_attr(key, value)
        self._write(trial, TrialState.RUNNING, {})

    def finish(
        self,
        trial: optuna.Trial,
        values: Sequence[float],
        user_attrs: Mapping[str, Any],
        constraints: Mapping[str, float],
    ) -> None:
        """Store ``user_attrs`` (metrics…) and constraint values (name -> value, ``<= 0``
        feasible, where every Optuna sampler reads them), then mark COMPLETE."""
        trial_id = self.trial_ids[trial.number]
        for key, value in user_attrs.items():
            trial.set_user_attr(key, value)
            self.storage.set_trial_user_attr(trial_id, key, value)
        for name, value in constraints.items():
            trial.set_constraint(name, value)
            self.storage.set_trial_system_attr(trial_id, CONSTRAINT_PREFIX + name, float(value))
        self.mirror.tell(trial, list(values))
        self.storage.set_trial_state_values(trial_id, TrialState.COMPLETE, list(values))

    def fail(self, trial: optuna.Trial, user_attrs: Mapping[str, Any]) -> None:
        """Mark ``trial`` FAIL with ``user_attrs`` (the error); writes it if never started."""
        trial_id = self.trial_ids.get(trial.number)
        for key, value in user_attrs.items():
            trial.set_user_attr(key, value)
        self.mirror.tell(trial, state=TrialState.FAIL)
        if trial_id is None:
            self._write(trial, TrialState.FAIL, {})
            return
        for key, value in user_attrs.items():
            self.storage.set_trial_user_attr(trial_id, key, value)
        self.storage.set_trial_state_values(trial_id, TrialState.FAIL)

    def frozen(self, trial: optuna.Trial) -> FrozenTrial:
        """The trial as stored in the persistent study."""
        return self.storage.get_trial(self.trial_ids[trial.number])
