"""Scale past this machine by simulation: one driver, a declared many-node Ray cluster.

``ray.cluster_utils.Cluster`` starts a head with no CPUs and ``--nodes`` nodes of
``--cpus`` logical CPUs each (16 x 4 = 64 by default), all on this machine; the search
runs 64 concurrent Ray Tune trials of one CPU each on them, over the NAS-Bench-Graph Cora
table, random strategy, the study in SQLite (or ``--storage``). The estimator sleeps
``--eval-s`` per arch (0: a no-op; 0.05: a weight-sharing evaluation on a GPU) — the
logical CPUs are not real cores, so a sleeping estimator stands for the workers' time.

Reported: archs recorded per second, the workers' busy share (evaluation time over 64 x
wall), archs per Tune trial, and storage calls per arch. From these, how many workers one
driver feeds at a given evaluation cost: ``archs/s * eval_s`` (see docs/scaling.md).

    python benchmarks/bench_cluster_sim.py [--nodes 16] [--cpus 4] [--trials 4000]
        [--eval-s 0.05] [--storage URL]

Ray's ``cluster_utils`` puts the simulated nodes on this machine's own address, not only
127.0.0.1 (giving them ``node_ip_address="127.0.0.1"`` leaves them unable to reach the
head): run it on a machine whose ports are not reachable from outside.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=16)
    parser.add_argument("--cpus", type=int, default=4, help="logical CPUs per node")
    parser.add_argument("--trials", type=int, default=4000)
    parser.add_argument("--eval-s", type=float, default=0.05, help="seconds per arch")
    parser.add_argument("--batch-size", type=int, help="archs per Tune trial (default: adaptive)")
    parser.add_argument("--storage", help="study storage URL (default: SQLite in a temp dir)")
    args = parser.parse_args()
    # the test estimator (a table look-up with a delay) must import on every node's workers
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])
    )
    sys.path.insert(0, str(TESTS))
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import optuna
    import ray
    from engine_plugins import delayed_table_experiment
    from ray.cluster_utils import Cluster

    from nasforge.engine import run_search
    from nasforge.engine.storage import open_storage
    from nasforge.plan import Plan

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    slots = args.nodes * args.cpus
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": False},
    )
    for _ in range(args.nodes):
        cluster.add_node(num_cpus=args.cpus)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    with tempfile.TemporaryDirectory() as tmp:
        url = args.storage or f"sqlite:///{tmp}/study.db"
        search = {"n_trials": args.trials, "concurrency": slots, "storage": url,
                  "resources_per_trial": {"cpu": 1}}  # fmt: skip
        if args.batch_size:
            search["batch_size"] = args.batch_size
        experiment = delayed_table_experiment("cluster_sim", args.eval_s, **search)
        started = time.perf_counter()
        summary = run_search(Plan.from_json(experiment), Path(tmp), progress=False)
        wall = time.perf_counter() - started
        trials = optuna.load_study(
            study_name="cluster_sim", storage=open_storage(url, Path(tmp))
        ).get_trials()
    ray.shutdown()
    cluster.shutdown()
    evaluated = [t for t in trials if "wall_s" in t.user_attrs]
    busy = sum(t.user_attrs["wall_s"] for t in evaluated)
    result = {
        "nodes": args.nodes,
        "cpus_per_node": args.cpus,
        "concurrent_trials": slots,
        "eval_s": args.eval_s,
        "trials": summary.complete,
        "evaluated": len(evaluated),
        "wall_s": round(wall, 1),
        "search_s": round(summary.wall_s, 1),
        "archs_per_s": round(summary.complete / summary.wall_s, 1),
        "workers_busy_share": round(busy / (slots * summary.wall_s), 3),
        "workers_fed_at_this_cost": round(busy / summary.wall_s, 1),
        "tune_trials": summary.tune_trials,
        "largest_batch": summary.largest_batch,
        "archs_per_tune_trial": round(summary.complete / max(summary.tune_trials, 1), 1),
        "storage_calls_per_arch": round(summary.storage_calls / summary.complete, 3),
        "storage_share": round(summary.storage_s / summary.wall_s, 3),
    }
    print(
        f"{args.nodes} nodes x {args.cpus} CPUs = {slots} concurrent trials, {args.eval_s} s "
        f"per arch: {result['archs_per_s']} archs/s, workers busy "
        f"{100 * result['workers_busy_share']:.0f}% (= {result['workers_fed_at_this_cost']} "
        f"workers kept busy), {result['archs_per_tune_trial']} archs per Tune trial"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
