"""Training runs fanned out as Ray Tune trials, side by side across the cluster.

A *job* is a plain dict, ``{"id", "folder", "arch", "epochs"}`` and optionally ``"train"``
(a recipe, ``{"trainer", "options"}``, replacing the experiment's) and ``"score"``
(``{"archs", "metric"}``: report the supernet's quality each epoch). With an ``arch`` the job
trains that arch alone (standalone training, ``TrainContext.arch``), else the supernet;
checkpoints go to ``folder``. Each Tune trial runs one job — in the trial's own process when
one worker is asked for, else as a Ray Train run of that many workers launched from the
trial — reports every epoch to Tune (progress, and stoppers such as successive halving that
end trials early), and ends with a ``done`` result: for an arch, the trained model scored by
the experiment's estimators. A rerun resumes each job from the last epoch checkpointed in its
folder; finished jobs are the caller's to skip.
"""

from __future__ import annotations

import io
import logging
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..devices import trial_device
from ..plan import Plan
from .fit import fit_in_process, fit_on_ray_train
from .plain import check_plain
from .run_location import local_run_dir, location_of, ray_storage, sync
from .weights import STATE_FILE, save_atomic
from .worker import Evaluator

log = logging.getLogger(__name__)

#: what a trial that drives a Ray Train run holds itself (Tune refuses an empty request)
DRIVER_CPU = 0.01


def _model_bytes(state: dict[str, Any]) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(state["model"], buffer)
    return buffer.getvalue()


def training_trial(
    config: dict[str, Any],
    experiment: dict[str, Any],
    run_dir: str,
    workers: int,
    use_gpu: bool,
) -> None:
    """Tune function trainable: train ``config["job"]``, score it, report it."""

    job = config["job"]
    if job.get("train"):
        train = {k: v for k, v in experiment["train"].items() if k != "sweep"}
        experiment = {**experiment, "train": {**train, **job["train"]}}
    plan = Plan.from_json(experiment)
    # the job's folder: a path, or its URI in a cloud run directory (mirrored on this node)
    with local_run_dir(job["folder"]) as folder:
        _train_job(plan, job, folder.resolve(), experiment, run_dir, workers, use_gpu)


def _train_job(
    plan: Plan,
    job: dict[str, Any],
    folder: Path,
    experiment: dict[str, Any],
    run_dir: str,
    workers: int,
    use_gpu: bool,
) -> None:
    from ray import tune

    start = time.perf_counter()
    last: dict[str, Any] = {}

    def on_epoch(metrics: dict[str, Any]) -> None:
        last.update(metrics)
        sync(folder)  # the epoch's checkpoint reaches the URI before Tune hears of it
        tune.report({"kind": "epoch", "job": job["id"], **metrics})

    if workers == 1:
        device, _ = trial_device()
        state = fit_in_process(
            plan,
            folder,
            device=device,
            on_epoch=on_epoch,
            arch=job["arch"],
            epochs=job["epochs"],
            score=job.get("score"),
        )
    else:

        def on_item(item: dict[str, Any]) -> None:
            if item.get("kind") == "epoch":
                on_epoch({k: v for k, v in item.items() if k != "kind"})

        state, _ = fit_on_ray_train(
            plan,
            folder / "ray",
            num_workers=workers,
            use_gpu=use_gpu,
            on_item=on_item,
            arch=job["arch"],
            epochs=job["epochs"],
            score=job.get("score"),
            # the trial itself holds a sliver of a CPU: its workers take the rest of theirs
            cpus_per_worker=1.0 - DRIVER_CPU / workers,
        )
        save_atomic(state, folder / STATE_FILE)  # where a sweep finds the trained recipe
    result: dict[str, Any] = {
        **last,  # the last epoch's metrics (schedulers check every result has theirs)
        "kind": "done",
        "job": job["id"],
        "epochs": int(state.get("epoch", 0)),
        "train_s": time.perf_counter() - start,
        "alone": None,
    }
    if job["arch"] is not None:
        alone = Evaluator.build(experiment, run_dir, [_model_bytes(state)], hardware=False)
        result["alone"] = alone.evaluate(job["arch"])
    tune.report(result)


class _Relay:
    """Passes Tune's results of training trials to the caller's callbacks."""

    def __init__(self, on_epoch, on_done, on_stop):
        from ray.tune import Callback

        relay = self

        class _Callback(Callback):
            def on_trial_result(self, iteration, trials, trial, result, **info):
                relay.handle(result)

            def on_trial_complete(self, iteration, trials, trial, **info):
                last = trial.last_result or {}
                if relay.on_stop is not None and last.get("kind") == "epoch":
                    relay.on_stop(last)  # ended without its done result: stopped early

        self.callback = _Callback()
        self.on_epoch, self.on_done, self.on_stop = on_epoch, on_done, on_stop

    def handle(self, result: dict[str, Any]) -> None:
        if result.get("kind") == "done":
            self.on_done(result)
        elif result.get("kind") == "epoch":
            self.on_epoch(result)


def default_concurrency(workers: int, use_gpu: bool) -> int:
    """How many training trials fit side by side on the cluster as it is now."""
    import ray

    total = ray.cluster_resources()
    per_trial = float(workers)
    have = total.get("GPU", 0.0) if use_gpu else total.get("CPU", 1.0)
    return max(1, int(have // per_trial))


def run_training_trials(
    plan: Plan,
    run_dir: Path,
    jobs: list[dict[str, Any]],
    *,
    workers: int,
    use_gpu: bool,
    concurrency: int,
    on_epoch: Callable[[dict[str, Any]], None],
    on_done: Callable[[dict[str, Any]], None],
    stopper: Any = None,
    on_stop: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, str]:
    """Train every job as a Ray Tune trial (``concurrency`` at once, a Tune ``stopper`` —
    e.g. successive halving — stopping some early: ``on_stop`` gets a stopped job's last
    epoch result); returns the error of each job whose trial failed, by job id. Ray must be
    initialised."""
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    from ray import tune

    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    parameters = check_plain(
        {
            "experiment": plan.to_json(),
            "run_dir": str(run_dir),
            "workers": workers,
            "use_gpu": use_gpu,
        },
        "the parameters of every training trial",
    )
    # one worker: the trial is the worker; several: the trial only drives a Ray Train run
    # whose workers hold the resources (Tune needs a non-empty request: a sliver of a CPU)
    resources = {"cpu": 1, "gpu": 1 if use_gpu else 0} if workers == 1 else {"cpu": DRIVER_CPU}
    relay = _Relay(on_epoch, on_done, on_stop)
    storage_path, storage_filesystem = ray_storage(run_dir / "tune")
    # a trial on any node finds its job's folder by its URI in a cloud run directory
    placed = [{**job, "folder": location_of(Path(job["folder"]))} for job in jobs]
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(training_trial, **parameters), resources),
        param_space={"job": tune.grid_search(placed)},
        tune_config=tune.TuneConfig(max_concurrent_trials=concurrency, reuse_actors=False),
        run_config=tune.RunConfig(
            name=f"train-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}",
            storage_path=storage_path,
            storage_filesystem=storage_filesystem,
            failure_config=tune.FailureConfig(max_failures=plan.experiment.train.max_retries),
            callbacks=[relay.callback],
            stop=stopper,
            verbose=0,
            log_to_file=False,
        ),
    )
    grid = tuner.fit()
    errors: dict[str, str] = {}
    for result in grid:
        if result.error is not None:
            cause = result.error
            while getattr(cause, "cause", None) is not None:
                cause = cause.cause
            first = str(cause).strip().splitlines()
            errors[result.config["job"]["id"]] = first[-1] if first else type(cause).__name__
    return errors
