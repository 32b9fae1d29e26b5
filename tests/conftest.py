"""Shared fixtures: a PostgreSQL server for the storage tests, an S3 server for cloud run
directories.

The session's local Ray (``nasforge_ray``) and ``run_experiment`` come from nasforge's own
pytest plugin (:mod:`nasforge.pytest_plugin`), as in any project that installs nasforge.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
# Test-only plugins (tests/engine_plugins.py) must import on Ray workers and in CLI
# subprocesses: put this folder on the PYTHONPATH they inherit.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH", "")) if p
)

# Dummy S3 credentials for the moto server (s3_server): set before the session's Ray starts,
# so its workers (and the test clusters' nodes) sign requests the same way.
from s3_server import CREDENTIALS  # noqa: E402

for _key, _value in CREDENTIALS.items():
    os.environ.setdefault(_key, _value)


@pytest.fixture(scope="session")
def s3():
    """A real S3 API (``moto``'s server) on 127.0.0.1 for the whole session."""
    from s3_server import S3Server

    server = S3Server()
    yield server
    server.close()


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
