"""The ranking figures of a fidelity check, on vectors whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from nasforge.fidelity.ranking import rank_agreement, top_k_overlap
from nasforge.fidelity.selection import evenly


def test_the_same_order_agrees_fully_and_the_reverse_order_not_at_all():
    shared = [90.0, 91.0, 92.5, 93.0, 95.0, 96.0]
    same = rank_agreement(shared, [v + 2 for v in shared])
    assert same["kendall_tau"] == pytest.approx(1.0) and same["spearman_rho"] == pytest.approx(1)
    assert same["gap_mean"] == pytest.approx(2.0) and same["top_k_overlap"] == 1.0
    reverse = rank_agreement(shared, shared[::-1])
    assert reverse["kendall_tau"] == pytest.approx(-1.0)
    assert reverse["top_k_overlap"] == 0.0


def test_the_interval_holds_the_estimate_and_narrows_with_more_archs():
    rng = np.random.default_rng(0)
    widths = []
    for n in (8, 64):
        alone = rng.normal(size=n)
        shared = alone + rng.normal(scale=0.7, size=n)
        stats = rank_agreement(shared, alone, seed=1)
        low, high = stats["kendall_tau_ci"]
        assert low <= stats["kendall_tau"] <= high
        widths.append(high - low)
    assert widths[1] < widths[0]


def test_the_gap_counts_worse_by_weight_sharing_as_positive_for_either_direction():
    up = rank_agreement([90.0, 80.0], [91.0, 82.0], maximize=True)
    assert up["gaps"] == pytest.approx([1.0, 2.0])
    down = rank_agreement([9.0, 12.0], [8.0, 10.0], maximize=False)  # e.g. perplexity
    assert down["gaps"] == pytest.approx([1.0, 2.0])


def test_constant_scores_have_no_ranking():
    stats = rank_agreement([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])
    assert np.isnan(stats["kendall_tau"]) and stats["kendall_tau_ci"] is None


def test_top_k_overlap_and_even_thinning():
    assert top_k_overlap(np.array([1, 2, 3, 4.0]), np.array([4, 2, 1, 3.0]), 2, True) == 0.5
    assert top_k_overlap(np.array([1, 2, 3, 4.0]), np.array([1, 2, 4, 3.0]), 1, False) == 1.0
    assert evenly(list(range(10)), 4) == [0, 3, 6, 9]
    assert evenly([1, 2], 5) == [1, 2]
