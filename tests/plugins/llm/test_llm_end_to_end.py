"""An LLM supernet trained on Ray Train and searched by Ray Tune, end to end, through
nasforge's own ``run_experiment`` fixture: a small randomly initialised LLaMA over bytes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from tiny_llm import TINY_LLAMA, write_documents

pytest.importorskip("transformers", reason="nasforge[llm] is not installed")

import torch
from nasforge_llm import load_pretrained
from transformers import AutoModelForCausalLM

from nasforge.cli import main
from nasforge.errors import NasforgeError
from nasforge.trial_export import export_trial

EXAMPLE = Path(__file__).parents[3] / "examples" / "llm_tiny.yaml"
TEXT = (
    "The supernet is trained once. Then its sub-networks are searched for the ones that "
    "fit a budget: fewer layers, fewer heads, narrower feed-forward layers, fewer bits. "
)


def experiment(tmp_path) -> dict:
    """``examples/llm_tiny.yaml`` (trainer, estimator, hardware, objectives, ehvi) on a much
    smaller model, corpus and budget."""
    exp = yaml.safe_load(EXAMPLE.read_text())
    exp["name"] = "llm_tiny_test"
    exp["space"]["options"].update(
        config=TINY_LLAMA, min_depth=2, lora_ranks=[0, 4], bits=[4, 16], group_size=16,
        seq_len=32,
    )  # fmt: skip
    exp["task"]["options"] = {
        "files": write_documents(tmp_path, 16, "Document {i}. " + TEXT * 8),
        "block_size": 32,
        "fractions": [0.7, 0.15, 0.15],
        "heldout_blocks": 8,
    }
    exp["train"]["options"].update(
        num_workers=1, epochs=2, batch_size=4, max_steps_per_epoch=3, val_blocks=4
    )
    exp["estimators"][0]["options"]["batch_size"] = 8
    exp["hardware"][0]["options"]["context_length"] = 64
    exp["search"].update(n_trials=6, options={"n_initial": 4, "candidates": 200})
    return exp


def test_the_tiny_example_validates(tmp_path):
    assert main(["validate", str(EXAMPLE)]) == 0


def test_a_tiny_llm_supernet_trains_on_ray_train_and_is_searched(run_experiment, tmp_path):
    result = run_experiment(experiment(tmp_path))
    assert result.training is not None and result.training.epochs == 2
    assert len(result.complete) == 6 and not result.failed
    for trial in result.complete:
        metrics = trial.metrics
        assert 1 < metrics["perplexity"] < 257 and math.isfinite(metrics["nll"])
        assert metrics["weight_mb"] > 0 and metrics["kv_cache_mb"] > 0
    assert result.front
    log = (result.run_dir / "supernet" / "metrics.jsonl").read_text().splitlines()
    assert len(log) == 2 and "val_ppl_largest" in log[-1] and "val_ppl_smallest" in log[-1]

    # the smallest arch (uniform: one size and 4 bits in every layer) exported to Hugging
    # Face reproduces its trial, loads with plain transformers, and packs to its bits
    smallest = result.plan.space.smallest()
    [trial] = [t for t in result.complete if t.arch == smallest and t.duplicate_of is None]
    assert (
        main(["export", str(result.run_dir), "--trial", str(trial.number), "--format", "hf"]) == 0
    )
    out = result.run_dir / "subnets" / str(trial.number)
    record = json.loads((out / "arch.json").read_text())
    reproduced = record["export"]["metrics"]["perplexity"]
    assert reproduced == pytest.approx(trial.metrics["perplexity"], rel=1e-6)
    hf = AutoModelForCausalLM.from_pretrained(out / "hf").eval()
    config = json.loads((out / "hf" / "config.json").read_text())
    assert config["nasforge"]["bits"] == [4, 4] and config["nasforge"]["layers"] is None
    assert hf.config.num_hidden_layers == 2 and hf.config.intermediate_size == 16
    packed = export_trial(result.run_dir, trial.number, "hf-packed")
    assert packed.reproduced["perplexity"] == pytest.approx(reproduced, rel=1e-5)
    blocks = (out / "hf-packed" / "model.safetensors").stat().st_size
    assert blocks < (out / "hf" / "model.safetensors").stat().st_size
    with torch.no_grad():
        x = torch.randint(0, 257, (2, 16))
        assert torch.allclose(load_pretrained(out / "hf-packed")(x).logits, hf(x).logits, atol=1e-4)

    with pytest.raises(NasforgeError, match="written as torchscript, onnx, hf, hf-packed"):
        export_trial(result.run_dir, trial.number, "gguf")
