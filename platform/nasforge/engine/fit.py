"""Running a trainer: on Ray Train workers, or in this process as the only rank.

:func:`fit_on_ray_train` runs ``Trainer.fit`` on N Ray Train workers. Every rank builds the
same plan from the experiment, seeds torch identically (so the supernet starts from the same
weights everywhere; rank 0's are broadcast to be sure), and calls ``Trainer.fit`` with a
:class:`~nasforge.sdk.TrainContext`. Gradients are averaged explicitly
(``context.sync_gradients``) rather than through DDP: a sandwich step runs several subnets,
each touching a different part of the weights, and every rank samples the same subnets, so
one all-reduce per step is all that is needed; the driver checks every rank ended every
epoch with the same weights. Checkpoints go through Ray Train (``ray.train.report(...,
checkpoint=...)``) at the end of each epoch; rerunning after a crash or a kill lets Ray
Train restore the run and hands the trainer its last state.

:func:`fit_in_process` runs the same contract in the calling process (a Ray Tune trial
training one arch alone, or one recipe of a sweep), checkpointing to a ``state.pt``.
Either can report the supernet's quality each epoch (:mod:`.quality`).
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import NasforgeError
from ..plan import Plan
from ..sdk import TrainContext
from .plain import check_plain
from .quality import QUALITY, supernet_quality
from .run_location import location_of, ray_storage
from .weights import EPOCH_FILE, STATE_FILE, latest_checkpoint_state, load_state, save_atomic

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
    resume = latest_checkpoint_state(config["checkpoints"], ray.train.get_checkpoint())
    sink = config["sink"]
    quality = supernet_quality(plan, config.get("score"), device, config["folder"])

    def save(state: dict[str, Any], metrics: dict[str, float]) -> None:
        metrics = {k: float(v) for k, v in metrics.items()}
        if quality is not None and rank == 0:
            metrics[QUALITY] = quality(supernet)
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
        arch=config.get("arch"),
        epochs=config.get("epochs"),
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


def trainer_workers(plan: Plan) -> tuple[int, bool]:
    """``(num_workers, use_gpu)`` the experiment's trainer asks for."""
    options = plan.trainer.options
    return int(options.get("num_workers", 1)), bool(options.get("use_gpu", False))


def fit_on_ray_train(
    plan: Plan,
    storage: Path,
    *,
    num_workers: int,
    use_gpu: bool,
    on_item: Callable[[dict[str, Any]], None],
    arch: dict[str, Any] | None = None,
    epochs: int | None = None,
    score: dict[str, Any] | None = None,
    cpus_per_worker: float = 1.0,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the plan's trainer on ``num_workers`` Ray Train workers (the supernet, or
    ``arch`` alone), checkpoints under ``storage`` (at the URI when it lies in a cloud run's
    mirror, :mod:`.run_location`); resumes the run found there. Calls
    ``on_item`` with every progress/epoch record of rank 0 (with ``score``,
    ``{"archs", "metric"}``, each epoch also reports :data:`QUALITY`); returns the last
    checkpoint's state and metrics. Ray must be initialised."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    spec = plan.experiment.train
    storage_path, storage_filesystem = ray_storage(storage)
    # on this process's own node: a worker node lost mid-epoch must not take the progress
    # channel with it (this node going means this process is gone too)
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    sink = ray.remote(num_cpus=0)(_Sink).options(scheduling_strategy=here).remote()
    trainer = TorchTrainer(
        train_worker,
        train_loop_config=check_plain(
            {
                "experiment": plan.to_json(),
                "use_gpu": use_gpu,
                "sink": sink,
                "checkpoints": location_of(storage / "train"),  # a path or a URI
                "folder": str(storage / "train"),
                "arch": arch,
                "epochs": epochs,
                "score": score,
            },
            "Ray Train's train_loop_config",
            allowed=(ray.actor.ActorHandle,),
        ),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=num_workers,
            use_gpu=use_gpu,
            resources_per_worker={"CPU": cpus_per_worker, **({"GPU": 1} if use_gpu else {})},
        ),
        run_config=RunConfig(
            name="train",
            storage_path=storage_path,
            storage_filesystem=storage_filesystem,
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
    checksums: dict[Any, dict[int, float]] = {}
    while True:
        alive = thread.is_alive()
        for item in ray.get(sink.drain.remote()):
            if item.get("kind") == "checksum":
                checksums.setdefault(item["epoch"], {})[item["rank"]] = item["value"]
            else:
                on_item(item)
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
    _check_model_state(plan, state)
    return state, dict(result.metrics or {})


def fit_in_process(
    plan: Plan,
    folder: Path,
    *,
    device: str,
    on_epoch: Callable[[dict[str, float]], None],
    arch: dict[str, Any] | None = None,
    epochs: int | None = None,
    score: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the plan's trainer in this process as the only rank (the supernet, or ``arch``
    alone), checkpointing each epoch to ``folder/state.pt`` and resuming from it; returns
    the last checkpoint's state. ``on_epoch`` gets each epoch's metrics once stored (with
    ``score`` as in :func:`fit_on_ray_train`)."""
    import torch

    spec = plan.experiment.train
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / STATE_FILE
    resume = load_state(path.read_bytes(), str(path)) if path.exists() else None
    torch.manual_seed(spec.seed)
    supernet = plan.build_supernet().to(device)
    quality = supernet_quality(plan, score, device, str(folder))
    last: dict[str, Any] = {}

    def save(state: dict[str, Any], metrics: dict[str, float]) -> None:
        metrics = {k: float(v) for k, v in metrics.items()}
        if quality is not None:
            metrics[QUALITY] = quality(supernet)
        save_atomic(state, path)
        last["state"] = state
        on_epoch(metrics)

    context = TrainContext(
        rank=0,
        world_size=1,
        device=device,
        seed=spec.seed,
        resume=resume,
        checkpoint=save,
        report=lambda metrics: None,
        sync_gradients=_sync_gradients(1),
        arch=arch,
        epochs=epochs,
    )
    plan.trainer.fit(supernet, plan.task, context)
    state = last.get("state", resume)
    if state is None:
        raise NasforgeError(f"trainer '{spec.trainer}' finished without a checkpoint")
    _check_model_state(plan, state)
    return state


def _check_model_state(plan: Plan, state: dict[str, Any]) -> None:
    if "model" not in state:
        raise NasforgeError(
            f"trainer '{plan.experiment.train.trainer}' checkpointed no 'model' state: its "
            "checkpoint state must hold the supernet's state_dict under 'model'"
        )
