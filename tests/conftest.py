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

    from nasforge.engine.runtime import ray_init

    previous = os.environ.pop("RAY_ADDRESS", None)
    ray_init(num_cpus=2)  # on 127.0.0.1 only, as nasforge starts a local Ray
    context = ray.get_runtime_context()
    os.environ["RAY_ADDRESS"] = context.gcs_address
    yield context
    if previous is None:
        os.environ.pop("RAY_ADDRESS", None)
    else:
        os.environ["RAY_ADDRESS"] = previous
    ray.shutdown()


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server on 127.0.0.1 for the whole session (see ``pg_server``).

    Skipped when the server binaries are not installed, unless NASFORGE_REQUIRE_POSTGRES=1
    (``.ci/run`` sets it after installing Debian's ``postgresql``): then it is an error.
    """
    from pg_server import PostgresServer, find_bin_dir

    bin_dir = find_bin_dir()
    if bin_dir is None:
        if os.environ.get("NASFORGE_REQUIRE_POSTGRES") == "1":
            pytest.fail("NASFORGE_REQUIRE_POSTGRES=1 but PostgreSQL's initdb was not found")
        pytest.skip("PostgreSQL server binaries not installed (Debian: apt install postgresql)")
    server = PostgresServer(bin_dir)
    yield server
    server.close()


@pytest.fixture
def postgres_db(postgres, request, monkeypatch):
    """A fresh database on the session's PostgreSQL; its password only in PGPASSWORD."""
    import re

    name = "t_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:50]
    url = postgres.create_database(name)
    for key, value in postgres.env().items():
        monkeypatch.setenv(key, value)
    return url
