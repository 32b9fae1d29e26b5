"""What a cloud run directory costs: the same run with ``run_dir`` on local disk and in an S3
bucket (``moto``'s server on 127.0.0.1, as in the tests), alternated in one process.

Two runs, each ``--repeats`` times per location, every repeat in a fresh run directory:

- ``search``: the Cora example (tables, no training; 300 trials) — the mirror's download and
  upload of the run's small files and Ray Tune's state written to the bucket;
- ``train``: the tiny CNN of the tests (2 Ray Train workers, 2 epochs) plus its 6-trial
  search — Ray Train's checkpoints to the bucket, each epoch's metrics and the trained
  weights uploaded as they are written.

The study is a SQLite file outside the run directory in both cases (a study file cannot
live in a bucket). Prints the median wall time per location and their ratio.

    python benchmarks/bench_run_location.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runs", default="search,train", help="search, train or both")
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])
    )
    sys.path.insert(0, str(TESTS))
    from s3_server import CREDENTIALS, S3Server

    for key, value in CREDENTIALS.items():  # before Ray starts: its workers sign with them
        os.environ.setdefault(key, value)
    from tiny_cnn import tiny_experiment

    from nasforge import run_experiment
    from nasforge.engine.runtime import ray_init

    ray_init()
    server = S3Server()
    work = Path(tempfile.mkdtemp(prefix="bench-run-location-"))

    def experiment(kind: str, run_dir: str, n: int) -> dict:
        if kind == "search":
            exp = yaml.safe_load((ROOT / "examples" / "gnn_nasbench_cora.yaml").read_text())
            exp["run_dir"] = run_dir
        else:
            exp = tiny_experiment(run_dir, n_trials=6)
        exp["search"]["storage"] = f"sqlite:///{work / f'{kind}-{n}.db'}"
        return exp

    try:
        for kind in args.runs.split(","):
            times: dict[str, list[float]] = {"local": [], "s3": []}
            run_experiment(experiment(kind, str(work / f"warm-{kind}"), -1), progress=False)
            for n in range(args.repeats):
                for where in ("local", "s3"):
                    run_dir = (
                        str(work / f"{kind}-{where}-{n}") if where == "local" else server.uri()
                    )
                    exp = experiment(kind, run_dir, 2 * n + (where == "s3"))
                    start = time.perf_counter()
                    run_experiment(exp, progress=False)
                    times[where].append(time.perf_counter() - start)
            local, s3 = statistics.median(times["local"]), statistics.median(times["s3"])
            print(f"{kind}: local {local:.2f} s, s3 {s3:.2f} s (median of {args.repeats}): "
                  f"{s3 / local:.3f} x   runs local {times['local']} s3 {times['s3']}")  # fmt: skip
    finally:
        server.close()


if __name__ == "__main__":
    main()
