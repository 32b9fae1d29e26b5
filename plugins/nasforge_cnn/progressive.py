"""``cnn.progressive``: Once-for-All progressive shrinking.

Training runs in phases. The first trains the full network alone; each later phase lets
more of the space be sampled — elastic kernel, then depth, then expand ratio (the groups
a space declares, largest choices first) — while everything not yet elastic stays at its
largest. Each phase has its own epochs, learning rate (warm-up + cosine) and number of
subnets per step; before a phase that makes the expand ratio elastic the supernet's
channels are re-sorted by importance. With ``distill`` the sampled subnets also learn from
a teacher: the full network as it stands at the end of the first phase, or the largest
subnet of a supernet checkpoint given as ``teacher_checkpoint``.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator

from nasforge import SearchSpace, Supernet, Task, TrainContext, Trainer, load_checkpoint
from nasforge.nn import warmup_cosine

from .training import (
    EpochRunner,
    TrainOptions,
    distillation_loss,
    fit_input,
    make_optimizer,
    standalone_recipe,
    step_rng,
)

#: the order in which Once-for-All makes dimension groups elastic
SHRINK_ORDER = ("kernel", "depth", "expand", "width", "width_mult")


class Phase(BaseModel):
    """One phase: which groups are sampled (and from which choices), for how long."""

    model_config = ConfigDict(extra="forbid")

    name: str
    epochs: int = Field(ge=1)
    sample: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="group -> choices sampled in this phase; other groups stay largest",
    )
    subnets_per_step: int = Field(1, ge=1)
    lr: float | None = Field(None, gt=0, description="peak learning rate (default: lr)")
    sort_channels: bool | None = Field(
        None, description="re-sort channels by importance first (default: when expand starts)"
    )


class ProgressiveOptions(TrainOptions):
    """Options of ``cnn.progressive``; ``epochs`` is ignored when ``phases`` are given
    (their epochs add up), else it is split over the default phases."""

    phases: list[Phase] | None = None
    distill: bool = Field(True, description="distil from the full network (or the teacher)")
    teacher_checkpoint: str | None = Field(
        None, description="state dict of a trained supernet whose largest subnet teaches"
    )
    kd_ratio: float = Field(1.0, ge=0)

    @model_validator(mode="after")
    def _names_unique(self):
        if self.phases is not None:
            names = [p.name for p in self.phases]
            if len(set(names)) != len(names):
                raise ValueError(f"phase names must be unique, got {names}")
        return self


def default_phases(space: SearchSpace, epochs: int) -> list[Phase]:
    """Once-for-All's schedule for the space's groups: full network (half the epochs), then
    each elastic group in :data:`SHRINK_ORDER` opened in two steps (largest two choices,
    then all), sharing the other half."""
    groups = space.groups()
    opened: dict[str, list[Any]] = {}
    phases: list[tuple[str, dict[str, list[Any]], int]] = [("full", {}, 1)]
    for group in SHRINK_ORDER:
        choices = sorted(groups.get(group, []), reverse=True)
        if len(choices) < 2:
            continue
        steps = [choices[:2], choices] if len(choices) > 2 else [choices]
        for i, subset in enumerate(steps):
            opened[group] = subset
            name = group if len(steps) == 1 else f"{group}_{i + 1}"
            phases.append((name, dict(opened), 1 if group == "kernel" else 2))
    # the full network gets half the epochs: it must converge before anything shrinks, as
    # it is the teacher of every subnet and their starting point (on MNIST-1D, 12 of 24
    # epochs left subnets 2.4 points behind standalone training; 24 of 48 put them ahead)
    weights = [float(max(1, len(phases) - 1))] + [1.0] * (len(phases) - 1)
    share = [max(1, round(epochs * w / sum(weights))) for w in weights]
    return [
        Phase(name=name, epochs=n, sample=sample, subnets_per_step=k)
        for (name, sample, k), n in zip(phases, share, strict=True)
    ]


def phase_space(space: SearchSpace, phase: Phase) -> SearchSpace:
    """The space a phase samples from: its groups narrowed, the rest at their largest."""
    groups = space.groups()
    unknown = sorted(set(phase.sample) - set(groups))
    if unknown:
        raise ValueError(
            f"phase '{phase.name}' samples unknown groups {unknown} (space groups: {sorted(groups)})"
        )
    narrowed = {g: phase.sample.get(g, [max(choices)]) for g, choices in groups.items()}
    return space.restrict(**narrowed)


class ProgressiveTrainer(Trainer):
    """Once-for-All progressive shrinking (kernel -> depth -> expand) with optional
    knowledge distillation and channel re-sorting between phases."""

    Options = ProgressiveOptions
    trains_standalone = True

    def __init__(self, **options):
        super().__init__(**options)
        self.config = ProgressiveOptions(**options)

    def phases(self, space: SearchSpace) -> list[Phase]:
        """The phases this trainer runs on ``space``."""
        return self.config.phases or default_phases(space, self.config.epochs)

    def check_space(self, space: SearchSpace) -> None:
        if not hasattr(space, "groups"):
            raise ValueError(f"needs a space with dimension groups, not {type(space).__name__}")
        for phase in self.phases(space):
            phase_space(space, phase)

    def standalone_recipe(self, space: SearchSpace) -> dict:
        return standalone_recipe(self.config, sum(p.epochs for p in self.phases(space)))

    def fit(self, supernet: Supernet, task: Task, context: TrainContext) -> None:
        opts = self.config
        space = supernet.space
        phases = self.phases(space)
        spaces = [phase_space(space, p) for p in phases]  # fail before any work
        total = sum(p.epochs for p in phases)
        runner = EpochRunner(supernet, space, task, context, opts)
        if context.arch is not None:
            runner.fit_alone(context.arch, context.epochs or total)
            return
        model = runner.model
        steps = runner.steps_per_epoch()

        epoch, step, teacher_state = 0, 0, None
        resume = context.resume
        if resume is not None:
            model.load_state_dict(resume["model"])
            epoch, step = int(resume["epoch"]), int(resume["step"])
            teacher_state = resume.get("teacher")
        if opts.teacher_checkpoint and teacher_state is None:
            teacher_state = load_checkpoint(
                Path(opts.teacher_checkpoint).read_bytes(), opts.teacher_checkpoint
            )
        teacher = None

        first = 0
        for index, (phase, sampled) in enumerate(zip(phases, spaces, strict=True)):
            last = first + phase.epochs
            if epoch >= last:
                first = last
                continue
            if index > 0 and opts.distill and teacher_state is None:
                teacher_state = copy.deepcopy(model.state_dict())  # the trained full network
            if opts.distill and teacher_state is not None and teacher is None:
                teacher = copy.deepcopy(model)
                teacher.load_state_dict(teacher_state)
                teacher.set_active(space.largest())
                teacher.eval()
            sort = phase.sort_channels
            if sort is None:
                before = phases[index - 1].sample if index > 0 else {}
                sort = "expand" in phase.sample and "expand" not in before
            if sort and epoch == first and hasattr(model, "sort_channels"):
                model.sort_channels()
            optimizer = make_optimizer(model, opts, phase.lr)
            scheduler = warmup_cosine(
                optimizer, int(opts.warmup_epochs * steps), phase.epochs * steps
            )
            if resume is not None and epoch > first and "optimizer" in resume:
                optimizer.load_state_dict(resume["optimizer"])
                scheduler.load_state_dict(resume["scheduler"])
            use_teacher = teacher if index > 0 else None
            train_step = self._step(model, space, sampled, phase, use_teacher, context.seed)
            for e in range(epoch, last):
                started = time.perf_counter()
                step, loss = runner.run_epoch(e, step, optimizer, scheduler, train_step)
                state = {
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "step": step,
                }
                if teacher_state is not None:
                    state["teacher"] = teacher_state
                metrics = {"loss": loss, "lr": scheduler.get_last_lr()[0], "phase": index + 1}
                runner.finish_epoch(e, total, state, metrics, started)
            epoch, first = last, last

    def _step(self, model, space, sampled: SearchSpace, phase: Phase, teacher, seed: int):
        opts = self.config

        def train_step(x: torch.Tensor, y: torch.Tensor, step: int) -> float:
            rng = step_rng(seed, step)
            soft = None
            if teacher is not None:
                with torch.no_grad():
                    soft = teacher(fit_input(x, space.input_shape(space.largest())))
            total = 0.0
            for _ in range(phase.subnets_per_step):
                arch = sampled.sample(rng) if phase.sample else sampled.largest()
                model.set_active(arch)
                logits = model(fit_input(x, space.input_shape(arch)))
                loss = F.cross_entropy(logits, y, label_smoothing=opts.label_smoothing)
                if soft is not None and opts.kd_ratio > 0:
                    loss = loss + opts.kd_ratio * distillation_loss(logits, soft)
                loss.backward()
                total += float(loss.detach())
            return total / phase.subnets_per_step

        return train_step
