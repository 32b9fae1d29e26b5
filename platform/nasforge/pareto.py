"""Pareto maths, written once: dominance, non-dominated sorting, crowding, hypervolume.

Everything here works on minimisation rows (one row per point, one column per objective);
:func:`minimised` turns values with mixed directions into that form. Non-dominated
sorting and hypervolume are `moocore`_'s (C implementations, any number of objectives);
what is ours is crowding distance (as pymoo computes it, for NSGA-II survival), the
incremental 2-D front that benchmarks track after every evaluation, and the vectorised
2-D hypervolume improvement of many candidates at once that EHVI's acquisition needs.

**Reference point.** Hypervolume is measured in objectives scaled to [0, 1] as
minimisation (0 the best value of the table or of what was seen, 1 the worst) against
:data:`REFERENCE_POINT`, 1.01 in every objective: the protocol of NAS-Bench-Graph search
comparisons, so that ``nasforge bench-search`` figures compare with published ones. A
strategy's acquisition may place its own reference further out (``ehvi`` uses 1.1 by
default, an option of the strategy: there the reference decides how much the ends of the
front are worth exploring, not how a result is scored).

.. _moocore: https://multi-objective.github.io/moocore/python/
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence

import moocore
import numpy as np

#: hypervolume reference in scaled objectives (worst = 1), the same in every objective
REFERENCE_POINT = 1.01


def minimised(
    values: np.ndarray | Sequence[Sequence[float]], directions: Sequence[str]
) -> np.ndarray:
    """``values`` (rows) as minimisation: maximised columns negated."""
    signs = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    return np.asarray(values, dtype=float).reshape(-1, len(signs)) * signs


def dominates(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether ``a`` dominates ``b`` (minimisation; no worse in every objective, better in
    one), along the last axis, broadcasting like numpy."""
    return (a <= b).all(axis=-1) & (a < b).any(axis=-1)


def non_dominated(points: np.ndarray) -> np.ndarray:
    """Mask of the rows no other row dominates (minimisation); rows equal to a front point
    are on the front too."""
    points = np.asarray(points, dtype=float)
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    return moocore.is_nondominated(points, keep_weakly=True)


def pareto_mask(
    values: np.ndarray | Sequence[Sequence[float]], directions: Sequence[str]
) -> np.ndarray:
    """Mask of the non-dominated rows of ``values`` whose columns are optimised in
    ``directions`` (``"minimize"``/``"maximize"``); rows equal to a front point are on the
    front too."""
    return non_dominated(minimised(values, directions))


def non_dominated_ranks(points: np.ndarray) -> np.ndarray:
    """Pareto rank of each row (minimisation): 0 for the non-dominated front, 1 for the front
    once that is removed, and so on (equal rows share a rank)."""
    points = np.asarray(points, dtype=float)
    if len(points) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.asarray(moocore.pareto_rank(points), dtype=np.int64)


def crowding_distance(points: np.ndarray, rank: np.ndarray | None = None) -> np.ndarray:
    """NSGA-II crowding distance of each row within its front (rows of equal ``rank``; one
    front when ``rank`` is None), larger is lonelier, as pymoo computes it: the mean over
    objectives of the gap between a row's neighbours scaled by the front's span; the
    extremes and every row of a front of at most 2 are infinite; a point repeated within a
    front counts once (the repeats get 0)."""
    points = np.asarray(points, dtype=float)
    n, m = points.shape
    rank = np.zeros(n, dtype=np.int64) if rank is None else np.asarray(rank)
    out = np.zeros(n)
    if n == 0:
        return out
    _, first = np.unique(np.column_stack([rank, points]), axis=0, return_index=True)
    r, unique = rank[first], points[first]
    total = np.zeros(len(first))
    for k in range(m):
        order = np.lexsort((unique[:, k], r))
        v, rr = unique[order, k], r[order]
        same_prev = np.r_[False, rr[1:] == rr[:-1]]
        same_next = np.r_[rr[1:] == rr[:-1], False]
        gap = np.full(len(v), np.inf)
        both = same_prev & same_next
        gap[both] = v[2:][both[1:-1]] - v[:-2][both[1:-1]] if len(v) > 2 else 0.0
        starts = np.flatnonzero(~same_prev)
        ends = np.r_[starts[1:], len(v)] - 1
        span = np.repeat(v[ends] - v[starts], ends - starts + 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            scaled = np.where(span > 0, gap / np.where(span > 0, span, 1.0), 0.0)
        total[order] += scaled
    out[first] = total / m
    sizes = np.bincount(rank)
    out[sizes[rank] <= 2] = np.inf
    return out


def hypervolume(
    points: np.ndarray | Iterable[Sequence[float]],
    reference: float | Sequence[float] = REFERENCE_POINT,
) -> float:
    """The volume dominated by ``points`` (minimisation, any number of objectives) and
    bounded by ``reference`` (one number for every objective, or one per objective);
    points outside the reference box add nothing."""
    points = np.asarray(list(points) if not isinstance(points, np.ndarray) else points, dtype=float)
    if points.size == 0:
        return 0.0
    ref = np.broadcast_to(np.asarray(reference, dtype=float), points.shape[1:])
    return float(moocore.hypervolume(points, ref=ref))


class Front2D:
    """The non-dominated set of 2-D minimisation points and its hypervolume, kept as
    points are added one at a time (a benchmark's anytime curve)."""

    def __init__(self, reference: float | Sequence[float] = REFERENCE_POINT):
        rx, ry = np.broadcast_to(np.asarray(reference, dtype=float), (2,))
        self.reference = (float(rx), float(ry))
        self.xs: list[float] = []  # ascending
        self.ys: list[float] = []  # strictly descending
        self.hypervolume = 0.0

    def __len__(self) -> int:
        return len(self.xs)

    def add(self, x: float, y: float) -> bool:
        """Add a point; return whether it changed the front (a dominated point or one equal
        to a front point does not). Points outside the reference box add no volume."""
        rx, ry = self.reference
        if not (x < rx and y < ry):
            return False
        i = bisect.bisect_right(self.xs, x)
        if i and self.ys[i - 1] <= y:  # a front point with x' <= x and y' <= y
            return False
        j = bisect.bisect_left(self.xs, x)
        end = j
        while end < len(self.xs) and self.ys[end] >= y:  # x' >= x and y' >= y: dominated
            end += 1
        self.xs[j:end] = [x]
        self.ys[j:end] = [y]
        self.hypervolume = hypervolume(np.column_stack([self.xs, self.ys]), self.reference)
        return True


def staircase_2d(
    front: np.ndarray, x: int, reference: float = REFERENCE_POINT
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The attained set of a 2-D ``front`` along objective ``x``: segment starts, ends and
    the other objective's level on each (the first segment, before any point, is at the
    reference) — the pieces an exact 2-D (expected) hypervolume improvement sums over."""
    y = 1 - x
    order = np.argsort(front[:, x], kind="stable")
    xs, ys = front[order, x], np.minimum.accumulate(front[order, y])
    starts = np.concatenate([[-np.inf], xs])
    ends = np.concatenate([xs, [reference]])
    levels = np.concatenate([[reference], ys])
    return starts, np.maximum(ends, starts), np.minimum(levels, reference)


def hypervolume_improvement_2d(
    front: np.ndarray, points: np.ndarray, reference: float = REFERENCE_POINT
) -> np.ndarray:
    """The exact hypervolume each of ``points`` (rows) would add to ``front`` (2-D,
    minimisation), for thousands of candidates in one vectorised pass."""
    starts, ends, levels = staircase_2d(front, 0, reference)
    length = np.clip(ends[None] - np.maximum(starts[None], points[:, 0][:, None]), 0.0, None)
    return (length * np.clip(levels[None] - points[:, 1][:, None], 0.0, None)).sum(axis=1)
