"""The LLM trainers' choices, in process: LLM-QFA's budget-first scheduler (every
average-bit-width bin is trained about as often; uniform per-layer sampling piles up in the
middle), its per-bit-width adapters, and which sub-networks a sandwich step trains. (The
trainers on Ray Train: test_llm_end_to_end.py.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
from nasforge_llm.qfa import average_histogram, sample_bits, uniform_bits

BITS = [2, 3, 4, 8, 16]


def test_budget_first_sampling_balances_the_average_bit_width_bins():
    counts = average_histogram(sample_bits, 1000, 30, BITS, bins=7)
    assert counts.sum() == 1000
    assert np.all(np.abs(counts - counts.mean()) <= 0.25 * counts.mean()), counts
    uniform = average_histogram(uniform_bits, 1000, 30, BITS, bins=7)
    assert uniform[0] + uniform[-1] < 0.01 * 1000 and uniform.max() > 2 * uniform.mean()


def test_draws_use_only_the_given_choices_and_are_seeded():
    rng = np.random.default_rng(0)
    for _ in range(50):
        bits = sample_bits(rng, 12, BITS)
        assert len(bits) == 12 and set(bits) <= set(BITS)
    first = sample_bits(np.random.default_rng(3), 12, BITS)
    assert first == sample_bits(np.random.default_rng(3), 12, BITS)
    assert sample_bits(np.random.default_rng(3), 4, [8]) == [8] * 4


# --- the llm.qfa trainer: one adapter per bit-width, budget-first bits -----------------

transformers = pytest.importorskip("transformers", reason="nasforge[llm] is not installed")

import torch  # noqa: E402
from nasforge_llm.space import LlamaSpace  # noqa: E402
from nasforge_llm.supernet import LlamaSupernet  # noqa: E402
from nasforge_llm.text import TextTask  # noqa: E402
from nasforge_llm.training import LoraSandwichTrainer, QfaTrainer  # noqa: E402
from tiny_llm import TINY_LLAMA, write_documents  # noqa: E402

from nasforge import TrainContext  # noqa: E402

QFA_SPACE = {"config": TINY_LLAMA, "lora_ranks": [0, 4], "bits": [2, 4, 16], "group_size": 8,
             "adapters": "per_bits", "seq_len": 16}  # fmt: skip


def random_adapters(supernet, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in supernet.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)


def test_each_bit_width_runs_its_own_adapter_and_extracts_with_it():
    space = LlamaSpace(**QFA_SPACE)
    supernet = LlamaSupernet(space).eval()
    random_adapters(supernet)
    q_proj = supernet.layers.all()[0].self_attn.q_proj
    assert tuple(q_proj.lora_A.shape[:2]) == (3, 4) and q_proj.lora_B.shape[0] == 3
    x = torch.randint(0, 257, (2, 16))
    four = {**space.largest(), "bits": [4] * 4}
    supernet.set_active(four)
    assert q_proj.adapter == 1
    with torch.no_grad():
        before = supernet(x)
        for layer in supernet.layers.all():  # another bit-width's adapters: no effect at 4
            for projection in (layer.self_attn.q_proj, layer.mlp.down_proj):
                projection.lora_B[0].zero_()
                projection.lora_B[2].zero_()
        assert torch.equal(supernet(x), before)
        mixed = {**space.largest(), "bits": [2, 16, 4, 2]}
        supernet.set_active(mixed)
        subnet = supernet.extract(mixed)
        assert torch.allclose(subnet(x), supernet(x), atol=1e-4)


def test_qfa_refuses_shared_adapters_with_several_bit_widths():
    with pytest.raises(ValueError, match="adapters to per_bits"):
        QfaTrainer().check_space(LlamaSpace(**{**QFA_SPACE, "adapters": "shared"}))
    QfaTrainer().check_space(LlamaSpace(**{**QFA_SPACE, "adapters": "shared", "bits": [4]}))


def test_a_step_trains_the_full_precision_teacher_and_scheduled_bits():
    space = LlamaSpace(**QFA_SPACE)
    trainer = QfaTrainer(num_random=3, budget_bins=3)  # 4 layers reach 3 bins
    archs = trainer.step_archs(space, np.random.default_rng(0))
    assert archs[0] == space.largest() and len(archs) == 4
    for arch in archs[1:]:
        assert {k: v for k, v in arch.items() if k != "bits"} == {
            k: v for k, v in space.largest().items() if k != "bits"
        }
    averages = [
        np.mean(a["bits"])
        for seed in range(300)
        for a in trainer.step_archs(space, np.random.default_rng(seed))[1:]
    ]
    counts, _ = np.histogram(averages, bins=3, range=(2, 16))
    assert counts.min() > 0.5 * counts.mean(), counts  # the low and high budgets are trained


def test_the_qfa_trainer_trains_every_bit_widths_adapter(tmp_path):
    files = write_documents(tmp_path, 10, "Document {i} is about quantised adapters. " * 12)
    task = TextTask(files=files, block_size=16, fractions=[0.6, 0.2, 0.2], heldout_blocks=4)
    space = LlamaSpace(**QFA_SPACE)
    supernet = LlamaSupernet(space)
    checkpoints, reports = [], []
    context = TrainContext(
        rank=0, world_size=1, device="cpu", seed=0, resume=None,
        checkpoint=lambda state, metrics: checkpoints.append((state, dict(metrics))),
        report=lambda metrics: reports.append(dict(metrics)),
        sync_gradients=lambda parameters: None,
    )  # fmt: skip
    QfaTrainer(num_random=2, batch_size=2, max_steps_per_epoch=6, lr=1e-2, report_every=2).fit(
        supernet, task, context
    )
    [(state, metrics)] = checkpoints
    assert [r["step"] for r in reports] == [2, 4] and reports[0]["steps"] == 6  # progress lines
    assert math.isfinite(metrics["loss"]) and metrics["val_ppl_largest"] > 1
    trained = state["model"]["model.model.layers.0.self_attn.q_proj.lora_B"]
    assert all(trained[i].abs().sum() > 0 for i in range(3))  # 2, 4 and 16 bits all trained
    base = state["model"]["model.model.layers.0.self_attn.q_proj.weight"]
    assert torch.equal(base, supernet.layers.all()[0].self_attn.q_proj.weight)


def test_over_a_frozen_base_the_smallest_keeps_an_adapter_to_train():
    space = LlamaSpace(**{**QFA_SPACE, "adapters": "shared"})
    assert space.smallest()["lora_attn"] == [0] * 4  # rank 0: nothing would train
    frozen = LoraSandwichTrainer().step_archs(space, np.random.default_rng(0))
    assert frozen[0] == space.largest() and len(frozen) == 3
    assert frozen[-1]["lora_attn"] == [4] * 4 and frozen[-1]["lora_mlp"] == [4] * 4
    assert frozen[-1]["bits"] == space.smallest()["bits"]
    whole = LoraSandwichTrainer(train_base=True).step_archs(space, np.random.default_rng(0))
    assert whole[-1] == space.smallest()
