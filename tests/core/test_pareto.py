"""Pareto maths (:mod:`nasforge.pareto`) against definitions computed by brute force.

- :func:`pareto_mask` keeps exactly the rows no other row dominates, for any mix of
  maximised and minimised objectives; rows equal to a front row are on the front.
- :func:`non_dominated_ranks` (moocore's non-dominated sorting) peels fronts as the
  definition does; :func:`crowding_distance` is pymoo's.
- :func:`hypervolume` (moocore) and the incremental :class:`Front2D` equal a grid count at
  the reference point 1.01; :func:`hypervolume_improvement_2d` equals the difference of two
  grid counts, for every candidate at once.
"""

from __future__ import annotations

import numpy as np
import pytest

from nasforge.pareto import (
    REFERENCE_POINT,
    Front2D,
    crowding_distance,
    dominates,
    hypervolume,
    hypervolume_improvement_2d,
    non_dominated,
    non_dominated_ranks,
    pareto_mask,
)

# -- dominance and the front -------------------------------------------------------------


def brute_dominates(a, b, directions) -> bool:
    """``a`` is at least as good as ``b`` everywhere and strictly better somewhere."""
    better = [x > y if d == "maximize" else x < y for x, y, d in zip(a, b, directions, strict=True)]
    worse = [x < y if d == "maximize" else x > y for x, y, d in zip(a, b, directions, strict=True)]
    return any(better) and not any(worse)


def brute_force_front(values, directions) -> list[bool]:
    return [not any(brute_dominates(b, a, directions) for b in values) for a in values]


@pytest.mark.parametrize("n_objectives", [1, 2, 3])
def test_pareto_mask_keeps_exactly_the_non_dominated_rows(n_objectives):
    for seed in range(200):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(0, 30))
        if seed % 2:  # few distinct levels: many ties and duplicate rows
            values = rng.integers(0, 3, size=(n, n_objectives)).astype(float)
        else:  # continuous values, then some rows repeated
            values = rng.normal(size=(n, n_objectives))
            if n:
                values = np.vstack([values, values[rng.integers(0, n, size=n // 3)]])
        directions = list(rng.choice(["maximize", "minimize"], size=n_objectives))
        before = values.copy()
        mask = pareto_mask(values, directions)
        assert mask.dtype == bool and mask.shape == (len(values),)
        assert mask.tolist() == brute_force_front(values.tolist(), directions), (
            f"seed {seed}, directions {directions}"
        )
        assert np.array_equal(values, before), "the input is not modified"


def test_pareto_mask_on_a_small_example_with_mixed_directions():
    # (accuracy: maximise, latency: minimise)
    values = [
        [0.9, 5.0],  # front: most accurate
        [0.8, 2.0],  # front
        [0.8, 2.0],  # front: equal to a front row
        [0.7, 3.0],  # dominated by [0.8, 2.0]
        [0.6, 1.0],  # front: fastest
        [0.6, 1.5],  # dominated by [0.6, 1.0] (tie on accuracy, slower)
    ]
    mask = pareto_mask(values, ["maximize", "minimize"])
    assert mask.tolist() == [True, True, True, False, True, False]
    # flipping a direction flips what is best
    assert pareto_mask(values, ["minimize", "minimize"]).tolist() == [
        False, False, False, False, True, False,
    ]  # fmt: skip


def test_pareto_mask_edge_cases():
    assert pareto_mask(np.zeros((0, 2)), ["maximize", "minimize"]).tolist() == []
    assert pareto_mask([[1.0, 2.0]], ["maximize", "minimize"]).tolist() == [True]
    assert pareto_mask([[1.0, 2.0]] * 4, ["maximize", "minimize"]).tolist() == [True] * 4
    assert pareto_mask([[3.0], [1.0], [3.0], [2.0]], ["maximize"]).tolist() == [
        True, False, True, False,
    ]  # fmt: skip
    assert pareto_mask([[3.0], [1.0], [3.0], [1.0]], ["minimize"]).tolist() == [
        False, True, False, True,
    ]  # fmt: skip


def test_dominates_broadcasts_over_rows():
    a = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 0.0]])
    assert dominates(a, np.array([1.0, 1.0])).tolist() == [True, False, False]
    assert dominates(np.array([1.0, 1.0]), a).tolist() == [False, False, False]


# -- non-dominated sorting and crowding --------------------------------------------------


def brute_ranks(F):
    rank, left, r = np.full(len(F), -1), set(range(len(F))), 0
    while left:
        front = {
            i
            for i in left
            if not any((F[j] <= F[i]).all() and (F[j] < F[i]).any() for j in left if j != i)
        }
        for i in front:
            rank[i] = r
        left -= front
        r += 1
    return rank


def test_ranks_and_crowding_match_their_definitions():
    rng = np.random.default_rng(0)
    for _ in range(20):
        F = rng.integers(0, 6, size=(int(rng.integers(1, 30)), int(rng.integers(1, 4))))
        F = F.astype(float)
        assert non_dominated_ranks(F).tolist() == brute_ranks(F).tolist()
    # one front: the extremes are infinite, an interior point gets the mean over objectives
    # of its neighbours' gap divided by the front's span; a repeated point counts once
    F = np.array([[0.0, 4.0], [1.0, 2.0], [1.0, 2.0], [3.0, 1.0], [4.0, 0.0]])
    cd = crowding_distance(F)
    assert np.isinf(cd[[0, 4]]).all()
    assert cd[1] == pytest.approx(((3 - 0) / 4 + (4 - 1) / 4) / 2) and cd[2] == 0.0
    assert cd[3] == pytest.approx(((4 - 1) / 4 + (2 - 0) / 4) / 2)
    assert np.isinf(crowding_distance(F[:2])).all()  # fronts of two are all extremes


# -- hypervolume -------------------------------------------------------------------------


def test_hypervolume_of_a_hand_computed_front():
    points = [(0.0, 0.5), (0.5, 0.0), (0.25, 0.25)]
    # strips left to right: 0.25 x 0.5 + 0.25 x 0.75 + 0.5 x 1.0
    assert hypervolume(points, (1.0, 1.0)) == pytest.approx(0.8125, abs=1e-15)
    dominated_and_repeated = [*points, (0.6, 0.6), (0.25, 0.25), (0.5, 0.2), (1.5, 0.0)]
    assert hypervolume(dominated_and_repeated, (1.0, 1.0)) == pytest.approx(0.8125, abs=1e-15)
    assert hypervolume([(0.0, 0.0)]) == pytest.approx(REFERENCE_POINT**2)
    assert hypervolume([]) == 0.0


def test_hypervolume_matches_a_brute_force_grid_in_any_order():
    rng = np.random.default_rng(0)
    n = 101  # points on a 0.01 grid in [0, 1]; the reference (1.01, 1.01) is one cell out
    for trial in range(20):
        grid = rng.integers(0, n, size=(int(rng.integers(1, 40)), 2))
        # cell (i, j) = [i, i+1) x [j, j+1) is dominated when some point is <= its corner
        covered = np.zeros((n, n), dtype=bool)
        for px, py in grid:
            covered[px:, py:] = True
        expected = covered.sum() * 0.01 * 0.01
        points = [(px / 100, py / 100) for px, py in grid]
        assert hypervolume(points) == pytest.approx(expected, rel=1e-9), trial
        front = Front2D()
        for i in rng.permutation(len(points)):  # incremental, in arbitrary order
            front.add(*points[i])
        assert front.hypervolume == pytest.approx(expected, rel=1e-9), trial
        assert front.ys == sorted(front.ys, reverse=True)
        assert len(set(front.ys)) == len(front.ys) and len(set(front.xs)) == len(front.xs)


def brute_force_hv(points: np.ndarray, reference: float = 1.1, grid: int = 400) -> float:
    xs = (np.arange(grid) + 0.5) / grid * reference
    gx, gy = np.meshgrid(xs, xs)
    covered = np.zeros_like(gx, dtype=bool)
    for x, y in points:
        covered |= (gx >= x) & (gy >= y)
    return covered.mean() * reference**2


def test_hypervolume_improvement_matches_a_brute_force_grid():
    rng = np.random.default_rng(0)
    front = rng.uniform(0, 1, (12, 2))
    front = front[non_dominated(front)]
    candidates = rng.uniform(0, 1.05, (6, 2))
    gains = hypervolume_improvement_2d(front, candidates, 1.1)
    base = brute_force_hv(front)
    for point, gain in zip(candidates, gains, strict=True):
        expected = brute_force_hv(np.vstack([front, point])) - base
        assert gain == pytest.approx(expected, abs=6e-3)
    assert (gains >= 0).all()


def test_the_vectorised_improvement_equals_the_hypervolume_difference():
    rng = np.random.default_rng(1)
    for _ in range(10):
        front = rng.uniform(0, 1, (int(rng.integers(1, 15)), 2))
        front = front[non_dominated(front)]
        candidates = rng.uniform(-0.1, 1.2, (40, 2))
        gains = hypervolume_improvement_2d(front, candidates)
        base = hypervolume(front)
        for point, gain in zip(candidates, gains, strict=True):
            assert gain == pytest.approx(hypervolume(np.vstack([front, point])) - base, abs=1e-12)
