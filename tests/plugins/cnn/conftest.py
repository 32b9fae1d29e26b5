"""The CNN tests' shared progressive-shrinking run (trained once per session)."""

from __future__ import annotations

import pytest
from tiny_cnn import tiny_experiment

from nasforge import run_experiment

PROGRESSIVE_PHASES = [
    {"name": "full", "epochs": 1},
    {"name": "kernel_depth", "epochs": 1, "sample": {"kernel": [3, 5], "depth": [2, 3]}},
    {"name": "expand", "epochs": 1, "sample": {"expand": [3, 4, 6]}, "subnets_per_step": 2},
]


@pytest.fixture(scope="session")
def progressive_run(tmp_path_factory, nasforge_ray):
    """A tiny progressive-shrinking supernet (1 worker, 3 one-epoch phases) trained on Ray
    Train and searched with 6 trials, in this process (:func:`nasforge.run_experiment`, what
    ``nasforge run`` calls). Tests that change its files must put them back."""
    root = tmp_path_factory.mktemp("progressive")
    exp = tiny_experiment(
        root / "run", trainer="cnn.progressive", num_workers=1, phases=PROGRESSIVE_PHASES
    )
    result = run_experiment(exp, root / "run", progress=False)
    assert result.training is not None and result.training.epochs == 3
    assert len(result.complete) == 6 and result.front
    return result.run_dir
