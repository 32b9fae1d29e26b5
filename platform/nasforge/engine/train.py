"""The training phase: run the experiment's trainer on Ray Train workers, keep checkpoints.

Every rank builds the same plan from the experiment, seeds torch identically (so the
supernet starts from the same weights everywhere; rank 0's are broadcast to be sure), and
calls ``Trainer.fit`` with a :class:`~nasforge.sdk.TrainContext`. Gradients are averaged
explicitly (``context.sync_gradients``) rather than through DDP: a sandwich step runs
several subnets, each touching a different part of the weights, and every rank samples the
same subnets, so one all-reduce per step is all that is needed.

Checkpoints go through Ray Train (``ray.train.report(..., checkpoint=...)``, persisted
under ``RUN_DIR/supernet/ray``) at the end of each epoch; rerunning after a crash or a kill
lets Ray Train restore the run and hands the trainer its last state. The trained weights
end in ``RUN_DIR/supernet/final.pt`` (a plain state dict, loaded with
``weights_only=True``) beside ``meta.json``; per-epoch metrics stream to the console and to
``RUN_DIR/supernet/metrics.jsonl``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import NasforgeError
from ..plan import Plan
from ..sdk import TrainContext
from .plain import check_plain
from .runtime import RunLock, check_resources, ray_init
from .weights import (
    EPOCH_FILE,
    STATE_FILE,
    final_weights,
    latest_checkpoint_state,
    load_state,
    save_atomic,
    supernet_dir,
)

log = logging.getLogger(__name__)


@dataclass
class TrainSummary:
    """What a training phase did and where the trained weights are."""

    weights: Path
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


# -- on each Ray Train worker ------------------------------------------------------------


def _sync_gradients(world_size: int):
    def sync(parameters: Any) -> None:
        if world_size == 1:
            return
        import torch
        import torch.distributed as dist

        params = [p for p in parameters if p.requires_grad]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= world_size
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p).clone()
            offset += n

    return sync


def train_worker(config: dict[str, Any]) -> None:
    """Ray Train's per-worker loop: build the plan and run ``Trainer.fit`` on this rank."""
    import ray.train
    import ray.train.torch
    import torch
    import torch.distributed as dist

    plan = Plan.from_json(config["experiment"])
    spec = plan.experiment.train
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    device = str(ray.train.torch.get_device()) if config["use_gpu"] else "cpu"
    torch.manual_seed(spec.seed)
    supernet = plan.build_supernet().to(device)
    if world_size > 1:
        for tensor in supernet.state_dict().values():
            dist.broadcast(tensor, src=0)
    resume = latest_checkpoint_state(Path(config["checkpoints"]), ray.train.get_checkpoint())
    sink = config["sink"]

    def save(state: dict[str, Any], metrics: dict[str, float]) -> None:
        metrics = {k: float(v) for k, v in metrics.items()}
        sink.put.remote(
            {"kind": "checksum", "rank": rank, "epoch": metrics.get("epoch"),
             "value": weights_checksum(supernet)}
        )  # fmt: skip
        if rank != 0:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:
            torch.save(state, Path(folder, STATE_FILE))
            Path(folder, EPOCH_FILE).write_text(json.dumps({"epoch": state.get("epoch")}))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))
        sink.put.remote({"kind": "epoch", **metrics})  # logged once the checkpoint is stored

    def report(metrics: dict[str, float]) -> None:
        if rank == 0:
            sink.put.remote({"kind": "progress", **{k: float(v) for k, v in metrics.items()}})

    train_context = TrainContext(
        rank=rank,
        world_size=world_size,
        device=device,
        seed=spec.seed,
        resume=resume,
        checkpoint=save,
        report=report,
        sync_gradients=_sync_gradients(world_size),
    )
    plan.task.arrays("train")  # load (or generate) the data before the clock starts
    plan.trainer.fit(supernet, plan.task, train_context)


def weights_checksum(module: Any) -> float:
    """A float64 sum over every parameter: equal on ranks that stayed in step (buffers such
    as batch-norm running statistics follow each rank's own data and may differ)."""
    import torch

    with torch.no_grad():
        return float(sum(p.double().sum() for p in module.parameters()))


# -- on the driver -----------------------------------------------------------------------


def _check_in_step(checksums: dict[Any, dict[int, float]]) -> None:
    """Every rank must end every epoch with the same weights (same subnets, averaged
    gradients); a trainer that lets ranks drift apart is a bug worth stopping for."""
    for epoch, by_rank in sorted(checksums.items(), key=lambda kv: kv[0] or 0):
        values = list(by_rank.values())
        if max(values) - min(values) > 1e-6 * max(1.0, abs(values[0])):
            raise NasforgeError(
                f"training ranks diverged at epoch {epoch}: weight checksums {by_rank}; "
                "a trainer must sample the same subnets on every rank (seed by the step) "
                "and call context.sync_gradients"
            )


class _Sink:
    """A tiny actor that rank 0 pushes progress into and the driver drains."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def put(self, item: dict[str, Any]) -> None:
        self.items.append(item)

    def drain(self) -> list[dict[str, Any]]:
        items, self.items = self.items, []
        return items


class _MetricsLog:
    """``metrics.jsonl``: one line per finished epoch. An epoch logged again after a resume
    (it finished, but the kill came before its checkpoint was recorded) replaces the lines
    from that epoch on, so the file reads as one run."""

    def __init__(self, path: Path):
        self.path = path
        self.lines = path.read_text().splitlines() if path.exists() else []
        self.resumed = False

    def append(self, item: dict[str, Any]) -> None:
        if not self.resumed:
            self.resumed = True
            epoch = item.get("epoch", 0)
            kept = [line for line in self.lines if json.loads(line).get("epoch", 0) < epoch]
            if kept != self.lines:
                self.lines = kept
                self.path.write_text("".join(line + "\n" for line in kept))
        line = json.dumps(item)
        self.lines.append(line)
        with open(self.path, "a") as f:
            f.write(line + "\n")


def _format(item: dict[str, Any]) -> str:
    head = f"epoch {int(item.get('epoch', 0))}/{int(item.get('epochs', 0))}"
    rest = "  ".join(
        f"{k} {v:.4g}" for k, v in item.items() if k not in ("kind", "epoch", "epochs")
    )
    return f"train: {head}  {rest}"


def run_training(plan: Plan, run_dir: Path, *, progress: bool = True) -> TrainSummary:
    """Train (or resume training) the experiment's supernet; skip if already trained."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    if plan.trainer is None or plan.experiment.train is None:
        raise NasforgeError("this experiment has no 'train' section")
    run_dir = Path(run_dir).resolve()
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
                    f"{folder}: holds a supernet trained with a different space, task or "
                    "trainer; use another run directory (or delete it to retrain)"
                )
            return TrainSummary(final_weights(run_dir), meta["epochs"], None, 0.0, skipped=True)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "train.json").write_text(
            json.dumps({"fingerprint": fingerprint, **spec.model_dump(mode="json")}, indent=2)
        )
        options = plan.trainer.options
        num_workers = int(options.get("num_workers", 1))
        use_gpu = bool(options.get("use_gpu", False))
        ray_init()
        check_resources(
            num_workers,
            num_workers if use_gpu else 0,
            "train.options.num_workers",
            f"training on {num_workers} workers",
        )
        # on the driver's own node: a worker node lost mid-epoch must not take the progress
        # channel with it (the driver's node going means the driver is gone too)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        sink = ray.remote(num_cpus=0)(_Sink).options(scheduling_strategy=here).remote()
        trainer = TorchTrainer(
            train_worker,
            train_loop_config=check_plain(
                {
                    "experiment": plan.to_json(),
                    "use_gpu": use_gpu,
                    "sink": sink,
                    "checkpoints": str(folder / "ray" / "train"),
                },
                "Ray Train's train_loop_config",
                allowed=(ray.actor.ActorHandle,),
            ),
            torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
            scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu),
            run_config=RunConfig(
                name="train",
                storage_path=str(folder / "ray"),
                checkpoint_config=CheckpointConfig(num_to_keep=2),
                failure_config=FailureConfig(max_failures=spec.max_retries),
            ),
        )
        outcome: dict[str, Any] = {}

        def fit() -> None:
            try:
                outcome["result"] = trainer.fit()
            except BaseException as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=fit, name="nasforge-train", daemon=True)
        thread.start()
        epochs_seen: list[dict[str, Any]] = []
        checksums: dict[Any, dict[int, float]] = {}
        log = _MetricsLog(folder / "metrics.jsonl")
        while True:
            alive = thread.is_alive()
            for item in ray.get(sink.drain.remote()):
                if item.get("kind") == "checksum":
                    checksums.setdefault(item["epoch"], {})[item["rank"]] = item["value"]
                    continue
                if item.get("kind") == "epoch":
                    epochs_seen.append(item)
                    log.append(item)
                if progress:
                    print(_format(item), flush=True)
            if not alive:
                break
            thread.join(timeout=1.0)
        ray.kill(sink)
        if "error" in outcome:
            exc = outcome["error"]
            cause = exc
            while getattr(cause, "__cause__", None) is not None:
                cause = cause.__cause__
            raise NasforgeError(
                f"training failed: {type(cause).__name__}: {cause}; "
                "rerun the same command to resume from the last checkpoint"
            ) from exc
        _check_in_step(checksums)
        result = outcome["result"]
        if result.checkpoint is None:
            raise NasforgeError("training finished without a checkpoint")
        with result.checkpoint.as_directory() as ckpt:
            state = load_state(Path(ckpt, STATE_FILE).read_bytes(), f"checkpoint {ckpt}")
        if "model" not in state:
            raise NasforgeError(
                f"trainer '{spec.trainer}' checkpointed no 'model' state: its checkpoint "
                "state must hold the supernet's state_dict under 'model'"
            )
        save_atomic(state["model"], final_weights(run_dir))
        epochs = int(state.get("epoch", len(epochs_seen)))
        first = epochs_seen[0].get("epoch") if epochs_seen else None
        meta = {"fingerprint": fingerprint, "epochs": epochs, "metrics": result.metrics}
        meta_path.write_text(json.dumps(meta, indent=2, default=float))
        resumed = int(first) - 1 if first is not None and int(first) > 1 else None
        return TrainSummary(final_weights(run_dir), epochs, resumed, time.perf_counter() - start)
