"""One search phase: lock the run, open or resume the study, fan trials out with Ray Tune.

Resume is the ordinary path: running the same experiment again opens the same study,
counts its COMPLETE trials toward ``search.n_trials``, marks trials a dead driver left
RUNNING as FAIL and re-enqueues their archs, and seeds the duplicate cache with every
evaluated arch — so no completed trial is ever re-run. Stock ``Tuner.restore`` is not used:
Tune's own experiment state lags the study and would re-report finished trials.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

from ..errors import NasforgeError
from ..free_metrics import FreeMetrics, build_sampler
from ..plan import Plan
from .plain import check_plain
from .record import StudyRecord
from .run_location import local_run_dir, ray_storage, sync
from .runtime import RunLock, check_resources, ray_init
from .searcher import Progress, StudySearcher
from .storage import mask_url
from .study import Recovered, open_study, recover, resume_seed
from .warm_start import WarmStart
from .weights import put_supernet_weights, save_json_atomic
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
    tune_trials: int = 0  # Ray Tune trials the archs went out in
    largest_batch: int = 0  # the most archs one Tune trial evaluated


def run_search(
    plan: Plan,
    run_dir: str | Path | None = None,
    *,
    progress: bool = True,
) -> SearchSummary:
    """Run (or resume) the experiment's search until ``n_trials`` trials are COMPLETE.
    ``run_dir`` (default: the experiment's) is a path or a cloud URI (:mod:`.run_location`).

    The study opens in a thread while Ray starts and Ray Tune starts its workers
    (:mod:`.warm_start`)."""
    with local_run_dir(run_dir or plan.experiment.resolved_run_dir) as local:
        return _run_search(plan, local.resolve(), progress)


def _run_search(plan: Plan, run_dir: Path, progress: bool) -> SearchSummary:
    reg = plan.registry
    experiment = plan.experiment
    spec = experiment.search
    start = time.perf_counter()
    with RunLock(run_dir), ThreadPoolExecutor(1, thread_name_prefix="nasforge-study") as pool:
        opening = pool.submit(_open_search, plan, run_dir, progress)
        status, error = "ok", None
        opened: OpenSearch | None = None
        summary = SearchSummary(spec.study_name or experiment.name, "", 0, 0, 0, 0, 0.0)
        try:
            reg.notify(
                "experiment_start", raise_errors=True, experiment=experiment, run_dir=run_dir
            )
            if _searching(opening):
                ray_init()  # while the study opens
            if _searching(opening):
                warm_start = _run_tune(plan, opening, run_dir)
                opened = opening.result()  # raises its error if opening failed
                searcher = warm_start.open_searcher()
            else:
                opened, searcher = opening.result(), None
            if searcher is None:  # the study had its n_trials already
                summary.complete = opened.recovered.complete
            else:
                if opened.progress:
                    opened.progress.update(searcher, force=True)
                summary.complete, summary.failed = searcher.complete, searcher.failed
                summary.tune_trials = searcher.tune_trials
                summary.largest_batch = searcher.largest_batch
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
            if opened is None and opening.done() and opening.exception() is None:
                opened = opening.result()
            if opened is not None:
                storage = opened.study._storage
                summary.storage = mask_url(opened.url)
                summary.resumed_complete = opened.recovered.complete
                summary.orphans_retried = len(opened.recovered.retry)
                summary.storage_s = getattr(storage, "busy_s", 0.0)
                summary.storage_calls = getattr(storage, "calls", 0)
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


@dataclass
class OpenSearch:
    """The search's study, opened and recovered; ``searcher`` is None when it has its
    ``n_trials`` already."""

    study: optuna.Study
    url: str
    recovered: Recovered
    searcher: StudySearcher | None
    progress: Progress | None


def _searching(opening: Future[OpenSearch]) -> bool:
    """Whether the search has trials to run: True while its study is still opening;
    raises the opening's error if it failed."""
    return not opening.done() or opening.result().searcher is not None


def _open_search(plan: Plan, run_dir: Path, show_progress: bool) -> OpenSearch:
    """Open (or resume) the study and build the searcher that drives it (in a thread)."""
    study, url = open_study(plan, run_dir)
    save_json_atomic(plan.to_json(), run_dir / "experiment.json")
    sync(run_dir)  # a cloud run says what it is at once (`nasforge report URI` works)
    recovered = recover(study, plan)
    spec = plan.experiment.search
    if recovered.complete >= spec.n_trials:
        return OpenSearch(study, url, recovered, None, None)
    reg = plan.registry
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
        for arch in plan.initial_archs():
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
    return OpenSearch(study, url, recovered, searcher, progress)


def _run_tune(plan: Plan, opening: Future[OpenSearch], run_dir: Path) -> WarmStart:
    """Fan the search out with Ray Tune; its first trials warm the workers up while
    ``opening`` completes."""
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = str(plan.experiment.search.concurrency)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    from ray import tune

    # With Tune's file loggers off (the study is the record), its result grid complains
    # that no result files exist; nothing is missing.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    spec = plan.experiment.search
    check_resources(
        spec.resources_per_trial.cpu,
        spec.resources_per_trial.gpu,
        "search.resources_per_trial.{}",
        "one trial",
    )
    searcher_opening: Future[StudySearcher] = Future()

    def hand_over(done: Future[OpenSearch]) -> None:
        if done.exception() is not None:
            searcher_opening.set_exception(done.exception())
        else:
            searcher_opening.set_result(done.result().searcher)

    opening.add_done_callback(hand_over)
    warm_start = WarmStart(searcher_opening, spec.concurrency)
    weights, digest = put_supernet_weights(plan, run_dir)
    import ray

    parameters = check_plain(
        {
            "experiment": plan.to_json(),
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
    storage_path, storage_filesystem = ray_storage(run_dir / "tune")
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=warm_start,
            num_samples=-1,
            max_concurrent_trials=spec.concurrency,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=f"search-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}",
            storage_path=storage_path,
            storage_filesystem=storage_filesystem,
            failure_config=tune.FailureConfig(max_failures=spec.max_retries),
            verbose=0,
            log_to_file=False,
        ),
    )
    tuner.fit()
    return warm_start
