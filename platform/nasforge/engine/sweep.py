"""``train.sweep``: supernet recipes trained side by side, the best one kept.

Every recipe of the sweep (:meth:`~nasforge.experiment.TrainSpec.recipes`) trains a supernet
as a Ray Tune trial (:mod:`.train_trials`); each epoch it reports the supernet's quality —
the mean quality, by the experiment's estimators, of fixed archs spread over the space — and
ASHA stops the recipes that fall behind. The complete recipe with the best final quality
wins: its weights become ``RUN_DIR/supernet/final.pt``. Each recipe lives in
``RUN_DIR/supernet/sweep/<id>/`` (its epoch checkpoints, and ``result.json`` once it is
complete or stopped), so a rerun after a kill trains only what is missing and resumes what
was cut off; ``supernet/sweep.json`` tables every recipe.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from ..errors import NasforgeError
from ..plan import Plan
from .quality import QUALITY
from .run_location import fetch, sync
from .weights import STATE_FILE, EpochLog, load_state, save_json_atomic


class SuccessiveHalving:
    """ASHA's stopping rule (asynchronous successive halving, Li et al. 2020) as a Ray Tune
    stopper that survives a restart.

    Rungs sit at ``grace_period * reduction_factor**k`` epochs. A recipe reaching a rung is
    stopped when its quality is below the ``1 - 1/reduction_factor`` quantile of the
    qualities recorded at that rung so far, its own included — the rule of Ray Tune's
    ``ASHAScheduler``. ``history`` (per-epoch qualities of recipes trained before a restart)
    is recorded first, so a resumed sweep judges recipes against everything it has seen.
    """

    def __init__(
        self,
        grace_period: int,
        reduction_factor: float,
        maximize: bool,
        history: dict[str, list[float]],
    ):
        self.reduction_factor, self.sign = reduction_factor, 1.0 if maximize else -1.0
        self.milestones: set[int] = set()
        rung = float(grace_period)
        while rung <= 100_000:
            self.milestones.add(round(rung))
            rung *= reduction_factor
        self.rungs: dict[int, dict[str, float]] = {}
        for job, values in history.items():
            for epoch, value in enumerate(values, start=1):
                self.stops(job, epoch, value)

    def stops(self, job: str, epoch: int, value: float) -> bool:
        """Record ``job``'s quality at ``epoch``; whether the rule stops it there."""
        import numpy as np

        if epoch not in self.milestones or value is None:
            return False
        recorded = self.rungs.setdefault(epoch, {})
        recorded[job] = self.sign * float(value)
        if len(recorded) < 2:
            return False
        cutoff = np.percentile(list(recorded.values()), (1 - 1 / self.reduction_factor) * 100)
        return recorded[job] < cutoff

    def tune_stopper(self):
        """This rule as a ``ray.tune.Stopper``."""
        from ray.tune import Stopper

        rule = self

        class _Stopper(Stopper):
            def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
                if result.get("kind") != "epoch" or QUALITY not in result:
                    return False
                return rule.stops(result["job"], int(result["epoch"]), result[QUALITY])

            def stop_all(self) -> bool:
                return False

        return _Stopper()


def _history(folder: Path) -> list[float]:
    path = folder / "history.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)[QUALITY] for line in path.read_text().splitlines() if line]


def _describe(recipe: dict[str, Any], base: dict[str, Any]) -> str:
    """A recipe by what differs from the experiment's own."""
    changed = {k: v for k, v in recipe["options"].items() if base["options"].get(k) != v}
    trainer = "" if recipe["trainer"] == base["trainer"] else f"{recipe['trainer']} "
    text = ", ".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in changed.items())
    return (trainer + (text or "as configured")).strip()


def run_sweep(plan: Plan, folder: Path, *, progress: bool = True) -> tuple[dict[str, Any], dict]:
    """Train every recipe not finished yet, then pick the best; returns the winner's final
    checkpoint state and the sweep's summary (also written to ``sweep.json``). Ray must be
    initialised; the caller holds the run's lock."""
    from ..fidelity.selection import cost_function, quality_metrics, spread_archs
    from .train_trials import default_concurrency, run_training_trials

    train = plan.experiment.train
    sweep = train.sweep
    recipes = train.recipes()
    base = {"trainer": train.trainer, "options": dict(train.options)}
    metric, maximize = quality_metrics(plan)[0]
    archs = [
        a
        for a, _ in spread_archs(
            plan,
            sweep.quality_archs,
            front=[],
            cost=cost_function(plan, folder.parent),
            seed=train.seed,
        )
    ]
    score = {"archs": archs, "metric": metric}
    root = folder / "sweep"
    root.mkdir(parents=True, exist_ok=True)
    jobs = []
    for recipe in recipes:
        digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]
        jobs.append(
            {
                "id": f"recipe-{digest}",
                "folder": str(root / f"recipe-{digest}"),
                "arch": None,
                "epochs": None,
                "train": recipe,
                "score": score,
            }
        )
    results: dict[str, dict[str, Any]] = {}
    for job in jobs:
        path = Path(job["folder"]) / "result.json"
        if path.exists():
            results[job["id"]] = json.loads(path.read_text())
    todo = [job for job in jobs if job["id"] not in results]
    by_id = {job["id"]: job for job in jobs}
    names = {job["id"]: _describe(job["train"], base) for job in jobs}
    logs: dict[str, EpochLog] = {}

    def on_epoch(result: dict[str, Any]) -> None:
        job_id, epoch = result["job"], int(result.get("epoch", 0))
        if job_id not in logs:
            logs[job_id] = EpochLog(Path(by_id[job_id]["folder"]) / "history.jsonl")
        logs[job_id].append({"epoch": epoch, QUALITY: result.get(QUALITY)})
        if progress:
            print(
                f"sweep: {names[job_id]}: epoch {epoch}/{int(result.get('epochs', 0))}  "
                f"{QUALITY} {result.get(QUALITY, float('nan')):.4g}",
                flush=True,
            )

    def finish(result: dict[str, Any], status: str, epochs: int, train_s: float | None) -> None:
        job = by_id[result["job"]]
        record = {
            "id": job["id"],
            "recipe": job["train"],
            "status": status,
            "epochs": epochs,
            QUALITY: result.get(QUALITY),  # a done result carries its last epoch's metrics
            "train_s": train_s,
        }
        save_json_atomic(record, Path(job["folder"]) / "result.json")
        sync(Path(job["folder"]))  # a finished recipe is kept even if the driver dies next
        results[job["id"]] = record

    def on_done(result: dict[str, Any]) -> None:
        finish(result, "complete", result["epochs"], result["train_s"])

    def on_stop(result: dict[str, Any]) -> None:
        finish(result, "stopped", int(result.get("epoch", 0)), None)
        if progress:
            print(f"sweep: {names[result['job']]}: stopped by ASHA at epoch {result['epoch']}")

    errors: dict[str, str] = {}
    if todo:
        workers = sweep.workers_per_trial
        use_gpu = any(bool(r["options"].get("use_gpu", False)) for r in recipes)
        rule = SuccessiveHalving(
            sweep.grace_period,
            sweep.reduction_factor,
            maximize,
            {job["id"]: _history(Path(job["folder"])) for job in jobs},
        )
        errors = run_training_trials(
            plan,
            folder.parent,
            todo,
            workers=workers,
            use_gpu=use_gpu,
            concurrency=sweep.concurrency or default_concurrency(workers, use_gpu),
            on_epoch=on_epoch,
            on_done=on_done,
            stopper=rule.tune_stopper(),
            on_stop=on_stop,
        )
    missing = [job["id"] for job in jobs if job["id"] not in results]
    if missing:
        reasons = "; ".join(f"{names[i]}: {errors.get(i, 'did not finish')}" for i in missing)
        raise NasforgeError(
            f"sweep: {len(missing)} of {len(jobs)} recipes did not finish ({reasons}); "
            "rerun the same command to resume them"
        )
    complete = [results[job["id"]] for job in jobs if results[job["id"]]["status"] == "complete"]
    if not complete:
        raise NasforgeError("sweep: every recipe was stopped early; nothing to keep")
    sign = 1.0 if maximize else -1.0
    best = max(complete, key=lambda r: sign * float(r[QUALITY]))
    best_state = Path(by_id[best["id"]]["folder"]) / STATE_FILE
    fetch(best_state)  # written by a trial, maybe on another node: the URI's copy
    state = load_state(best_state.read_bytes(), f"sweep recipe {best['id']}")
    summary = {
        "metric": f"mean {metric} of {len(archs)} fixed subnets",
        "archs": archs,
        "best": best["id"],
        "recipes": [{**results[job["id"]], "description": names[job["id"]]} for job in jobs],
        "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    save_json_atomic(summary, folder / "sweep.json")
    if progress:
        for row in summary["recipes"]:
            mark = "*" if row["id"] == best["id"] else " "
            print(
                f"sweep:{mark} {row['status']:8s} epoch {row['epochs']:>3}  "
                f"{QUALITY} {row[QUALITY]:.4g}  {row['description']}",
                flush=True,
            )
    return state, summary
