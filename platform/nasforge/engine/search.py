"""One search phase: lock the run, open or resume the study, fan trials out with Ray Tune.

Resume is the ordinary path: running the same experiment again opens the same study,
counts its COMPLETE trials toward ``search.n_trials``, marks trials a dead driver left
RUNNING as FAIL and re-enqueues their archs, and seeds the duplicate cache with every
evaluated arch — so no completed trial is ever re-run. Stock ``Tuner.restore`` is not used:
Tune's own experiment state lags the study and would re-report finished trials.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from ..config import Plan
from ..errors import NasforgeError, StudyError
from ..free_metrics import FreeMetrics, build_sampler
from ..plugins import Registry
from .plain import check_plain
from .record import StudyRecord
from .searcher import Progress, StudySearcher
from .storage import mask_url, open_storage, storage_url
from .worker import evaluate_trial

log = logging.getLogger(__name__)


@dataclass
class SearchSummary:
    """What a search phase did: counts, timing, and where the study lives."""

    study_name: str
    storage: str
    complete: int
    failed: int
    resumed_complete: int
    orphans_retried: int
    wall_s: float
    storage_s: float = 0.0  # time the driver spent in study-storage calls
    storage_calls: int = 0


class RunLock:
    """An exclusive lock on a run directory, released by the OS if the process dies."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / ".lock"
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StudyError(
                f"{self.path.parent}: another nasforge process (pid {holder}) is running this "
                "experiment; wait for it or stop it"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


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


def ray_init(num_cpus: int | None = None) -> None:
    """Join ``RAY_ADDRESS`` if set, else start a local Ray (``num_cpus``: all by default)
    whose every server listens on 127.0.0.1 only, without a dashboard.

    Ray replaces a ``127.0.0.1`` node address by the machine's network address and then
    listens on every interface; its single-machine mode (the default on macOS and Windows,
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``) keeps the GCS, raylets, workers and agents on
    loopback. A local Ray is one machine, so nasforge always starts it that way.
    """
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
        return
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # inherited by Ray's processes
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False  # read at import: this process imported it
    ray.init(
        address="local",  # a new Ray of our own, never one another process started here
        num_cpus=num_cpus,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    node = ray._private.worker.global_worker.node.node_ip_address
    if node != "127.0.0.1":
        log.warning("the local Ray listens on %s, not only on 127.0.0.1", node)


def check_resources(cpu: float, gpu: float, field: str, what: str) -> None:
    """Fail (local Ray) or warn (a cluster that may autoscale) when ``what`` asks for more
    CPUs/GPUs than the cluster has; ``field`` names the experiment field to blame, with
    ``{}`` standing for ``cpu`` or ``gpu``."""
    import ray

    total = ray.cluster_resources()
    for name, key, asked in (("cpu", "CPU", cpu), ("gpu", "GPU", gpu)):
        have = total.get(key, 0.0)
        if asked > have:
            message = f"{field.format(name)}: {what} asks for {asked:g} {key}, but the Ray cluster has {have:g}"
            if not os.environ.get("RAY_ADDRESS"):  # a local Ray cannot grow: it would wait
                raise NasforgeError(message)
            log.warning("%s (waiting for the autoscaler)", message)


def run_search(
    plan: Plan,
    run_dir: Path | None = None,
    *,
    progress: bool = True,
) -> SearchSummary:
    """Run (or resume) the experiment's search until ``n_trials`` trials are COMPLETE."""
    reg = plan.registry
    experiment = plan.experiment
    spec = experiment.search
    run_dir = Path(run_dir or experiment.resolved_run_dir).resolve()
    start = time.perf_counter()
    with RunLock(run_dir):
        study, url = open_study(plan, run_dir)
        (run_dir / "experiment.json").write_text(
            json.dumps(experiment.model_dump(mode="json"), indent=2)
        )
        recovered = recover(study, plan)
        complete = recovered.complete
        summary = SearchSummary(
            study.study_name, mask_url(url), complete, 0, complete, len(recovered.retry), 0.0
        )
        status, error = "ok", None
        try:
            reg.notify(
                "experiment_start", raise_errors=True, experiment=experiment, run_dir=run_dir
            )
            if complete < spec.n_trials:
                searcher = _run_tune(plan, study, run_dir, recovered, reg, progress)
                summary.complete, summary.failed = searcher.complete, searcher.failed
                if searcher.gave_up:
                    raise NasforgeError(f"search stopped: {searcher.gave_up}")
                if searcher.complete < spec.n_trials:
                    raise NasforgeError(
                        f"search stopped at {searcher.complete}/{spec.n_trials} complete trials "
                        "(interrupted?): run the same command again to resume"
                    )
        except BaseException as exc:
            status, error = "error", str(exc)
            raise
        finally:
            summary.wall_s = time.perf_counter() - start
            summary.storage_s = getattr(study._storage, "busy_s", 0.0)
            summary.storage_calls = getattr(study._storage, "calls", 0)
            reg.notify(
                "experiment_end",
                raise_errors=False,
                experiment=experiment,
                run_dir=run_dir,
                summary={
                    "phase": "search",
                    "status": status,
                    "complete": summary.complete,
                    "failed": summary.failed,
                    "wall_s": summary.wall_s,
                    "error": error,
                },
            )
    return summary


def initial_archs(plan: Plan) -> list[dict[str, Any]]:
    """``search.initial_archs`` resolved: ``largest``/``smallest`` from the space."""
    space = plan.space
    named = {"largest": space.largest, "smallest": space.smallest}
    return [
        named[arch]() if isinstance(arch, str) else space.validate(arch)
        for arch in plan.experiment.search.initial_archs
    ]


def _supernet_weights(plan: Plan, run_dir: Path) -> tuple[list[Any] | None, str | None]:
    """``([ref], digest)`` of the trained supernet's weights put once in the object store,
    or ``(None, None)`` when the search reads no supernet."""
    if plan.supernet_factory is None or plan.experiment.train is None:
        return None, None
    import hashlib

    import ray

    from .train import trained_weights

    blob = trained_weights(run_dir)  # a bad file is refused here, not on every worker
    return [ray.put(blob)], hashlib.sha256(blob).hexdigest()[:16]


def resume_seed(seed: int | None, study: optuna.Study) -> int | None:
    """The sampler's seed: the experiment's on a new study; on a resumed one, derived from
    it and the number of trials so far, so the sampler does not replay the first run."""
    done = len(study.get_trials(deepcopy=False))
    if seed is None or done == 0:
        return seed
    return int(np.random.SeedSequence([seed, done]).generate_state(1)[0])


def _run_tune(
    plan: Plan,
    study: optuna.Study,
    run_dir: Path,
    recovered: Recovered,
    reg: Registry,
    show_progress: bool,
) -> StudySearcher:
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = str(plan.experiment.search.concurrency)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    from ray import tune

    # With Tune's file loggers off (the study is the record), its result grid complains
    # that no result files exist; nothing is missing.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    spec = plan.experiment.search
    ray_init()
    check_resources(
        spec.resources_per_trial.cpu,
        spec.resources_per_trial.gpu,
        "search.resources_per_trial.{}",
        "one trial",
    )
    sampler = build_sampler(
        plan.strategy,
        plan.space,
        plan.objectives,
        resume_seed(spec.seed, study),
        FreeMetrics(plan, run_dir),
    )
    record = StudyRecord(study, sampler)
    for number, params in recovered.retry:
        record.enqueue(params, {"retry_of": number})
    if not study.get_trials(deepcopy=False):  # a new study starts from the given archs
        for arch in initial_archs(plan):
            record.enqueue(plan.space.to_params(arch), {})
    wants_trials = bool(reg.pm.hook.trial_complete.get_hookimpls())
    progress = Progress(plan, spec.n_trials) if show_progress else None

    def on_told(trial: optuna.Trial, state: TrialState) -> None:
        if wants_trials:
            frozen = record.frozen(trial)
            reg.notify(
                "trial_complete", raise_errors=False, experiment=plan.experiment, trial=frozen
            )
        if progress:
            progress.update(searcher)

    max_failed = spec.max_failed_trials
    searcher = StudySearcher(
        record,
        plan,
        n_trials=spec.n_trials,
        max_failed_trials=spec.n_trials if max_failed is None else max_failed,
        cache=recovered.cache,
        complete=recovered.complete,
        on_told=on_told,
    )
    weights, digest = _supernet_weights(plan, run_dir)
    import ray

    parameters = check_plain(
        {
            "experiment": plan.experiment.model_dump(mode="json"),
            "run_dir": str(run_dir),
            "weights": weights,
            "weights_digest": digest,
        },
        "the parameters of every search trial",
        allowed=(ray.ObjectRef,),
    )
    trainable = tune.with_resources(
        tune.with_parameters(evaluate_trial, **parameters),
        {"cpu": spec.resources_per_trial.cpu, "gpu": spec.resources_per_trial.gpu},
    )
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            num_samples=-1,
            max_concurrent_trials=spec.concurrency,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=f"search-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}",
            storage_path=str(run_dir / "tune"),
            failure_config=tune.FailureConfig(max_failures=spec.max_retries),
            verbose=0,
            log_to_file=False,
        ),
    )
    tuner.fit()
    if progress:
        progress.update(searcher, force=True)
    return searcher
