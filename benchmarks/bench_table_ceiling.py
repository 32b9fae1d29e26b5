"""How findable a tabular space's best archs are: the single-objective ceiling.

Issue 5 asks for an arch within ``--tolerance`` (0.3 points) of a table's best validation
accuracy within ``--budget`` (100) evaluations in 8 of 10 seeds. This script measures, on
the table itself, what any search is up against:

- how many archs lie within the tolerance of the best, and the chance that ``budget``
  distinct random archs include one;
- how often greedy hill climbing (best one-parameter neighbour, from a random arch,
  evaluations not counted) ends on one: the size of their basins;
- how often a predictor fitted on ``n`` random archs puts one among the ``budget`` archs it
  ranks best (``n`` + ``budget`` evaluations, more than the budget the issue allows), for
  ``n`` in ``--fitted-on``.

    python benchmarks/bench_table_ceiling.py examples/gnn_nasbench_cora.yaml \\
        --space-option dataset=pubmed [--metric valid_acc] [--seeds 10]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import numpy as np

from nasforge import build_predictor
from nasforge.benchmark import ground_truth, parse_key_values
from nasforge.experiment import load_experiment
from nasforge.plan import resolve
from nasforge.sdk import Objective


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", type=Path)
    parser.add_argument("--space-option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--metric", default="valid_acc")
    parser.add_argument("--tolerance", type=float, default=0.003)
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--climbs", type=int, default=1000, help="random starts of hill climbing")
    parser.add_argument("--fitted-on", default="100,1000,5000")
    parser.add_argument("--predictor", default="gbt")
    args = parser.parse_args()

    experiment = load_experiment(args.experiment)
    experiment.space.options.update(parse_key_values(args.space_option, "--space-option"))
    plan = resolve(experiment)
    space = plan.space
    with tempfile.TemporaryDirectory() as run_dir:
        truth = ground_truth(plan, [Objective(args.metric, "maximize")], Path(run_dir))
    keys = list(truth.values)
    accuracy = {k: float(truth.values[k][0]) for k in keys}
    best = max(accuracy.values())
    targets = {k for k, a in accuracy.items() if a >= best - args.tolerance - 1e-12}
    n = len(keys)
    out: dict = {
        "archs": n,
        "best": best,
        "within_tolerance": len(targets),
        # hypergeometric: P(no target among `budget` distinct random archs)
        "random_hit_probability": 1
        - math.comb(n - len(targets), args.budget) / math.comb(n, args.budget),
    }

    neighbours = _Neighbourhoods(space, keys, accuracy)
    rng = np.random.default_rng(0)
    ends = []
    for start in rng.choice(keys, size=min(args.climbs, n), replace=False):
        here = str(start)
        while neighbours[here]:
            step = max(neighbours[here], key=accuracy.__getitem__)
            if accuracy[step] <= accuracy[here]:
                break
            here = step
        ends.append(here in targets)
    out["hill_climb_hit_fraction"] = float(np.mean(ends))

    X = np.stack([space.encode(json.loads(k)) for k in keys])
    y = np.array([accuracy[k] for k in keys])
    hit = np.array([k in targets for k in keys])
    fits = {}
    for size in (int(s) for s in args.fitted_on.split(",")):
        seeds_hit = 0
        for seed in range(args.seeds):
            train = np.random.default_rng(seed).choice(n, size=size, replace=False)
            model = build_predictor(args.predictor, seed=seed).fit(X[train], y[train])
            score = model.predict(X)
            score[train] = -np.inf  # propose unseen archs only
            seeds_hit += bool(hit[np.argsort(-score)[: args.budget]].any())
        fits[str(size)] = f"{seeds_hit}/{args.seeds}"
    out[f"{args.predictor}_top{args.budget}_hit_seeds"] = fits
    print(json.dumps(out, indent=1))


class _Neighbourhoods:
    """Each arch's table neighbours one Optuna parameter away (canonical keys), computed
    when first asked for."""

    def __init__(self, space, keys: list[str], accuracy: dict[str, float]):
        self.space = space
        self.accuracy = accuracy
        self.choices: dict[str, list] = {}
        for k in keys:
            for name, value in space.to_params(json.loads(k)).items():
                if value not in self.choices.setdefault(name, []):
                    self.choices[name].append(value)
        self._found: dict[str, list[str]] = {}

    def __getitem__(self, key: str) -> list[str]:
        if key not in self._found:
            around = {
                self.space.key(a) for a in self.space.neighbours(json.loads(key), self.choices)
            }
            self._found[key] = sorted(k for k in around if k in self.accuracy and k != key)
        return self._found[key]


if __name__ == "__main__":
    main()
