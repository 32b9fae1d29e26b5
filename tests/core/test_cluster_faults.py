"""Faults of a real multi-node Ray cluster on this machine (head + 2 worker nodes, see
``multinode``): a worker node lost mid-search, a worker node lost mid-epoch of supernet
training, and the driver killed — each run as the ``nasforge`` command a user would run,
joining the cluster through ``RAY_ADDRESS``, with its run directory where a cluster keeps
it: under a shared folder (``NASFORGE_RUN_ROOT``, standing for a mount every node has), or
in a bucket (a real S3 API on 127.0.0.1, see ``s3_server``) for the training run, whose
Ray Train checkpoints go there and are what it resumes from.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from multinode import MultiNodeCluster
from optuna.trial import TrialState
from test_engine import experiment, faulty, kill_driver_and_rerun, trials_of
from tiny_cnn import tiny_experiment


@pytest.fixture(scope="module")
def cluster():
    cluster = MultiNodeCluster(nodes=2, cpus_per_node=1)
    yield cluster
    cluster.close()


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    """The cluster's shared folder (every node here sees this machine's disk)."""
    return tmp_path_factory.mktemp("shared")


def cluster_env(cluster: MultiNodeCluster, **extra: str) -> dict[str, str]:
    """A driver's environment for joining the cluster (whose nodes all live on loopback)."""
    return {**os.environ, "RAY_ADDRESS": cluster.address, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            **extra}  # fmt: skip


def start_nasforge(
    cluster: MultiNodeCluster, command: str, path: Path, stderr, **env: str
) -> subprocess.Popen:
    """``nasforge COMMAND PATH`` as a driver joining the cluster, its output piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "nasforge.cli", command, str(path)],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=cluster_env(cluster, **env),
    )


def count_complete(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db) as con:
            return con.execute("select count(*) from trials where state='COMPLETE'").fetchone()[0]
    except sqlite3.OperationalError:  # the driver is still creating the tables
        return 0


def wait_for(predicate, timeout: float, what: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if process.poll() is not None:
            raise AssertionError(f"the command ended before {what}: {process.communicate()}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_worker_node_killed_mid_search_still_ends_with_the_requested_trials(
    tmp_path, cluster, shared
):
    """Node 0 dies with a Tune trial (a batch of 2 archs) on it: Tune retries it on the
    surviving node; the study ends with exactly 30 COMPLETE trials, every arch completed
    once, none RUNNING. The run directory is the experiment's under NASFORGE_RUN_ROOT."""
    log = tmp_path / "evaluations.log"
    exp = faulty(experiment(n_trials=30, strategy="random", batch_size=2), delay_s=0.4,
                 log_file=str(log))  # fmt: skip
    exp["name"] = "node_lost_mid_search"
    run_dir = shared / exp["name"]
    path = tmp_path / "exp.yaml"
    path.write_text(json.dumps(exp))
    driver = start_nasforge(cluster, "search", path, stderr=subprocess.PIPE,
                            NASFORGE_RUN_ROOT=str(shared))  # fmt: skip
    try:
        wait_for(lambda: count_complete(run_dir / "study.db") >= 6, 180,
                 "6 complete trials", driver)  # fmt: skip
        cluster.kill_node(0)
        out, err = driver.communicate(timeout=300)
    finally:
        driver.kill()
        cluster.add_node()  # the replacement the autoscaler would start
    assert driver.returncode == 0, err[-3000:]
    assert "search: 30 complete" in out
    trials = trials_of(run_dir, exp["name"])
    states = Counter(t.state for t in trials)
    assert states[TrialState.COMPLETE] == 30 and states[TrialState.RUNNING] == 0
    keys = [t.user_attrs["key"] for t in trials if t.state == TrialState.COMPLETE]
    assert len(set(keys)) == 30
    # only the batch cut short on the dead node (one Tune trial: 2 archs) ran again
    evaluations = Counter(line.split()[1] for line in log.read_text().splitlines())
    assert sum(n - 1 for n in evaluations.values()) <= 2, evaluations.most_common(3)


def test_training_resumes_from_its_checkpoint_when_a_worker_node_dies_mid_epoch(
    tmp_path, cluster, s3
):
    """2 Ray Train workers, one per node, the run directory in a bucket; node 1 dies during
    epoch 2 (or 3). Ray Train restarts the worker group once a replacement node joins, the
    trainer resumes from the last checkpoint Ray Train wrote to the bucket, and every epoch
    appears once in the metrics (a restart from scratch would log epoch 1 again)."""
    uri = s3.uri()
    prefix = uri.split("?")[0].split("/", 3)[3]
    exp = tiny_experiment(uri, epochs=3, num_workers=2)
    exp["train"]["max_retries"] = 2
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))

    def logged() -> list[int]:  # the epochs in the bucket's metrics.jsonl (pushed each epoch)
        if "supernet/metrics.jsonl" not in s3.keys(prefix):
            return []
        lines = s3.read(f"{prefix}/supernet/metrics.jsonl").decode().splitlines()
        return [int(json.loads(x)["epoch"]) for x in lines]

    driver = start_nasforge(cluster, "train", path, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: len(logged()) >= 1, 300, "the first epoch", driver)
        cluster.kill_node(1)  # epoch 2 starts as soon as epoch 1 is checkpointed
        # the node must die mid-training, not after the last epoch
        logged_at_kill = len(logged())
        running_at_kill = driver.poll() is None
        time.sleep(2)
        cluster.add_node()
        out, _ = driver.communicate(timeout=400)
    finally:
        driver.kill()
    assert running_at_kill and logged_at_kill < 3, out[-3000:]
    assert driver.returncode == 0, out[-3000:]
    assert logged() == [1, 2, 3], out[-3000:]
    meta = json.loads(s3.read(f"{prefix}/supernet/meta.json"))
    assert meta["epochs"] == 3
    keys = s3.keys(prefix)
    assert "supernet/final.pt" in keys
    assert any(k.startswith("supernet/ray/train/checkpoint_") for k in keys), keys


def test_the_driver_killed_on_a_cluster_is_finished_by_rerunning(cluster, shared):
    folder = shared / "driver_killed"  # the run directory and the evaluation log
    folder.mkdir()
    kill_driver_and_rerun(folder, env=cluster_env(cluster))
