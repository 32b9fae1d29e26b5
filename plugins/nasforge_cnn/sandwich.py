"""``cnn.sandwich``: BigNAS / AttentiveNAS supernet training with the sandwich rule.

Each step trains the largest subnet on the labels (label-smoothed cross-entropy) and keeps
its detached logits, then ``num_random`` sampled subnets and the smallest subnet, each
distilled to those logits (inplace distillation); gradients of all of them accumulate into
one update (averaged over ranks, values clipped). The subnets of a step are drawn from
``(seed, step)``, so every rank trains the same ones. SGD with Nesterov momentum, linear
warm-up then cosine decay per step, no weight decay on batch norm or biases.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from pydantic import Field

from nasforge import Supernet, Task, TrainContext, Trainer

from .training import (
    EpochRunner,
    TrainOptions,
    distillation_loss,
    fit_input,
    standalone_recipe,
    step_rng,
)


class SandwichOptions(TrainOptions):
    """Options of ``cnn.sandwich``."""

    num_random: int = Field(2, ge=0, description="random subnets per step besides the extremes")
    inplace_distillation: bool = Field(
        True, description="train the other subnets on the largest's logits (else on labels)"
    )


class SandwichTrainer(Trainer):
    """Sandwich rule (largest + smallest + N random subnets per step) with inplace
    distillation, as in BigNAS / AttentiveNAS."""

    Options = SandwichOptions
    trains_standalone = True

    def __init__(self, **options):
        super().__init__(**options)
        self.config = SandwichOptions(**options)

    def standalone_recipe(self, space) -> dict:
        return standalone_recipe(self.config, self.config.epochs)

    def fit(self, supernet: Supernet, task: Task, context: TrainContext) -> None:
        opts = self.config
        space = supernet.space
        runner = EpochRunner(supernet, space, task, context, opts)
        if context.arch is not None:
            runner.fit_alone(context.arch, context.epochs or opts.epochs)
            return
        model = runner.model
        optimizer, scheduler, start_epoch, step = runner.single_schedule(opts.epochs)
        largest, smallest = space.largest(), space.smallest()

        def train_step(x: torch.Tensor, y: torch.Tensor, step: int) -> float:
            rng = step_rng(context.seed, step)
            archs = [largest, *(space.sample(rng) for _ in range(opts.num_random)), smallest]
            teacher = None
            total = 0.0
            for i, arch in enumerate(archs):
                model.set_active(arch)
                logits = model(fit_input(x, space.input_shape(arch)))
                if i == 0 or not opts.inplace_distillation:
                    loss = F.cross_entropy(logits, y, label_smoothing=opts.label_smoothing)
                    teacher = logits.detach() if i == 0 else teacher
                else:
                    loss = distillation_loss(logits, teacher)
                loss.backward()
                total += float(loss.detach())
            return total / len(archs)

        for epoch in range(start_epoch, opts.epochs):
            started = time.perf_counter()
            step, loss = runner.run_epoch(epoch, step, optimizer, scheduler, train_step)
            runner.finish_epoch(
                epoch,
                opts.epochs,
                {
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "step": step,
                },
                {"loss": loss, "lr": scheduler.get_last_lr()[0]},
                started,
            )
