"""Security defaults: what nasforge starts listens on loopback, checkpoints never run code,
secrets never reach output.

Covered elsewhere: ``nasforge dashboard`` binds 127.0.0.1 (test_cli), a tampered
``final.pt`` is refused by search and export (test_cnn_training), a storage password given
through the environment never shows in output or in the run directory
(test_storage_postgres), a password in an experiment file is refused (test_config), the
job server nasforge submits to is reached with a token that is never printed (test_jobs).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from nasforge.engine.storage import open_storage
from nasforge.engine.weights import EPOCH_FILE, STATE_FILE, latest_checkpoint_state, load_state
from nasforge.errors import NasforgeError, StudyError

LISTENING = """
import json, subprocess, re, psutil, ray
from nasforge.engine.runtime import ray_init
ray_init(num_cpus=1)
ray.get(ray.remote(lambda: 1).remote())  # a worker process too
session = ray._private.worker.global_worker.node.get_session_dir_path()
pids = {psutil.Process().pid}
for p in psutil.process_iter(["cmdline"]):
    if session in " ".join(p.info["cmdline"] or []):
        pids.add(p.pid)
        pids.update(c.pid for c in p.children(recursive=True))
addresses = []
for conn in psutil.net_connections(kind="inet"):
    if conn.status == psutil.CONN_LISTEN and conn.pid in pids:
        addresses.append(conn.laddr.ip)
print(json.dumps({"node": ray._private.worker.global_worker.node.node_ip_address,
                  "listening": addresses}))
ray.shutdown()
"""


def test_a_local_ray_started_by_nasforge_listens_on_loopback_only():
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",)}
    result = subprocess.run(
        [sys.executable, "-c", LISTENING], capture_output=True, text=True, env=env, timeout=180
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["node"] == "127.0.0.1"
    assert len(found["listening"]) >= 4  # GCS, raylet, workers, agents
    assert all(ip in ("127.0.0.1", "::ffff:127.0.0.1", "::1") for ip in found["listening"]), found


class Exploit:
    """A pickle whose loading would run code (create a marker file)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def test_a_checkpoint_that_would_run_code_is_refused_with_a_clear_error(tmp_path):
    marker = tmp_path / "pwned"
    blob = pickle.dumps({"weights": Exploit(marker)})
    with pytest.raises(NasforgeError, match=r"^epoch 3: not a loadable checkpoint \("):
        load_state(blob, "epoch 3")
    assert not marker.exists()


def test_a_tampered_epoch_checkpoint_is_skipped_for_the_last_good_one(tmp_path, caplog):
    import torch

    good, bad = tmp_path / "checkpoint_a", tmp_path / "checkpoint_b"
    for folder, epoch in ((good, 1), (bad, 2)):
        folder.mkdir()
        (folder / EPOCH_FILE).write_text(json.dumps({"epoch": epoch}))
    torch.save({"epoch": 1, "weights": torch.zeros(2)}, good / STATE_FILE)
    marker = tmp_path / "pwned"
    (bad / STATE_FILE).write_bytes(pickle.dumps({"epoch": 2, "x": Exploit(marker)}))
    with caplog.at_level(logging.WARNING, logger="nasforge"):
        state = latest_checkpoint_state(tmp_path)
    assert state["epoch"] == 1
    assert not marker.exists()
    assert any("checkpoint_b" in r.getMessage() and "skipped" in r.getMessage()
               for r in caplog.records)  # fmt: skip


def test_a_storage_password_never_reaches_errors_or_logs(tmp_path, monkeypatch, caplog):
    from pg_server import free_port

    monkeypatch.setenv("NASFORGE_STORAGE_WAIT_S", "1")
    url = f"postgresql://nas:s3cret-pw@127.0.0.1:{free_port()}/db?sslmode=disable"
    with caplog.at_level(logging.DEBUG), pytest.raises(StudyError) as error:
        open_storage(url, tmp_path)
    assert "nas:***@127.0.0.1" in str(error.value)
    assert "s3cret-pw" not in str(error.value)
    assert caplog.records and all("s3cret-pw" not in r.getMessage() for r in caplog.records)
