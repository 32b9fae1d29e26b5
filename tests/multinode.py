"""A multi-node Ray cluster on one machine, for the fault-tolerance tests.

:class:`MultiNodeCluster` runs Ray's ``ray.cluster_utils.Cluster`` in a child process (so it
never mixes with the test session's own local Ray): a head node with no CPUs — only the
drivers and controllers live there — and worker nodes with ``cpus_per_node`` CPUs each, all
on 127.0.0.1. Nodes can be killed abruptly (SIGKILL of every process of that node: raylet,
object store and the workers it started) and new ones added, the way a cloud instance
disappears and the autoscaler replaces it. Run as a script it is that child process,
answering one JSON line per command read from stdin.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

#: prefix of the child's answers on its stdout
REPLY = "@multinode "


class MultiNodeCluster:
    """Head (0 CPUs) + ``nodes`` worker nodes; ``address`` is for ``RAY_ADDRESS``."""

    def __init__(self, nodes: int = 2, cpus_per_node: int = 1):
        self.process = subprocess.Popen(
            [sys.executable, __file__, str(nodes), str(cpus_per_node)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        reply = self._read()
        self.address: str = reply["address"]
        self.nodes: list[str] = reply["nodes"]

    def _read(self, timeout: float = 120.0) -> dict:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.process.stdout], [], [], left)
            line = self.process.stdout.readline() if ready else ""
            if not line:
                break
            if line.startswith(REPLY):  # anything else is Ray's own chatter
                return json.loads(line[len(REPLY) :])
        self.close()
        raise RuntimeError(f"the multi-node cluster did not answer within {timeout:.0f}s")

    def _ask(self, command: str) -> dict:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._read()

    def kill_node(self, index: int) -> str:
        """SIGKILL every process of worker node ``index``; returns its node id."""
        return self._ask(f"kill {index}")["killed"]

    def add_node(self) -> str:
        """Start one more worker node and wait until it has joined; returns its node id."""
        node = self._ask("add")["added"]
        self.nodes.append(node)
        return node

    def close(self) -> None:
        """Shut the whole cluster down (only the processes this cluster started)."""
        if self.process.poll() is None:
            try:
                self.process.stdin.write("quit\n")
                self.process.stdin.flush()
                self.process.wait(60)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def _serve(nodes: int, cpus_per_node: int) -> None:
    import tempfile

    # every node on loopback, as nasforge's own local Ray (see nasforge.engine.runtime.ray_init),
    # and the cluster's address file in a private folder, so that no other process on this
    # machine finds this cluster by accident
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    private = tempfile.mkdtemp(prefix="nfmn-", dir="/tmp")  # short: socket paths
    os.environ["RAY_TMPDIR"] = private
    import ray
    from ray.cluster_utils import Cluster

    def answer(message: dict) -> None:
        sys.stdout.write(REPLY + json.dumps(message) + "\n")
        sys.stdout.flush()

    cluster = Cluster(
        initialize_head=True,
        connect=False,
        head_node_args={
            "num_cpus": 0,
            "include_dashboard": False,
            # a killed node's raylet refuses the GCS's health checks at once: declare it dead
            # after 3 refused checks 1 s apart instead of Ray's default 5 checks 3 s apart
            # (~15 s that node-loss tests would spend waiting). A live but busy raylet still
            # has the default 10 s per check to answer, so a loaded machine loses no nodes.
            "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 3},
        },
    )
    workers = []
    for _ in range(nodes):
        workers.append(cluster.add_node(num_cpus=cpus_per_node))
    ray.init(address=cluster.address, log_to_driver=False)  # wait_for_nodes asks through it
    cluster.wait_for_nodes()
    answer({"address": cluster.address, "nodes": [w.unique_id for w in workers]})
    for line in sys.stdin:
        command = line.split()
        if not command:
            continue
        if command[0] == "kill":
            node = workers[int(command[1])]
            cluster.remove_node(node, allow_graceful=False)
            answer({"killed": node.unique_id})
        elif command[0] == "add":
            node = cluster.add_node(num_cpus=cpus_per_node)
            workers.append(node)
            cluster.wait_for_nodes()
            answer({"added": node.unique_id})
        elif command[0] == "quit":
            ray.shutdown()  # the head cannot be removed while this process is connected
            cluster.shutdown()
            shutil.rmtree(private, ignore_errors=True)
            answer({"quit": True})
            return


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    _serve(int(sys.argv[1]), int(sys.argv[2]))
