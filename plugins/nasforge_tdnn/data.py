"""Speaker-verification tasks: the speech the ``nasforge_tdnn`` plugin trains and scores on.

Owns :class:`SpeakerTask`, the shared base — a training set of utterances labelled by
speaker, an evaluation set scored by a trial list, every utterance's features
(:func:`nasforge_tdnn.features.features`) computed once per process — and its two
registered tasks: :class:`SyntheticSpeakersTask` (``tdnn.synthetic``, the offline default:
speakers synthesised by :mod:`.speech`) and :class:`VoxCelebTask` (``tdnn.voxceleb``, the
users' own corpus in VoxCeleb layout, read by :mod:`.voxceleb`). Also the crops that turn
utterances of any length into fixed-size samples: :func:`random_crops` for training batches
and :func:`fixed_crops` for :meth:`SpeakerTask.arrays`.
"""

from __future__ import annotations

import json
import threading
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar

import numpy as np
import torch
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from nasforge import Task

from .features import N_MELS, SAMPLE_RATE, features
from .speech import SyntheticSpec, cached_corpus, speaker_id
from .voxceleb import list_utterances, read_audio, read_trials

SPLITS = ("train", "val", "calib")
#: seed-sequence streams, so the crops of each split and the calibration subset are independent
_TRAIN_CROP_STREAM, _VAL_CROP_STREAM, _CALIB_STREAM = 0, 1, 2


def _absolute_path(value: str) -> str:
    """Paths are made absolute when validated: Ray workers run in other directories."""
    return str(Path(value).expanduser().resolve())


PathOption = Annotated[str, AfterValidator(_absolute_path)]


class SpeakerOptions(BaseModel):
    """Options every speaker task takes."""

    model_config = ConfigDict(extra="forbid")
    seed: int = Field(0, ge=0, description="fixes the fixed crops and the calibration subset")
    crop_frames: int = Field(
        300, ge=20, le=6000, description="frames per sample of arrays() (100 per second)"
    )
    calib_samples: int = Field(
        512, ge=1, description="size of the calibration subset of train (capped at its size)"
    )


# -- crops -------------------------------------------------------------------------------
def crop(feats: torch.Tensor, offset: int, frames: int) -> torch.Tensor:
    """``frames`` frames of ``feats`` ``[..., T]`` from ``offset``, wrapping around to the
    start when the utterance ends first (so a short utterance is repeated)."""
    total = feats.shape[-1]
    if offset + frames <= total:
        return feats[..., offset : offset + frames]
    index = (offset + torch.arange(frames, device=feats.device)) % total
    return feats[..., index]


def random_crops(
    feats_list: Sequence[torch.Tensor],
    labels: torch.Tensor | Sequence[int],
    generator: torch.Generator,
    min_frames: int = 200,
    max_frames: int = 300,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A training batch from utterances of any length: ``(x, y)``, ``x`` ``[B, n_mels, L]``.

    One length ``L`` is drawn for the whole batch from ``min_frames..max_frames``, then one
    offset per utterance (uniform over the positions where the crop fits); an utterance
    shorter than ``L`` is padded by wrapping around. All randomness comes from
    ``generator``; ``y`` is ``labels`` as int64.
    """
    if not len(feats_list):
        raise ValueError("random_crops: feats_list is empty")
    if len(labels) != len(feats_list):
        raise ValueError(f"random_crops: {len(feats_list)} utterances but {len(labels)} labels")
    if not 1 <= min_frames <= max_frames:
        raise ValueError(
            f"random_crops: need 1 <= min_frames <= max_frames, got {min_frames}, {max_frames}"
        )
    device = generator.device
    frames = int(
        torch.randint(min_frames, max_frames + 1, (1,), generator=generator, device=device)
    )
    draws = torch.rand(len(feats_list), generator=generator, device=device).tolist()
    crops = [
        crop(feats, int(draw * (max(feats.shape[-1] - frames, 0) + 1)), frames)
        for feats, draw in zip(feats_list, draws, strict=True)
    ]
    return torch.stack(crops), torch.as_tensor(labels, dtype=torch.int64)


def fixed_crops(
    feats_list: Sequence[torch.Tensor], frames: int, rng: np.random.Generator
) -> torch.Tensor:
    """One crop of ``frames`` frames per utterance, ``[N, n_mels, frames]``, at an offset
    drawn from ``rng`` (wrapping around utterances that are shorter)."""
    offsets = [int(rng.integers(0, max(f.shape[-1] - frames, 0) + 1)) for f in feats_list]
    return torch.stack([crop(f, o, frames) for f, o in zip(feats_list, offsets, strict=True)])


# -- the corpus of a task ------------------------------------------------------------------
@dataclass(frozen=True)
class SpeakerCorpus:
    """Where a task's audio is: the training and evaluation utterances as
    ``(speaker, path)`` lists (from :func:`~.voxceleb.list_utterances`), the evaluation
    root the trial paths are relative to, and the trials as ``(label, enroll, test)``."""

    train: list[tuple[str, Path]]
    eval: list[tuple[str, Path]]
    eval_root: Path
    trials: list[tuple[int, str, str]]
    trials_path: Path


def index_trials(corpus: SpeakerCorpus) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(labels, enroll, test)`` int64 arrays: the trials with their paths replaced by
    indices into ``corpus.eval``. A path that is not an evaluation utterance raises
    ``ValueError`` naming the trial list and the path."""
    index = {
        path.relative_to(corpus.eval_root).as_posix(): i for i, (_, path) in enumerate(corpus.eval)
    }
    labels, enroll, test = [], [], []
    for label, first, second in corpus.trials:
        for name in (first, second):
            if name not in index:
                raise ValueError(
                    f"trials: {corpus.trials_path} names {name!r}, which is not an utterance "
                    f"under {corpus.eval_root}"
                )
        labels.append(label)
        enroll.append(index[first])
        test.append(index[second])
    return (
        np.array(labels, dtype=np.int64),
        np.array(enroll, dtype=np.int64),
        np.array(test, dtype=np.int64),
    )


@dataclass
class _SpeakerData:
    """A task's loaded data, shared by every instance with the same options."""

    train_feats: list[torch.Tensor]
    train_labels: torch.Tensor
    eval_feats: list[torch.Tensor]
    eval_labels: torch.Tensor
    eval_paths: list[Path]
    trials: tuple[np.ndarray, np.ndarray, np.ndarray]
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]]


_cache: dict[tuple[str, str], _SpeakerData] = {}
_cache_lock = threading.Lock()


def clear_cache() -> None:
    """Forget the data every speaker task has loaded in this process."""
    with _cache_lock:
        _cache.clear()


def _speaker_labels(utterances: list[tuple[str, Path]]) -> tuple[list[str], torch.Tensor]:
    """The sorted speaker ids and each utterance's index among them."""
    speakers = sorted({speaker for speaker, _ in utterances})
    index = {speaker: i for i, speaker in enumerate(speakers)}
    labels = torch.tensor([index[speaker] for speaker, _ in utterances], dtype=torch.int64)
    return speakers, labels


def _features_of(paths: list[Path]) -> list[torch.Tensor]:
    """Each file's features, computed on one thread (per-utterance transforms are too small
    to share between threads: 2 threads made them 50 times slower on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return [features(read_audio(path, SAMPLE_RATE)) for path in paths]
    finally:
        torch.set_num_threads(threads)


class SpeakerTask(Task):
    """A speaker-verification task: training utterances labelled by speaker, evaluation
    utterances of other speakers, and trials pairing evaluation utterances.

    Features are :func:`~.features.features` (80 log-mel bands, 100 frames per second, mean
    normalised per utterance), computed once per process for every utterance (cached by task
    type and options; the tensors are shared: do not modify them in place). ``num_classes``
    is the number of training speakers and ``input_shape`` ``(80, crop_frames)``: the shape
    of the samples of :meth:`arrays`. Trainers that want crops of varying length draw them
    with :meth:`random_crops` from :meth:`train_utterances`; verification scores
    :meth:`eval_utterances` on :meth:`trials`.

    A subclass says where its audio is (:meth:`corpus`) and sets ``num_classes`` and
    ``classes`` (the training speaker ids, in label order) in ``__init__``.
    """

    Options: ClassVar[type[BaseModel]] = SpeakerOptions

    def __init__(self, **options: Any):
        config = self.Options.model_validate(options)
        super().__init__(**config.model_dump())
        self.config = config
        self.input_shape = (N_MELS, config.crop_frames)
        self.classes: list[str] = []

    @abstractmethod
    def corpus(self) -> SpeakerCorpus:
        """The task's audio files and trials (may generate them: called when data loads)."""

    # -- the data ------------------------------------------------------------------------
    def train_utterances(self) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Every training utterance's features ``[80, T]`` and its speaker label (int64,
        ``0..num_classes - 1``)."""
        data = self._data()
        return data.train_feats, data.train_labels

    def eval_utterances(self) -> list[torch.Tensor]:
        """Every evaluation utterance's full-length features ``[80, T]``, in the order the
        indices of :meth:`trials` refer to (sorted by path)."""
        return self._data().eval_feats

    def eval_waves(self) -> list[np.ndarray]:
        """Every evaluation utterance as float32 audio at 16 kHz, in the order of
        :meth:`eval_utterances` (read from disk on each call; for baselines that take
        waveforms)."""
        return [read_audio(path, SAMPLE_RATE) for path in self._data().eval_paths]

    def trials(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(labels, enroll, test)`` int64 arrays, one entry per trial: 1 for a target
        trial (same speaker) and 0 for a non-target one, and the indices of the two
        utterances in :meth:`eval_utterances`."""
        return self._data().trials

    random_crops = staticmethod(random_crops)

    def arrays(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of ``split``: float32 crops ``[N, 80, crop_frames]`` (one per
        utterance, at an offset fixed by ``seed``; short utterances wrap around) and int64
        labels ``[N]``.

        ``train``: every training utterance, labelled by training speaker. ``calib``: a
        fixed subset of ``calib_samples`` of the ``train`` crops. ``val``: every evaluation
        utterance, labelled by its index among the *evaluation* speakers (sorted ids) —
        speakers the classifier has never seen: what verification scores, not classes of
        the training head.
        """
        if split not in SPLITS:
            raise ValueError(
                f"split: unknown split {split!r} (expected one of {', '.join(SPLITS)})"
            )
        return self._data().splits[split]

    # -- loading -------------------------------------------------------------------------
    def _data(self) -> _SpeakerData:
        key = (
            f"{type(self).__module__}.{type(self).__qualname__}",
            json.dumps(self.options, sort_keys=True),
        )
        with _cache_lock:
            data = _cache.get(key)
            if data is None:
                data = _cache[key] = self._load()
        return data

    def _load(self) -> _SpeakerData:
        corpus = self.corpus()
        speakers, train_labels = _speaker_labels(corpus.train)
        if len(speakers) != self.num_classes:
            raise ValueError(
                f"{type(self).__name__}: found {len(speakers)} training speakers, "
                f"expected {self.num_classes}"
            )
        trials = index_trials(corpus)
        _, eval_labels = _speaker_labels(corpus.eval)
        train_feats = _features_of([path for _, path in corpus.train])
        eval_feats = _features_of([path for _, path in corpus.eval])
        seed, frames = self.config.seed, self.config.crop_frames
        x_train = fixed_crops(
            train_feats, frames, np.random.default_rng([seed, _TRAIN_CROP_STREAM])
        )
        x_val = fixed_crops(eval_feats, frames, np.random.default_rng([seed, _VAL_CROP_STREAM]))
        calib_size = min(self.config.calib_samples, len(train_labels))
        calib = np.random.default_rng([seed, _CALIB_STREAM]).choice(
            len(train_labels), size=calib_size, replace=False
        )
        calib_index = torch.from_numpy(np.sort(calib))
        return _SpeakerData(
            train_feats=train_feats,
            train_labels=train_labels,
            eval_feats=eval_feats,
            eval_labels=eval_labels,
            eval_paths=[path for _, path in corpus.eval],
            trials=trials,
            splits={
                "train": (x_train, train_labels),
                "val": (x_val, eval_labels),
                "calib": (x_train[calib_index].clone(), train_labels[calib_index].clone()),
            },
        )


# -- the synthetic speakers --------------------------------------------------------------
class SyntheticSpeakersTask(SpeakerTask):
    """Speakers synthesised offline by espeak-ng (:mod:`.speech`): the default task.

    The corpus is generated from the options (``seed`` included) once per machine into
    nasforge's cache (``$NASFORGE_CACHE/speech`` or ``~/.cache/nasforge/speech``, or
    ``cache_dir``) and reused: the defaults (40 training and 20 evaluation speakers, 24
    sentences of 2 to 4 s each, 4,000 trials) take about half a minute on 2 CPU cores and
    130 MB. Training and evaluation speakers speak with disjoint voice variants.
    """

    class Options(SpeakerOptions):
        """Options of ``tdnn.synthetic``."""

        train_speakers: int = Field(40, ge=2, le=400, description="training speakers (classes)")
        eval_speakers: int = Field(20, ge=2, le=400, description="evaluation speakers")
        utterances_per_speaker: int = Field(24, ge=2, le=1000, description="sentences each")
        eval_utterances_per_speaker: int | None = Field(
            None, ge=2, le=1000, description="sentences of each eval speaker (default: the same)"
        )
        sessions_per_speaker: int = Field(
            3, ge=1, description="recording conditions (room, noise colour) per speaker"
        )
        snr_db: tuple[float, float] = Field(
            (5.0, 20.0), description="range of the signal-to-noise ratio, dB (low, high)"
        )
        reverb_prob: float = Field(0.5, ge=0, le=1, description="share of sessions in a room")
        trials_per_speaker: int = Field(
            100, ge=1, description="target trials per eval speaker (and as many non-target)"
        )
        max_seconds: float = Field(4.0, ge=0.5, le=60, description="longest utterance, s")
        cache_dir: PathOption | None = Field(
            None, description="where corpora are kept (default: nasforge's cache, speech/)"
        )

    config: Options

    def __init__(self, **options: Any):
        super().__init__(**options)
        config = self.config
        self.spec = SyntheticSpec(
            train_speakers=config.train_speakers,
            eval_speakers=config.eval_speakers,
            utterances_per_speaker=config.utterances_per_speaker,
            eval_utterances_per_speaker=config.eval_utterances_per_speaker,
            sessions_per_speaker=config.sessions_per_speaker,
            seed=config.seed,
            snr_db=config.snr_db,
            reverb_prob=config.reverb_prob,
            trials_per_speaker=config.trials_per_speaker,
            max_seconds=config.max_seconds,
        )
        self.num_classes = config.train_speakers
        self.classes = [speaker_id(i) for i in range(config.train_speakers)]

    def corpus(self) -> SpeakerCorpus:
        """The cached corpus of the options' spec (generated on first use)."""
        root = cached_corpus(self.spec, self.config.cache_dir)
        return SpeakerCorpus(
            train=list_utterances(root / "dev"),
            eval=list_utterances(root / "test"),
            eval_root=root / "test",
            trials=read_trials(root / "trials.txt"),
            trials_path=root / "trials.txt",
        )


# -- a corpus in VoxCeleb layout -----------------------------------------------------------
def _listing(root: str, option: str) -> list[tuple[str, Path]]:
    try:
        return list_utterances(root)
    except (FileNotFoundError, ValueError) as exc:
        raise ValueError(f"{option}: {exc}") from None


class VoxCelebTask(SpeakerTask):
    """The users' own speech in VoxCeleb layout (``tdnn.voxceleb``).

    ``train_root`` and ``eval_root`` hold ``<speaker>/<session>/<utterance>.wav`` (or
    ``.flac``, any sample rate: resampled to 16 kHz) — VoxCeleb2 ``dev/aac`` converted to
    WAV and VoxCeleb1 ``test/wav``, say — and ``trials`` is a VoxCeleb trial list
    (``label enroll test``, paths relative to ``eval_root``: ``veri_test2.txt`` for
    VoxCeleb1-O). The classes are the speaker folders of ``train_root``; the evaluation set
    is every utterance under ``eval_root``. Files are listed and the trial list checked when
    the task is built; the audio is read when the data is first needed and kept in memory
    as features (32 kB per second of speech).
    """

    class Options(SpeakerOptions):
        """Options of ``tdnn.voxceleb``."""

        train_root: PathOption = Field(description="training speakers, VoxCeleb layout")
        eval_root: PathOption = Field(description="evaluation speakers, VoxCeleb layout")
        trials: PathOption = Field(description="trial list, paths relative to eval_root")

    config: Options

    def __init__(self, **options: Any):
        super().__init__(**options)
        config = self.config
        train = _listing(config.train_root, "train_root")
        speakers, _ = _speaker_labels(train)
        if len(speakers) < 2:
            raise ValueError(
                f"train_root: {config.train_root} holds {len(speakers)} speaker, need 2 or more"
            )
        try:
            trials = read_trials(config.trials)
        except (FileNotFoundError, ValueError) as exc:
            raise ValueError(f"trials: {exc}") from None
        self._corpus = SpeakerCorpus(
            train=train,
            eval=_listing(config.eval_root, "eval_root"),
            eval_root=Path(config.eval_root),
            trials=trials,
            trials_path=Path(config.trials),
        )
        index_trials(self._corpus)  # every trial names an evaluation utterance
        self.num_classes = len(speakers)
        self.classes = speakers

    def corpus(self) -> SpeakerCorpus:
        """The files listed when the task was built."""
        return self._corpus
