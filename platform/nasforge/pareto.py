"""Pareto dominance over objective values with mixed directions."""

from __future__ import annotations

import numpy as np


def pareto_mask(values: np.ndarray, directions: list[str]) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``values`` (one column per objective).

    Rows equal to a front point are on the front too.
    """
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return np.zeros(0, dtype=bool)
    signs = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    v = values * signs
    order = np.lexsort(v.T[::-1])  # a row can only be dominated by rows before it
    mask = np.zeros(len(v), dtype=bool)
    front = np.empty((0, v.shape[1]))
    for i in order:
        row = v[i]
        dominated = np.any(np.all(front <= row, axis=1) & np.any(front < row, axis=1))
        if not dominated:
            mask[i] = True
            front = np.vstack([front, row])
    return mask
