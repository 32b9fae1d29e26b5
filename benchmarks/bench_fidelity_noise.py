"""How much of a fidelity check's standalone ranking is measurement noise?

A fidelity check ranks archs by their standalone validation accuracy; with a small
validation split, archs whose true accuracies differ by less than the split's sampling error
rank in an order that a second split of the same size would not repeat. This script loads
the standalone models a ``nasforge fidelity`` run trained (``RUN_DIR/fidelity/runs/*``),
records which validation samples each gets right, and draws pairs of independent bootstrap
validation sets of the same size: Kendall's tau between the two rankings of one pair is what
standalone training measured twice would agree on, *before* any training-seed noise — an
upper bound on the tau a supernet can reach against it. It also prints the spread of the
standalone accuracies against the binomial standard error of one measurement.

With ``--again RUN_DIR2`` (a copy of the run whose ``experiment.json`` has another
``train.seed``, checked with ``nasforge fidelity`` over the same archs), it also prints
Kendall's tau between the two standalone rankings — training alone, measured twice, with
training-seed noise included: the ceiling for any supernet — and the supernet's tau against
the mean of the two standalone measurements.

    python benchmarks/bench_fidelity_noise.py RUN_DIR [--pairs 2000] [--again RUN_DIR2]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

from nasforge.engine.weights import load_state
from nasforge.engine.worker import Evaluator
from nasforge.fidelity.check import load_run_plan


def correct_samples(run_dir: Path, folder: Path, experiment: dict) -> tuple[np.ndarray, dict]:
    """Per-sample correctness of one standalone model on the validation split."""
    from nasforge_cnn.training import fit_input

    result = json.loads((folder / "result.json").read_text())
    state = load_state((folder / "state.pt").read_bytes(), str(folder / "state.pt"))
    import io

    buffer = io.BytesIO()
    torch.save(state["model"], buffer)
    evaluator = Evaluator.build(experiment, str(run_dir), [buffer.getvalue()], hardware=False)
    arch = evaluator.plan.space.validate(result["arch"])
    evaluator.subnet(arch)  # activates and lets the estimators prepare (batch-norm re-calibration)
    x, y = evaluator.plan.task.arrays("val")
    shape = evaluator.plan.space.input_shape(arch)
    with torch.no_grad():
        predicted = torch.cat(
            [
                evaluator.supernet(fit_input(x[i : i + 512], shape)).argmax(1)
                for i in range(0, len(x), 512)
            ]
        )
    return (predicted == y).numpy(), result


def seed_to_seed(first: Path, second: Path) -> None:
    """Standalone training measured twice (two training seeds) over the same archs."""
    from nasforge.fidelity.ranking import rank_agreement

    plan = load_run_plan(first)
    rows = [json.loads((d / "fidelity.json").read_text())["rows"] for d in (first, second)]
    by_key = [{plan.space.key(r["arch"]): r for r in runs} for runs in rows]
    keys = sorted(set(by_key[0]) & set(by_key[1]))
    a = np.array([by_key[0][k]["alone_top1"] for k in keys])
    b = np.array([by_key[1][k]["alone_top1"] for k in keys])
    shared = np.array([by_key[0][k]["shared_top1"] for k in keys])
    seeds = [
        json.loads((d / "experiment.json").read_text())["train"]["seed"] for d in (first, second)
    ]
    again = rank_agreement(a, b)
    print(f"{len(keys)} archs trained alone with training seeds {seeds[0]} and {seeds[1]}:")
    print(
        f"  standalone top-1 differs by {np.abs(a - b).mean():.2f} points on average "
        f"(max {np.abs(a - b).max():.2f})"
    )
    print(
        f"  Kendall tau, seed {seeds[0]} vs seed {seeds[1]}: {again['kendall_tau']:.3f} "
        f"{_ci(again['kendall_tau_ci'])}, Spearman {again['spearman_rho']:.3f}"
    )
    for name, alone in ((f"seed {seeds[0]}", a), (f"seed {seeds[1]}", b), ("mean", (a + b) / 2)):
        agreement = rank_agreement(shared, alone)
        print(
            f"  supernet vs standalone ({name}): Kendall tau {agreement['kendall_tau']:.3f} "
            f"{_ci(agreement['kendall_tau_ci'])}, mean gap {agreement['gap_mean']:.2f}"
        )


def _ci(interval: list[float] | None) -> str:
    return "" if interval is None else f"[{interval[0]:.2f}, {interval[1]:.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--again", type=Path, help="the same check with another training seed")
    args = parser.parse_args()
    if args.again is not None:
        seed_to_seed(args.run_dir, args.again)
    plan = load_run_plan(args.run_dir)
    experiment = plan.to_json()
    folders = sorted(p.parent for p in (args.run_dir / "fidelity" / "runs").glob("*/result.json"))
    rows = [correct_samples(args.run_dir, f, experiment) for f in folders]
    correct = np.stack([c for c, _ in rows])  # archs x val samples
    n_archs, n_val = correct.shape
    accuracy = 100 * correct.mean(axis=1)
    recorded = np.array([r["alone"]["metrics"]["top1"] for _, r in rows])
    rng = np.random.default_rng(0)
    taus = []
    for _ in range(args.pairs):
        a = correct[:, rng.integers(0, n_val, n_val)].mean(axis=1)
        b = correct[:, rng.integers(0, n_val, n_val)].mean(axis=1)
        taus.append(kendalltau(a, b).statistic)
    taus = np.asarray(taus)
    p = accuracy.mean() / 100
    se = 100 * math.sqrt(p * (1 - p) / n_val)
    print(f"{n_archs} standalone models, {n_val} validation samples")
    print(
        f"recomputed top-1 matches the recorded one: max |diff| {np.abs(accuracy - recorded).max():.3f}"
    )
    print(
        f"standalone top-1: {accuracy.min():.2f} .. {accuracy.max():.2f}, "
        f"spread (std) {accuracy.std(ddof=1):.3f} points"
    )
    print(f"binomial standard error of one measurement: {se:.3f} points")
    print(
        f"Kendall tau between two independent validation sets of {n_val}: median "
        f"{np.median(taus):.3f}, 90% of pairs in [{np.percentile(taus, 5):.3f}, "
        f"{np.percentile(taus, 95):.3f}]  (training-seed noise not included)"
    )


if __name__ == "__main__":
    main()
