"""nasforge_tdnn's scoring (EER, minDCF, cosine) and its two baselines (MFCC, GE2E).

EER is checked against scikit-learn's ROC, minDCF against a brute-force threshold loop,
the baselines on synthetic "speakers" (source-filter signals with different spectral
envelopes), so that no speech data set is needed. GE2E loads from resemblyzer's wheel.
"""

from __future__ import annotations

import math
import socket
from itertools import combinations

import numpy as np
import pytest
import torch
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from scipy.signal import lfilter
from sklearn.metrics import roc_curve

from nasforge_tdnn.scoring import cosine_scores, eer, min_dcf, verification_metrics

SR = 16000


def _trials(seed: int, n: int = 400, ties: bool = False):
    """Random trial scores: ~30% targets, shifted up by one standard deviation."""
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.3
    labels[:2] = [True, False]
    scores = rng.normal(size=n) + labels
    if ties:
        scores = np.round(scores * 4) / 4  # ~20 distinct values: large tie groups
    return scores, labels


# ----------------------------------------------------------------------------- EER


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", range(5))
def test_eer_matches_sklearn_roc_curve(seed, ties):
    scores, labels = _trials(seed, ties=ties)
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    fnr = 1 - tpr
    # the usual recipe: where the linearly interpolated ROC meets FNR == FPR
    reference = brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)
    rate, threshold = eer(scores, labels)
    assert rate == pytest.approx(reference, abs=1e-9)
    # the nearest ROC point, FNR and FPR averaged (voxceleb_trainer, SpeechBrain): within
    # one step of the ROC of the crossing, 1/n of the smaller class without ties
    i = np.nanargmin(np.abs(fnr - fpr))
    near = slice(max(i - 1, 0), i + 2)
    step = max(np.abs(np.diff(fpr[near])).max(), np.abs(np.diff(fnr[near])).max())
    if not ties:
        assert step <= 1 / min(labels.sum(), (~labels).sum())
    assert abs(rate - (fnr[i] + fpr[i]) / 2) <= step
    # the threshold is the tie group at the crossing: accepting it fully (>=) overshoots
    # the EER on false accepts, rejecting it (>) on misses
    targets, nontargets = scores[labels], scores[~labels]
    assert np.mean(nontargets >= threshold) >= rate - 1e-12
    assert np.mean(targets < threshold) <= rate + 1e-12
    assert np.mean(nontargets > threshold) <= rate + 1e-12
    assert np.mean(targets <= threshold) >= rate - 1e-12


def test_eer_splits_a_tie_group_at_the_crossing():
    # targets 0.9, 0.5; non-targets 0.5, 0.1: accepting the 0.5 pair moves from
    # (FNR, FPR) = (1/2, 0) to (0, 1/2); the crossing is half way, whatever the input order
    scores = np.array([0.9, 0.5, 0.5, 0.1])
    labels = np.array([1, 1, 0, 0])
    for order in ([0, 1, 2, 3], [0, 2, 1, 3], [3, 2, 1, 0]):
        assert eer(scores[order], labels[order]) == (0.25, 0.5)
    # all scores equal: one segment from (1, 0) to (0, 1)
    assert eer(np.zeros(10), np.arange(10) % 2)[0] == pytest.approx(0.5)


@pytest.mark.parametrize("seed", range(3))
def test_metrics_do_not_depend_on_the_order_of_tied_scores(seed):
    scores, labels = _trials(seed, ties=True)
    perm = np.random.default_rng(seed + 100).permutation(len(scores))
    assert eer(scores[perm], labels[perm]) == pytest.approx(eer(scores, labels), abs=1e-12)
    assert min_dcf(scores[perm], labels[perm]) == pytest.approx(min_dcf(scores, labels))


def test_separated_reversed_and_random_scores():
    labels = np.r_[np.ones(50, bool), np.zeros(150, bool)]
    separated = np.r_[np.linspace(1, 2, 50), np.linspace(-1, 0.5, 150)]
    assert eer(separated, labels)[0] == 0.0
    assert min_dcf(separated, labels)[0] == 0.0
    assert verification_metrics(separated, labels) == {"eer": 0.0, "min_dcf": 0.0}
    assert eer(-separated, labels)[0] == 1.0
    assert verification_metrics(-separated, labels)["eer"] == 100.0
    assert min_dcf(-separated, labels)[0] == 1.0  # no better than rejecting everything
    rng = np.random.default_rng(0)
    random_labels = rng.random(20000) < 0.5
    assert verification_metrics(rng.normal(size=20000), random_labels)["eer"] == pytest.approx(
        50.0, abs=2.0
    )


def _brute_force_min_dcf(scores, labels, p_target, c_miss, c_fa):
    """minDCF by trying every threshold, one at a time (accept score >= threshold)."""
    targets, nontargets = scores[labels == 1], scores[labels == 0]
    best = math.inf
    for threshold in [*sorted(set(scores.tolist())), math.inf]:
        p_miss = np.mean(targets < threshold)
        p_fa = np.mean(nontargets >= threshold)
        best = min(best, c_miss * p_miss * p_target + c_fa * p_fa * (1 - p_target))
    return best / min(c_miss * p_target, c_fa * (1 - p_target))


@pytest.mark.parametrize(
    ("p_target", "c_miss", "c_fa"), [(0.01, 1, 1), (0.05, 1, 1), (0.5, 1, 1), (0.1, 10, 1)]
)
def test_min_dcf_matches_brute_force(p_target, c_miss, c_fa):
    rng = np.random.default_rng(7)
    labels = (rng.random(60) < 0.4).astype(int)
    scores = np.round(rng.normal(size=60) + 1.5 * labels, 1)  # with ties
    value, threshold = min_dcf(scores, labels, p_target=p_target, c_miss=c_miss, c_fa=c_fa)
    assert value == pytest.approx(_brute_force_min_dcf(scores, labels, p_target, c_miss, c_fa))
    # the threshold reaches that cost
    p_miss = np.mean(scores[labels == 1] < threshold)
    p_fa = np.mean(scores[labels == 0] >= threshold)
    cost = c_miss * p_miss * p_target + c_fa * p_fa * (1 - p_target)
    assert cost / min(c_miss * p_target, c_fa * (1 - p_target)) == pytest.approx(value)


def test_scoring_rejects_bad_input():
    with pytest.raises(ValueError, match="both"):
        eer([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="both"):
        min_dcf([0.1, 0.2], [False, False])
    with pytest.raises(ValueError, match="labels"):
        eer([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match="NaN"):
        eer([0.1, np.nan], [0, 1])
    with pytest.raises(ValueError, match="target"):
        eer([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="p_target"):
        min_dcf([0.1, 0.2], [0, 1], p_target=0.0)


# ----------------------------------------------------------------------------- cosine


def test_cosine_scores_match_a_direct_computation():
    rng = np.random.default_rng(3)
    emb = rng.normal(size=(7, 16)) * rng.uniform(0.1, 10, size=(7, 1))
    enroll, test = rng.integers(0, 7, size=30), rng.integers(0, 7, size=30)
    direct = [
        emb[e] @ emb[t] / (np.linalg.norm(emb[e]) * np.linalg.norm(emb[t]))
        for e, t in zip(enroll, test, strict=True)
    ]
    np.testing.assert_allclose(cosine_scores(emb, enroll, test), direct, rtol=1e-12)
    from_torch = cosine_scores(torch.from_numpy(emb).float(), enroll, test)
    np.testing.assert_allclose(from_torch, direct, atol=1e-6)
    np.testing.assert_allclose(cosine_scores(emb, [0, 1], [0, 1]), [1.0, 1.0])
    with pytest.raises(ValueError, match="outside"):
        cosine_scores(emb, [0], [7])
    with pytest.raises(ValueError, match="one length"):
        cosine_scores(emb, [0, 1], [1])


# ----------------------------------------------------------------------------- baselines

#: synthetic speakers: glottal pulse rate [Hz] and three formants [Hz] (vocal-tract envelope)
SPEAKERS = {"a": (120.0, (600.0, 1300.0, 2500.0)), "b": (170.0, (450.0, 1800.0, 2800.0))}


def _utterance(rng, f0, formants, seconds=1.0) -> np.ndarray:
    """A source-filter "utterance": a jittered pulse train and breath noise through three
    resonators, a syllable-rate envelope, a random level and 25 dB SNR noise; pitch and
    formants vary by a few percent per utterance."""
    n = int(seconds * SR)
    period = SR / (f0 * rng.uniform(0.92, 1.08))
    pulses = np.arange(0, n, period)
    x = np.zeros(n)
    x[np.round(pulses + rng.normal(0, 0.02 * period, len(pulses))).astype(int).clip(0, n - 1)] = 1
    x += 0.05 * rng.standard_normal(n)
    r = np.exp(-np.pi * 100.0 / SR)  # 100 Hz bandwidth
    for f in formants:
        theta = 2 * np.pi * f * rng.uniform(0.96, 1.04) / SR
        x = lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], x)
    t = np.arange(n) / SR
    x *= 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 2 * np.pi)) ** 2
    x = x / np.abs(x).max() * rng.uniform(0.1, 0.9)
    x += 10 ** (-25 / 20) * x.std() * rng.standard_normal(n)
    return x.astype(np.float32)


def _speaker_set(seed: int, speakers: dict, per_speaker: int = 6):
    """Utterances of ``speakers`` and every pair of them as a trial."""
    rng = np.random.default_rng(seed)
    waves, ids = [], []
    for i, (f0, formants) in enumerate(speakers.values()):
        for _ in range(per_speaker):
            waves.append(_utterance(rng, f0, formants))
            ids.append(i)
    ids = np.array(ids)
    pairs = np.array(list(combinations(range(len(waves)), 2)))
    return waves, ids[pairs[:, 0]] == ids[pairs[:, 1]], pairs[:, 0], pairs[:, 1]


@pytest.mark.parametrize("seed", range(2))
def test_mfcc_baseline_separates_spectral_envelopes(seed):
    from nasforge_tdnn.baselines import mfcc_embeddings

    waves, labels, enroll, test = _speaker_set(seed, SPEAKERS)
    emb = mfcc_embeddings(waves)
    assert emb.shape == (len(waves), 40) and emb.dtype == np.float32
    assert mfcc_embeddings(waves[:2], with_std=False).shape == (2, 20)
    assert verification_metrics(cosine_scores(emb, enroll, test), labels)["eer"] < 15.0
    # control: one envelope under two names is not separable
    same = {"a": SPEAKERS["a"], "b": SPEAKERS["a"]}
    waves, labels, enroll, test = _speaker_set(seed, same)
    emb = mfcc_embeddings(waves)
    assert verification_metrics(cosine_scores(emb, enroll, test), labels)["eer"] > 30.0


def test_mfcc_macs_follow_the_documented_formula():
    from nasforge_tdnn.baselines import mfcc_macs_per_second

    # 16 kHz: 400-sample window, 512-point FFT (257 bins), 160 hop, 40 mels, 20 MFCCs
    per_frame = 400 + 512 * 9 + 2 * 257 + 40 * 257 + 20 * 40 + 2 * 20
    assert per_frame == 16_642
    assert mfcc_macs_per_second() == pytest.approx(100 * per_frame)
    assert mfcc_macs_per_second(with_std=False) == pytest.approx(100 * (per_frame - 20))
    # 8 kHz: 200-sample window, 256-point FFT, 80 hop, still 100 frames/s
    per_frame_8k = 200 + 256 * 8 + 2 * 129 + 40 * 129 + 20 * 40 + 2 * 20
    assert mfcc_macs_per_second(8000) == pytest.approx(100 * per_frame_8k)
    assert 1e6 < mfcc_macs_per_second() < 2e6


def test_ge2e_encoder_loads_offline_with_weights_only(monkeypatch):
    from nasforge_tdnn import baselines

    def no_network(*args, **kwargs):
        raise AssertionError("the GE2E encoder tried to reach the network")

    loads = []
    real_load = torch.load

    def recording_load(*args, **kwargs):
        loads.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(torch, "load", recording_load)
    baselines.ge2e_encoder.cache_clear()
    try:
        encoder = baselines.ge2e_encoder()
        assert baselines.ge2e_encoder() is encoder  # once per process
    finally:
        monkeypatch.undo()
    assert loads and all(kw.get("weights_only") is True for kw in loads)
    assert not encoder.training
    assert sum(p.numel() for p in encoder.parameters()) == 1_423_616

    # the same model as resemblyzer's own constructor builds (torch >= 2.6 loads its
    # bare torch.load with weights_only=True by default too)
    from resemblyzer import VoiceEncoder

    stock = VoiceEncoder(device="cpu", verbose=False)
    theirs = stock.state_dict()
    ours = encoder.state_dict()
    assert ours.keys() == theirs.keys()
    for key, value in ours.items():
        assert torch.equal(value, theirs[key]), key


def test_ge2e_embeddings_of_generated_signals():
    from nasforge_tdnn.baselines import ge2e_embeddings

    rng = np.random.default_rng(0)
    t = np.arange(2 * SR) / SR
    tones = sum(np.sin(2 * np.pi * f * t) / (i + 1) for i, f in enumerate((140, 280, 420, 700)))
    # tones with a syllable-rate envelope, plus noise: the voice detector keeps some of it
    voiced = 0.2 * tones * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) + 0.01 * rng.normal(size=t.size)
    emb = ge2e_embeddings([voiced.astype(np.float32), _utterance(rng, *SPEAKERS["a"], seconds=2)])
    assert emb.shape == (2, 256) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert (emb >= 0).all()  # ReLU before the normalisation
    # where the detector keeps nothing (silence), the whole utterance is embedded
    with pytest.warns(UserWarning, match="untrimmed"):
        silent = ge2e_embeddings([np.zeros(SR, np.float32)])
    assert np.isfinite(silent).all()


def test_ge2e_macs_match_what_embed_utterance_runs():
    from nasforge_tdnn.baselines import ge2e_encoder, ge2e_macs_per_second

    encoder = ge2e_encoder()
    lstm = encoder.lstm
    per_step = sum(
        getattr(lstm, f"weight_ih_l{k}").numel() + getattr(lstm, f"weight_hh_l{k}").numel()
        for k in range(lstm.num_layers)
    )
    assert per_step == 4 * 256 * (40 + 256) + 2 * 4 * 256 * (256 + 256) == 1_351_680
    # count what embed_utterance actually runs, from the shapes its modules see
    seen = []
    hooks = [
        encoder.lstm.register_forward_hook(
            lambda m, args, out: seen.append(args[0].shape[0] * args[0].shape[1] * per_step)
        ),
        encoder.linear.register_forward_hook(
            lambda m, args, out: seen.append(args[0].shape[0] * m.weight.numel())
        ),
    ]
    try:
        seconds = 10.0
        wave = np.random.default_rng(1).normal(scale=0.05, size=int(seconds * SR))
        encoder.embed_utterance(wave.astype(np.float32))
    finally:
        for hook in hooks:
            hook.remove()
    counted = ge2e_macs_per_second(seconds, include_frontend=False) * seconds
    assert sum(seen) == pytest.approx(counted, rel=1e-12)
    # long utterances: a 160-frame partial every 77 frames (rate 1.3 -> 100/77 per second)
    partial = 160 * per_step + 256 * 256
    asymptotic = ge2e_macs_per_second(include_frontend=False)
    assert asymptotic == pytest.approx(100 / 77 * partial)
    assert ge2e_macs_per_second(3600.0, include_frontend=False) == pytest.approx(
        asymptotic, rel=1e-3
    )
    frontend = 100 * (400 + 400 * math.log2(400) + 2 * 201 + 40 * 201)
    assert ge2e_macs_per_second() == pytest.approx(asymptotic + frontend)
    assert 2.7e8 < ge2e_macs_per_second() < 2.9e8  # ~282 M MACs per second of audio


def test_baseline_results_on_synthetic_speakers():
    from nasforge_tdnn.baselines import baseline_results

    waves, labels, enroll, test = _speaker_set(0, SPEAKERS, per_speaker=3)
    results = baseline_results(waves, labels.astype(int), enroll, test)
    assert [r["name"] for r in results] == ["mean-MFCC cosine", "GE2E (resemblyzer)"]
    for r in results:
        assert set(r) == {"name", "note", "eer", "min_dcf", "macs_per_s", "params"}
        assert 0.0 <= r["eer"] <= 100.0 and r["min_dcf"] >= 0.0 and r["macs_per_s"] > 0
    assert results[0]["params"] == 0 and results[1]["params"] == 1_423_616
    assert results[0]["eer"] < 15.0
