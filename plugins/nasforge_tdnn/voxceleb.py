"""Speech data in VoxCeleb layout: the users' own corpora (and the synthetic one).

Owns the three readers of that layout: :func:`list_utterances` (the audio files of a
``<root>/<speaker>/<session>/<utterance>.wav|.flac`` tree, with their speakers),
:func:`read_trials` (a VoxCeleb trial list, ``label enroll test`` per line) and
:func:`read_audio` (one file as mono float32 at 16 kHz, read with soundfile and resampled
with librosa). Errors name the folder, file or ``file:line`` at fault.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

AUDIO_SUFFIXES = (".wav", ".flac")
LAYOUT = "<root>/<speaker>/<session>/<utterance>.wav (or .flac)"


def list_utterances(root: str | Path) -> list[tuple[str, Path]]:
    """Every utterance under ``root`` as ``(speaker id, path)``, sorted by path.

    The layout is VoxCeleb's: ``<root>/<speaker>/<session>/<utterance>.wav`` or ``.flac``
    (the speaker id is the first folder's name); files elsewhere, other suffixes and hidden
    entries are ignored. Raises ``FileNotFoundError`` when ``root`` is not a folder and
    ``ValueError`` when it holds no utterance in that layout.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder (expected the layout {LAYOUT})")
    found = []
    for path in root.glob("*/*/*"):
        relative = path.relative_to(root)
        if (
            path.suffix.lower() in AUDIO_SUFFIXES
            and not any(part.startswith(".") for part in relative.parts)
            and path.is_file()
        ):
            found.append((relative.parts[0], path))
    if not found:
        raise ValueError(f"{root} holds no audio files in the layout {LAYOUT}")
    return sorted(found, key=lambda item: item[1])


def read_trials(path: str | Path) -> list[tuple[int, str, str]]:
    """The trials of a VoxCeleb trial list as ``(label, enroll, test)``.

    One trial per line: ``label enroll test`` separated by white space, ``label`` 1 for a
    target trial (same speaker) and 0 for a non-target one, both paths relative to the
    evaluation root (``id10270/x6uYqmx31kE/00001.wav``). Blank lines are skipped. A
    malformed line raises ``ValueError`` naming ``file:line`` and the line; a missing file
    ``FileNotFoundError``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such trial list (expected 'label enroll test' lines)")
    trials = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 3 or fields[0] not in ("0", "1"):
                raise ValueError(
                    f"{path}:{number}: expected 'label enroll test' with label 0 or 1, "
                    f"got {line.rstrip()!r}"
                )
            trials.append((int(fields[0]), fields[1], fields[2]))
    if not trials:
        raise ValueError(f"{path}: the trial list is empty (expected 'label enroll test' lines)")
    return trials


def read_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """The audio of ``path`` as mono float32 ``[L]`` at ``sample_rate``.

    Read with soundfile (any format libsndfile reads: WAV, FLAC…); channels are averaged
    and a file at another rate is resampled with ``librosa.resample`` (soxr). An unreadable
    or empty file raises ``ValueError`` naming it.
    """
    path = Path(path)
    try:
        audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (OSError, RuntimeError) as exc:  # soundfile.LibsndfileError is a RuntimeError
        raise ValueError(f"cannot read audio {path}: {exc}") from None
    if not audio.size:
        raise ValueError(f"cannot read audio {path}: the file holds no samples")
    wave = audio.mean(axis=1, dtype=np.float32) if audio.shape[1] > 1 else audio[:, 0]
    if rate != sample_rate:
        import librosa

        wave = librosa.resample(wave, orig_sr=rate, target_sr=sample_rate, res_type="soxr_hq")
    return np.ascontiguousarray(wave, dtype=np.float32)
