"""``nasforge fidelity RUN_DIR``: does the supernet rank archs as training them alone would?

K archs are chosen (:mod:`.selection`), each trained alone from scratch with the run's own
trainer and data (``TrainContext.arch``: the same recipe with sampling switched off) as Ray
Tune trials side by side across the cluster, and scored with the experiment's estimators;
the same archs are scored on the trained supernet by weight sharing (one Ray task). :mod:`.ranking`
compares the two. Everything lives in ``RUN_DIR/fidelity/``: the chosen archs
(``archs.json``), one folder per standalone run (its epoch checkpoints, learning curve and,
once finished, ``result.json``) — so a rerun trains only what is missing and resumes what
was cut off — and the weight-sharing scores per supernet (``shared-<digest>.json``: a
retrained supernet is scored again, its standalone runs kept); the report goes to
``fidelity.csv``, ``fidelity.json`` and ``fidelity.png`` in the run directory.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.run_location import local_run_dir, sync
from ..engine.weights import EpochLog, save_json_atomic
from ..errors import NasforgeError
from ..plan import Plan
from .ranking import rank_agreement
from .selection import choose_archs, cost_metric, front_records, quality_metrics


@dataclass
class FidelityReport:
    """What a fidelity check measured and where it wrote it."""

    run_dir: Path
    rows: list[dict[str, Any]]
    agreement: dict[str, dict[str, Any]]
    files: list[Path] = field(default_factory=list)
    trained: int = 0
    wall_s: float = 0.0
    train_s: float = 0.0
    #: this invocation's training: archs at once, wall time, and the share of it the
    #: trials kept busy (sum of per-arch training times / (concurrency x wall))
    concurrency: int = 0
    training_wall_s: float = 0.0
    busy: float | None = None


def load_run_plan(run_dir: Path) -> Plan:
    """The plan a run directory was made with (``experiment.json``)."""
    config = run_dir / "experiment.json"
    if not config.exists():
        raise NasforgeError(
            f"{run_dir}: not a nasforge run directory (no experiment.json): "
            "run `nasforge train` or `nasforge run` first"
        )
    return Plan.from_json(json.loads(config.read_text()))


def standalone_fingerprint(plan: Plan, epochs: int | None) -> str:
    """A digest of what shapes an arch's standalone training: space, task, seed and the
    trainer's :meth:`~nasforge.sdk.Trainer.standalone_recipe` (so supernet recipes that
    train archs alone the same way share those runs)."""
    exp = plan.experiment
    recipe = dict(plan.trainer.standalone_recipe(plan.space))
    if epochs is not None:  # --epochs N trains as a recipe of N epochs would
        recipe["epochs"] = epochs
    payload = {
        "space": exp.space.model_dump(mode="json"),
        "task": exp.task.model_dump(mode="json") if exp.task else None,
        "seed": exp.train.seed,
        "recipe": recipe,
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _selection(
    plan: Plan, run_dir: Path, folder: Path, k: int, source: str, seed: int
) -> list[tuple[dict[str, Any], str]]:
    """The chosen archs, kept in ``archs.json`` so that a rerun trains the same ones."""
    path = folder / "archs.json"
    request = {"k": k, "source": source, "seed": seed}
    if path.exists():
        kept = json.loads(path.read_text())
        if kept.get("request") == request:
            return [(a["arch"], a["why"]) for a in kept["archs"]]
    chosen = choose_archs(plan, run_dir, k, source, seed)
    archs = [{"arch": a, "why": why} for a, why in chosen]
    save_json_atomic({"request": request, "archs": archs}, path)
    return chosen


def run_fidelity(
    run_dir: str | Path,
    *,
    archs: int = 16,
    source: str = "spread",
    epochs: int | None = None,
    workers: int = 1,
    concurrency: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> FidelityReport:
    """Train the chosen archs alone (what is not trained yet), compare, write the report.
    ``run_dir`` is a path or a cloud URI (mirrored while this runs)."""
    with local_run_dir(run_dir) as local:
        return _run_fidelity(
            local.resolve(), archs=archs, source=source, epochs=epochs, workers=workers,
            concurrency=concurrency, seed=seed, progress=progress,
        )  # fmt: skip


def _run_fidelity(
    run_dir: Path,
    *,
    archs: int,
    source: str,
    epochs: int | None,
    workers: int,
    concurrency: int | None,
    seed: int,
    progress: bool,
) -> FidelityReport:
    from ..engine.fit import trainer_workers
    from ..engine.runtime import RunLock, check_resources, ray_init
    from ..engine.train_trials import default_concurrency, run_training_trials

    plan = load_run_plan(run_dir)
    if plan.trainer is None or plan.experiment.train is None:
        raise NasforgeError(f"{run_dir}: the experiment has no 'train' section: nothing to compare")
    name = plan.experiment.train.trainer
    if not getattr(plan.trainer, "trains_standalone", False):
        raise NasforgeError(
            f"trainer '{name}' cannot train an arch alone (it does not set "
            "trains_standalone = True and honour TrainContext.arch)"
        )
    if workers < 1:
        raise NasforgeError(f"--workers: expected at least 1, got {workers}")
    if epochs is not None and epochs < 1:
        raise NasforgeError(f"--epochs: expected at least 1, got {epochs}")
    start = time.perf_counter()
    folder = run_dir / "fidelity"
    with RunLock(run_dir):
        folder.mkdir(parents=True, exist_ok=True)
        chosen = _selection(plan, run_dir, folder, archs, source, seed)
        recipe = standalone_fingerprint(plan, epochs)
        jobs = []
        for arch, why in chosen:
            key = plan.space.key(arch)
            job_id = hashlib.sha256(f"{key}|{recipe}".encode()).hexdigest()[:12]
            job_folder = folder / "runs" / job_id
            jobs.append(
                {
                    "id": job_id,
                    "folder": str(job_folder),
                    "arch": arch,
                    "epochs": epochs,
                    "why": why,
                }
            )
        results = {}
        for job in jobs:
            path = Path(job["folder"]) / "result.json"
            if path.exists():
                results[job["id"]] = json.loads(path.read_text())
        todo = [job for job in jobs if job["id"] not in results]
        errors: dict[str, str] = {}
        if todo:
            _, use_gpu = trainer_workers(plan)
            ray_init()
            check_resources(
                workers, workers if use_gpu else 0, "--workers", f"training on {workers} workers"
            )
            by_id = {job["id"]: job for job in jobs}
            shown = {"at": 0.0}

            logs: dict[str, EpochLog] = {}

            def on_epoch(result: dict[str, Any]) -> None:
                job_id = result["job"]
                if job_id not in logs:  # the learning curve of each standalone run
                    logs[job_id] = EpochLog(Path(by_id[job_id]["folder"]) / "history.jsonl")
                keep = (
                    "epoch",
                    "loss",
                    "lr",
                    "time_s",
                    *(k for k in result if k.startswith("val_")),
                )
                logs[job_id].append({k: result[k] for k in keep if k in result})
                now = time.perf_counter()
                if progress and now - shown["at"] > 15:
                    shown["at"] = now
                    print(
                        f"fidelity: {len(results)}/{len(jobs)} trained; {result['job']} "
                        f"epoch {int(result.get('epoch', 0))}/{int(result.get('epochs', 0))}",
                        flush=True,
                    )

            def on_done(result: dict[str, Any]) -> None:
                job = by_id[result["job"]]
                record = {
                    "id": job["id"],
                    "arch": job["arch"],
                    "why": job["why"],
                    "recipe": recipe,
                    **{k: result[k] for k in ("epochs", "train_s", "alone")},
                }
                save_json_atomic(record, Path(job["folder"]) / "result.json")
                sync(Path(job["folder"]))  # kept even if the driver dies next
                results[job["id"]] = record
                if progress:
                    print(
                        f"fidelity: {len(results)}/{len(jobs)} {_describe(plan, record)}",
                        flush=True,
                    )

            concurrency = concurrency or default_concurrency(workers, use_gpu)
            began = time.perf_counter()
            errors = run_training_trials(
                plan,
                run_dir,
                [{k: v for k, v in job.items() if k != "why"} for job in todo],
                workers=workers,
                use_gpu=use_gpu,
                concurrency=concurrency,
                on_epoch=on_epoch,
                on_done=on_done,
            )
            training_wall_s = time.perf_counter() - began
        failed = {
            job["id"]: errors.get(job["id"], "no result")
            for job in jobs
            if job["id"] not in results or not results[job["id"]]["alone"].get("ok")
        }
        if failed:
            reasons = "; ".join(
                f"{i}: {errors.get(i) or _failure(results.get(i))}" for i in sorted(failed)
            )
            raise NasforgeError(
                f"fidelity: {len(failed)} of {len(jobs)} standalone runs did not finish "
                f"({reasons}); rerun the same command to resume them"
            )
        shared = _shared_scores(plan, run_dir, folder, jobs)
        bad = {i: r for i, r in shared.items() if not r.get("ok")}
        if bad:
            reasons = "; ".join(f"{i}: {r.get('error')}" for i, r in sorted(bad.items()))
            raise NasforgeError(f"fidelity: scoring by weight sharing failed ({reasons})")
        for job in jobs:
            results[job["id"]] = {**results[job["id"]], "shared": shared[job["id"]]}
        parallel = None
        if todo:
            now_s = sum(results[job["id"]]["train_s"] for job in todo)
            parallel = {
                "archs": len(todo),
                "concurrency": concurrency,
                "workers_per_arch": workers,
                "wall_s": training_wall_s,
                "train_s": now_s,
                "busy": now_s / (min(concurrency, len(todo)) * training_wall_s),
            }
        report = _report(plan, run_dir, [results[job["id"]] for job in jobs], seed, parallel)
        report.trained = len(todo)
        report.wall_s = time.perf_counter() - start
        if parallel:
            report.concurrency = parallel["concurrency"]
            report.training_wall_s = parallel["wall_s"]
            report.busy = parallel["busy"]
        return report


def _score_shared(
    experiment: dict[str, Any], run_dir: str, weights: list[Any], digest: str, archs: list
) -> list[dict[str, Any]]:
    """Every metric of ``archs`` on the trained supernet (a Ray task: runs where the
    search's trials would, on their resources)."""
    from ..engine.worker import evaluator_for

    evaluator = evaluator_for(experiment, run_dir, weights, digest)
    return [evaluator.evaluate(arch) for arch in archs]


def _shared_scores(
    plan: Plan, run_dir: Path, folder: Path, jobs: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Weight-sharing metrics of the jobs' archs on the run's trained supernet as it is
    now, kept per supernet (``shared-<weights digest>.json``): retraining the supernet, or a
    sweep choosing another recipe, scores them again while the standalone runs are kept."""
    import ray

    from ..engine.runtime import ray_init
    from ..engine.weights import trained_weights

    blob = trained_weights(run_dir)  # a missing or corrupt final.pt: one clear error
    digest = hashlib.sha256(blob).hexdigest()[:16]
    path = folder / f"shared-{digest}.json"
    kept = json.loads(path.read_text()) if path.exists() else {}
    todo = [job for job in jobs if job["id"] not in kept]
    if todo:
        ray_init()
        weights = [ray.put(blob)]  # the bytes already read and checked, read once
        resources = plan.experiment.search.resources_per_trial
        task = ray.remote(num_cpus=resources.cpu, num_gpus=resources.gpu)(_score_shared)
        scored = ray.get(
            task.remote(
                plan.to_json(), str(run_dir), weights, digest, [job["arch"] for job in todo]
            )
        )
        kept.update({job["id"]: outcome for job, outcome in zip(todo, scored, strict=True)})
        save_json_atomic(kept, path)
    return {job["id"]: kept[job["id"]] for job in jobs}


def _failure(record: dict[str, Any] | None) -> str:
    if record is None:
        return "no result"
    outcome = record.get("alone") or {}
    return f"scoring alone: {outcome.get('error', 'missing')}"


def _describe(plan: Plan, record: dict[str, Any]) -> str:
    parts = [f"arch {record['id']} ({record['why']})"]
    for metric, _ in quality_metrics(plan):
        alone = record.get("alone", {}).get("metrics", {}).get(metric)
        if alone is not None:
            parts.append(f"{metric} alone {alone:.4g}")
    parts.append(f"trained in {record['train_s']:.0f}s")
    return ", ".join(parts)


def _report(
    plan: Plan,
    run_dir: Path,
    records: list[dict[str, Any]],
    seed: int,
    parallel: dict[str, Any] | None,
) -> FidelityReport:
    import pandas as pd

    metrics = quality_metrics(plan)
    cost = cost_metric(plan)
    rows = []
    for record in records:
        shared = record["shared"]["metrics"]
        alone = record["alone"]["metrics"]
        row: dict[str, Any] = {"id": record["id"], "why": record["why"]}
        if cost is not None:
            row[cost] = shared.get(cost)
        for metric, maximize in metrics:
            row[f"shared_{metric}"] = shared[metric]
            row[f"alone_{metric}"] = alone[metric]
            gap = alone[metric] - shared[metric]
            row[f"gap_{metric}"] = gap if maximize else -gap
        row["epochs"] = record["epochs"]
        row["train_s"] = record["train_s"]
        row["arch"] = json.dumps(record["arch"], separators=(",", ":"))
        rows.append(row)
    agreement = {
        metric: rank_agreement(
            [r[f"shared_{metric}"] for r in rows],
            [r[f"alone_{metric}"] for r in rows],
            maximize=maximize,
            seed=seed,
        )
        for metric, maximize in metrics
    }
    front = front_records(plan, run_dir)
    for metric, maximize in metrics:
        recorded = [r[metric] for r in front if r.get(metric) is not None]
        best = max if maximize else min
        agreement[metric]["front_best"] = best(recorded) if recorded else None
        agreement[metric]["alone_best"] = best(r[f"alone_{metric}"] for r in rows)
        agreement[metric]["shared_best"] = best(r[f"shared_{metric}"] for r in rows)
    train_s = sum(r["train_s"] for r in rows)
    csv = run_dir / "fidelity.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    summary = {
        "run_dir": str(run_dir),
        "trainer": plan.experiment.train.trainer,
        "archs": len(rows),
        "epochs": sorted({r["epochs"] for r in rows}),
        "cost_metric": cost,
        "train_s_sum": train_s,
        "parallel": parallel,  # the standalone training this invocation ran (None: all kept)
        "agreement": agreement,
        "rows": [{**r, "arch": json.loads(r["arch"])} for r in rows],
    }
    path = run_dir / "fidelity.json"
    save_json_atomic(summary, path)
    files = [csv, path, _plot(run_dir / "fidelity.png", rows, metrics[0], agreement, cost)]
    return FidelityReport(run_dir, rows, agreement, files, train_s=train_s)


def _interval(ci: list[float] | None) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "[n/a]"


def _plot(path: Path, rows, metric_info, agreement, cost: str | None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric, _ = metric_info
    stats = agreement[metric]
    x = [r[f"shared_{metric}"] for r in rows]
    y = [r[f"alone_{metric}"] for r in rows]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    colour = [r[cost] for r in rows] if cost else None
    points = ax.scatter(x, y, c=colour, cmap="viridis", s=36, edgecolors="black", linewidths=0.5)
    if cost:
        fig.colorbar(points, ax=ax, label=cost)
    low, high = min(x + y), max(x + y)
    pad = 0.05 * (high - low or 1.0)
    ax.plot([low - pad, high + pad], [low - pad, high + pad], "--", color="grey", lw=1)
    ax.set_xlabel(f"{metric}, weight sharing (supernet)")
    ax.set_ylabel(f"{metric}, trained alone")
    tau, rho = stats["kendall_tau"], stats["spearman_rho"]
    ax.set_title(
        f"Kendall tau {tau:.2f} {_interval(stats['kendall_tau_ci'])}, "
        f"Spearman rho {rho:.2f}\nmean gap {stats['gap_mean']:.3g}, "
        f"top-{stats['top_k']} overlap {stats['top_k_overlap']:.2f}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def describe_agreement(metric: str, stats: dict[str, Any]) -> list[str]:
    """Lines for the terminal: one metric's agreement figures."""

    def fmt(value: float) -> str:
        return f"{value:.4g}"

    lines = [
        f"  {metric}: Kendall tau {stats['kendall_tau']:.3f} {_interval(stats['kendall_tau_ci'])}"
        f", Spearman rho {stats['spearman_rho']:.3f} {_interval(stats['spearman_rho_ci'])}"
        f" ({int(stats['confidence'] * 100)}% bootstrap), top-{stats['top_k']} overlap "
        f"{stats['top_k_overlap']:.2f}",
        f"  gap (how much worse by weight sharing): mean {fmt(stats['gap_mean'])}, "
        f"from {fmt(stats['gap_min'])} to {fmt(stats['gap_max'])}",
        f"  best trained alone {fmt(stats['alone_best'])}, best by weight sharing "
        f"{fmt(stats['shared_best'])}"
        + (
            f", best on the search's front {fmt(stats['front_best'])}"
            if stats.get("front_best") is not None and math.isfinite(stats["front_best"])
            else ""
        ),
    ]
    return lines
