"""Shared fixtures: one local Ray for the whole session (2 CPUs), temporary run dirs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

TESTS_DIR = Path(__file__).resolve().parent
# Test-only plugins (tests/engine_plugins.py) must import on Ray workers and in CLI
# subprocesses: put this folder on the PYTHONPATH they inherit.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH", "")) if p
)


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray with 2 CPUs shared by every test that needs one; its address is exported
    as RAY_ADDRESS so CLI subprocesses join it instead of starting their own."""
    import ray

    context = ray.init(
        num_cpus=2, _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False
    )
    previous = os.environ.get("RAY_ADDRESS")
    os.environ["RAY_ADDRESS"] = context.address_info["address"]
    yield context
    if previous is None:
        os.environ.pop("RAY_ADDRESS", None)
    else:
        os.environ["RAY_ADDRESS"] = previous
    ray.shutdown()
