"""The training phase: train the experiment's supernet once, keep the weights.

``run_training`` locks the run, skips a supernet already trained with the same recipe
(and refuses one trained with another), then trains — on Ray Train workers
(:mod:`.fit`), or, with ``train.sweep``, several recipes side by side keeping the best
(:mod:`.sweep`). Ray Train's checkpoints are persisted under ``RUN_DIR/supernet/ray``; the
trained weights end in ``RUN_DIR/supernet/final.pt`` (a plain state dict, loaded with
``weights_only=True``) beside ``meta.json``; per-epoch metrics stream to the console and to
``RUN_DIR/supernet/metrics.jsonl``.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import NasforgeError
from ..plan import Plan
from .fit import fit_on_ray_train, trainer_workers
from .run_location import durable, local_run_dir, sync
from .runtime import RunLock, check_resources, ray_init
from .sweep import run_sweep
from .weights import EpochLog, final_weights, save_atomic, save_json_atomic, supernet_dir


@dataclass
class TrainSummary:
    """What a training phase did and where the trained weights are."""

    weights: Path | str  # a URI for a cloud run directory
    epochs: int
    resumed_from_epoch: int | None
    wall_s: float
    skipped: bool = False


def training_fingerprint(plan: Plan) -> str:
    """A digest of everything that shapes the trained weights (space, task, trainer)."""
    exp = plan.experiment
    payload = {
        "space": exp.space.model_dump(mode="json"),
        "task": exp.task.model_dump(mode="json") if exp.task else None,
        "train": exp.train.model_dump(mode="json") if exp.train else None,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _format(item: dict[str, Any]) -> str:
    head = f"epoch {int(item.get('epoch', 0))}/{int(item.get('epochs', 0))}"
    rest = "  ".join(
        f"{k} {v:.4g}" for k, v in item.items() if k not in ("kind", "epoch", "epochs")
    )
    return f"train: {head}  {rest}"


def run_training(plan: Plan, run_dir: str | Path, *, progress: bool = True) -> TrainSummary:
    """Train (or resume training) the experiment's supernet; skip if already trained.
    ``run_dir`` is a path or a cloud URI (:mod:`.run_location`)."""
    if plan.trainer is None or plan.experiment.train is None:
        raise NasforgeError("this experiment has no 'train' section")
    with local_run_dir(run_dir) as local:
        return _run_training(plan, local.resolve(), progress)


def _run_training(plan: Plan, run_dir: Path, progress: bool) -> TrainSummary:
    spec = plan.experiment.train
    fingerprint = training_fingerprint(plan)
    folder = supernet_dir(run_dir)
    meta_path = folder / "meta.json"
    start = time.perf_counter()
    with RunLock(run_dir):
        if final_weights(run_dir).exists() and meta_path.exists():
            meta = json.loads(meta_path.read_text())
            if meta.get("fingerprint") != fingerprint:
                raise NasforgeError(
                    f"{durable(folder)}: holds a supernet trained with a different space, task or "
                    "trainer; use another run directory (or delete it to retrain)"
                )
            return TrainSummary(
                durable(final_weights(run_dir)), meta["epochs"], None, 0.0, skipped=True
            )
        folder.mkdir(parents=True, exist_ok=True)
        save_json_atomic(
            {"fingerprint": fingerprint, **spec.model_dump(mode="json")}, folder / "train.json"
        )
        num_workers, use_gpu = trainer_workers(plan)
        field = "train.options.num_workers"
        if spec.sweep is not None:
            num_workers, field = spec.sweep.workers_per_trial, "train.sweep.workers_per_trial"
        ray_init()
        check_resources(
            num_workers, num_workers if use_gpu else 0, field, f"training on {num_workers} workers"
        )
        save_json_atomic(plan.to_json(), run_dir / "experiment.json")
        epochs_seen: list[dict[str, Any]] = []
        log = EpochLog(folder / "metrics.jsonl")

        def on_item(item: dict[str, Any]) -> None:
            if item.get("kind") == "epoch":
                epochs_seen.append(item)
                log.append(item)
                sync(run_dir)  # a cloud run shows its progress as it goes
            if progress:
                print(_format(item), flush=True)

        if spec.sweep is not None:
            state, sweep = run_sweep(plan, folder, progress=progress)
            metrics = {"sweep": sweep["best"]}
        else:
            state, metrics = fit_on_ray_train(
                plan, folder / "ray", num_workers=num_workers, use_gpu=use_gpu, on_item=on_item
            )
        save_atomic(state["model"], final_weights(run_dir))
        epochs = int(state.get("epoch", len(epochs_seen)))
        first = epochs_seen[0].get("epoch") if epochs_seen else None
        meta = {"fingerprint": fingerprint, "epochs": epochs, "metrics": metrics}
        save_json_atomic(meta, meta_path)
        sync(run_dir)
        resumed = int(first) - 1 if first is not None and int(first) > 1 else None
        weights = durable(final_weights(run_dir))
        return TrainSummary(weights, epochs, resumed, time.perf_counter() - start)
