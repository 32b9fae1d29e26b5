"""Faults of a real multi-node Ray cluster on this machine (head + 2 worker nodes, see
``multinode``): a worker node lost mid-search, a worker node lost mid-epoch of supernet
training, and the driver killed — each run as the ``nasforge`` command a user would run,
joining the cluster through ``RAY_ADDRESS``.
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


def cluster_env(cluster: MultiNodeCluster) -> dict[str, str]:
    """A driver's environment for joining the cluster (whose nodes all live on loopback)."""
    return {**os.environ, "RAY_ADDRESS": cluster.address, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def start_nasforge(cluster: MultiNodeCluster, command: str, path: Path, stderr) -> subprocess.Popen:
    """``nasforge COMMAND PATH`` as a driver joining the cluster, its output piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "nasforge.cli", command, str(path)],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=cluster_env(cluster),
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


def test_a_worker_node_killed_mid_search_still_ends_with_the_requested_trials(tmp_path, cluster):
    """Node 0 dies with a Tune trial (a batch of 2 archs) on it: Tune retries it on the
    surviving node; the study ends with exactly 30 COMPLETE trials, every arch completed
    once, none RUNNING."""
    log = tmp_path / "evaluations.log"
    exp = faulty(experiment(n_trials=30, strategy="random", batch_size=2), delay_s=0.4,
                 log_file=str(log))  # fmt: skip
    exp["run_dir"] = str(tmp_path / "run")
    path = tmp_path / "exp.yaml"
    path.write_text(json.dumps(exp))
    driver = start_nasforge(cluster, "search", path, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: count_complete(tmp_path / "run" / "study.db") >= 6, 180,
                 "6 complete trials", driver)  # fmt: skip
        cluster.kill_node(0)
        out, err = driver.communicate(timeout=300)
    finally:
        driver.kill()
        cluster.add_node()  # the replacement the autoscaler would start
    assert driver.returncode == 0, err[-3000:]
    assert "search: 30 complete" in out
    trials = trials_of(tmp_path / "run")
    states = Counter(t.state for t in trials)
    assert states[TrialState.COMPLETE] == 30 and states[TrialState.RUNNING] == 0
    keys = [t.user_attrs["key"] for t in trials if t.state == TrialState.COMPLETE]
    assert len(set(keys)) == 30
    # only the batch cut short on the dead node (one Tune trial: 2 archs) ran again
    evaluations = Counter(line.split()[1] for line in log.read_text().splitlines())
    assert sum(n - 1 for n in evaluations.values()) <= 2, evaluations.most_common(3)


def test_training_resumes_from_its_checkpoint_when_a_worker_node_dies_mid_epoch(tmp_path, cluster):
    """2 Ray Train workers, one per node; node 1 dies during epoch 2 (or 3). Ray Train
    restarts the worker group once a replacement node joins, the trainer resumes from the
    last checkpoint, and every epoch appears once in the metrics."""
    exp = tiny_experiment(tmp_path / "run", epochs=3, num_workers=2)
    exp["train"]["max_retries"] = 2
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    metrics = tmp_path / "run" / "supernet" / "metrics.jsonl"
    driver = start_nasforge(cluster, "train", path, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: metrics.exists() and len(metrics.read_text().splitlines()) >= 1, 300,
                 "the first epoch", driver)  # fmt: skip
        cluster.kill_node(1)  # epoch 2 starts as soon as epoch 1 is checkpointed
        # the node must die mid-training, not after the last epoch
        logged_at_kill = len(metrics.read_text().splitlines())
        running_at_kill = driver.poll() is None
        time.sleep(2)
        cluster.add_node()
        out, _ = driver.communicate(timeout=400)
    finally:
        driver.kill()
    assert running_at_kill and logged_at_kill < 3, out[-3000:]
    assert driver.returncode == 0, out[-3000:]
    epochs = [int(json.loads(x)["epoch"]) for x in metrics.read_text().splitlines()]
    assert epochs == [1, 2, 3], out[-3000:]
    meta = json.loads((tmp_path / "run" / "supernet" / "meta.json").read_text())
    assert meta["epochs"] == 3


def test_the_driver_killed_on_a_cluster_is_finished_by_rerunning(tmp_path, cluster):
    kill_driver_and_rerun(tmp_path, env=cluster_env(cluster))
