"""Log-mel filterbanks: the acoustic features every ``nasforge_tdnn`` model reads.

Owns :func:`log_mel` (a power spectrogram from ``torch.stft`` on the wave's own device,
projected on librosa's mel filterbank and log-compressed), :func:`mean_normalise` (per
utterance cepstral mean normalisation) and :func:`features`, the two together: what the
speaker tasks compute once per utterance. The defaults are the usual speaker-verification
front end: 16 kHz audio, 25 ms Hamming windows every 10 ms, 80 mel bands from 20 to 7,600 Hz.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

SAMPLE_RATE = 16000
N_MELS = 80
HOP = 160
#: feature frames per second of audio at the defaults (``SAMPLE_RATE / HOP``)
FRAMES_PER_SECOND = SAMPLE_RATE // HOP
FMIN, FMAX = 20.0, 7600.0
#: added to the mel energies before the log, so that silence stays finite
LOG_FLOOR = 1e-6


@functools.lru_cache(maxsize=16)
def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """librosa's (Slaney) mel filterbank ``[n_mels, n_fft // 2 + 1]`` from 20 to 7,600 Hz
    (capped at Nyquist), as a tensor on ``device``; cached per argument tuple."""
    import librosa

    fmax = min(FMAX, sample_rate / 2)
    matrix = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=FMIN, fmax=fmax)
    return torch.from_numpy(matrix).to(device=device, dtype=dtype)


def log_mel(
    wave: torch.Tensor,
    *,
    sample_rate: int = SAMPLE_RATE,
    n_mels: int = N_MELS,
    n_fft: int = 512,
    win_length: int = 400,
    hop_length: int = HOP,
) -> torch.Tensor:
    """Log mel energies of ``wave``: ``[L]`` gives ``[n_mels, T]``, ``[B, L]`` gives
    ``[B, n_mels, T]`` with ``T = 1 + L // hop_length``.

    The short-time Fourier transform is ``torch.stft`` (periodic Hamming window of
    ``win_length`` zero-padded to ``n_fft``, frames centred on multiples of ``hop_length``
    with reflection padding at the ends), computed on ``wave``'s device in its floating
    dtype; the power spectrum is projected on :func:`mel_filterbank` and compressed with
    ``log(mel + 1e-6)``. The same numbers as ``librosa.feature.melspectrogram`` with
    ``window="hamming"``, ``pad_mode="reflect"``, ``fmin=20``, ``fmax=7600``.
    """
    if not isinstance(wave, torch.Tensor):
        raise TypeError(f"log_mel: wave must be a torch.Tensor, got {type(wave).__name__}")
    if wave.ndim not in (1, 2):
        raise ValueError(f"log_mel: wave must be [L] or [B, L], got shape {tuple(wave.shape)}")
    if not wave.is_floating_point():
        raise ValueError(f"log_mel: wave must be floating point, got {wave.dtype}")
    if wave.shape[-1] <= n_fft // 2:
        raise ValueError(
            f"log_mel: wave has {wave.shape[-1]} samples; at least {n_fft // 2 + 1} are needed "
            f"(n_fft={n_fft})"
        )
    window = torch.hamming_window(win_length, periodic=True, dtype=wave.dtype, device=wave.device)
    spectrum = torch.stft(
        wave,
        n_fft=n_fft,
        hop_length=hop_length,
        win_length=win_length,
        window=window,
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    power = spectrum.real.square() + spectrum.imag.square()
    mel = mel_filterbank(sample_rate, n_fft, n_mels, wave.device, wave.dtype) @ power
    return torch.log(mel + LOG_FLOOR)


def mean_normalise(feats: torch.Tensor) -> torch.Tensor:
    """``feats`` minus its mean over time (the last axis), per utterance and band."""
    return feats - feats.mean(dim=-1, keepdim=True)


def features(wave: torch.Tensor | np.ndarray) -> torch.Tensor:
    """The speaker tasks' features of a 16 kHz wave: ``mean_normalise(log_mel(wave))``.

    A NumPy array is read as float32 (on the CPU); a tensor stays on its device.
    """
    if isinstance(wave, np.ndarray):
        wave = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    return mean_normalise(log_mel(wave))
