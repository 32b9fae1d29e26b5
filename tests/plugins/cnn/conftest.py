"""The CNN tests' shared progressive-shrinking run (trained once per session)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from tiny_cnn import tiny_experiment

PROGRESSIVE_PHASES = [
    {"name": "full", "epochs": 1},
    {"name": "kernel_depth", "epochs": 1, "sample": {"kernel": [3, 5], "depth": [2, 3]}},
    {"name": "expand", "epochs": 1, "sample": {"expand": [3, 4, 6]}, "subnets_per_step": 2},
]


@pytest.fixture(scope="session")
def progressive_run(tmp_path_factory, nasforge_ray):
    """A tiny progressive-shrinking supernet (1 worker, 3 one-epoch phases) searched with 6
    trials by ``nasforge run``. Tests that change its files must put them back."""
    root = tmp_path_factory.mktemp("progressive")
    exp = tiny_experiment(
        root / "run", trainer="cnn.progressive", num_workers=1, phases=PROGRESSIVE_PHASES
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
    return root / "run"
