"""Load: a long search on the tabular NAS-Bench-Graph space: how many archs one driver records.

5,000 trials (``--trials``), 4 in flight at once (0.5 CPU each on this 2-core machine),
random strategy over the Cora table (a look-up: the driver is all there is to measure),
archs per Ray Tune trial left to the engine (``--batch-size`` fixes it), the study in
PostgreSQL (``--kind sqlite`` / ``journal``: a file in a temporary directory). Without
``--storage`` a throwaway server is started on 127.0.0.1 (``tests/pg_server.py``; Debian's
``postgresql`` package); with it, any URL (password from PGPASSWORD). Afterwards the study
is read back and checked: exactly the requested COMPLETE trials, trial numbers 0..N-1 each
once, no arch evaluated twice (a re-proposed arch is a COMPLETE trial answered from the
first one's record, ``duplicate_of``), nothing RUNNING. Prints throughput and the share of the
driver's wall time spent in storage calls, storage calls per trial, and the throughput
over the first and the last 1,000 trials (from the trials' completion times: flat cost
means equal), then one JSON line.

    python benchmarks/bench_storage_load.py [--trials 5000] [--concurrency 4]
        [--kind postgresql|sqlite|journal] [--batch-size N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # pg_server: the throwaway server of the tests

os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--storage", help="PostgreSQL URL (default: a throwaway local server)")
    parser.add_argument("--kind", choices=["postgresql", "sqlite", "journal"], default="postgresql")
    parser.add_argument("--batch-size", type=int, help="archs per Tune trial (default: adaptive)")
    parser.add_argument("--window", type=int, default=1000, help="trials in the first/last window")
    args = parser.parse_args()

    from nasforge.engine import run_search
    from nasforge.plan import Plan

    server = None
    url = args.storage
    scratch = tempfile.TemporaryDirectory()
    if args.kind == "sqlite":
        url = f"sqlite:///{scratch.name}/study.db"
    elif args.kind == "journal":
        url = f"journal:{scratch.name}/study.log"
    if url is None:
        from pg_server import PostgresServer, find_bin_dir

        bin_dir = find_bin_dir()
        if bin_dir is None:
            sys.exit("PostgreSQL is not installed (Debian: apt install postgresql)")
        server = PostgresServer(bin_dir)
        os.environ.update(server.env())
        url = server.url
    try:
        exp = yaml.safe_load((ROOT / "examples" / "gnn_nasbench_cora.yaml").read_text())
        exp["name"] = "storage_load"
        exp["search"] = {
            "strategy": "random",
            "n_trials": args.trials,
            "seed": 0,
            "concurrency": args.concurrency,
            **({"batch_size": args.batch_size} if args.batch_size else {}),
            "resources_per_trial": {"cpu": 2 / args.concurrency},
            "storage": url,
        }
        import ray

        ray.init(address="local", num_cpus=2, _node_ip_address="127.0.0.1", include_dashboard=False,
                 log_to_driver=False)  # fmt: skip
        with tempfile.TemporaryDirectory() as run_dir:
            summary = run_search(Plan.from_json(exp), Path(run_dir), progress=False)
        ray.shutdown()

        from nasforge.engine.storage import open_storage

        storage = open_storage(url, Path(scratch.name))
        trials = optuna.load_study(study_name="storage_load", storage=storage).get_trials()
        states = Counter(t.state for t in trials)
        numbers = sorted(t.number for t in trials)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        by_number = {t.number: t for t in trials}
        evaluated = [t.user_attrs["key"] for t in complete if "duplicate_of" not in t.user_attrs]
        duplicates = [t for t in complete if "duplicate_of" in t.user_attrs]
        assert states[TrialState.COMPLETE] == args.trials, states
        assert numbers == list(range(len(trials))), "trial numbers not each recorded once"
        assert len(set(evaluated)) == len(evaluated), "an arch was evaluated twice"
        for t in duplicates:  # a re-proposed arch is answered from its first evaluation
            assert by_number[t.user_attrs["duplicate_of"]].user_attrs["key"] == t.user_attrs["key"]
        assert states[TrialState.RUNNING] == 0 and states[TrialState.WAITING] == 0, states
        done = sorted(t.datetime_complete.timestamp() for t in complete)
        window = min(args.window, len(done) // 2)
        first = window / max(done[window] - done[0], 1e-9)
        second = window / max(done[2 * window] - done[window], 1e-9)  # after the ramp-up
        last = window / max(done[-1] - done[-1 - window], 1e-9)
        result = {
            "kind": args.kind,
            "trials": args.trials,
            "recorded": len(trials),
            "evaluated": len(evaluated),
            "answered_from_cache": len(duplicates),
            "failed": states[TrialState.FAIL],
            "concurrency": args.concurrency,
            "wall_s": round(summary.wall_s, 1),
            "trials_per_s": round(args.trials / summary.wall_s, 1),
            "storage_s": round(summary.storage_s, 1),
            "storage_share": round(summary.storage_s / summary.wall_s, 3),
            "storage_calls": summary.storage_calls,
            "storage_calls_per_trial": round(summary.storage_calls / args.trials, 3),
            "tune_trials": summary.tune_trials,
            "largest_batch": summary.largest_batch,
            f"first_{window}_per_s": round(first, 1),
            f"second_{window}_per_s": round(second, 1),
            f"last_{window}_per_s": round(last, 1),
            "last_over_first": round(last / first, 3),
            "last_over_second": round(last / second, 3),
            "ms_per_storage_call": round(1000 * summary.storage_s / summary.storage_calls, 2),
        }
    finally:
        if server is not None:
            server.close()
        scratch.cleanup()
    print(
        f"{args.trials} trials, {args.concurrency} concurrent, {args.kind}: "
        f"{result['wall_s']} s, {result['trials_per_s']} trials/s; storage "
        f"{result['storage_s']} s = {100 * result['storage_share']:.1f}% of the driver's "
        f"wall time ({result['storage_calls']} calls = {result['storage_calls_per_trial']} per "
        f"trial, {result['ms_per_storage_call']} ms each); {result['tune_trials']} Tune trials "
        f"(largest batch {result['largest_batch']}); last {window} trials at "
        f"{result['last_over_first']:.3f}x the throughput of the first {window}"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
