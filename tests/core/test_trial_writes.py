"""Batched trial writes: one round-trip per batch, and exactly the record Optuna writes."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import TrialState

from nasforge.engine.storage import open_storage
from nasforge.engine.trial_writes import StudyCountError, TrialResult, write_trials

DISTRIBUTIONS = {"depth": IntDistribution(1, 4), "op": CategoricalDistribution(["gcn", "gat"])}


def storage_urls(tmp_path: Path) -> dict[str, str]:
    return {"sqlite": f"sqlite:///{tmp_path / 'study.db'}", "journal": "journal:study.log"}


def running(study: optuna.Study, number: int, depth: int) -> optuna.trial.FrozenTrial:
    """A RUNNING trial as the engine starts it: params, arch attributes, a sampler attr."""
    return optuna.trial.create_trial(
        state=TrialState.RUNNING,
        params={"depth": depth, "op": "gat"},
        distributions=DISTRIBUTIONS,
        user_attrs={"arch": {"depth": depth, "op": "gat"}, "key": f"d{depth}"},
        system_attrs={"nsga2:generation": 0},
    ) if number >= 0 else None  # fmt: skip


def numbered(trial, number):
    trial.number = number
    return trial


def through_optuna(url: str, tmp_path: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    """The same three trials written with Optuna's own calls, one field per call."""
    storage = open_storage(url.replace("study", f"plain-{name}"), tmp_path)
    study = optuna.create_study(storage=storage, study_name=name, directions=["minimize"] * 2)
    for depth in (1, 2, 3):
        trial_id = storage.create_new_trial(study._study_id, running(study, 0, depth))
        if depth < 3:
            storage.set_trial_user_attr(trial_id, "nll", 0.5 * depth)
            storage.set_trial_user_attr(trial_id, "weight_mb", float(depth))
            storage.set_trial_user_attr(trial_id, "key", f"again{depth - 1}")  # replaced
            storage.set_trial_system_attr(trial_id, "constraints:weight_mb <= 2", depth - 2.0)
            storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [0.5 * depth, depth])
    return study.get_trials()


def comparable(trial: optuna.trial.FrozenTrial) -> tuple:
    return (trial.number, trial.state, trial.values, trial.params, trial.distributions,
            trial.user_attrs, trial.system_attrs, trial.datetime_complete is not None)  # fmt: skip


@pytest.mark.parametrize("kind", ["sqlite", "journal", "postgresql", "inmemory"])
def test_a_batch_is_one_round_trip_and_the_record_optuna_would_write(kind, tmp_path, request):
    if kind == "postgresql":
        url = request.getfixturevalue("postgres_db")
    elif kind == "inmemory":
        url = None
    else:
        url = storage_urls(tmp_path)[kind]
    storage = optuna.storages.InMemoryStorage() if url is None else open_storage(url, tmp_path)
    study = optuna.create_study(storage=storage, study_name="s", directions=["minimize"] * 2)
    calls = getattr(storage, "calls", 0)
    new = [numbered(running(study, 0, depth), n) for n, depth in enumerate((1, 2, 3))]
    ids = write_trials(storage, study._study_id, new)
    one_write = getattr(storage, "calls", 0) - calls
    assert len(ids) == 3 and [t.state for t in study.get_trials()] == [TrialState.RUNNING] * 3
    results = [
        TrialResult(ids[i], TrialState.COMPLETE, [0.5 * (i + 1), i + 1.0],
                    {"nll": 0.5 * (i + 1), "weight_mb": float(i + 1), "key": f"again{i}"},
                    {"constraints:weight_mb <= 2": i - 1.0})
        for i in range(2)
    ]  # fmt: skip
    calls = getattr(storage, "calls", 0)
    assert write_trials(storage, study._study_id, [], results) == []
    if url is not None:
        assert (one_write, storage.calls - calls) == (1, 1)  # a batch is one round-trip
        reference = through_optuna(url, tmp_path, f"ref-{kind}")
        reloaded = optuna.load_study(study_name="s", storage=open_storage(url, tmp_path))
        assert [comparable(t) for t in reloaded.get_trials()] == [comparable(t) for t in reference]
        assert reloaded.get_trials()[1].constraints == {"weight_mb <= 2": 0.0}
        assert not math.isnan(reloaded.get_trials()[0].values[0])


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_stale_writer_is_refused_and_writes_nothing(kind, tmp_path):
    """Another process wrote a trial since: the batch is refused whole (RDB: nothing of it
    is committed), and a result for a finished trial is refused too."""
    url = storage_urls(tmp_path)[kind]
    storage = open_storage(url, tmp_path)
    study = optuna.create_study(storage=storage, study_name="s", directions=["minimize"] * 2)
    (first,) = write_trials(storage, study._study_id, [numbered(running(study, 0, 1), 0)])
    other = optuna.load_study(study_name="s", storage=open_storage(url, tmp_path))
    other.add_trial(numbered(running(study, 0, 4), 1))  # another driver's trial, number 1
    with pytest.raises(StudyCountError, match="another process"):
        write_trials(
            storage,
            study._study_id,
            [numbered(running(study, 0, 2), 1)],
            [TrialResult(first, TrialState.COMPLETE, [1.0, 1.0], {"nll": 1.0})],
        )
    trials = optuna.load_study(study_name="s", storage=open_storage(url, tmp_path)).get_trials()
    assert len(trials) == 2 and trials[1].params["depth"] == 4
    if kind == "sqlite":  # one transaction: the result in the refused batch is not applied
        assert trials[0].state == TrialState.RUNNING and "nll" not in trials[0].user_attrs
    write_trials(storage, study._study_id, [], [TrialResult(first, TrialState.FAIL)])
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        write_trials(storage, study._study_id, [], [TrialResult(first, TrialState.COMPLETE)])


def test_two_drivers_on_one_study_never_write_the_same_trial_number(tmp_path):
    """Two search drivers (each its own record and mirror) on one shared study: the first
    to flush wins; the other's batch is refused whole, with one line, and the study keeps
    every trial once, numbered 0..N-1 — the record stays correct."""
    from nasforge.engine.record import StudyRecord

    url = storage_urls(tmp_path)["sqlite"]
    study = optuna.create_study(
        storage=open_storage(url, tmp_path), study_name="s", directions=["minimize"] * 2
    )
    drivers = [
        StudyRecord(
            optuna.load_study(study_name="s", storage=open_storage(url, tmp_path)),
            optuna.samplers.RandomSampler(seed=seed),
        )
        for seed in (0, 1)
    ]
    asked = []
    for record in drivers:  # both ask and start a batch of two before either writes
        for _ in range(2):
            trial = record.ask()
            trial.suggest_int("depth", 1, 4)
            record.start(trial, {"arch": {"depth": trial.params["depth"]}})
            asked.append((record, trial))
    drivers[0].flush()
    with pytest.raises(StudyCountError) as refused:
        drivers[1].flush()
    assert "\n" not in str(refused.value) and "another process" in str(refused.value)
    for record, trial in asked[:2]:
        record.finish(trial, [1.0, 2.0], {"nll": 1.0}, {})
    drivers[0].flush()
    trials = optuna.load_study(study_name="s", storage=open_storage(url, tmp_path)).get_trials()
    assert [t.number for t in trials] == [0, 1]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert study.get_trials()[0].user_attrs["nll"] == 1.0
