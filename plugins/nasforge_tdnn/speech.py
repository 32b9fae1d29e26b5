"""The offline default speech data: synthetic speakers spoken by espeak-ng.

Owns :class:`SyntheticSpec` (how many speakers, utterances and trials, how noisy), the
speakers drawn from it (:func:`draw_speakers`: an English espeak-ng voice with a voice
variant, its own base pitch, pitch range and speaking rate), :class:`Espeak` (the espeak-ng
C library of ``espeakng_loader`` driven through ctypes), the rendering of one utterance
(:func:`render_utterance`: a sentence spoken with a little jitter, resampled to 16 kHz,
through a simulated room in some sessions, plus white or pink noise at a random SNR), and
the corpus in VoxCeleb layout, written atomically (:func:`make_corpus`) and cached by spec
(:func:`cached_corpus`). Everything is drawn from the spec's seed: the same spec gives the
same bytes.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import functools
import hashlib
import importlib.metadata
import io
import json
import multiprocessing
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile

SAMPLE_RATE = 16000
#: bump when the audio made from a spec changes: cached corpora of older versions are not reused
GENERATOR_VERSION = 2
#: espeak-ng's English voices (``lang/gmw/en*`` in its data): the accents a speaker can have
ENGLISH_VOICES = (
    "en",
    "en-us",
    "en-gb-x-rp",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
#: a speaker's base pitch, pitch range (espeak-ng's 0-99 scales) and rate (words per minute)
PITCH, PITCH_RANGE, RATE_WPM = (15, 85), (20, 90), (135, 195)
#: how far one utterance strays from its speaker's pitch, range and rate (+/-)
PITCH_JITTER, RANGE_JITTER, RATE_JITTER = 4, 5, 8
#: simulated rooms: reverberation time (s), size (m, from/to per axis)
RT60 = (0.15, 0.5)
ROOM_MIN, ROOM_MAX = (3.0, 3.0, 2.4), (9.0, 7.0, 3.5)
MAX_IMAGE_ORDER = 30  # caps the image-source order, hence the time per room (~30 ms)
#: speech level before the noise is added, dB relative to full scale (RMS)
LEVEL_DB = (-30.0, -18.0)
#: a pink-noise (1/f) filter: Julius O. Smith's 4-pole approximation, run by scipy's lfilter
PINK_B = (0.049922035, -0.095993537, 0.050612699, -0.004408786)
PINK_A = (1.0, -2.494956002, 2.017265875, -0.522189400)

# seed-sequence streams, so every part draws independent numbers
_SPEAKER_STREAM, _SESSION_STREAM, _UTTERANCE_STREAM, _TRIAL_STREAM = 0, 1, 2, 3
MANIFEST = "corpus.json"
TRIALS = "trials.txt"


# -- the sentences -------------------------------------------------------------------------
SUBJECTS = (
    "The old man", "A young girl", "My brother", "The tall farmer", "Her best friend",
    "The new teacher", "A tired soldier", "The little boy", "Our neighbour", "The kind nurse",
    "A quiet student", "The busy baker", "His uncle", "The young doctor", "A careful driver",
    "The proud captain", "My grandmother", "The angry cook", "A clever fox", "The brown dog",
    "The grey cat", "A small bird", "The sailor", "The painter", "Your sister",
    "The shy pupil", "A strong horse", "The mayor", "The old judge", "A lonely fisherman",
)  # fmt: skip
PREDICATES = (
    "carried the heavy box", "painted the wooden fence", "found a silver coin",
    "opened the back door", "cleaned the dusty shelf", "read a long letter",
    "baked fresh bread", "fixed the broken chair", "lost the blue ribbon",
    "planted a row of beans", "watched the red sunset", "kicked the leather ball",
    "washed the muddy boots", "sold the old wagon", "climbed the steep hill",
    "crossed the cold river", "sang a happy song", "tied the rope tightly",
    "drank a cup of tea", "wrote a short poem", "chased the yellow kite",
    "dropped the glass jar", "built a stone wall", "heard the church bell",
    "packed a small bag", "counted the gold rings", "picked ripe apples",
    "pushed the heavy cart", "fed the hungry geese", "mended the torn coat",
)  # fmt: skip
ENDINGS = (
    "before the storm", "near the old mill", "after the long rain", "at the edge of town",
    "in the early morning", "by the quiet lake", "under the bright moon", "on a windy day",
    "behind the red barn", "during the summer fair", "across the green field",
    "beside the narrow road", "at the end of the week", "in the warm kitchen",
    "before the sun went down", "next to the village well", "on the way home",
    "at the top of the stairs", "in the dark forest", "after the big dinner",
    "by the garden gate", "while the kettle boiled", "near the busy harbour",
    "in the cold winter", "on the last day of spring", "under the oak tree",
    "beside the stone bridge", "at the market square", "in front of the school",
    "when the clock struck nine",
)  # fmt: skip
#: how many different sentences :func:`sentence` makes
SENTENCE_COUNT = len(SUBJECTS) * len(PREDICATES) * len(ENDINGS)


def sentence(index: int) -> str:
    """Sentence ``index`` (0 to ``SENTENCE_COUNT - 1``) of plain English, 8 to 13 words:
    a subject, what it did and when or where (``"The old man carried the heavy box before
    the storm."``); every index gives a different sentence."""
    if not 0 <= index < SENTENCE_COUNT:
        raise ValueError(f"sentence: index {index} outside 0..{SENTENCE_COUNT - 1}")
    rest, ending = divmod(index, len(ENDINGS))
    subject, predicate = divmod(rest, len(PREDICATES))
    return f"{SUBJECTS[subject]} {PREDICATES[predicate]} {ENDINGS[ending]}."


# -- the spec ------------------------------------------------------------------------------
@dataclass(frozen=True)
class SyntheticSpec:
    """What :func:`make_corpus` generates; the same spec always gives the same corpus.

    ``train_speakers`` (written under ``dev/``) and ``eval_speakers`` (under ``test/``)
    are disjoint: they speak with disjoint sets of espeak-ng voice variants. Each speaker
    says ``utterances_per_speaker`` different sentences (an eval speaker
    ``eval_utterances_per_speaker``, when given), spread over ``sessions_per_speaker`` sessions; a session is one recording condition: a simulated
    room (with probability ``reverb_prob``, otherwise dry) and a noise colour (white or
    pink), with the SNR drawn per utterance from ``snr_db`` (low, high, in dB). Utterances
    are at most ``max_seconds`` long (most sentences take 2 to 4 s). The trial list holds,
    per eval speaker, ``trials_per_speaker`` target trials (two different utterances of the
    speaker) and as many non-target ones (one of the speaker's, one of another eval
    speaker's).
    """

    train_speakers: int = 40
    eval_speakers: int = 20
    utterances_per_speaker: int = 24
    sessions_per_speaker: int = 3
    seed: int = 0
    snr_db: tuple[float, float] = (5.0, 20.0)
    reverb_prob: float = 0.5
    trials_per_speaker: int = 100
    max_seconds: float = 4.0
    eval_utterances_per_speaker: int | None = None

    def utterances_of(self, speaker: int) -> int:
        """How many sentences speaker ``speaker`` says (train speakers come first)."""
        if speaker >= self.train_speakers and self.eval_utterances_per_speaker is not None:
            return self.eval_utterances_per_speaker
        return self.utterances_per_speaker

    def __post_init__(self) -> None:
        snr = tuple(float(value) for value in self.snr_db)
        object.__setattr__(self, "snr_db", snr)
        problems = []
        if self.train_speakers < 1:
            problems.append(f"train_speakers: {self.train_speakers}, need at least 1")
        if self.eval_speakers < 2:
            problems.append(f"eval_speakers: {self.eval_speakers}, need at least 2 (trials)")
        eval_utterances = self.utterances_of(self.train_speakers)
        for name, count in (
            ("utterances_per_speaker", self.utterances_per_speaker),
            ("eval_utterances_per_speaker", eval_utterances),
        ):
            if count < 2:
                problems.append(f"{name}: {count}, need at least 2")
            elif not 1 <= self.sessions_per_speaker <= count:
                problems.append(
                    f"sessions_per_speaker: {self.sessions_per_speaker}, need 1 to {name} ({count})"
                )
        if self.seed < 0:
            problems.append(f"seed: {self.seed}, need a non-negative integer")
        if len(snr) != 2 or snr[0] > snr[1]:
            problems.append(f"snr_db: {self.snr_db}, need (low, high) with low <= high")
        if not 0.0 <= self.reverb_prob <= 1.0:
            problems.append(f"reverb_prob: {self.reverb_prob}, need 0 to 1")
        pairs = eval_utterances * (eval_utterances - 1) // 2
        if not 1 <= self.trials_per_speaker <= max(pairs, 1):
            problems.append(
                f"trials_per_speaker: {self.trials_per_speaker}, need 1 to {pairs} (the pairs "
                f"of an eval speaker's {eval_utterances} utterances)"
            )
        if not 0.5 <= self.max_seconds <= 60:
            problems.append(f"max_seconds: {self.max_seconds}, need 0.5 to 60")
        if problems:
            raise ValueError("SyntheticSpec: " + "; ".join(problems))

    def key(self) -> str:
        """A short hash of the spec, the generator version and the espeak-ng build: the
        name of the spec's corpus in the cache."""
        spec = asdict(self)
        if spec["eval_utterances_per_speaker"] is None:  # keys made before the option stay
            del spec["eval_utterances_per_speaker"]
        described = {
            "spec": spec,
            "generator": GENERATOR_VERSION,
            "espeakng_loader": _espeakng_loader_version(),
        }
        text = json.dumps(described, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _espeakng_loader_version() -> str:
    try:
        return importlib.metadata.version("espeakng-loader")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# -- espeak-ng -----------------------------------------------------------------------------
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class Espeak:
    """espeak-ng's C library (``espeakng_loader``'s build and data) driven through ctypes.

    espeak-ng keeps synthesis state in static variables (wave phase, flutter position,
    harmonic tables) that ``espeak_Terminate`` does not reset, so an utterance would depend
    on every one spoken before it. To make each utterance depend on its arguments only,
    the library is loaded from a private copy (no other user in the process shares it),
    initialised for one utterance and unloaded (``dlclose``) after it: about 1 ms. The
    random noise of some variants is seeded per utterance, espeak-ng's own generator and
    the C library's ``rand`` (which the "speechPlayer" variants read). ``rand`` is shared
    by the whole process: another thread drawing from it while such a variant speaks (gRPC's
    in a Ray worker) changes the audio, so :func:`make_corpus` renders in processes of its
    own. Audio is
    16-bit mono at :attr:`sample_rate` (22,050 Hz for espeak-ng's own voices), returned by
    ``espeak_Initialize``. Calls are serialised by a lock.
    """

    AUDIO_OUTPUT_SYNCHRONOUS = 0x02
    INITIALIZE_DONT_EXIT = 0x8000
    POS_CHARACTER = 1
    CHARS_UTF8 = 0x01
    RATE, PITCH, RANGE = 1, 3, 4  # espeak_PARAMETER
    EE_OK = 0

    def __init__(self) -> None:
        import espeakng_loader

        self.data_path = Path(espeakng_loader.get_data_path())
        source = Path(espeakng_loader.get_library_path())
        self._folder = tempfile.TemporaryDirectory(prefix="nasforge-espeak-")
        self._library = Path(self._folder.name) / source.name
        shutil.copyfile(source, self._library)
        self._lock = threading.Lock()
        self._variants: list[str] | None = None
        self._chunks: list[np.ndarray] = []
        self._callback = _SYNTH_CALLBACK(self._collect)
        with self._loaded() as lib:
            lib.espeak_Info.restype = ctypes.c_char_p
            lib.espeak_Info.argtypes = [ctypes.c_void_p]
            self.version = (lib.espeak_Info(None) or b"?").decode()

    def _collect(self, wave, count, events) -> int:
        if wave and count > 0:
            self._chunks.append(np.ctypeslib.as_array(wave, shape=(count,)).copy())
        return 0  # go on

    @contextlib.contextmanager
    def _loaded(self) -> Iterator[ctypes.CDLL]:
        """The library freshly loaded and initialised; terminated and unloaded afterwards."""
        import _ctypes

        lib = ctypes.CDLL(str(self._library))
        try:
            lib.espeak_Initialize.argtypes = [
                ctypes.c_int,
                ctypes.c_int,
                ctypes.c_char_p,
                ctypes.c_int,
            ]
            lib.espeak_Initialize.restype = ctypes.c_int
            rate = lib.espeak_Initialize(
                self.AUDIO_OUTPUT_SYNCHRONOUS,
                0,
                str(self.data_path).encode(),
                self.INITIALIZE_DONT_EXIT,
            )
            if rate <= 0:
                raise RuntimeError(
                    f"espeak-ng failed to initialise with the data in {self.data_path}"
                )
            self.sample_rate = rate
            try:
                yield lib
            finally:
                lib.espeak_Terminate()
        finally:
            _ctypes.dlclose(lib._handle)

    def synthesize(
        self, text: str, voice: str, *, rate: int, pitch: int, pitch_range: int, seed: int = 0
    ) -> np.ndarray:
        """``text`` spoken by ``voice`` (``"en-us+m3"``: a voice and a variant from
        ``voices/!v``) as int16 samples at :attr:`sample_rate`.

        ``rate`` is in words per minute (80-450), ``pitch`` and ``pitch_range`` on
        espeak-ng's 0-99 scales; ``seed`` seeds the random breath noise of some variants.
        """
        _, plus, variant = voice.partition("+")
        if plus and variant not in self.variants():  # espeak-ng would ignore it silently
            raise ValueError(f"espeak-ng has no voice variant {variant!r} (in {voice!r})")
        with self._lock, self._loaded() as lib:
            lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
            if lib.espeak_SetVoiceByName(voice.encode()) != self.EE_OK:
                raise ValueError(f"espeak-ng has no voice {voice!r}")
            for parameter, value in (
                (self.RATE, rate),
                (self.PITCH, pitch),
                (self.RANGE, pitch_range),
            ):
                lib.espeak_SetParameter(parameter, int(value), 0)
            if hasattr(lib, "espeak_ng_SetRandSeed"):  # espeak-ng >= 1.51
                lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
                lib.espeak_ng_SetRandSeed(int(seed))
            _libc().srand(int(seed) & 0xFFFFFFFF)  # the speechPlayer voices ("klatt 6") use rand()
            lib.espeak_SetSynthCallback(self._callback)
            lib.espeak_Synth.argtypes = [
                ctypes.c_char_p,
                ctypes.c_size_t,
                ctypes.c_uint,
                ctypes.c_int,
                ctypes.c_uint,
                ctypes.c_uint,
                ctypes.c_void_p,
                ctypes.c_void_p,
            ]
            encoded = text.encode() + b"\0"
            self._chunks = []
            status = lib.espeak_Synth(
                encoded, len(encoded), 0, self.POS_CHARACTER, 0, self.CHARS_UTF8, None, None
            )
            if status != self.EE_OK:
                raise RuntimeError(f"espeak_Synth failed (status {status}) on {text!r}")
            lib.espeak_Synchronize()
            chunks, self._chunks = self._chunks, []
        if not chunks:
            raise RuntimeError(f"espeak-ng produced no audio for {text!r} with voice {voice!r}")
        return np.concatenate(chunks)

    def variants(self) -> list[str]:
        """The voice variants espeak-ng's data holds (file names in ``voices/!v``), sorted."""
        if self._variants is None:
            folder = self.data_path / "voices" / "!v"
            self._variants = sorted(path.name for path in folder.iterdir() if path.is_file())
        return list(self._variants)


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None)  # the C library the process runs on
    libc.srand.argtypes = [ctypes.c_uint]
    return libc


@functools.lru_cache(maxsize=1)
def espeak() -> Espeak:
    """The process's :class:`Espeak` (made on first use)."""
    return Espeak()


# -- speakers and sessions -----------------------------------------------------------------
@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: an English voice (accent), a voice variant (timbre, from
    espeak-ng's ``voices/!v``) and its own base pitch, pitch range (0-99) and rate (words
    per minute)."""

    language: str
    variant: str
    pitch: int
    pitch_range: int
    rate: int

    @property
    def name(self) -> str:
        """The name espeak-ng selects the voice by: ``language+variant``."""
        return f"{self.language}+{self.variant}"


def draw_speakers(spec: SyntheticSpec, variants: list[str] | None = None) -> list[Voice]:
    """The spec's ``train_speakers`` voices followed by its ``eval_speakers`` voices.

    The variants (default: espeak-ng's) are shuffled and split in two disjoint pools, one
    per side, in proportion to the speakers; each side pairs its variants with the English
    voices, every variant once before any twice, so no two speakers share a voice and
    variant and no eval speaker shares a variant with a training speaker. Pitch, range and
    rate are drawn uniformly per speaker.
    """
    variants = sorted(espeak().variants() if variants is None else variants)
    languages = len(ENGLISH_VOICES)
    n_train, n_eval = spec.train_speakers, spec.eval_speakers
    need_train, need_eval = -(-n_train // languages), -(-n_eval // languages)
    if need_train + need_eval > len(variants):
        raise ValueError(
            f"SyntheticSpec: {n_train} train + {n_eval} eval speakers need {need_train} + "
            f"{need_eval} voice variants (one per {languages} speakers of a side), espeak-ng "
            f"has {len(variants)}"
        )
    rng = np.random.default_rng([spec.seed, _SPEAKER_STREAM])
    order = [variants[i] for i in rng.permutation(len(variants))]
    n_eval_variants = round(len(variants) * n_eval / (n_train + n_eval))
    n_eval_variants = min(max(n_eval_variants, need_eval), len(variants) - need_train)
    voices = []
    for pool, count in ((order[n_eval_variants:], n_train), (order[:n_eval_variants], n_eval)):
        accents = {variant: rng.permutation(languages) for variant in pool}
        pairs = [
            (ENGLISH_VOICES[accents[variant][round_]], variant)
            for round_ in range(languages)
            for variant in pool
        ]
        for language, variant in pairs[:count]:
            voices.append(
                Voice(
                    language=language,
                    variant=variant,
                    pitch=int(rng.integers(PITCH[0], PITCH[1], endpoint=True)),
                    pitch_range=int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1], endpoint=True)),
                    rate=int(rng.integers(RATE_WPM[0], RATE_WPM[1], endpoint=True)),
                )
            )
    return voices


@dataclass(frozen=True)
class Session:
    """A recording condition shared by some utterances of a speaker: a room impulse
    response (``None``: dry) and the colour of the added noise (``white`` or ``pink``)."""

    room: np.ndarray | None
    noise: str


def room_response(rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The impulse response of a random shoebox room (pyroomacoustics' image-source model):
    size drawn from :data:`ROOM_MIN` to :data:`ROOM_MAX`, walls absorbing for a
    reverberation time drawn from :data:`RT60`, source and microphone at random places
    0.5 m or more from the walls. Starts at the direct path, which has amplitude 1."""
    import pyroomacoustics

    size = rng.uniform(ROOM_MIN, ROOM_MAX)
    rt60 = rng.uniform(*RT60)
    absorption, max_order = pyroomacoustics.inverse_sabine(rt60, size)
    room = pyroomacoustics.ShoeBox(
        size,
        fs=sample_rate,
        materials=pyroomacoustics.Material(absorption),
        max_order=min(max_order, MAX_IMAGE_ORDER),
    )
    low, high = np.array([0.5, 0.5, 1.0]), np.array([size[0] - 0.5, size[1] - 0.5, 1.9])
    room.add_source(rng.uniform(low, high))
    room.add_microphone(rng.uniform(low, high))
    room.compute_rir()
    response = np.asarray(room.rir[0][0], dtype=np.float64)
    direct = int(np.argmax(np.abs(response)))
    response = response[direct:]
    return (response / abs(response[0])).astype(np.float32)


def draw_session(spec: SyntheticSpec, speaker: int, session: int) -> Session:
    """Session ``session`` of speaker ``speaker`` (its index in :func:`draw_speakers`)."""
    rng = np.random.default_rng([spec.seed, _SESSION_STREAM, speaker, session])
    reverberant = rng.random() < spec.reverb_prob
    noise = "pink" if rng.random() < 0.5 else "white"
    return Session(room_response(rng) if reverberant else None, noise)


def noise(kind: str, length: int, rng: np.random.Generator) -> np.ndarray:
    """``length`` samples of unit-variance ``white`` or ``pink`` (1/f, :data:`PINK_B` /
    :data:`PINK_A` filtered white) noise."""
    if kind == "white":
        values = rng.standard_normal(length)
    elif kind == "pink":
        from scipy.signal import lfilter

        settle = 2000  # the filter's start-up transient is dropped
        values = lfilter(PINK_B, PINK_A, rng.standard_normal(length + settle))[settle:]
    else:
        raise ValueError(f"noise: unknown kind {kind!r} (expected 'white' or 'pink')")
    return (values / max(float(values.std()), 1e-12)).astype(np.float32)


def render_utterance(
    text: str, voice: Voice, session: Session, spec: SyntheticSpec, rng: np.random.Generator
) -> np.ndarray:
    """One utterance as float32 at 16 kHz, in (-1, 1).

    ``voice`` says ``text`` with its pitch, range and rate each moved by a small random
    amount (:data:`PITCH_JITTER`…); leading and trailing silence is trimmed, the audio
    resampled from espeak-ng's rate with ``librosa.resample`` (soxr), cut to
    ``spec.max_seconds``, convolved with the session's room (``scipy.signal.fftconvolve``),
    set to a random level (:data:`LEVEL_DB`) and mixed with the session's noise colour at
    an SNR drawn from ``spec.snr_db``.
    """
    import librosa
    from scipy.signal import fftconvolve

    engine = espeak()

    def jitter(value: int, spread: int, low: int, high: int) -> int:
        return int(np.clip(value + rng.integers(-spread, spread, endpoint=True), low, high))

    raw = engine.synthesize(
        text,
        voice.name,
        rate=jitter(voice.rate, RATE_JITTER, 80, 450),
        pitch=jitter(voice.pitch, PITCH_JITTER, 0, 99),
        pitch_range=jitter(voice.pitch_range, RANGE_JITTER, 0, 99),
        seed=int(rng.integers(1, 2**31 - 1)),
    )
    wave = raw.astype(np.float32) / 32768.0
    wave, _ = librosa.effects.trim(wave, top_db=40)
    wave = librosa.resample(
        wave, orig_sr=engine.sample_rate, target_sr=SAMPLE_RATE, res_type="soxr_hq"
    )
    wave = wave[: int(spec.max_seconds * SAMPLE_RATE)]
    if session.room is not None:
        wave = fftconvolve(wave, session.room)[: len(wave)]
    power = float(np.mean(np.square(wave, dtype=np.float64)))
    level = 10 ** (rng.uniform(*LEVEL_DB) / 20)
    wave = wave * (level / max(np.sqrt(power), 1e-12))
    snr_db = rng.uniform(*spec.snr_db)
    mixed = wave + noise(session.noise, len(wave), rng) * (level / 10 ** (snr_db / 20))
    peak = float(np.abs(mixed).max())
    if peak > 0.99:
        mixed *= 0.99 / peak
    return mixed.astype(np.float32)


# -- the corpus ----------------------------------------------------------------------------
def speaker_id(index: int) -> str:
    """The folder name of speaker ``index`` (train speakers first, then eval speakers)."""
    return f"spk{index:04d}"


def utterance_path(spec: SyntheticSpec, speaker: int, utterance: int) -> str:
    """Where utterance ``utterance`` (0-based) of speaker ``speaker`` lies, relative to its
    split's folder: ``spk0003/s01/00002.wav`` (sessions take the utterances in turn)."""
    session = utterance % spec.sessions_per_speaker
    return f"{speaker_id(speaker)}/s{session:02d}/{utterance + 1:05d}.wav"


def _write_speaker(folder: Path, spec: SyntheticSpec, speaker: int, voice: Voice) -> float:
    """Write every utterance of one speaker under ``folder``; returns their seconds."""
    sessions = [draw_session(spec, speaker, s) for s in range(spec.sessions_per_speaker)]
    texts = np.random.default_rng([spec.seed, _UTTERANCE_STREAM, speaker]).choice(
        SENTENCE_COUNT, size=spec.utterances_of(speaker), replace=False
    )
    seconds = 0.0
    for utterance, text_index in enumerate(texts):
        rng = np.random.default_rng([spec.seed, _UTTERANCE_STREAM, speaker, utterance])
        session = sessions[utterance % spec.sessions_per_speaker]
        wave = render_utterance(sentence(int(text_index)), voice, session, spec, rng)
        path = folder / utterance_path(spec, speaker, utterance)
        path.parent.mkdir(parents=True, exist_ok=True)
        encoded = io.BytesIO()  # written in one go: soundfile syncs each file it closes
        soundfile.write(encoded, wave, SAMPLE_RATE, subtype="PCM_16", format="WAV")
        path.write_bytes(encoded.getvalue())
        seconds += len(wave) / SAMPLE_RATE
    return seconds


def _write_speakers(
    partial: Path, spec: SyntheticSpec, voices: list[Voice], workers: int
) -> list[float]:
    """Write every speaker (train ones under ``dev``, eval ones under ``test``) in
    ``workers`` spawned processes (at least one: never in the calling process, whose other
    threads may draw from the C library's ``rand``, see :class:`Espeak`); returns each
    speaker's seconds of audio."""
    jobs = [
        (partial / ("dev" if index < spec.train_speakers else "test"), spec, index, voice)
        for index, voice in enumerate(voices)
    ]
    context = multiprocessing.get_context("spawn")  # fresh processes: no forked threads
    with concurrent.futures.ProcessPoolExecutor(max(1, workers), mp_context=context) as pool:
        return list(pool.map(_write_speaker, *zip(*jobs, strict=True)))


def draw_trials(spec: SyntheticSpec) -> list[tuple[int, str, str]]:
    """The trial list of the eval speakers, shuffled: per speaker ``trials_per_speaker``
    target trials (distinct pairs of two different utterances) and as many non-target ones
    (distinct pairs of one of its utterances and one of another eval speaker's). Paths are
    relative to the corpus's ``test`` folder."""
    rng = np.random.default_rng([spec.seed, _TRIAL_STREAM])
    first = spec.train_speakers
    speakers = range(first, first + spec.eval_speakers)
    n_utt, n_trials = spec.utterances_of(first), spec.trials_per_speaker
    pairs = [(a, b) for a in range(n_utt) for b in range(a + 1, n_utt)]

    def path(speaker: int, utterance: int) -> str:
        return utterance_path(spec, speaker, utterance)

    trials = []
    for speaker in speakers:
        for choice in rng.choice(len(pairs), size=n_trials, replace=False):
            a, b = pairs[choice]
            if rng.random() < 0.5:
                a, b = b, a
            trials.append((1, path(speaker, a), path(speaker, b)))
        others = [other for other in speakers if other != speaker]
        for choice in rng.choice(n_utt * len(others) * n_utt, size=n_trials, replace=False):
            enroll, rest = divmod(int(choice), len(others) * n_utt)
            other, test = divmod(rest, n_utt)
            trials.append((0, path(speaker, enroll), path(others[other], test)))
    return [trials[i] for i in rng.permutation(len(trials))]


def make_corpus(root: str | Path, spec: SyntheticSpec, *, workers: int = 1) -> Path:
    """Generate the spec's corpus at ``root`` (which must not exist, or be an empty folder)
    and return ``root``.

    Layout (VoxCeleb's, read by :mod:`.voxceleb`): ``root/dev/<speaker>/<session>/<utt>.wav``
    for the training speakers, ``root/test/...`` for the eval speakers, ``root/trials.txt``
    (``label enroll test``, paths relative to ``root/test``) and ``root/corpus.json`` (the
    spec, the speakers' voices, the total duration). 16-bit mono WAV at 16 kHz. The corpus
    is built in a hidden sibling folder and renamed to ``root`` when complete, so an
    interrupted run never leaves a corpus that looks finished. The speakers are rendered in
    ``workers`` spawned processes (at least one; the bytes do not depend on how many, nor
    on what else the calling process runs; as with any spawning, a calling script must
    guard its entry point with ``if __name__ == "__main__"``); the default corpus takes
    about 30 s in one.
    """
    root = Path(root).expanduser().absolute()
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"make_corpus: {root} already exists and is not an empty folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    partial = root.parent / f".{root.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
    partial.mkdir()
    try:
        voices = draw_speakers(spec)
        seconds = sum(_write_speakers(partial, spec, voices, workers))
        speakers = {
            speaker_id(index): {
                "split": "dev" if index < spec.train_speakers else "test",
                **asdict(voice),
            }
            for index, voice in enumerate(voices)
        }
        lines = [f"{label} {enroll} {test}\n" for label, enroll, test in draw_trials(spec)]
        (partial / TRIALS).write_text("".join(lines))
        manifest = {
            "key": spec.key(),
            "spec": asdict(spec),
            "generator": GENERATOR_VERSION,
            "espeak_ng": espeak().version,
            "sample_rate": SAMPLE_RATE,
            "seconds": round(seconds, 3),
            "speakers": speakers,
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        os.replace(partial, root)  # atomic; replaces an empty folder, fails on a full one
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return root


def is_complete(root: Path, spec: SyntheticSpec) -> bool:
    """Whether ``root`` holds the finished corpus of ``spec`` (its manifest names the spec's
    :meth:`~SyntheticSpec.key`)."""
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("key") == spec.key()


def cache_root() -> Path:
    """nasforge's cache folder: ``$NASFORGE_CACHE`` or ``~/.cache/nasforge``."""
    return Path(os.environ.get("NASFORGE_CACHE") or Path.home() / ".cache" / "nasforge")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_partials(root: Path) -> None:
    """Remove the partial builds of ``root`` left by processes that are gone (killed)."""
    for partial in root.parent.glob(f".{root.name}.partial-*"):
        pid = partial.name.rsplit(".partial-", 1)[1].split("-", 1)[0]
        if not pid.isdigit() or not _process_alive(int(pid)):
            shutil.rmtree(partial, ignore_errors=True)


def cached_corpus(
    spec: SyntheticSpec, cache_dir: str | Path | None = None, *, workers: int = 1
) -> Path:
    """The spec's corpus, generated by :func:`make_corpus` on first use and reused after.

    It lies in ``<cache_dir>/<spec key>/``, ``cache_dir`` defaulting to
    ``$NASFORGE_CACHE/speech`` or ``~/.cache/nasforge/speech``. Processes that ask at the
    same time wait for one of them to build it (a file lock); a folder without the spec's
    finished manifest and the partial builds of killed processes are removed first.
    ``workers`` is passed to :func:`make_corpus`.
    """
    import fcntl

    folder = Path(cache_dir).expanduser() if cache_dir is not None else cache_root() / "speech"
    root = folder.absolute() / spec.key()
    if is_complete(root, spec):
        return root
    folder.mkdir(parents=True, exist_ok=True)
    with open(root.with_name(root.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if is_complete(root, spec):
                return root
            if root.exists():
                shutil.rmtree(root)
            _remove_stale_partials(root)
            return make_corpus(root, spec, workers=workers)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
