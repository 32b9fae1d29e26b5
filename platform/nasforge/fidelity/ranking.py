"""How well weight-sharing quality ranks archs, measured against standalone training.

:func:`rank_agreement` compares two quality vectors over the same archs: Kendall's tau and
Spearman's rho with percentile bootstrap confidence intervals (archs resampled with
replacement), the overlap of the top-k sets, and the per-arch gap (how much worse weight
sharing scores than training alone, in the metric's own unit; positive is worse).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def _tau_rho(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    from scipy.stats import kendalltau, spearmanr

    if len(np.unique(a)) < 2 or len(np.unique(b)) < 2:
        return math.nan, math.nan
    return float(kendalltau(a, b).statistic), float(spearmanr(a, b).statistic)


def top_k_overlap(shared: np.ndarray, alone: np.ndarray, k: int, maximize: bool) -> float:
    """Share of the ``k`` best archs by standalone quality that are also among the ``k``
    best by weight sharing."""
    sign = -1.0 if maximize else 1.0
    best_shared = set(np.argsort(sign * shared, kind="stable")[:k].tolist())
    best_alone = set(np.argsort(sign * alone, kind="stable")[:k].tolist())
    return len(best_shared & best_alone) / k


def rank_agreement(
    shared: Sequence[float],
    alone: Sequence[float],
    *,
    maximize: bool = True,
    top_fraction: float = 0.25,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Agreement of weight-sharing (``shared``) and standalone (``alone``) quality."""
    a = np.asarray(shared, dtype=float)
    b = np.asarray(alone, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"expected two equal-length vectors, got {a.shape} and {b.shape}")
    n = len(a)
    tau, rho = _tau_rho(a, b)
    rng = np.random.default_rng(seed)
    taus, rhos = [], []
    for idx in rng.integers(0, n, size=(resamples, n)) if n >= 3 else []:
        t, r = _tau_rho(a[idx], b[idx])
        taus.append(t)
        rhos.append(r)
    tail = 100 * (1 - confidence) / 2

    def interval(values: list[float]) -> list[float] | None:
        finite = np.asarray(values)[np.isfinite(values)] if values else np.array([])
        if len(finite) < 10:
            return None
        return [float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail))]

    gap = (b - a) if maximize else (a - b)
    k = max(1, math.ceil(n * top_fraction))
    return {
        "n": n,
        "kendall_tau": tau,
        "kendall_tau_ci": interval(taus),
        "spearman_rho": rho,
        "spearman_rho_ci": interval(rhos),
        "confidence": confidence,
        "top_k": k,
        "top_k_overlap": top_k_overlap(a, b, k, maximize) if n else math.nan,
        "gap_mean": float(gap.mean()) if n else math.nan,
        "gap_min": float(gap.min()) if n else math.nan,
        "gap_max": float(gap.max()) if n else math.nan,
        "gaps": gap.tolist(),
    }
