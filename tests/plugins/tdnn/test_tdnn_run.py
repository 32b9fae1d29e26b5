"""The speaker-verification example end to end at a tiny size: synthetic speakers,
progressive training on two Ray Train workers, a search over (EER, MACs), the report."""

from __future__ import annotations

from pathlib import Path

import torch

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "tdnn_speakers.yaml"
TINY = {
    "space.options": {"num_speakers": 6, "max_channels": 32, "attention_channels": 16,
                      "res2_scale": 4},
    "task.options": {"train_speakers": 6, "eval_speakers": 4, "utterances_per_speaker": 6,
                     "trials_per_speaker": 10, "seed": 0},
    "train.options": {"num_workers": 2, "batch_size": 4, "epochs": 5, "calibration_size": 32},
}  # fmt: skip


def test_a_tiny_speaker_search_trains_searches_and_reports(run_experiment):
    import yaml

    experiment = yaml.safe_load(EXAMPLE.read_text())
    for dotted, value in TINY.items():
        section, key = dotted.split(".")
        experiment[section][key] = value
    result = run_experiment(experiment, n_trials=6, concurrency=2)
    assert result.training is not None and result.training.epochs == 5
    state = torch.load(result.run_dir / "supernet" / "final.pt", weights_only=True)
    assert any(k.startswith("blocks.") for k in state)
    complete = result.complete
    assert len(complete) == 6
    for trial in complete:
        assert 0 <= trial.metrics["eer"] <= 100 and trial.metrics["min_dcf"] >= 0
        assert trial.metrics["macs_m"] > 0 and trial.metrics["latency_ms"] > 0
    assert result.front and (result.run_dir / "pareto.csv").exists()
    # the baselines beside the front, scored on the same trials, in the report
    baselines = {b["name"]: b["metrics"] for b in result.report.baselines}
    assert list(baselines) == ["mean-MFCC cosine", "GE2E (resemblyzer)"]
    assert all(0 <= b["eer"] <= 100 and b["macs_m"] > 0 for b in baselines.values())
    assert baselines["GE2E (resemblyzer)"]["params_m"] == 1.423616
