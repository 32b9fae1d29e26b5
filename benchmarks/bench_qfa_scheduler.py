"""LLM-QFA's budget-first bit-width scheduler against uniform per-layer sampling: histograms
of the average bit-width over 1,000 draws (target: every bin within +-25% of the mean count).

    python benchmarks/bench_qfa_scheduler.py [--draws 1000] [--layers 30] [--bits 2 3 4 8 16] [--bins 7]
"""

from __future__ import annotations

import argparse

import numpy as np
from nasforge_llm.qfa import average_histogram, sample_bits, uniform_bits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--layers", type=int, default=30)
    parser.add_argument("--bits", type=int, nargs="+", default=[2, 3, 4, 8, 16])
    parser.add_argument("--bins", type=int, default=7)
    args = parser.parse_args()
    edges = np.linspace(min(args.bits), max(args.bits), args.bins + 1)

    def budget_first(rng, layers, bits):
        return sample_bits(rng, layers, bits, bins=args.bins)

    for name, sampler in (
        ("budget-first (QFA)", budget_first),
        ("uniform per layer", uniform_bits),
    ):
        counts = average_histogram(sampler, args.draws, args.layers, args.bits, args.bins)
        mean = counts.mean()
        worst = np.abs(counts - mean).max() / mean
        print(f"{name}: worst bin {worst:+.0%} off the mean count {mean:.0f}")
        for low, high, count in zip(edges[:-1], edges[1:], counts, strict=True):
            print(
                f"  {low:5.1f}-{high:5.1f} bits {count:5d} {'#' * int(60 * count / counts.max())}"
            )


if __name__ == "__main__":
    main()
