"""A throwaway PostgreSQL server on 127.0.0.1 for tests and benchmarks.

Uses the server binaries of Debian's ``postgresql`` package (``.ci/run`` installs it). The
cluster lives in a fresh temporary directory; it is created by ``initdb`` with a password
for the ``nasforge`` superuser (scram-sha-256 over TCP, nothing over a socket another user
could reach), listens on loopback only, and is removed by :meth:`PostgresServer.close`.
When run as root the server processes run as the ``postgres`` system user (PostgreSQL
refuses root). :meth:`restart` stops and starts the same cluster on the same port, which the
fault-tolerance tests use to pull the database out from under a running search.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

USER = "nasforge"
DATABASE = "nasforge"


def find_bin_dir() -> Path | None:
    """The directory holding ``initdb`` and ``postgres``, or ``None`` when not installed."""
    found = shutil.which("initdb")
    if found and (Path(found).resolve().parent / "postgres").exists():
        return Path(found).resolve().parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return Path(candidates[-1]).parent if candidates else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory, served on ``127.0.0.1:port``.

    ``url`` carries no password (``postgresql://nasforge@127.0.0.1:PORT/nasforge``); the
    password is in ``password`` and reaches libpq through ``PGPASSWORD`` in ``env()`` — the
    way nasforge expects users to provide it.
    """

    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="nasforge-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.password = secrets.token_hex(12)
        self.process: subprocess.Popen | None = None
        self._as_postgres = os.geteuid() == 0
        self._init_cluster()
        self.start()
        self.create_database(DATABASE)

    @property
    def url(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def env(self) -> dict[str, str]:
        """Environment entries a client needs: the password, for libpq to read."""
        return {"PGPASSWORD": self.password}

    def _user_kwargs(self) -> dict:
        if not self._as_postgres:
            return {}
        return {"user": "postgres", "group": "postgres", "extra_groups": []}

    def _init_cluster(self) -> None:
        os.chmod(self.root, 0o755)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._as_postgres:
            entry = pwd.getpwnam("postgres")
            for path in (self.root, pwfile):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        command = [
            str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", USER,
            f"--pwfile={pwfile}", "--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
            "--no-sync", "-E", "UTF8",
        ]  # fmt: skip
        subprocess.run(
            command,
            check=True,
            capture_output=True,
            cwd=self.root,
            **self._user_kwargs(),
        )
        pwfile.unlink()

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until it accepts connections."""
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - the server writes it
        # loopback only; the Unix socket stays in our private directory
        command = [
            str(self.bin_dir / "postgres"), "-D", str(self.data), "-h", "127.0.0.1",
            "-p", str(self.port), "-k", str(self.root), "-c", "max_connections=100",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            start_new_session=True,
            **self._user_kwargs(),
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.log_tail()}")
            if self._ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"postgres did not start in {timeout:.0f}s: {self.log_tail()}")

    def _ready(self) -> bool:
        result = subprocess.run(
            [str(self.bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
            capture_output=True,
        )
        return result.returncode == 0

    def stop(self) -> None:
        """Fast shutdown (SIGINT): open transactions abort, clients are disconnected."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def restart(self, down_s: float = 0.0) -> None:
        """Stop, stay down ``down_s`` seconds, start again on the same port."""
        self.stop()
        time.sleep(down_s)
        self.start()

    def create_database(self, name: str) -> str:
        """A new empty database on this server; returns its URL (no password)."""
        import psycopg

        conn = psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=USER,
            password=self.password,
            dbname="postgres",
            autocommit=True,
        )
        with conn.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{name}"

    def log_tail(self, chars: int = 2000) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def close(self) -> None:
        """Stop the server and delete its cluster."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
