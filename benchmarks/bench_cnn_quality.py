"""Search quality of the CNN example: the Pareto front's MACs range, and the largest
subnet's accuracy against the same architecture trained alone with the same budget.

Reads a finished ``nasforge run examples/cnn_digits.yaml`` run directory, then trains the
largest architecture alone — the same trainer options (workers, epochs, batch size,
learning rate, warm-up, label smoothing), only the largest subnet, no distillation — as
``cnn.progressive`` with a single "full" phase, into ``<run-dir>_standalone``. Both
networks are scored by the same ``cnn.accuracy`` estimator (batch norm re-calibrated).
Issue targets: front spans >= 3x MACs; largest within 1 point of standalone.

    nasforge run examples/cnn_digits.yaml
    python benchmarks/bench_cnn_quality.py --run-dir runs/cnn_digits
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from nasforge.engine.train import run_training
from nasforge.engine.weights import trained_weights
from nasforge.engine.worker import Evaluator
from nasforge.plan import Plan
from nasforge_cnn.training import TrainOptions

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "cnn_digits.yaml"


def largest_accuracy(exp: dict, run_dir: Path) -> dict[str, float]:
    """``cnn.accuracy`` of the space's largest arch on a run's trained supernet."""
    evaluator = Evaluator.build(exp, str(run_dir), [trained_weights(run_dir)])
    outcome = evaluator.evaluate(evaluator.plan.space.largest(), None)
    assert outcome["ok"], outcome
    return outcome["metrics"]


def front_macs_range(run_dir: Path) -> tuple[float, float]:
    with open(run_dir / "pareto.csv") as f:
        macs = [float(row["macs_m"]) for row in csv.DictReader(f)]
    return min(macs), max(macs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default=str(EXAMPLE))
    parser.add_argument("--run-dir", required=True, help="the finished example run")
    args = parser.parse_args()
    run_dir = Path(args.run_dir).resolve()
    exp = json.loads((run_dir / "experiment.json").read_text())
    exp["hardware"] = [h for h in exp["hardware"] if h["name"] == "hw.macs"]
    exp["objectives"] = [{"metric": "top1"}]

    low, high = front_macs_range(run_dir)
    shared = largest_accuracy(exp, run_dir)

    alone = json.loads(json.dumps(exp))
    alone["name"] = exp["name"] + "_standalone"
    alone_dir = run_dir.with_name(run_dir.name + "_standalone")
    alone["run_dir"] = str(alone_dir)
    budget = {k: v for k, v in exp["train"]["options"].items() if k in TrainOptions.model_fields}
    budget["phases"] = [{"name": "full", "epochs": budget.get("epochs", 10)}]
    alone["train"] = {**exp["train"], "trainer": "cnn.progressive",
                      "options": {**budget, "distill": False}}  # fmt: skip
    run_training(Plan.from_json(alone), alone_dir)
    standalone = largest_accuracy(alone, alone_dir)

    gap = standalone["top1"] - shared["top1"]
    print(f"Pareto front MACs: {low:.3f}M .. {high:.3f}M = {high / low:.2f}x (target >= 3x)")
    print(f"largest subnet top1: supernet {shared['top1']:.2f}%, trained alone "
          f"{standalone['top1']:.2f}% (gap {gap:+.2f} points, target <= 1)")  # fmt: skip
    print(json.dumps({"macs_range": high / low, "macs_min": low, "macs_max": high,
                      "largest_top1": shared["top1"], "standalone_top1": standalone["top1"],
                      "gap": gap}))  # fmt: skip


if __name__ == "__main__":
    main()
