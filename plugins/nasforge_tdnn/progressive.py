"""``tdnn.progressive``: EfficientTDNN's progressive training on Ray Train.

Phases as in EfficientTDNN (and Once-for-All): the full network alone, then elastic kernel,
then depth, then width from the top ratios (0.5-1) and finally all of them (0.25-1), each
phase keeping what the earlier ones made elastic and leaving every other group at its
largest. One random subnet of the phase's space per step, trained on random 2-3 s crops
(one crop length per step, drawn from ``(seed, step)`` like the subnet, so every rank runs
the same shapes) with the additive angular margin softmax (AAM, margin 0.2, scale 30) over
the training speakers. The AAM head is the trainer's: it is checkpointed with the supernet
so a resumed run continues exactly, and it is not part of the supernet (which embeds).

Each phase has its own warm-up + cosine schedule of Adam; checkpoints every epoch; after
each epoch rank 0 reports the EER of the largest and smallest subnets on the task's trials
(batch norm re-estimated for each, the training statistics restored afterwards).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator

from nasforge import Supernet, Task, TrainContext, Trainer
from nasforge.nn import bn_recalibrate, warmup_cosine

from .data import random_crops
from .eer import embed_utterances
from .scoring import cosine_scores, verification_metrics


class Phase(BaseModel):
    """One phase: the choices each named group samples from (others stay largest)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    epochs: int = Field(ge=1)
    sample: dict[str, list[Any]] = Field(
        default_factory=dict, description="group -> choices sampled in this phase"
    )
    lr: float | None = Field(None, gt=0, description="peak learning rate (default: lr)")


class ProgressiveOptions(BaseModel):
    """Options of ``tdnn.progressive``. ``epochs`` is split over the default phases unless
    ``phases`` are given (their epochs add up)."""

    model_config = ConfigDict(extra="forbid")

    num_workers: int = Field(1, ge=1, description="Ray Train workers (DDP ranks)")
    use_gpu: bool = Field(False, description="one GPU per worker, NCCL")
    epochs: int = Field(10, ge=1)
    phases: list[Phase] | None = None
    batch_size: int = Field(32, ge=1, description="crops per worker and step")
    lr: float = Field(2e-3, gt=0, description="peak learning rate (Adam)")
    weight_decay: float = Field(2e-5, ge=0)
    warmup_epochs: float = Field(0.5, ge=0, description="per phase")
    margin: float = Field(0.2, ge=0, description="AAM-softmax additive angular margin")
    scale: float = Field(30.0, gt=0, description="AAM-softmax scale")
    min_frames: int = Field(200, ge=10, description="shortest training crop (10 ms frames)")
    max_frames: int = Field(300, ge=10, description="longest training crop")
    grad_clip: float | None = Field(5.0, gt=0, description="clip the gradient norm (None: off)")
    calibration_size: int = Field(256, ge=1, description="crops for BN when validating")

    @model_validator(mode="after")
    def _check(self) -> ProgressiveOptions:
        if self.min_frames > self.max_frames:
            raise ValueError(f"min_frames {self.min_frames} > max_frames {self.max_frames}")
        if self.phases is not None:
            names = [p.name for p in self.phases]
            if not names or len(set(names)) != len(names):
                raise ValueError(f"phases need distinct names, got {names}")
        return self


#: the last phase's peak learning rate, as a share of ``lr`` (see :func:`default_phases`)
LAST_PHASE_LR_SCALE = 0.25


def default_phases(space, epochs: int, lr: float | None = None) -> list[Phase]:
    """EfficientTDNN's schedule over ``epochs``: full network (a quarter), kernel, depth,
    width 0.5-1, width 0.25-1 (the rest in equal parts, at least one epoch each).

    With ``lr`` the last phase peaks at ``LAST_PHASE_LR_SCALE * lr``, as Once-for-All's later
    phases train at lower rates: measured on the synthetic speakers (20 epochs), the full
    rate there undid the widest subnets' training (largest 5.45% -> 6.45% EER) while a
    quarter kept it (5.5%) and the smallest still learnt (8.0%)."""
    groups = space.groups()
    widths = groups["width"]
    high = [w for w in widths if w >= widths[-1] / 2] or widths[-1:]
    stages = [
        ("full", {}),
        ("kernel", {"kernel": groups["kernel"]}),
        ("depth", {"kernel": groups["kernel"], "depth": groups["depth"]}),
        ("width_high", {"kernel": groups["kernel"], "depth": groups["depth"], "width": high}),
        ("width_all", {"kernel": groups["kernel"], "depth": groups["depth"], "width": widths}),
    ]
    first = max(1, epochs // 4)
    rest = max(len(stages) - 1, epochs - first)
    share = [rest // 4 + (i < rest % 4) for i in range(4)]
    last = None if lr is None else lr * LAST_PHASE_LR_SCALE
    return [
        Phase(name=name, epochs=n, sample=sample, lr=last if name == "width_all" else None)
        for (name, sample), n in zip(stages, [first, *share], strict=True)
    ]


def aam_softmax_loss(
    embeddings: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    margin: float,
    scale: float,
) -> torch.Tensor:
    """Additive angular margin softmax (ArcFace): ``scale * cos(theta + margin)`` for the
    target speaker, ``scale * cos(theta)`` for the others; beyond ``theta > pi - margin``
    the target logit falls back to ``cos(theta) - margin * sin(margin)`` so it stays
    monotonic."""
    cosine = F.linear(F.normalize(embeddings), F.normalize(weight)).clamp(-1 + 1e-7, 1 - 1e-7)
    sine = torch.sqrt(1.0 - cosine * cosine)
    phi = cosine * math.cos(margin) - sine * math.sin(margin)
    phi = torch.where(
        cosine > math.cos(math.pi - margin), phi, cosine - math.sin(math.pi - margin) * margin
    )
    target = F.one_hot(labels, weight.shape[0]).bool()
    return F.cross_entropy(scale * torch.where(target, phi, cosine), labels)


class ProgressiveTrainer(Trainer):
    """EfficientTDNN progressive training (see the module docstring)."""

    Options = ProgressiveOptions
    trains_standalone = True

    def __init__(self, **options):
        super().__init__(**options)
        self.config = ProgressiveOptions(**options)

    def check_space(self, space) -> None:
        groups = space.groups() if hasattr(space, "groups") else {}
        for phase in self.config.phases or []:
            for group, values in phase.sample.items():
                if group not in groups:
                    raise ValueError(
                        f"phases.{phase.name}.sample: the space has no group {group!r} "
                        f"(groups: {sorted(groups)})"
                    )
                bad = [v for v in values if v not in groups[group]]
                if bad:
                    raise ValueError(
                        f"phases.{phase.name}.sample.{group}: {bad} are not among {groups[group]}"
                    )

    def phases(self, space) -> list[Phase]:
        """The phases this run trains (the given ones, or :func:`default_phases`)."""
        return self.config.phases or default_phases(space, self.config.epochs, self.config.lr)

    def standalone_recipe(self, space) -> dict:
        total = sum(p.epochs for p in self.phases(space))
        return {
            "epochs": total,
            **self.config.model_dump(exclude={"phases", "epochs", "use_gpu", "calibration_size"}),
        }

    def fit(self, supernet: Supernet, task: Task, context: TrainContext) -> None:
        run = _Run(self.config, supernet, task, context)
        phases = self.phases(supernet.space)
        if context.arch is not None:  # standalone: the arch alone, for the same epochs
            epochs = context.epochs or sum(p.epochs for p in phases)
            phases = [Phase(name="alone", epochs=epochs)]
        run.fit(phases, context.arch)


class _Run:
    """One rank's training: data, head, phases, checkpoints (see the module docstring)."""

    def __init__(self, options: ProgressiveOptions, supernet, task, context: TrainContext):
        self.options, self.model, self.task, self.context = options, supernet, task, context
        self.space = supernet.space
        self.device = torch.device(context.device)
        self.feats, self.labels = task.train_utterances()
        self.batch_size = options.batch_size * options.num_workers // context.world_size
        self.steps = len(self.feats) // (self.batch_size * context.world_size)
        if self.steps == 0:
            raise ValueError(
                f"batch_size {options.batch_size} x {options.num_workers} workers is larger "
                f"than the {len(self.feats)} training utterances"
            )
        generator = torch.Generator().manual_seed(context.seed)
        self.head = torch.nn.Parameter(
            torch.randn(
                self.space.num_speakers, self.space.config.embedding_dim, generator=generator
            )
            * 0.01
        )
        self.model.to(self.device)
        self.head.data = self.head.data.to(self.device)

    def fit(self, phases: list[Phase], alone: dict[str, Any] | None) -> None:
        ctx, opts = self.context, self.options
        resume = ctx.resume or {}
        done = int(resume.get("epoch", 0))
        step = int(resume.get("step", 0))
        if resume:
            self.model.load_state_dict(resume["model"])
            self.head.data.copy_(resume["head"])
        total = sum(p.epochs for p in phases)
        start = 0
        for phase in phases:
            end = start + phase.epochs
            if done >= end:
                start = end
                continue
            space = self.space if alone else self.space.restrict(**phase.sample)
            params = [*self.model.parameters(), self.head]
            optimizer = torch.optim.Adam(
                params, lr=phase.lr or opts.lr, weight_decay=opts.weight_decay
            )
            scheduler = warmup_cosine(
                optimizer, int(opts.warmup_epochs * self.steps), phase.epochs * self.steps
            )
            if resume.get("phase") == phase.name and done > start:
                optimizer.load_state_dict(resume["optimizer"])
                scheduler.load_state_dict(resume["scheduler"])
            for epoch in range(max(done, start), end):
                started = time.perf_counter()
                step, loss = self._epoch(epoch, step, space, alone, optimizer, scheduler)
                metrics = {
                    "loss": loss,
                    "lr": scheduler.get_last_lr()[0],
                    "phase_epoch": epoch - start + 1,
                }
                if ctx.rank == 0:
                    archs = (
                        {"alone": alone}
                        if alone
                        else {"largest": self.space.largest(), "smallest": self.space.smallest()}
                    )
                    metrics.update(self.validate(archs))
                metrics.update(
                    {"epoch": epoch + 1, "epochs": total, "time_s": time.perf_counter() - started}
                )
                state = {
                    "model": self.model.state_dict(),
                    "head": self.head.detach(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "phase": phase.name,
                    "epoch": epoch + 1,
                    "step": step,
                }
                ctx.checkpoint(state, metrics)
            start = end

    def _epoch(self, epoch, step, space, alone, optimizer, scheduler) -> tuple[int, float]:
        ctx, opts = self.context, self.options
        self.model.train()
        order = torch.randperm(
            len(self.feats), generator=torch.Generator().manual_seed(ctx.seed * 100_003 + epoch)
        )
        mine = order[ctx.rank :: ctx.world_size][: self.steps * self.batch_size]
        losses = []
        for index in mine.split(self.batch_size):
            rng = np.random.default_rng([ctx.seed, step])
            arch = alone or space.sample(rng)
            frames = int(rng.integers(opts.min_frames, opts.max_frames + 1))
            crop_rng = torch.Generator().manual_seed(int(rng.integers(2**31)) + ctx.rank)
            x, y = random_crops(
                [self.feats[i] for i in index], self.labels[index], crop_rng, frames, frames
            )
            self.model.set_active(arch)
            optimizer.zero_grad(set_to_none=True)
            loss = aam_softmax_loss(
                self.model(x.to(self.device)), self.head, y.to(self.device), opts.margin, opts.scale
            )
            loss.backward()
            ctx.sync_gradients([*self.model.parameters(), self.head])
            if opts.grad_clip:
                torch.nn.utils.clip_grad_norm_(
                    [*self.model.parameters(), self.head], opts.grad_clip
                )
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
            step += 1
        return step, float(np.mean(losses)) if losses else float("nan")

    def validate(self, archs: dict[str, dict[str, Any]]) -> dict[str, float]:
        """EER [%] of named archs on the task's trials (batch norm re-estimated for each,
        then the training statistics restored)."""
        model = self.model
        saved = {
            k: v.clone()
            for k, v in model.state_dict().items()
            if "running" in k or "num_batches" in k
        }
        calib, _ = self.task.arrays("calib")
        calib = calib[: self.options.calibration_size].to(self.device)
        utterances = self.task.eval_utterances()
        labels, enroll, test = self.task.trials()
        out = {}
        try:
            for name, arch in archs.items():
                model.set_active(arch)
                bn_recalibrate(model, [calib[i : i + 128] for i in range(0, len(calib), 128)])
                model.eval()
                embeddings = embed_utterances(model, utterances, str(self.device), 64)
                scores = cosine_scores(embeddings, enroll, test)
                out[f"val_eer_{name}"] = verification_metrics(scores, labels)["eer"]
        finally:
            state = model.state_dict()
            with torch.no_grad():
                for k, v in saved.items():
                    state[k].copy_(v)
            model.train()
        return out
