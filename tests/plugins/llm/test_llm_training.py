"""LLM-QFA's budget-first scheduler: every average-bit-width bin is trained about as often
(uniform per-layer sampling piles up in the middle)."""

from __future__ import annotations

import numpy as np
from nasforge_llm.qfa import average_histogram, sample_bits, uniform_bits

BITS = [2, 3, 4, 8, 16]


def test_budget_first_sampling_balances_the_average_bit_width_bins():
    counts = average_histogram(sample_bits, 1000, 30, BITS, bins=7)
    assert counts.sum() == 1000
    assert np.all(np.abs(counts - counts.mean()) <= 0.25 * counts.mean()), counts
    uniform = average_histogram(uniform_bits, 1000, 30, BITS, bins=7)
    assert uniform[0] + uniform[-1] < 0.01 * 1000 and uniform.max() > 2 * uniform.mean()


def test_draws_use_only_the_given_choices_and_are_seeded():
    rng = np.random.default_rng(0)
    for _ in range(50):
        bits = sample_bits(rng, 12, BITS)
        assert len(bits) == 12 and set(bits) <= set(BITS)
    first = sample_bits(np.random.default_rng(3), 12, BITS)
    assert first == sample_bits(np.random.default_rng(3), 12, BITS)
    assert sample_bits(np.random.default_rng(3), 4, [8]) == [8] * 4
