"""Speaker-verification scoring: cosine trial scores, EER and minDCF.

A trial compares an enrolment utterance with a test utterance; its label is 1 (target:
same speaker) or 0 (non-target). A trial is accepted when its score is at or above the
threshold.

Both metrics come from one exact sweep over the sorted scores (:func:`_roc`): the scores
are sorted once, equal scores are merged into one group, and the detection error trade-off
is evaluated after each group, so tied scores are never split by their (arbitrary) order
in the input: the result depends only on the multiset of (score, label) pairs.

* **EER** is where the piecewise-linear curve through those points crosses
  ``FNR == FPR``: on the segment that adds the group at the crossing, FNR and FPR are
  interpolated linearly (equivalently, that tie group is accepted with the probability
  that equalises them), which is what the common ``brentq(1 - x - interp1d(fpr, tpr)(x))``
  recipe on :func:`sklearn.metrics.roc_curve` computes; at the crossing the two rates are
  equal, so averaging them (Kaldi's, SpeechBrain's convention) gives the same number.
* **minDCF** is NIST SRE's normalised minimum detection cost, as in the VoxCeleb
  challenges: the minimum over thresholds of
  ``c_miss * P_miss * p_target + c_fa * P_fa * (1 - p_target)``, divided by the cost of
  the best trivial system, ``min(c_miss * p_target, c_fa * (1 - p_target))``. The cost is
  linear along each segment, so its minimum is at one of the points: no interpolation.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["cosine_scores", "eer", "min_dcf", "verification_metrics"]


def cosine_scores(
    embeddings: torch.Tensor | np.ndarray, enroll: np.ndarray, test: np.ndarray
) -> np.ndarray:
    """Cosine similarity of each trial's enrolment and test embeddings.

    ``embeddings`` is ``(utterances, dim)``; ``enroll`` and ``test`` hold one row index per
    trial. Rows are L2-normalised (a zero row scores 0 against everything). Computed in
    float64; returns ``(trials,)``.
    """
    if isinstance(embeddings, torch.Tensor):
        embeddings = embeddings.detach().cpu().double().numpy()
    emb = np.asarray(embeddings, dtype=np.float64)
    if emb.ndim != 2:
        raise ValueError(f"embeddings must be (utterances, dim), got shape {emb.shape}")
    enroll = np.asarray(enroll)
    test = np.asarray(test)
    if enroll.shape != test.shape or enroll.ndim != 1:
        raise ValueError(
            f"enroll and test must be 1-D index arrays of one length, got shapes "
            f"{enroll.shape} and {test.shape}"
        )
    for name, idx in (("enroll", enroll), ("test", test)):
        if idx.size and not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"{name} must hold integer row indices, got dtype {idx.dtype}")
        if idx.size and (idx.min() < 0 or idx.max() >= len(emb)):
            raise ValueError(f"{name} indexes rows outside 0..{len(emb) - 1}")
    if not np.isfinite(emb).all():
        raise ValueError("embeddings contain NaN or infinite values")
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    unit = emb / np.maximum(norms, np.finfo(np.float64).tiny)
    return np.einsum("td,td->t", unit[enroll], unit[test])


def _check(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """``scores`` as float64 and ``labels`` as bool, both 1-D of one length, validated."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    lab = np.asarray(labels).ravel()
    if s.shape != lab.shape:
        raise ValueError(f"{s.size} scores but {lab.size} labels")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    if lab.dtype != bool:
        if not np.isin(lab, (0, 1)).all():
            raise ValueError("labels must be 1 (target) or 0 (non-target)")
        lab = lab.astype(bool)
    if lab.all() or not lab.any():
        raise ValueError(
            "labels must contain both target (1) and non-target (0) trials, "
            f"got {int(lab.sum())} target(s) of {lab.size}"
        )
    return s, lab


def _roc(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The exact detection error trade-off of ``scores``: ``(fnr, fpr, thresholds)``.

    Point 0 accepts nothing (FNR 1, FPR 0); point ``k >= 1`` accepts every score at or
    above ``thresholds[k]``, the ``k``-th largest distinct score. ``thresholds[0]`` is the
    next float above the largest score (it rejects everything).
    """
    s, lab = _check(scores, labels)
    order = np.argsort(-s, kind="stable")
    s, lab = s[order], lab[order]
    # the last index of each group of equal scores (descending order)
    last = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
    tp = np.cumsum(lab)[last]
    fp = (last + 1) - tp
    n_target, n_nontarget = int(lab.sum()), int(lab.size - lab.sum())
    fnr = np.r_[1.0, 1.0 - tp / n_target]
    fpr = np.r_[0.0, fp / n_nontarget]
    thresholds = np.r_[np.nextafter(s[0], np.inf), s[last]]
    return fnr, fpr, thresholds


def eer(scores, labels) -> tuple[float, float]:
    """Equal error rate (a fraction in 0..1) of ``scores`` and its threshold.

    ``labels`` are 1 (target) / 0 (non-target) or booleans; a trial is accepted when its
    score is at or above the threshold. The EER is where FNR and FPR cross on the exact
    sweep (module doc): linear interpolation on the segment of the crossing, so tied scores
    count as one step. The threshold is the score of the tie group at the crossing.
    Raises ``ValueError`` unless both classes are present.
    """
    fnr, fpr, thresholds = _roc(scores, labels)
    diff = fnr - fpr  # 1 at point 0, -1 at the last point, non-increasing
    k = int(np.argmax(diff <= 0))
    d0, d1 = diff[k - 1], diff[k]
    t = d0 / (d0 - d1)  # in (0, 1]
    rate = fpr[k - 1] + t * (fpr[k] - fpr[k - 1])
    return float(rate), float(thresholds[k])


def min_dcf(
    scores, labels, p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0
) -> tuple[float, float]:
    """Normalised minimum detection cost of ``scores`` and the threshold that reaches it.

    NIST SRE / VoxCeleb definition (module doc):
    ``min_t(c_miss * P_miss(t) * p_target + c_fa * P_fa(t) * (1 - p_target))`` divided by
    ``min(c_miss * p_target, c_fa * (1 - p_target))``; 0 is perfect, 1 is no better than
    always accepting or always rejecting. The VoxCeleb challenges use ``p_target=0.05`` (2020
    onward) or ``0.01``. Raises ``ValueError`` unless both classes are present.
    """
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must lie in (0, 1), got {p_target}")
    if c_miss <= 0 or c_fa <= 0:
        raise ValueError(f"costs must be positive, got c_miss={c_miss}, c_fa={c_fa}")
    fnr, fpr, thresholds = _roc(scores, labels)
    cost = c_miss * fnr * p_target + c_fa * fpr * (1.0 - p_target)
    k = int(np.argmin(cost))
    default = min(c_miss * p_target, c_fa * (1.0 - p_target))
    return float(cost[k] / default), float(thresholds[k])


def verification_metrics(scores, labels, p_target: float = 0.01) -> dict[str, float]:
    """``{"eer": EER in percent, "min_dcf": normalised minDCF at p_target}`` of a trial list."""
    return {
        "eer": 100.0 * eer(scores, labels)[0],
        "min_dcf": min_dcf(scores, labels, p_target=p_target)[0],
    }
