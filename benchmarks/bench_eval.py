"""Evaluation throughput: scoring a subnet by weight sharing vs a plain validation pass.

Weight sharing = what a search worker does per arch: ``set_active`` + ``cnn.accuracy``'s
``prepare`` (batch-norm re-calibration on the calibration subset) + its validation pass on
the supernet. Baseline = the validation pass of the extracted static subnet with its
statistics already computed (the same ``top_k_accuracy`` code, same batches). Both run in
this process on the same archs, single-threaded; the ratio of medians over the archs is
printed. Issue target: ratio <= 1.5.

    python benchmarks/bench_eval.py [--archs 20] [--run-dir runs/cnn_digits]

Without ``--run-dir`` the supernet keeps its initial weights (timing does not depend on
them); with it, the run's trained weights are loaded.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from nasforge.engine.worker import Evaluator
from nasforge.plan import Plan

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "cnn_digits.yaml"


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default=str(EXAMPLE))
    parser.add_argument("--run-dir", help="use this run's trained supernet")
    parser.add_argument("--archs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    exp = yaml.safe_load(Path(args.experiment).read_text())
    exp["hardware"] = []  # only the estimator is timed
    exp["objectives"] = [{"metric": "top1"}]
    plan = Plan.from_json(exp)
    if args.run_dir:
        weights = (Path(args.run_dir) / "supernet" / "final.pt").read_bytes()
    else:
        torch.manual_seed(0)
        supernet = plan.build_supernet()
        import io

        buffer = io.BytesIO()
        torch.save(supernet.state_dict(), buffer)
        weights = buffer.getvalue()
    evaluator = Evaluator.build(exp, args.run_dir or "/tmp", [weights])
    estimator, context = evaluator.plan.estimators[0], evaluator.contexts[0]
    rng = np.random.default_rng(0)
    archs = [plan.space.sample(rng) for _ in range(args.archs)]

    shared, static, rows = [], [], []
    for arch in archs:

        def by_weight_sharing(arch=arch):
            evaluator.supernet.set_active(arch)
            estimator.prepare(arch, context)
            return estimator.evaluate(arch, context)

        subnet = evaluator.subnet(arch)  # statistics computed once, outside the clock
        plain = estimator.evaluate_subnet(subnet, arch, context)
        t_shared = median_time(by_weight_sharing, args.repeats)
        t_static = median_time(
            lambda s=subnet, a=arch: estimator.evaluate_subnet(s, a, context), args.repeats
        )
        assert abs(by_weight_sharing()["top1"] - plain["top1"]) < 1e-6, "scores differ"
        shared.append(t_shared)
        static.append(t_static)
        rows.append({"arch": arch, "shared_s": t_shared, "static_s": t_static})

    val = len(context.cache["val"][1])
    calib = len(context.cache["calib"])
    ratio = statistics.median(shared) / statistics.median(static)
    print(f"{args.archs} archs, {val} validation samples, {calib} calibration samples, "
          f"{args.threads} thread(s)")  # fmt: skip
    print(
        f"  weight sharing (BN re-calibration + validation): {statistics.median(shared) * 1e3:.1f} ms"
    )
    print(
        f"  static subnet (validation only):                 {statistics.median(static) * 1e3:.1f} ms"
    )
    print(f"  ratio {ratio:.3f} (target <= 1.5)")
    print(json.dumps({"ratio": ratio, "shared_ms": statistics.median(shared) * 1e3,
                      "static_ms": statistics.median(static) * 1e3, "val": val,
                      "calibration": calib, "archs": args.archs}))  # fmt: skip


if __name__ == "__main__":
    main()
