"""``llm.lora_sandwich``: InstaTune / LoNAS-style supernet training of an elastic LLaMA on
Ray Train.

Each step trains the largest sub-network on the next tokens and keeps its detached logits,
then ``num_random`` sampled sub-networks and the smallest, each distilled to those logits
(in-place distillation, a token-wise soft cross-entropy); the gradients of all of them
accumulate into one update. Only the LoRA adapters train on a pretrained base (frozen, as
LoNAS and SQFT do); ``train_base: true`` trains every weight (a randomly initialised model,
``examples/llm_tiny.yaml``). Before the first step the model's MLP neurons and KV groups are
sorted by importance on the calibration text (:mod:`.importance`) so that every prefix
sub-network keeps the most important ones.

AdamW, linear warm-up then cosine decay per optimiser step, gradient accumulation, optional
gradient checkpointing and bf16 autocast. The sub-networks of a step come from
``(seed, step)``, so every rank trains the same ones; gradients are averaged over ranks
through ``context.sync_gradients``. Each epoch ends with the held-out perplexity of the
largest and smallest sub-networks (rank 0) and a checkpoint (every rank).
"""

from __future__ import annotations

import math
import time
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from nasforge import Supernet, Task, TrainContext, Trainer
from nasforge.nn import warmup_cosine

from .importance import sort_by_importance
from .perplexity import next_token_loss, token_nll


class LoraSandwichOptions(BaseModel):
    """Options of ``llm.lora_sandwich`` (``batch_size`` blocks per worker per micro-step)."""

    model_config = ConfigDict(extra="forbid")
    num_workers: int = Field(1, ge=1, description="Ray Train workers")
    use_gpu: bool = Field(False, description="one GPU per worker")
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(4, ge=1, description="blocks per worker and micro-step")
    grad_accum: int = Field(1, ge=1, description="micro-steps per optimiser step")
    max_steps_per_epoch: int | None = Field(None, ge=1, description="cap an epoch's steps")
    lr: float = Field(2e-4, gt=0, description="peak learning rate (AdamW)")
    weight_decay: float = Field(0.0, ge=0)
    warmup_fraction: float = Field(0.05, ge=0, lt=1, description="of all optimiser steps")
    grad_clip: float | None = Field(1.0, gt=0, description="clip the gradient norm (None: off)")
    num_random: int = Field(1, ge=0, description="random sub-networks per step")
    distill: bool = Field(True, description="others learn the largest's logits (else tokens)")
    train_base: bool = Field(False, description="train every weight, not only the adapters")
    sort_importance: bool = Field(True, description="sort neurons and KV groups first")
    gradient_checkpointing: bool = Field(False, description="recompute layers in backward")
    bf16: bool = Field(False, description="bf16 autocast (where the device supports it)")
    val_blocks: int = Field(16, ge=1, description="held-out blocks scored after each epoch")
    report_every: int = Field(10, ge=1, description="optimiser steps between progress lines")


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Token-wise soft cross-entropy to a teacher's detached logits."""
    s = F.log_softmax(student[:, :-1].float(), dim=-1)
    t = F.softmax(teacher[:, :-1].float(), dim=-1)
    return -(t * s).sum(-1).mean()


class LoraSandwichTrainer(Trainer):
    """Sandwich rule (largest + random + smallest per step) with in-place distillation, on
    LoRA adapters over a frozen base (or every weight with ``train_base``)."""

    Options = LoraSandwichOptions
    trains_standalone = True
    #: options that do not change how one arch trains alone (see ``standalone_recipe``)
    sampling_options: ClassVar[set[str]] = {
        "num_random",
        "distill",
        "val_blocks",
        "use_gpu",
        "report_every",
    }

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.config = self.Options(**options)

    def standalone_recipe(self, space: Any) -> dict[str, Any]:
        """What training one arch alone depends on (sampling and distillation aside)."""
        return self.config.model_dump(exclude=self.sampling_options)

    def step_archs(self, space: Any, rng: np.random.Generator) -> list[dict[str, Any]]:
        """The sub-networks one step trains, the teacher first: the largest, ``num_random``
        sampled ones and the smallest (over a frozen base, with the smallest non-zero LoRA
        rank: without adapters it would have nothing to train)."""
        sampled = [space.sample(rng) for _ in range(self.config.num_random)]
        smallest = dict(space.smallest())
        if not self.config.train_base:
            for group in ("lora_attn", "lora_mlp"):
                ranks = [r for r in space[group].choices if r > 0]
                if ranks:
                    smallest[group] = [max(r, ranks[0]) for r in smallest[group]]
        return [space.largest(), *sampled, smallest]

    def fit(self, supernet: Supernet, task: Task, context: TrainContext) -> None:
        opts = self.config
        model: Any = supernet
        space = model.space
        self.check_space(space)
        device = torch.device(context.device)
        if hasattr(task, "use_cache_dir") and context.run_dir is not None:
            task.use_cache_dir(context.run_dir / "data")
        blocks, _ = task.arrays("train")
        heldout = task.arrays("val")[0][: opts.val_blocks]
        if context.resume is None and opts.sort_importance:
            calibration = task.arrays("calib")[0]
            sort_by_importance(model, calibration.split(opts.batch_size))
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(opts.train_base or "lora_" in name)
        trainable = [p for p in model.parameters() if p.requires_grad]
        if opts.gradient_checkpointing:
            model.model.gradient_checkpointing_enable()
        epochs = context.epochs or opts.epochs
        per_step = opts.batch_size * opts.grad_accum * context.world_size
        steps = len(blocks) // per_step
        if steps == 0:
            raise ValueError(
                f"{len(blocks)} training blocks do not fill one step of {per_step} "
                "(batch_size x grad_accum x workers)"
            )
        steps = min(steps, opts.max_steps_per_epoch or steps)
        optimizer = torch.optim.AdamW(trainable, lr=opts.lr, weight_decay=opts.weight_decay)
        scheduler = warmup_cosine(
            optimizer, int(opts.warmup_fraction * steps * epochs), steps * epochs
        )
        start_epoch, step = 0, 0
        if context.resume is not None:
            model.load_state_dict(context.resume["model"])
            optimizer.load_state_dict(context.resume["optimizer"])
            scheduler.load_state_dict(context.resume["scheduler"])
            start_epoch, step = int(context.resume["epoch"]), int(context.resume["step"])
        largest, smallest = space.largest(), space.smallest()
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=opts.bf16)

        def archs_of(step: int) -> list[dict[str, Any]]:
            if context.arch is not None:  # standalone training: that arch alone, on tokens
                return [context.arch]
            return self.step_archs(space, np.random.default_rng([context.seed, step]))

        for epoch in range(start_epoch, epochs):
            started = time.perf_counter()
            model.train()
            order = torch.randperm(len(blocks), generator=torch.Generator().manual_seed(
                context.seed * 100_003 + epoch))  # fmt: skip
            mine = order[context.rank :: context.world_size]
            losses = []
            for local in range(steps):
                optimizer.zero_grad(set_to_none=True)
                archs = archs_of(step)
                total = 0.0
                for micro in range(opts.grad_accum):
                    first = (local * opts.grad_accum + micro) * opts.batch_size
                    batch = blocks[mine[first : first + opts.batch_size]].to(device)
                    teacher = None
                    for i, arch in enumerate(archs):
                        model.set_active(arch)
                        with autocast:
                            logits = model(batch)
                        if i == 0 or not opts.distill:
                            loss = next_token_loss(logits, batch)
                            teacher = logits.detach() if i == 0 else teacher
                        else:
                            loss = distillation_loss(logits, teacher)
                        if loss.requires_grad:  # else nothing of it trains (no adapter)
                            (loss / opts.grad_accum).backward()
                        total += float(loss.detach()) / (len(archs) * opts.grad_accum)
                context.sync_gradients(trainable)
                if opts.grad_clip:
                    torch.nn.utils.clip_grad_norm_(trainable, opts.grad_clip)
                optimizer.step()
                scheduler.step()
                step += 1
                losses.append(total)
                if (local + 1) % opts.report_every == 0 and local + 1 < steps:
                    context.report({
                        "epoch": epoch + 1, "epochs": epochs, "step": local + 1,
                        "steps": steps, "loss": float(np.mean(losses)),
                        "s_per_step": (time.perf_counter() - started) / (local + 1),
                    })  # fmt: skip
            metrics = {"loss": float(np.mean(losses)), "lr": scheduler.get_last_lr()[0]}
            if context.rank == 0:
                named = (
                    {"alone": context.arch}
                    if context.arch
                    else {"largest": largest, "smallest": smallest}
                )
                metrics.update(self._validate(model, named, heldout, opts.batch_size, device))
            metrics.update(
                {"epoch": epoch + 1, "epochs": epochs, "time_s": time.perf_counter() - started}
            )
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch + 1,
                "step": step,
            }
            context.checkpoint(state, metrics)

    @staticmethod
    def _validate(model: Any, archs: dict[str, Any], heldout: torch.Tensor, batch_size: int,
                  device: torch.device) -> dict[str, float]:  # fmt: skip
        """Held-out perplexity of named archs (``val_ppl_<name>``)."""
        was_training = model.training
        model.eval()
        out = {}
        try:
            for name, arch in archs.items():
                model.set_active(arch)
                total, count = token_nll(model, heldout, batch_size, str(device))
                out[f"val_ppl_{name}"] = math.exp(total / count)
        finally:
            model.train(was_training)
        return out


class QfaOptions(LoraSandwichOptions):
    """Options of ``llm.qfa``: those of ``llm.lora_sandwich`` and the scheduler's bins."""

    num_random: int = Field(2, ge=1, description="sub-networks per step at scheduled bits")
    budget_bins: int = Field(
        7, ge=1, description="equal-width bins of the average bit-width, drawn uniformly"
    )
    sample_other: bool = Field(
        False,
        description="also sample the other dimensions (depth, widths, ranks); "
        "else they stay at their largest, as in LLM-QFA",
    )


class QfaTrainer(LoraSandwichTrainer):
    """LLM-QFA (One QuantLLM for ALL): one LoRA adapter per bit-width over a frozen,
    fake-quantised base, and a budget-first scheduler.

    Each step trains the full-precision largest sub-network (the teacher) and ``num_random``
    sub-networks whose per-layer bit-widths come from :func:`nasforge_llm.qfa.sample_bits`:
    the average bit-width's bin is drawn uniformly first, so every memory budget is trained
    about equally often (uniform per-layer draws would almost never train the lowest or the
    highest budgets). The others distil the teacher's logits, as in ``llm.lora_sandwich``.
    The space must hold one adapter per bit-width (``adapters: per_bits``).
    """

    Options = QfaOptions
    sampling_options: ClassVar[set[str]] = {
        *LoraSandwichTrainer.sampling_options,
        "budget_bins",
        "sample_other",
    }

    def check_space(self, space: Any) -> None:
        """Raise ``ValueError`` unless ``space`` keeps one adapter per bit-width."""
        if len(space["bits"].choices) > 1 and space.num_adapters == 1:
            raise ValueError(
                "llm.qfa trains one LoRA adapter per bit-width: set the space's "
                "options.adapters to per_bits"
            )

    def step_archs(self, space: Any, rng: np.random.Generator) -> list[dict[str, Any]]:
        """The largest sub-network, then ``num_random`` at scheduled per-layer bits."""
        from .qfa import sample_bits

        opts = self.config
        largest = space.largest()
        archs = [largest]
        for _ in range(opts.num_random):
            arch = dict(space.sample(rng) if opts.sample_other else largest)
            arch["bits"] = sample_bits(
                rng, space.num_layers, space["bits"].choices, opts.budget_bins
            )
            archs.append(arch)
        return archs
