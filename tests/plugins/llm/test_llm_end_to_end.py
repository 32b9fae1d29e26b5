"""An LLM supernet trained on Ray Train and searched by Ray Tune, end to end, through
nasforge's own ``run_experiment`` fixture: a small randomly initialised LLaMA over bytes."""

from __future__ import annotations

import math

import pytest
from tiny_llm import TINY_LLAMA

pytest.importorskip("transformers", reason="nasforge[llm] is not installed")

TEXT = (
    "The supernet is trained once. Then its sub-networks are searched for the ones that "
    "fit a budget: fewer layers, fewer heads, narrower feed-forward layers, fewer bits. "
)


def experiment(tmp_path) -> dict:
    files = []
    for i in range(16):
        path = tmp_path / f"doc{i}.txt"
        path.write_text(f"Document {i}. " + TEXT * 8)
        files.append(str(path))
    config = TINY_LLAMA
    return {
        "name": "llm_tiny_test",
        "space": {
            "name": "llm.llama",
            "options": {
                "config": config,
                "min_depth": 2,
                "lora_ranks": [0, 4],
                "bits": [4, 16],
                "group_size": 16,
                "seq_len": 32,
            },
        },
        "task": {
            "name": "llm.text",
            "options": {
                "files": files,
                "block_size": 32,
                "fractions": [0.7, 0.15, 0.15],
                "heldout_blocks": 8,
            },
        },
        "train": {
            "trainer": "llm.lora_sandwich",
            "options": {
                "num_workers": 1,
                "epochs": 2,
                "batch_size": 4,
                "lr": 3e-3,
                "train_base": True,
                "max_steps_per_epoch": 3,
                "val_blocks": 4,
            },
        },
        "estimators": [{"name": "llm.perplexity", "options": {"batch_size": 8}}],
        "hardware": [{"name": "llm.memory", "options": {"context_length": 64}}],
        "objectives": [{"metric": "perplexity"}, {"metric": "weight_mb"}],
        "search": {
            "strategy": "random",
            "n_trials": 6,
            "concurrency": 2,
            "batch_size": 4,
            "seed": 0,
            "initial_archs": ["largest", "smallest"],
        },
    }


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
