"""The study, the record of a search: opened (or refused), and recovered after a crash.

:func:`open_study` creates or loads an experiment's Optuna study and refuses one made by
a different experiment; :func:`recover` rebuilds everything a (re)started search needs from
the study alone (finished archs, orphaned trials to retry, queued trials to take over);
:func:`resume_seed` moves the sampler's seed on with the study so a resumed search does not
replay the first run's proposals.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from ..errors import StudyError
from ..plan import Plan
from .storage import mask_url, open_storage, storage_url

#: the experiment fields that define what a study's trials mean; a rerun may change the
#: budget and the search settings, not these
DEFINING_FIELDS = (
    "plugins",
    "space",
    "task",
    "train",
    "estimators",
    "hardware",
    "objectives",
    "constraints",
)


def open_study(plan: Plan, run_dir: Path, *, create: bool = True) -> tuple[optuna.Study, str]:
    """Create or load the experiment's study.

    A study made by a different experiment (another space, estimator, objective…) is
    refused: its recorded metrics would be reused as if they were this experiment's.
    With ``create=False`` a missing study is an error (for read-only commands).
    """
    experiment = plan.experiment
    url = storage_url(experiment.search.storage, run_dir)
    storage = open_storage(url, run_dir)
    name = experiment.search.study_name or experiment.name
    directions = [o.direction for o in plan.objectives]
    names = [o.metric for o in plan.objectives]
    defining = experiment.model_dump(mode="json", include=set(DEFINING_FIELDS))
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        if not create:
            raise StudyError(
                f"no study '{name}' in {mask_url(url)}: run `nasforge search` first, or set "
                "NASFORGE_STORAGE to the storage the search used"
            ) from None
        study = optuna.create_study(study_name=name, storage=storage, directions=directions)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(names)
        study.set_user_attr("experiment", experiment.model_dump(mode="json"))
        return study, url
    stored = [d.name.lower() for d in study.directions]
    if stored != directions or (study.metric_names or names) != names:
        raise StudyError(
            f"study '{name}' in {mask_url(url)} optimises {study.metric_names} {stored}, but the "
            f"experiment asks {names} {directions}: set search.study_name to start a new study"
        )
    recorded = study.user_attrs.get("experiment", {})
    for section in DEFINING_FIELDS:
        if section in recorded and recorded[section] != defining[section]:
            raise StudyError(
                f"study '{name}' in {mask_url(url)} was made by an experiment with a different "
                f"'{section}' section, so its results do not apply: set search.study_name to "
                "start a new study (or restore the original section)"
            )
    return study, url


ORPHANED = "orphaned: its driver stopped before it finished"
REQUEUED = "queued outside nasforge: its params were queued again for this search"


@dataclass
class Recovered:
    """What a (re)started search learns from the study before asking for anything."""

    cache: dict[str, tuple[int, dict[str, float]]]  # canonical key -> (trial, metrics)
    complete: int
    orphans: int  # trials found RUNNING and marked FAIL now
    retry: list[tuple[int, dict[str, Any]]]  # (trial number, Optuna params) to ask first


def recover(study: optuna.Study, plan: Plan) -> Recovered:
    """Rebuild the search's state from the study alone.

    Trials left RUNNING by a dead driver are marked FAIL (``error`` says orphaned); every
    orphaned arch that has not completed since, and has not been retried yet, is returned
    for retry — so a driver that dies again before retrying loses nothing either. Trials
    someone queued with ``study.enqueue_trial`` (WAITING) are taken over the same way.
    """
    metric_names = list(plan.metrics)
    storage = study._storage
    trials = study.get_trials(deepcopy=False)
    orphans = 0
    for trial in trials:
        if trial.state in (TrialState.RUNNING, TrialState.WAITING):
            queued = trial.state == TrialState.WAITING
            if queued:  # WAITING -> RUNNING stamps its start time, which FAIL requires
                storage.set_trial_state_values(trial._trial_id, TrialState.RUNNING)
            storage.set_trial_user_attr(trial._trial_id, "error", REQUEUED if queued else ORPHANED)
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            orphans += not queued
    trials = study.get_trials(deepcopy=False)
    cache: dict[str, tuple[int, dict[str, float]]] = {}
    complete = 0
    retried = {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}
    for trial in trials:
        if trial.state == TrialState.COMPLETE:
            complete += 1
            key = trial.user_attrs.get("key")
            metrics = {m: trial.user_attrs[m] for m in metric_names if m in trial.user_attrs}
            if key is not None and key not in cache and len(metrics) == len(metric_names):
                cache[key] = (trial.number, metrics)
    retry: list[tuple[int, dict[str, Any]]] = []
    keys: set[str] = set()
    for trial in trials:
        if trial.state != TrialState.FAIL or trial.number in retried:
            continue
        error = trial.user_attrs.get("error")
        if error == REQUEUED and "fixed_params" in trial.system_attrs:
            retry.append((trial.number, dict(trial.system_attrs["fixed_params"])))
        elif error == ORPHANED and "arch" in trial.user_attrs:
            key = trial.user_attrs["key"]
            if key not in cache and key not in keys:
                retry.append((trial.number, plan.space.to_params(trial.user_attrs["arch"])))
                keys.add(key)
    return Recovered(cache, complete, orphans, retry)


def resume_seed(seed: int | None, study: optuna.Study) -> int | None:
    """The sampler's seed: the experiment's on a new study; on a resumed one, derived from
    it and the number of trials so far, so the sampler does not replay the first run."""
    done = len(study.get_trials(deepcopy=False))
    if seed is None or done == 0:
        return seed
    return int(np.random.SeedSequence([seed, done]).generate_state(1)[0])
