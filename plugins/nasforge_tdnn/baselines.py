"""Two speaker-verification baselines, scored on the same trials as the searched subnets.

* **mean-MFCC cosine** (:func:`mfcc_embeddings`): no learned parameters. Each utterance
  is the mean over frames of its MFCCs ``c1..c{n_mfcc}`` with, by default, the
  per-coefficient standard deviation appended (``2 * n_mfcc`` dimensions). ``c0`` (the
  frame's log energy) is dropped: it follows the recording level rather than the speaker,
  and being the largest coefficient it would dominate the cosine. The standard deviation
  adds the spread of the spectral envelope over the utterance, which a mean alone loses.
  Frames are speech-standard (25 ms Hann window, 10 ms hop, FFT of the next power of two,
  40 mel bands), not librosa's music defaults (2048-point FFT, 512 hop).
* **GE2E (resemblyzer)** (:func:`ge2e_embeddings`): the pretrained GE2E speaker encoder
  that ships inside the resemblyzer wheel (Wan et al., 2018): 40 mel bands every 10 ms, a
  3-layer LSTM of 256 units, a 256 -> 256 linear projection with ReLU, L2-normalised;
  an utterance is cut into partials of 160 frames (1.6 s) whose embeddings are averaged.

MAC counts (:func:`mfcc_macs_per_second`, :func:`ge2e_macs_per_second`) are per second of
audio, analytic, and count multiplications of the signal path, each multiply-accumulate
once (the FFT, the filterbank, the DCT, the LSTM and linear products); logarithms,
square roots, nonlinearities, resampling and resemblyzer's voice-activity detection
(webrtcvad, a small GMM run every 30 ms before any of the above) are not counted.

An FFT of ``N`` points is counted as a radix-2 one: ``(N/2) * log2(N)`` butterflies of
one complex multiplication (4 real MACs) each; a real-input FFT costs half of that,
``N * log2(N)`` real MACs (``N`` need not be a power of two, ``log2`` is then fractional).
So one frame of a (power) mel spectrogram costs::

    stft_mel(N, W, M) = W                   # the window
                      + N * log2(N)         # real FFT of N points
                      + 2 * (N/2 + 1)       # |X|^2 of the N/2 + 1 bins
                      + M * (N/2 + 1)       # dense mel filterbank (as librosa applies it)

The encoder's weights load with ``torch.load(..., weights_only=True)``
(:func:`ge2e_encoder`), not through resemblyzer's own loader.
"""

from __future__ import annotations

import functools
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .scoring import cosine_scores, verification_metrics

__all__ = [
    "baseline_results",
    "ge2e_embeddings",
    "ge2e_encoder",
    "ge2e_macs_per_second",
    "mfcc_embeddings",
    "mfcc_macs_per_second",
]

_INSTALL = "pip install 'nasforge[speech]'"

# resemblyzer's fixed front end (resemblyzer.hparams), used by the analytic counts so that
# they do not need resemblyzer installed
_GE2E_SR = 16000
_GE2E_WINDOW = 400  # 25 ms: n_fft = win_length
_GE2E_HOP = 160  # 10 ms
_GE2E_MELS = 40
_GE2E_HIDDEN = 256
_GE2E_LAYERS = 3
_GE2E_EMBEDDING = 256
_GE2E_PARTIAL_FRAMES = 160  # 1.6 s
_GE2E_RATE = 1.3  # VoiceEncoder.embed_utterance's default partials per second
_GE2E_MIN_COVERAGE = 0.75  # ... and its default min_coverage


def _librosa():
    """librosa, or an ImportError that says which extra installs it."""
    try:
        import librosa
    except ImportError as exc:  # pragma: no cover - the speech extra is installed in CI
        raise ImportError(f"the MFCC baseline needs librosa: {_INSTALL}") from exc
    return librosa


def _resemblyzer():
    """resemblyzer, imported without its dependencies' deprecation warnings."""
    try:
        with warnings.catch_warnings():
            # webrtcvad imports pkg_resources; resemblyzer imports scipy.ndimage.morphology
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            import resemblyzer
    except ImportError as exc:  # pragma: no cover - the speech extra is installed in CI
        raise ImportError(f"the GE2E baseline needs resemblyzer: {_INSTALL}") from exc
    return resemblyzer


def _check_waves(waves) -> list[np.ndarray]:
    """``waves`` as a list of 1-D float32 arrays; ValueError for empty or non-finite ones."""
    if isinstance(waves, np.ndarray) and waves.ndim == 1:
        raise ValueError("waves must be a list of 1-D arrays, got a single 1-D array")
    out = []
    for i, wave in enumerate(waves):
        w = np.asarray(wave, dtype=np.float32)
        if w.ndim != 1 or w.size == 0:
            raise ValueError(f"wave {i} must be a non-empty 1-D array, got shape {w.shape}")
        if not np.isfinite(w).all():
            raise ValueError(f"wave {i} contains NaN or infinite samples")
        out.append(w)
    if not out:
        raise ValueError("no waves given")
    return out


def _stft_mel_macs_per_frame(n_fft: int, win_length: int, n_mels: int) -> float:
    """MACs of one frame of a power mel spectrogram (module doc, ``stft_mel``)."""
    bins = n_fft // 2 + 1
    return win_length + n_fft * math.log2(n_fft) + 2 * bins + n_mels * bins


# ----------------------------------------------------------------------------- MFCC


def _mfcc_frames(sample_rate: int, win_ms: float, hop_ms: float) -> tuple[int, int, int]:
    """``(n_fft, win_length, hop_length)`` in samples for the MFCC baseline's framing."""
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    win = round(win_ms * sample_rate / 1000)
    hop = round(hop_ms * sample_rate / 1000)
    if win < 2 or hop < 1:
        raise ValueError(f"window {win_ms} ms / hop {hop_ms} ms too short at {sample_rate} Hz")
    return 1 << (win - 1).bit_length(), win, hop


def mfcc_embeddings(
    waves: list[np.ndarray],
    sample_rate: int = 16000,
    n_mfcc: int = 20,
    *,
    with_std: bool = True,
    n_mels: int = 40,
    win_ms: float = 25.0,
    hop_ms: float = 10.0,
) -> np.ndarray:
    """Mean (and std) over frames of each utterance's MFCCs ``c1..c{n_mfcc}``.

    ``librosa.feature.mfcc`` on a power mel spectrogram of ``n_mels`` bands (Hann window of
    ``win_ms``, hop ``hop_ms``, FFT of the next power of two, log via ``power_to_db``,
    orthonormal DCT-II); ``c0`` is dropped (module doc). With ``with_std`` (the default)
    the per-coefficient standard deviation is appended. Returns float32
    ``(len(waves), n_mfcc)``, or ``(len(waves), 2 * n_mfcc)`` with ``with_std``.
    """
    if n_mfcc < 1 or n_mfcc >= n_mels:
        raise ValueError(f"n_mfcc must lie in 1..{n_mels - 1} (n_mels={n_mels}), got {n_mfcc}")
    librosa = _librosa()
    n_fft, win, hop = _mfcc_frames(sample_rate, win_ms, hop_ms)
    rows = []
    for wave in _check_waves(waves):
        mfcc = librosa.feature.mfcc(
            y=wave,
            sr=sample_rate,
            n_mfcc=n_mfcc + 1,
            n_fft=n_fft,
            win_length=win,
            hop_length=hop,
            n_mels=n_mels,
        )[1:]  # (n_mfcc, frames), c0 dropped
        stats = [mfcc.mean(axis=1)]
        if with_std:
            stats.append(mfcc.std(axis=1))
        rows.append(np.concatenate(stats))
    return np.stack(rows).astype(np.float32)


def mfcc_macs_per_second(
    sample_rate: int = 16000,
    n_mfcc: int = 20,
    *,
    with_std: bool = True,
    n_mels: int = 40,
    win_ms: float = 25.0,
    hop_ms: float = 10.0,
) -> float:
    """Multiply-accumulates per second of audio of :func:`mfcc_embeddings`.

    ``(sample_rate / hop) * per_frame`` with, for an FFT of ``N`` points, a window of
    ``W`` samples and ``M = n_mels``, ``K = n_mfcc``::

        per_frame = stft_mel(N, W, M)      # module doc
                  + K * M                  # DCT-II of the kept coefficients, as a product
                  + K * (2 if with_std else 1)   # pooling: running sum (and sum of squares)

    The log of the mel energies is not counted. At 16 kHz with the defaults (N=512,
    W=400, hop 160, M=40, K=20): 16,642 MACs a frame, 100 frames/s, 1.66 M MACs/s.
    """
    n_fft, win, hop = _mfcc_frames(sample_rate, win_ms, hop_ms)
    per_frame = (
        _stft_mel_macs_per_frame(n_fft, win, n_mels)
        + n_mfcc * n_mels
        + n_mfcc * (2 if with_std else 1)
    )
    return sample_rate / hop * per_frame


# ----------------------------------------------------------------------------- GE2E


@functools.lru_cache(maxsize=1)
def ge2e_encoder() -> nn.Module:
    """resemblyzer's pretrained ``VoiceEncoder`` on the CPU, in eval mode, once per process.

    Its weights ship in the wheel (``resemblyzer/pretrained.pt``) and nothing is
    downloaded. ``VoiceEncoder.__init__`` loads them with a bare ``torch.load(path)``,
    so the encoder is built here instead: the same modules (``lstm``, ``linear``, ``relu``,
    sized by ``resemblyzer.hparams``) on an instance of ``VoiceEncoder`` (its ``forward``
    and ``embed_utterance`` unchanged), the checkpoint read with
    ``torch.load(..., weights_only=True)``. Every module weight must be in the checkpoint;
    the two it also holds beyond them, ``similarity_weight`` and ``similarity_bias``, are
    the GE2E training loss's scale and offset, unused at inference (resemblyzer skips them
    too, with ``strict=False``).
    """
    resemblyzer = _resemblyzer()
    hp = resemblyzer.hparams
    path = Path(resemblyzer.__file__).resolve().parent / "pretrained.pt"
    if not path.is_file():
        raise FileNotFoundError(f"resemblyzer's pretrained encoder is missing: {path}")
    encoder = resemblyzer.VoiceEncoder.__new__(resemblyzer.VoiceEncoder)
    nn.Module.__init__(encoder)
    encoder.lstm = nn.LSTM(
        hp.mel_n_channels, hp.model_hidden_size, hp.model_num_layers, batch_first=True
    )
    encoder.linear = nn.Linear(hp.model_hidden_size, hp.model_embedding_size)
    encoder.relu = nn.ReLU()
    encoder.device = torch.device("cpu")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = checkpoint["model_state"]
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    unexpected = set(unexpected) - {"similarity_weight", "similarity_bias"}
    if missing or unexpected:
        raise RuntimeError(
            f"{path} does not fit resemblyzer's VoiceEncoder: missing {sorted(missing)}, "
            f"unexpected {sorted(unexpected)}"
        )
    return encoder.eval()


def _ge2e_input(wave: np.ndarray, sample_rate: int, index: int) -> np.ndarray:
    """``resemblyzer.preprocess_wav`` of ``wave``; the whole utterance where it finds no voice.

    ``preprocess_wav`` resamples to 16 kHz, raises the level to -30 dBFS and cuts silences
    longer than ~0.2 s by voice-activity detection. Where the detector keeps nothing (a
    pure tone, a silent file), the utterance is embedded resampled and level-normalised but
    untrimmed, with a warning, rather than as an empty (all-padding) input.
    """
    resemblyzer = _resemblyzer()
    if np.any(wave):  # an all-zero wave has no level to normalise (resemblyzer: NaN)
        wav = resemblyzer.preprocess_wav(wave, source_sr=sample_rate)
        if wav.size:
            return wav
    warnings.warn(
        f"GE2E: voice-activity detection kept nothing of wave {index}; embedding it untrimmed"
    )
    wav = wave
    if sample_rate != _GE2E_SR:
        wav = _librosa().resample(wave, orig_sr=sample_rate, target_sr=_GE2E_SR)
    if np.any(wave):
        wav = resemblyzer.normalize_volume(wav, resemblyzer.hparams.audio_norm_target_dBFS, True)
    return wav.astype(np.float32)


def ge2e_embeddings(waves: list[np.ndarray], sample_rate: int = 16000) -> np.ndarray:
    """256-d, unit-norm GE2E embeddings of ``waves`` (float32 ``(len(waves), 256)``).

    Each wave goes through ``resemblyzer.preprocess_wav(wave, source_sr=sample_rate)`` and
    the cached pretrained encoder's ``embed_utterance`` with its defaults (partials of
    1.6 s at 1.3 per second, averaged and L2-normalised); see :func:`_ge2e_input` for
    utterances in which no voice is detected.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    encoder = ge2e_encoder()
    rows = []
    with torch.inference_mode():
        for i, wave in enumerate(_check_waves(waves)):
            rows.append(encoder.embed_utterance(_ge2e_input(wave, sample_rate, i)))
    return np.stack(rows).astype(np.float32)


def _ge2e_lstm_macs_per_frame() -> int:
    """MACs of one 10 ms frame through the 3-layer LSTM: ``sum_l 4 H (I_l + H)``."""
    inputs = [_GE2E_MELS] + [_GE2E_HIDDEN] * (_GE2E_LAYERS - 1)
    return sum(4 * _GE2E_HIDDEN * (i + _GE2E_HIDDEN) for i in inputs)


def ge2e_macs_per_second(
    duration_s: float | None = None,
    *,
    include_frontend: bool = True,
    rate: float = _GE2E_RATE,
    min_coverage: float = _GE2E_MIN_COVERAGE,
) -> float:
    """Multiply-accumulates per second of (preprocessed, 16 kHz) audio of the GE2E encoder.

    What ``VoiceEncoder.embed_utterance`` runs: a mel spectrogram of the (padded)
    utterance, then every partial of 160 frames through the LSTM and, on its last hidden
    state, the linear layer::

        partial  = 160 * sum_l 4 H (I_l + H) + H * E
                 = 160 * (4*256*(40+256) + 2 * 4*256*(256+256)) + 256*256
                 = 160 * 1,351,680 + 65,536 = 216,334,336
        frontend = 100 * stft_mel(400, 400, 40) = 100 * 12,299.5      # module doc

    Partials start every ``round(16000 / rate / 160)`` frames, 77 at the default rate 1.3,
    i.e. 100/77 = 1.299 partials per second; each frame goes through the LSTM ~2.08 times.
    With ``duration_s=None`` this is the rate on long utterances::

        (100 / 77) * 216,334,336 + 1,229,950 = 280.95 M + 1.23 M = 282.18 M MACs/s

    With ``duration_s`` it is the exact count for one utterance of that length (partials
    from ``VoiceEncoder.compute_partial_slices``, so short utterances, padded to at least
    one 1.6 s partial, cost more per second), divided by ``duration_s``. The gate
    element-wise products (3 H per frame and layer) are not counted (module doc).
    """
    partial = _GE2E_PARTIAL_FRAMES * _ge2e_lstm_macs_per_frame() + _GE2E_HIDDEN * _GE2E_EMBEDDING
    frontend = _stft_mel_macs_per_frame(_GE2E_WINDOW, _GE2E_WINDOW, _GE2E_MELS)
    frames_per_s = _GE2E_SR / _GE2E_HOP
    frame_step = round(_GE2E_SR / rate / _GE2E_HOP)
    if duration_s is None:
        total = frames_per_s / frame_step * partial
        return total + (frontend * frames_per_s if include_frontend else 0.0)
    if duration_s <= 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}")
    n_samples = round(duration_s * _GE2E_SR)
    wav_slices, _ = _resemblyzer().VoiceEncoder.compute_partial_slices(
        n_samples, rate, min_coverage
    )
    total = len(wav_slices) * partial
    if include_frontend:
        padded = max(n_samples, wav_slices[-1].stop)
        total += (1 + padded // _GE2E_HOP) * frontend  # librosa's centred frames
    return total / duration_s


def _count_params(module: nn.Module) -> int:
    """Parameter elements of ``module``."""
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------- results


def baseline_results(
    waves: list[np.ndarray],
    labels,
    enroll: np.ndarray,
    test: np.ndarray,
    *,
    sample_rate: int = 16000,
    p_target: float = 0.01,
) -> list[dict[str, Any]]:
    """Both baselines scored on one trial list.

    ``waves`` are the utterances; trial ``t`` compares ``waves[enroll[t]]`` with
    ``waves[test[t]]`` by cosine similarity, ``labels[t]`` 1 for a target trial. Returns,
    per baseline, ``{"name", "note" (what it is), "eer" (%), "min_dcf" (at p_target),
    "macs_per_s" (long-utterance rate, MACs per second of audio), "params"}``.
    """
    waves = _check_waves(waves)
    results = []
    for name, note, embed, macs, params in (
        (
            "mean-MFCC cosine",
            "mean and spread of 20 MFCCs, no training",
            lambda: mfcc_embeddings(waves, sample_rate),
            lambda: mfcc_macs_per_second(sample_rate),
            lambda: 0,
        ),
        (
            "GE2E (resemblyzer)",
            "pretrained on real speech (the weights in the resemblyzer wheel)",
            lambda: ge2e_embeddings(waves, sample_rate),
            ge2e_macs_per_second,
            lambda: _count_params(ge2e_encoder()),
        ),
    ):
        scores = cosine_scores(embed(), enroll, test)
        metrics = verification_metrics(scores, labels, p_target=p_target)
        results.append(
            {
                "name": name,
                "note": note,
                "eer": metrics["eer"],
                "min_dcf": metrics["min_dcf"],
                "macs_per_s": float(macs()),
                "params": int(params()),
            }
        )
    return results
