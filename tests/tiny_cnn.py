"""The tiny CNN experiment the training tests (and the cluster fault tests) run."""

from __future__ import annotations

from pathlib import Path

TINY_SPACE = {
    "in_channels": 1,
    "num_classes": 10,
    "input_size": 16,
    "stem_width": 8,
    "first_block_width": 8,
    "stage_widths": [8, 16],
    "stage_strides": [2, 2],
    "stage_activations": ["relu", "hswish"],
    "stage_se": [False, True],
    "final_expand_width": 32,
    "feature_width": 32,
}


def tiny_experiment(run_dir: Path, *, trainer="cnn.sandwich", n_trials=6, **train) -> dict:
    """A MobileNetV3 supernet small enough to train in seconds on digits at 16x16.

    Half the digits are held out (``val_fraction``: ~900 left to train on) and the batches
    are large, so an epoch is a handful of steps: the Ray Train start-up, not the epochs,
    is what these tests pay for; what they check does not depend on how well it learns.
    """
    options = {"num_workers": 2, "epochs": 2, "batch_size": 128, "lr": 0.1, **train}
    task = {"resolution": 16, "channels": 1, "val_fraction": 0.5}
    return {
        "name": "tiny_cnn",
        "run_dir": str(run_dir),
        "space": {"name": "cnn.mobilenetv3", "options": dict(TINY_SPACE)},
        "task": {"name": "cnn.digits", "options": task},
        "train": {"trainer": trainer, "options": options},
        "estimators": [{"name": "cnn.accuracy", "options": {"calibration_size": 64}}],
        "hardware": [
            {"name": "hw.macs"},
            {"name": "hw.latency", "options": {"repeats": 3, "warmup": 1}},
        ],
        "objectives": [{"metric": "top1"}, {"metric": "latency_ms"}],
        "search": {"strategy": "random", "n_trials": n_trials, "concurrency": 2, "batch_size": 3},
    }
