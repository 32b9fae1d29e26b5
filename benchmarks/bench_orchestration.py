"""Orchestration cost: a search fanned out through Ray Tune vs a plain ``study.optimize``.

Both sides use the same space, sampler (seeded), storage kind (a fresh SQLite study in the
run directory) and the same per-trial record (arch, canonical key, every metric); the only
difference is that the engine evaluates on Ray Tune workers and the baseline in-process.
Ray is started before either clock starts. Issue target: ratio <= 1.5 at 1,000 trials.

    python benchmarks/bench_orchestration.py --trials 1000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import optuna
import ray
import yaml

from nasforge.engine import run_search
from nasforge.engine.storage import open_storage, storage_url
from nasforge.engine.worker import Evaluator
from nasforge.plan import Plan


class ArchFailed(Exception):
    """An arch its estimator could not evaluate (the all-skip arch has no table row)."""


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "gnn_nasbench_cora.yaml"


def experiment(trials: int, strategy: str, batch: int, concurrency: int) -> dict:
    """The shipped Cora example with this benchmark's search settings."""
    exp = yaml.safe_load(EXAMPLE.read_text())
    exp["name"] = "bench_orchestration"
    exp["search"] = {"strategy": strategy, "n_trials": trials, "seed": 0,
                     "concurrency": concurrency, "batch_size": batch}  # fmt: skip
    return exp


def baseline(plan, run_dir: Path) -> float:
    """``study.optimize`` in-process with the engine's own storage setup and trial record."""
    storage = open_storage(storage_url(None, run_dir), run_dir)
    sampler = plan.strategy.sampler(plan.space, plan.objectives, plan.experiment.search.seed)
    study = optuna.create_study(
        storage=storage, sampler=sampler, directions=[o.direction for o in plan.objectives]
    )
    evaluator = Evaluator.build(plan.experiment.model_dump(mode="json"), str(run_dir))
    names = [o.metric for o in plan.objectives]

    def objective(trial: optuna.Trial):
        arch = plan.space.suggest(trial)
        trial.set_user_attr("arch", arch)
        trial.set_user_attr("key", plan.space.key(arch))
        outcome = evaluator.evaluate(arch, trial.number)
        if not outcome["ok"]:  # FAIL, as the engine records it
            raise ArchFailed(outcome["error"])
        for name, value in outcome["metrics"].items():
            trial.set_user_attr(name, value)
        trial.set_user_attr("wall_s", outcome["wall_s"])
        return [outcome["metrics"][n] for n in names]

    # like the engine: run until n_trials COMPLETE, failed archs recorded and skipped
    stop = optuna.study.MaxTrialsCallback(
        plan.experiment.search.n_trials, states=(optuna.trial.TrialState.COMPLETE,)
    )
    start = time.perf_counter()
    study.optimize(objective, callbacks=[stop], catch=(ArchFailed,))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--strategy", default="nsga2")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    plan = Plan.from_json(experiment(args.trials, args.strategy, args.batch_size, args.concurrency))
    with tempfile.TemporaryDirectory() as tmp:
        base_s = baseline(plan, Path(tmp) / "baseline")
        start = time.perf_counter()
        summary = run_search(plan, Path(tmp) / "engine", progress=False)
        tune_s = time.perf_counter() - start
    assert summary.complete == args.trials, summary
    result = {
        "trials": args.trials,
        "strategy": args.strategy,
        "batch_size": args.batch_size,
        "concurrency": args.concurrency,
        "study_optimize_s": round(base_s, 2),
        "ray_tune_s": round(tune_s, 2),
        "ratio": round(tune_s / base_s, 3),
        "target_ratio": 1.5,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
