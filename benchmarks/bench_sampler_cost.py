"""The sampler's own cost per proposal as the study grows (issue 17: samplers whose cost
grows, like GP-based ones, measured separately from the driver's flat cost).

Each strategy searches the NAS-Bench-Graph Cora table in-process (``nasforge bench-search``'s
runner: an in-memory study, every metric read from the table, no Ray, no storage) up to
``--budget`` new archs; the figure is the wall time per new arch in the first and the last
``--window`` archs, so only the sampler and Optuna's bookkeeping are timed.

    python benchmarks/bench_sampler_cost.py --strategies random,nsga2,tpe,gp,ehvi --budget 1000
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "gnn_nasbench_cora.yaml"


def per_arch_ms(wall: list[float], start: int, stop: int) -> float:
    """Milliseconds per new arch between the ``start``-th and ``stop``-th new arch."""
    before = wall[start - 1] if start else 0.0
    return 1000 * (wall[stop - 1] - before) / (stop - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", default="random,nsga2,tpe,gp,ehvi")
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import optuna

    from nasforge.benchmark.request import prepare_bench_search

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.strategies.split(","):
            bench, _ = prepare_bench_search(
                EXAMPLE,
                strategies=[name],
                seeds=[args.seed],
                budgets=[args.budget],
                run_dir=Path(tmp) / name,
            )
            cell = bench.cell(name, args.seed)
            n, w = cell.evaluations, args.window
            rows.append({
                "strategy": name,
                "new_archs": n,
                "proposals": cell.proposals,
                "wall_s": round(cell.wall_s, 2),
                f"first_{w}_ms_per_arch": round(per_arch_ms(cell.wall, 0, min(w, n)), 2),
                f"last_{w}_ms_per_arch": round(per_arch_ms(cell.wall, max(n - w, 0), n), 2),
            })  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
