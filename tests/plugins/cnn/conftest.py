"""The CNN tests' one trained run: a tiny progressive-shrinking supernet trained on 2 Ray
Train workers and searched with 6 trials by ``nasforge run`` (once per session).

The training, search, export and fidelity tests all read it; a test that changes its files
must put them back (or work on a copy).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from tiny_cnn import tiny_experiment

PROGRESSIVE_PHASES = [
    {"name": "full", "epochs": 1},
    {"name": "kernel_depth", "epochs": 1, "sample": {"kernel": [3, 5], "depth": [2, 3]}},
    {"name": "expand", "epochs": 1, "sample": {"expand": [3, 4, 6]}, "subnets_per_step": 2},
]


@dataclass
class TrainedRun:
    """The run directory, the experiment file and what ``nasforge run`` printed."""

    run_dir: Path
    experiment: Path
    stdout: str


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, nasforge_ray) -> TrainedRun:
    root = tmp_path_factory.mktemp("cnn")
    exp = tiny_experiment(
        root / "run", trainer="cnn.progressive", num_workers=2, phases=PROGRESSIVE_PHASES
    )
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    result = subprocess.run(
        [sys.executable, "-m", "nasforge.cli", "run", str(path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return TrainedRun(root / "run", path, result.stdout)


@pytest.fixture
def progressive_run(trained_run: TrainedRun) -> Path:
    """The trained run's directory."""
    return trained_run.run_dir
