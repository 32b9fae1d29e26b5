"""What the CNN trainers share: options, the optimiser and schedule, batches, losses, and
the per-epoch bookkeeping (resume, checkpoint, validation of the largest and smallest
subnets).

The trainers themselves (:mod:`.sandwich`, :mod:`.progressive`) only decide which subnets
each step trains and with which loss.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from nasforge import SearchSpace, Supernet, Task, TrainContext
from nasforge.nn import bn_recalibrate, warmup_cosine

from .metrics import top_k_accuracy


class TrainOptions(BaseModel):
    """Options every CNN trainer takes (per-worker batch size; learning rate for the whole
    global batch)."""

    model_config = ConfigDict(extra="forbid")

    num_workers: int = Field(1, ge=1, description="Ray Train workers (DDP ranks)")
    use_gpu: bool = Field(False, description="one GPU per worker, NCCL")
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=1, description="samples per worker and step")
    lr: float = Field(0.05, gt=0, description="peak learning rate (SGD, Nesterov momentum)")
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(3e-5, ge=0, description="not applied to batch norm or biases")
    warmup_epochs: float = Field(1.0, ge=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    grad_clip: float | None = Field(1.0, gt=0, description="clip gradient values (None: off)")
    calibration_batches: int = Field(
        2, ge=1, description="batches of the calib split for batch-norm statistics when "
        "validating after each epoch"
    )  # fmt: skip


def standalone_recipe(options: TrainOptions, epochs: int) -> dict[str, Any]:
    """What :meth:`EpochRunner.fit_alone` trains with: equal recipes train equal archs
    alike, whatever the supernet recipe (phases, sampling, distillation) around them."""
    return {
        "epochs": epochs,
        "global_batch": options.batch_size * options.num_workers,
        **options.model_dump(
            include={"lr", "momentum", "weight_decay", "warmup_epochs", "label_smoothing",
                     "grad_clip", "calibration_batches"}
        ),
    }  # fmt: skip


def step_rng(seed: int, step: int) -> np.random.Generator:
    """Randomness of one training step: the same on every rank (subnet sampling)."""
    return np.random.default_rng([seed, step])


def make_optimizer(model: torch.nn.Module, options: TrainOptions, lr: float | None = None):
    """SGD with Nesterov momentum; no weight decay on batch norm parameters or biases."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": options.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.SGD(
        groups, lr=lr or options.lr, momentum=options.momentum, nesterov=options.momentum > 0
    )


def fit_input(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Resize a batch to a subnet's input shape (its searched resolution) if it differs;
    images go channels-last, where CPU depthwise convolutions are several times faster."""
    size = tuple(shape[1:])
    if tuple(x.shape[2:]) != size:
        mode = "bilinear" if x.ndim == 4 else "linear"
        x = F.interpolate(x, size=size, mode=mode, align_corners=False)
    if x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Soft cross-entropy to a teacher's (detached) predictions: inplace distillation."""
    return torch.sum(-F.softmax(teacher, dim=1) * F.log_softmax(student, dim=1), dim=1).mean()


def steps_per_epoch(n: int, batch_size: int, world_size: int) -> int:
    """Optimiser steps per epoch on every rank (the last, partial global batch is dropped)."""
    steps = n // (batch_size * world_size)
    if steps == 0:
        raise ValueError(
            f"batch_size {batch_size} x {world_size} workers is larger than the "
            f"{n} training samples"
        )
    return steps


def epoch_batches(
    n: int, batch_size: int, rank: int, world_size: int, seed: int, epoch: int
) -> list[torch.Tensor]:
    """This rank's index batches for an epoch: one shuffle per epoch (same on every rank),
    dealt out so every rank runs the same number of steps."""
    steps = steps_per_epoch(n, batch_size, world_size)
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=g)
    mine = order[rank::world_size][: steps * batch_size]
    return list(mine.split(batch_size))


class EpochRunner:
    """Runs a trainer's epochs on one rank: data, resume, schedule, checkpoints, metrics.

    ``train_step(batch_x, batch_y, step) -> loss`` is the trainer's own work for one step
    (forward/backward of the subnets it chooses); the runner zeroes gradients before it
    and averages, clips and applies them after.
    """

    def __init__(
        self,
        supernet: Supernet,
        space: SearchSpace,
        task: Task,
        context: TrainContext,
        options: TrainOptions,
    ):
        self.model: torch.nn.Module = supernet  # type: ignore[assignment]
        self.space = space
        self.task = task
        self.context = context
        self.options = options
        self.device = torch.device(context.device)
        x, y = task.arrays("train")
        self.x, self.y = x, y
        self.val = task.arrays("val")
        self.calib = task.arrays("calib")
        # the global batch is the recipe's (batch_size x num_workers) on however many ranks
        # this actually runs: a fidelity check on one worker trains with the same batches
        global_batch = options.batch_size * options.num_workers
        if global_batch % context.world_size:
            raise ValueError(
                f"the global batch {global_batch} (batch_size x num_workers) does not split "
                f"over {context.world_size} ranks"
            )
        self.batch_size = global_batch // context.world_size

    def steps_per_epoch(self) -> int:
        """Optimiser steps of one epoch on this rank."""
        return steps_per_epoch(len(self.y), self.batch_size, self.context.world_size)

    def run_epoch(
        self,
        epoch: int,
        step: int,
        optimizer,
        scheduler,
        train_step: Callable[[torch.Tensor, torch.Tensor, int], float],
    ) -> tuple[int, float]:
        """One epoch; returns the global step after it and the mean training loss."""
        ctx = self.context
        self.model.train()
        losses = []
        batches = epoch_batches(
            len(self.y), self.batch_size, ctx.rank, ctx.world_size, ctx.seed, epoch
        )
        augment_rng = torch.Generator().manual_seed(ctx.seed * 7_919 + epoch * 1_000 + ctx.rank)
        for index in batches:
            xb = self.task.augment(self.x[index], augment_rng).to(self.device)
            yb = self.y[index].to(self.device)
            optimizer.zero_grad(set_to_none=True)
            losses.append(train_step(xb, yb, step))
            ctx.sync_gradients(self.model.parameters())
            if self.options.grad_clip:
                torch.nn.utils.clip_grad_value_(self.model.parameters(), self.options.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
        return step, float(np.mean(losses)) if losses else float("nan")

    def validate(self, archs: dict[str, dict[str, Any]]) -> dict[str, float]:
        """Top-1 validation accuracy of named archs (batch norm re-calibrated on the calib
        split for each, then the training statistics restored)."""
        saved = {k: v.clone() for k, v in self.model.state_dict().items() if "running" in k}
        out = {}
        was_training = self.model.training
        try:
            for name, arch in archs.items():
                self.model.set_active(arch)
                shape = self.space.input_shape(arch)
                size = self.options.batch_size
                calib = [
                    fit_input(self.calib[0][i : i + size], shape).to(self.device)
                    for i in range(0, min(len(self.calib[0]), size * self.options.calibration_batches), size)
                ]  # fmt: skip
                bn_recalibrate(self.model, calib)
                self.model.eval()
                with torch.no_grad():
                    out[f"val_top1_{name}"] = top_k_accuracy(
                        lambda xb, shape=shape: self.model(fit_input(xb, shape)),
                        self.val[0], self.val[1], device=self.device,
                    )[1]  # fmt: skip
        finally:
            state = self.model.state_dict()
            with torch.no_grad():
                for k, v in saved.items():
                    state[k].copy_(v)
            self.model.train(was_training)
        return out

    def finish_epoch(
        self,
        epoch: int,
        total_epochs: int,
        state: dict[str, Any],
        metrics: dict[str, float],
        started: float,
        archs: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """Validate ``archs`` (default: the largest and smallest) on rank 0, then
        checkpoint (every rank calls it)."""
        if self.context.rank == 0:
            if archs is None:
                archs = {"largest": self.space.largest(), "smallest": self.space.smallest()}
            metrics.update(self.validate(archs))
        metrics.update(
            {"epoch": epoch + 1, "epochs": total_epochs, "time_s": time.perf_counter() - started}
        )
        state = {"model": self.model.state_dict(), "epoch": epoch + 1, **state}
        self.context.checkpoint(state, metrics)

    def single_schedule(self, epochs: int):
        """``(optimizer, scheduler, first epoch, global step)`` of a run with one warm-up +
        cosine schedule over ``epochs``, restored with the model from ``context.resume``."""
        opts, model, resume = self.options, self.model, self.context.resume
        steps = self.steps_per_epoch()
        optimizer = make_optimizer(model, opts)
        scheduler = warmup_cosine(optimizer, int(opts.warmup_epochs * steps), epochs * steps)
        if resume is None:
            return optimizer, scheduler, 0, 0
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        return optimizer, scheduler, int(resume["epoch"]), int(resume["step"])

    def fit_alone(self, arch: dict[str, Any], epochs: int) -> None:
        """Standalone training (``TrainContext.arch``): ``arch`` alone on the labels, with
        the recipe's optimiser, learning rate, warm-up + cosine schedule and global batch,
        resumed from ``context.resume``; validated each epoch as ``val_top1_alone``."""
        opts, model = self.options, self.model
        optimizer, scheduler, start, step = self.single_schedule(epochs)
        shape = self.space.input_shape(arch)

        def train_step(x: torch.Tensor, y: torch.Tensor, step: int) -> float:
            model.set_active(arch)
            logits = model(fit_input(x, shape))
            loss = F.cross_entropy(logits, y, label_smoothing=opts.label_smoothing)
            loss.backward()
            return float(loss.detach())

        for epoch in range(start, epochs):
            started = time.perf_counter()
            step, loss = self.run_epoch(epoch, step, optimizer, scheduler, train_step)
            state = {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "step": step,
            }
            metrics = {"loss": loss, "lr": scheduler.get_last_lr()[0]}
            self.finish_epoch(epoch, epochs, state, metrics, started, {"alone": arch})
