"""The budget-first bit-width scheduler of One QuantLLM for ALL (LLM-QFA).

Sampling each layer's bit-width uniformly makes the *average* bit-width of a sub-network a
sum of independent draws: it piles up in the middle of its range (for 30 layers over
{2, 3, 4, 8, 16} almost every draw averages 5 to 8 bits), so the low and high budgets are
hardly ever trained. LLM-QFA's non-parametric scheduler samples the budget first. Here: a budget bin is drawn
uniformly among ``bins`` equal-width bins of the average bit-width over
``[min(bits), max(bits)]``, a target ``t`` uniformly inside it, and each layer takes one of the
two choices around ``t`` (``lo <= t <= hi``) with the probability that makes its expected value
``t`` (``P(hi) = (t - lo) / (hi - lo)``); a draw whose average leaves the bin (rare: the
average spreads little around ``t``) is drawn again. Every budget bin is then trained
equally often — as long as its averages can be reached: with few layers the averages are
coarse (4 layers over {2, 4, 16} cannot average 8 to 10 bits), so keep ``bins`` below the
number of layers there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def sample_bits(
    rng: np.random.Generator, num_layers: int, choices: Sequence[int], bins: int = 7
) -> list[int]:
    """Per-layer bit-widths whose average falls in a uniformly drawn budget bin."""
    levels = sorted(set(choices))
    if len(levels) == 1:
        return [levels[0]] * num_layers
    edges = np.linspace(levels[0], levels[-1], bins + 1)
    chosen = int(rng.integers(bins))
    low, high = edges[chosen], edges[chosen + 1]
    last = chosen == bins - 1
    for _ in range(100):
        target = rng.uniform(low, high)
        upper = min(max(int(np.searchsorted(levels, target, side="left")), 1), len(levels) - 1)
        lo, hi = levels[upper - 1], levels[upper]
        p_high = (target - lo) / (hi - lo)
        bits = [hi if u < p_high else lo for u in rng.random(num_layers)]
        average = float(np.mean(bits))
        if low <= average < high or (last and average == high):
            break
    return bits


def uniform_bits(
    rng: np.random.Generator, num_layers: int, choices: Sequence[int], bins: int = 7
) -> list[int]:
    """Per-layer bit-widths drawn independently and uniformly (the baseline)."""
    levels = sorted(set(choices))
    return [levels[i] for i in rng.integers(0, len(levels), num_layers)]


def average_histogram(
    sampler, draws: int, num_layers: int, choices: Sequence[int], bins: int, seed: int = 0
) -> np.ndarray:
    """Counts of the average bit-width of ``draws`` samples in ``bins`` equal-width bins over
    ``[min(choices), max(choices)]`` (the last bin includes its right edge)."""
    rng = np.random.default_rng(seed)
    averages = [np.mean(sampler(rng, num_layers, choices)) for _ in range(draws)]
    counts, _ = np.histogram(averages, bins=bins, range=(min(choices), max(choices)))
    return counts
