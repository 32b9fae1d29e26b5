"""Many trial writes in one storage round-trip: the study record's batched writes.

Optuna's storage interface writes one field per call (``set_trial_user_attr``, then
``set_trial_system_attr``, then ``set_trial_state_values``…), each its own committed
transaction; against PostgreSQL that is about ten commits per trial, and the search driver
spent 91% of its time in them. :func:`write_trials` writes a batch — new trials with their
whole content, and the results of running ones — in one transaction:

- **RDB** (SQLite, PostgreSQL, MySQL): one commit. New trials are numbered after the study
  row is locked (Optuna's own guard against two writers numbering alike); their params,
  values and attributes go in as multi-row inserts. Finishing trials re-checks, under a row
  lock, that each is still RUNNING (:class:`optuna.exceptions.UpdateFinishedTrialError`
  otherwise, and nothing is written).
- **Journal**: one append of all the operations (the file backend appends them together
  under its lock), exactly the operations Optuna itself would write.
- Any other storage: Optuna's public calls, one by one.

The rows are exactly those Optuna writes (same tables, columns and encodings), so plain
Optuna and optuna-dashboard read the study as if Optuna had written it. This module uses
Optuna's storage internals (the RDB models, the journal's operation codes); the newest-
release smoke run in CI is what notices when they move.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import optuna
from optuna.distributions import distribution_to_json
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from ..errors import StudyError


@dataclass
class TrialResult:
    """The end of a trial already written as RUNNING: its state, values and the attributes
    it gained (``user_attrs``: metrics…; ``system_attrs``: constraint values…)."""

    trial_id: int
    state: TrialState
    values: Sequence[float] | None = None
    user_attrs: Mapping[str, Any] = field(default_factory=dict)
    system_attrs: Mapping[str, Any] = field(default_factory=dict)


class StudyCountError(StudyError):
    """The study did not hold the number of trials the writer expected: another process
    wrote to it. ``found`` is the number it holds."""

    def __init__(self, study_id: int, expected: int, found: int):
        super().__init__(
            f"the study was written to by another process (it holds {found} trials where "
            f"{expected} were expected); run one search per study at a time"
        )
        self.expected, self.found = expected, found


def write_trials(
    storage: BaseStorage,
    study_id: int,
    new: Sequence[FrozenTrial],
    results: Sequence[TrialResult] = (),
) -> list[int]:
    """Create the ``new`` trials (in order, numbered from ``new[0].number``, which must be
    the study's trial count) with their whole content, and apply ``results``, in one
    round-trip where the storage allows it. Returns the new trials' ids.

    Raises :class:`StudyCountError` when the study holds another number of trials (nothing
    is written on RDB storages), and ``UpdateFinishedTrialError`` when a result is for a
    trial that is already finished.
    """
    if not new and not results:
        return []
    if hasattr(storage, "write_trials"):  # a wrapper (ReconnectingStorage): one call of its own
        return storage.write_trials(study_id, new, results)
    if isinstance(storage, RDBStorage):
        return _write_rdb(storage, study_id, new, results)
    if isinstance(storage, JournalStorage):
        return _write_journal(storage, study_id, new, results)
    return _write_each(storage, study_id, new, results)


# -- RDB: one transaction ----------------------------------------------------------------


def _write_rdb(
    storage: RDBStorage, study_id: int, new: Sequence[FrozenTrial], results: Sequence[TrialResult]
) -> list[int]:
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session
    from sqlalchemy import insert, select, update

    trials = models.TrialModel
    with _create_scoped_session(storage.scoped_session) as session:
        ids: list[int] = []
        rows: dict[Any, list[dict[str, Any]]] = {}  # table -> rows to insert (executemany)
        if new:
            models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
            # the study's newest trial (trial numbers are dense: the count of the ones
            # before), found from the primary key's end rather than by counting: flat
            # cost however large the study grows
            last = session.execute(
                select(trials.number)
                .where(trials.study_id == study_id)
                .order_by(trials.trial_id.desc())
                .limit(1)
            ).scalar()
            found = 0 if last is None else last + 1
            if found != new[0].number:
                raise StudyCountError(study_id, new[0].number, found)
            created = session.execute(
                insert(trials).returning(trials.trial_id, sort_by_parameter_order=True),
                [
                    {
                        "study_id": study_id,
                        "number": new[0].number + i,
                        "state": trial.state,
                        "_datetime_start_utc": _utc(trial.datetime_start),
                        "_datetime_complete_utc": _utc(trial.datetime_complete),
                    }
                    for i, trial in enumerate(new)
                ],
            )
            ids = [row[0] for row in created]
            encoded: dict[Any, str] = {}  # the trials of a batch share their distributions
            for trial_id, trial in zip(ids, new, strict=True):
                for name, value in trial.params.items():
                    distribution = trial.distributions[name]
                    text = encoded.get(distribution)
                    if text is None:
                        text = encoded[distribution] = distribution_to_json(distribution)
                    rows.setdefault(models.TrialParamModel, []).append(
                        {
                            "trial_id": trial_id,
                            "param_name": name,
                            "param_value": distribution.to_internal_repr(value),
                            "distribution_json": text,
                        }
                    )
                _add_values(rows, models, trial_id, trial.values)
                _add_attrs(rows, models.TrialUserAttributeModel, trial_id, trial.user_attrs)
                _add_attrs(rows, models.TrialSystemAttributeModel, trial_id, trial.system_attrs)
        if results:
            wanted = [r.trial_id for r in results]
            states = dict(
                session.execute(
                    select(trials.trial_id, trials.state)
                    .where(trials.trial_id.in_(wanted))
                    .with_for_update()
                ).all()
            )
            stuck = [i for i in wanted if i not in states or states[i].is_finished()]
            if stuck:
                raise optuna.exceptions.UpdateFinishedTrialError(
                    f"trials {stuck} cannot be updated: finished or missing"
                )
            for kind, attr in (
                (models.TrialUserAttributeModel, "user_attrs"),
                (models.TrialSystemAttributeModel, "system_attrs"),
            ):
                upserts: dict[Any, list[dict[str, Any]]] = {}
                for r in results:
                    _add_attrs(upserts, kind, r.trial_id, getattr(r, attr))
                _upsert(session, kind, upserts.get(kind, []))
            for r in results:
                _add_values(rows, models, r.trial_id, r.values)
            now = _utc(datetime.now())
            for state in {r.state for r in results}:  # one UPDATE per state, not per trial
                changes: dict[str, Any] = {"state": state}
                if state.is_finished():
                    changes["_datetime_complete_utc"] = now
                session.execute(
                    update(trials)
                    .where(trials.trial_id.in_([r.trial_id for r in results if r.state == state]))
                    .values(**changes)
                    .execution_options(synchronize_session=False)
                )
        for table, table_rows in rows.items():
            if table_rows:  # one executemany per table (pipelined by the driver)
                session.execute(insert(table), table_rows)
    return ids


def _upsert(session: Any, kind: Any, rows: list[dict[str, Any]]) -> None:
    """Insert attribute rows, replacing a trial's existing value of the same key (as
    Optuna's own upsert does): ``ON CONFLICT`` on PostgreSQL and SQLite, through the
    (trial_id, key) unique index; elsewhere a delete of those pairs first."""
    if not rows:
        return
    from sqlalchemy import delete, insert, tuple_

    dialect = session.get_bind().dialect.name
    if dialect in ("postgresql", "sqlite"):
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        statement = dialect_insert(kind)
        statement = statement.on_conflict_do_update(
            index_elements=[kind.trial_id, kind.key],
            set_={"value_json": statement.excluded.value_json},
        )
        session.execute(statement, rows)
        return
    pairs = [(row["trial_id"], row["key"]) for row in rows]
    session.execute(
        delete(kind).where(tuple_(kind.trial_id, kind.key).in_(pairs)),
        execution_options={"synchronize_session": False},
    )
    session.execute(insert(kind), rows)


def _utc(moment: datetime | None) -> datetime | None:
    """A naive local time as the naive UTC Optuna's RDB schema stores."""
    return None if moment is None else moment.astimezone(timezone.utc).replace(tzinfo=None)


def _add_values(
    rows: dict[Any, list[dict[str, Any]]], models: Any, trial_id: int, values: Any
) -> None:
    for objective, value in enumerate(values or ()):
        stored, kind = models.TrialValueModel.value_to_stored_repr(value)
        rows.setdefault(models.TrialValueModel, []).append(
            {"trial_id": trial_id, "objective": objective, "value": stored, "value_type": kind}
        )


def _add_attrs(
    rows: dict[Any, list[dict[str, Any]]], kind: Any, trial_id: int, attrs: Mapping[str, Any]
) -> None:
    rows.setdefault(kind, []).extend(
        {"trial_id": trial_id, "key": k, "value_json": json.dumps(v)} for k, v in attrs.items()
    )


# -- journal: one append -----------------------------------------------------------------


def _write_journal(
    storage: JournalStorage,
    study_id: int,
    new: Sequence[FrozenTrial],
    results: Sequence[TrialResult],
) -> list[int]:
    from optuna.storages.journal._storage import JournalOperation

    def stamp(moment: datetime | None) -> str | None:
        return None if moment is None else moment.astimezone(timezone.utc).isoformat(
            timespec="microseconds"
        )  # fmt: skip

    with storage._thread_lock:
        storage._sync_with_backend()
        if new:
            found = len(storage._replay_result._study_id_to_trial_ids[study_id])
            if found != new[0].number:
                raise StudyCountError(study_id, new[0].number, found)
        for r in results:
            state = storage._replay_result.get_trial(r.trial_id).state
            if state.is_finished():
                raise optuna.exceptions.UpdateFinishedTrialError(
                    f"trial {r.trial_id} cannot be updated: it is {state.name}"
                )
        worker = storage._replay_result.worker_id
        logs: list[dict[str, Any]] = []
        for trial in new:
            multi = trial.values is not None and len(trial.values) > 1
            logs.append({
                "op_code": JournalOperation.CREATE_TRIAL, "worker_id": worker,
                "study_id": study_id, "state": trial.state,
                "value": None if multi else trial.value, "values": trial.values if multi else None,
                "datetime_start": stamp(trial.datetime_start),
                **({"datetime_complete": stamp(trial.datetime_complete)}
                   if trial.datetime_complete else {}),
                "distributions": {k: distribution_to_json(d) for k, d in trial.distributions.items()},
                "params": {k: trial.distributions[k].to_internal_repr(v)
                           for k, v in trial.params.items()},
                "user_attrs": trial.user_attrs, "system_attrs": trial.system_attrs,
                "intermediate_values": trial.intermediate_values,
            })  # fmt: skip
        now = stamp(datetime.now())
        for r in results:
            for key, value in r.user_attrs.items():  # one attribute per operation, as Optuna
                logs.append({"op_code": JournalOperation.SET_TRIAL_USER_ATTR, "worker_id": worker,
                             "trial_id": r.trial_id, "user_attr": {key: value}})  # fmt: skip
            for key, value in r.system_attrs.items():
                logs.append({"op_code": JournalOperation.SET_TRIAL_SYSTEM_ATTR,
                             "worker_id": worker, "trial_id": r.trial_id,
                             "system_attr": {key: value}})  # fmt: skip
            logs.append({"op_code": JournalOperation.SET_TRIAL_STATE_VALUES, "worker_id": worker,
                         "trial_id": r.trial_id, "state": r.state,
                         "values": None if r.values is None else list(r.values),
                         **({"datetime_complete": now} if r.state.is_finished() else {})})  # fmt: skip
        storage._backend.append_logs(logs)
        storage._sync_with_backend()
        if not new:
            return []
        ids = storage._replay_result._study_id_to_trial_ids[study_id]
        written = ids[new[0].number : new[0].number + len(new)]
        mine = storage._replay_result._last_created_trial_id_by_this_process
        if not written or written[-1] != mine:  # another writer came between check and append
            raise StudyCountError(study_id, new[0].number, len(ids) - len(new))
        return list(written)


# -- anything else: Optuna's public calls ------------------------------------------------


def _write_each(
    storage: BaseStorage,
    study_id: int,
    new: Sequence[FrozenTrial],
    results: Sequence[TrialResult],
) -> list[int]:
    ids = []
    for trial in new:
        found = len(storage.get_all_trials(study_id, deepcopy=False))
        if found != trial.number:
            raise StudyCountError(study_id, trial.number, found)
        ids.append(storage.create_new_trial(study_id, template_trial=trial))
    for r in results:
        for key, value in r.user_attrs.items():
            storage.set_trial_user_attr(r.trial_id, key, value)
        for key, value in r.system_attrs.items():
            storage.set_trial_system_attr(r.trial_id, key, value)
        storage.set_trial_state_values(r.trial_id, r.state, r.values)
    return ids
