"""CNN tasks: the labelled datasets the ``nasforge_cnn`` plugin trains and scores on.

Owns :class:`InMemoryTask`, the shared base of every task whose data fits in memory — the
seeded stratified train/val split, per-channel normalisation computed on the training
split, the fixed batch-norm calibration subset and a per-process cache — and the four
registered tasks built on it: :class:`DigitsTask` (``cnn.digits``), :class:`MNIST1DTask`
(``cnn.mnist1d``), :class:`ImageFolderTask` (``cnn.image_folder``) and :class:`NpzTask`
(``cnn.npz``). A subclass only reads its raw arrays (:meth:`InMemoryTask.load_raw`) and says
how a training batch is augmented (:meth:`InMemoryTask.random_transform`), using the batch
augmentations defined here (:func:`random_shift`, :func:`random_hflip`,
:func:`random_affine`, :func:`add_noise`), whose randomness comes only from the
``torch.Generator`` they are given.
"""

from __future__ import annotations

import importlib.util
import json
import math
import random
import threading
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from nasforge import Task

SPLITS = ("train", "val", "calib")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
#: seed-sequence streams, so the split and the calibration subset draw independent numbers
_SPLIT_STREAM, _CALIB_STREAM = 0, 1


def _absolute_path(value: str) -> str:
    """Paths are made absolute when validated: Ray workers run in other directories."""
    return str(Path(value).expanduser().resolve())


PathOption = Annotated[str, AfterValidator(_absolute_path)]


class TaskOptions(BaseModel):
    """Options every in-memory task takes."""

    model_config = ConfigDict(extra="forbid")
    seed: int = Field(0, ge=0, description="fixes the splits, calibration subset, generated data")
    calib_size: int = Field(
        500, ge=1, description="size of the calibration subset of train (capped at its size)"
    )
    augment: bool = Field(True, description="augment training batches (Task.augment)")


class SplitOptions(TaskOptions):
    """Options of a task that splits validation data off its training data."""

    val_fraction: float = Field(
        0.2, gt=0, lt=1, description="fraction of each class held out for validation"
    )


@dataclass(frozen=True)
class RawData:
    """A task's samples as its source provides them, before splitting and normalisation.

    ``x`` is float32 ``[N, *input_shape]`` and ``y`` int64 ``[N]``. ``x_val``/``y_val`` are
    set when the source has its own validation split; otherwise :class:`InMemoryTask` splits
    ``x`` by the ``val_fraction`` option, stratified by class.
    """

    x: np.ndarray
    y: np.ndarray
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None


@dataclass(frozen=True)
class _Splits:
    """The prepared tensors of one task, shared by every instance with the same options."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_calib: torch.Tensor
    y_calib: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor


_cache: dict[tuple[str, str], _Splits] = {}
_cache_lock = threading.Lock()


def clear_cache() -> None:
    """Forget the data every task has loaded in this process."""
    with _cache_lock:
        _cache.clear()


def stratified_split(
    labels: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, val)`` holding out ``val_fraction`` of every class.

    Each class with at least two samples keeps at least one in each split; a class with one
    sample stays in train. Both index arrays are shuffled; the same inputs give the same
    indices.
    """
    rng = np.random.default_rng([seed, _SPLIT_STREAM])
    train, val = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_val = int(len(members) * val_fraction + 0.5)
        n_val = min(max(n_val, 1), len(members) - 1) if len(members) >= 2 else 0
        val.append(members[:n_val])
        train.append(members[n_val:])
    val_index = np.concatenate(val)
    if not len(val_index):
        raise ValueError(f"val_fraction: {val_fraction} leaves the validation split empty")
    return rng.permutation(np.concatenate(train)), rng.permutation(val_index)


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of ``x`` ``[N, C, ...]`` (a constant channel
    gets std 1, so normalising leaves it finite)."""
    axes = (0, *range(2, x.ndim))
    mean = x.mean(axis=axes, dtype=np.float64)
    std = x.std(axis=axes, dtype=np.float64)
    std[std < 1e-8] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


class InMemoryTask(Task):
    """A task whose samples fit in memory: the shared machinery of the CNN tasks.

    Construction validates the options against ``Options`` (so building a task directly
    checks them as the experiment loader does) and must stay cheap; subclasses set
    ``input_shape``, ``num_classes`` and ``classes`` in ``__init__`` from their options and,
    at most, file listings and headers. :meth:`arrays` loads the data once per process
    (cached by task type and options): the splits, the per-channel normalisation computed
    on train and applied to every split (see :attr:`normalization`) and the ``calib``
    subset (``calib_size`` samples of train, fixed by ``seed``, never augmented). The
    returned tensors are shared: do not modify them in place.
    """

    Options: ClassVar[type[BaseModel]] = TaskOptions

    def __init__(self, **options: Any):
        config = self.Options.model_validate(options)
        super().__init__(**config.model_dump())
        self.config = config
        self.classes: list[str] = []

    @abstractmethod
    def load_raw(self) -> RawData:
        """Read or generate the raw samples (called once per process by :meth:`arrays`)."""

    def random_transform(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The task's augmentation of a normalised training batch; the default is none."""
        return x

    def arrays(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of ``split`` (``train``, ``val`` or ``calib``): normalised float32
        samples ``[N, *input_shape]`` and int64 labels ``[N]``."""
        if split not in SPLITS:
            raise ValueError(
                f"split: unknown split {split!r} (expected one of {', '.join(SPLITS)})"
            )
        splits = self._splits()
        return getattr(splits, f"x_{split}"), getattr(splits, f"y_{split}")

    def augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment a normalised training batch with randomness from ``generator`` only
        (returns ``x`` unchanged when the ``augment`` option is off)."""
        if not self.config.augment:
            return x
        return self.random_transform(x, generator)

    @property
    def normalization(self) -> dict[str, list[float]]:
        """The per-channel ``mean`` and ``std`` (of the raw training data) every split is
        normalised with; a deployed subnet needs them to preprocess its inputs."""
        splits = self._splits()
        return {"mean": splits.mean.tolist(), "std": splits.std.tolist()}

    def raw_zero(self) -> torch.Tensor:
        """Per-channel normalised value of a raw 0 (a black pixel, a silent sample): what
        augmentations fill uncovered borders with."""
        splits = self._splits()
        return -splits.mean / splits.std

    # -- loading ---------------------------------------------------------------------
    def _splits(self) -> _Splits:
        key = (
            f"{type(self).__module__}.{type(self).__qualname__}",
            json.dumps(self.options, sort_keys=True),
        )
        with _cache_lock:
            splits = _cache.get(key)
            if splits is None:
                splits = _cache[key] = self._prepare(self.load_raw())
        return splits

    def _check_raw(self, x: np.ndarray, y: np.ndarray, what: str) -> None:
        name = type(self).__name__
        if tuple(x.shape[1:]) != tuple(self.input_shape) or x.shape[0] != len(y):
            raise ValueError(
                f"{name}: {what} samples have shape {tuple(x.shape)} with {len(y)} labels, "
                f"expected [N, {', '.join(map(str, self.input_shape))}] with N labels"
            )
        if len(y) and (y.min() < 0 or y.max() >= self.num_classes):
            raise ValueError(
                f"{name}: {what} labels range over {y.min()}..{y.max()}, "
                f"outside 0..{self.num_classes - 1}"
            )

    def _prepare(self, raw: RawData) -> _Splits:
        seed = self.config.seed
        if raw.x_val is None or raw.y_val is None:
            train_index, val_index = stratified_split(raw.y, self.config.val_fraction, seed)
            x_train, y_train = raw.x[train_index], raw.y[train_index]
            x_val, y_val = raw.x[val_index], raw.y[val_index]
        else:
            x_train, y_train, x_val, y_val = raw.x, raw.y, raw.x_val, raw.y_val
        self._check_raw(x_train, y_train, "train")
        self._check_raw(x_val, y_val, "val")
        if not len(y_train) or not len(y_val):
            raise ValueError(
                f"{type(self).__name__}: empty split ({len(y_train)} train, {len(y_val)} val)"
            )
        mean, std = channel_stats(x_train)
        view = (1, -1) + (1,) * (x_train.ndim - 2)

        def normalised(x: np.ndarray) -> torch.Tensor:
            values = (x.astype(np.float32) - mean.reshape(view)) / std.reshape(view)
            return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))

        def labels(y: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))

        x_train_t, y_train_t = normalised(x_train), labels(y_train)
        calib_size = min(self.config.calib_size, len(y_train))
        rng = np.random.default_rng([seed, _CALIB_STREAM])
        calib_index = torch.from_numpy(
            np.sort(rng.choice(len(y_train), size=calib_size, replace=False))
        )
        return _Splits(
            x_train=x_train_t,
            y_train=y_train_t,
            x_val=normalised(x_val),
            y_val=labels(y_val),
            x_calib=x_train_t[calib_index].clone(),
            y_calib=y_train_t[calib_index].clone(),
            mean=torch.from_numpy(mean),
            std=torch.from_numpy(std),
        )


# -- batch augmentations -----------------------------------------------------------------
def _uniform(
    n: int, low: float, high: float, generator: torch.Generator, like: torch.Tensor
) -> torch.Tensor:
    """``n`` draws from U(low, high) made on the generator's device, moved next to ``like``."""
    draws = torch.rand(n, generator=generator, device=generator.device)
    return (draws * (high - low) + low).to(device=like.device, dtype=like.dtype)


def _channel_view(values: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | float:
    if values is None:
        return 0.0
    return values.to(device=x.device, dtype=x.dtype).view(1, -1, *([1] * (x.ndim - 2)))


def random_shift(
    x: torch.Tensor,
    max_shift: int,
    generator: torch.Generator,
    *,
    fill: torch.Tensor | None = None,
    circular: bool = False,
) -> torch.Tensor:
    """Translate each sample of ``x`` (``[N, C, L]`` or ``[N, C, H, W]``) by an integer
    offset in ``[-max_shift, max_shift]`` drawn per sample and per spatial axis: pad and
    crop back at a random position. Uncovered positions get ``fill`` (per channel, default
    0) or, with ``circular``, the samples that wrap around."""
    if max_shift <= 0:
        return x
    spatial = x.ndim - 2
    if spatial not in (1, 2):
        raise ValueError(f"random_shift: expected [N, C, L] or [N, C, H, W], got {tuple(x.shape)}")
    pad = (max_shift,) * (2 * spatial)
    if circular:
        out = F.pad(x, pad, mode="circular")
    else:
        base = _channel_view(fill, x)
        out = F.pad(x - base, pad) + base
    n = x.shape[0]
    for axis in range(2, x.ndim):
        size = x.shape[axis]
        offsets = torch.randint(
            0, 2 * max_shift + 1, (n,), generator=generator, device=generator.device
        ).to(x.device)
        index = offsets[:, None] + torch.arange(size, device=x.device)
        index = index.reshape([n] + [size if d == axis else 1 for d in range(1, x.ndim)])
        target = list(out.shape)
        target[axis] = size
        out = out.gather(axis, index.expand(target))
    return out


def random_hflip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each sample along its last axis with probability 1/2."""
    flip = torch.rand(x.shape[0], generator=generator, device=generator.device) < 0.5
    flip = flip.to(x.device).view(-1, *([1] * (x.ndim - 1)))
    return torch.where(flip, x.flip(-1), x)


def random_affine(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    max_translate: float,
    max_rotation: float,
    max_scale: float,
    fill: torch.Tensor | None = None,
) -> torch.Tensor:
    """Resample each image of ``x`` ``[N, C, H, W]`` through its own random affine map:
    translation up to ``max_translate`` of the image size per axis, rotation up to
    ``max_rotation`` degrees, zoom by a factor in ``[1 - max_scale, 1 + max_scale]``.
    Bilinear; uncovered pixels get ``fill`` (per channel, default 0)."""
    if x.ndim != 4:
        raise ValueError(f"random_affine: expected [N, C, H, W], got {tuple(x.shape)}")
    n = x.shape[0]
    angle = _uniform(n, -max_rotation, max_rotation, generator, x) * (math.pi / 180)
    zoom = _uniform(n, 1 - max_scale, 1 + max_scale, generator, x)
    # affine_grid maps output to input coordinates in [-1, 1]: a shift of 2t is t image sizes
    shift_x = _uniform(n, -max_translate, max_translate, generator, x) * 2
    shift_y = _uniform(n, -max_translate, max_translate, generator, x) * 2
    cos, sin = angle.cos() / zoom, angle.sin() / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    base = _channel_view(fill, x)
    moved = F.grid_sample(
        x - base, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return moved + base


def add_noise(x: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """``x`` plus Gaussian noise of standard deviation ``std``."""
    if std <= 0:
        return x
    noise = torch.randn(x.shape, generator=generator, device=generator.device)
    return x + std * noise.to(device=x.device, dtype=x.dtype)


# -- scikit-learn digits ---------------------------------------------------------------
class DigitsTask(InMemoryTask):
    """scikit-learn's 1,797 handwritten 8x8 digits, upscaled (bilinear) to ``resolution``.

    Shipped with scikit-learn, so it needs no download. Three identical channels by default
    so ImageNet-style stems apply. Validation is a stratified ``val_fraction`` of the
    digits. Augmentation: a random affine map per image (translation, rotation, zoom),
    never a mirror (a mirrored digit is another symbol).
    """

    class Options(SplitOptions):
        """Options of ``cnn.digits``."""

        resolution: int = Field(32, ge=8, le=1024, description="side of the square images")
        channels: Literal[1, 3] = Field(3, description="1 (grey) or 3 (grey copied to RGB)")
        max_translate: float = Field(
            0.1, ge=0, le=0.5, description="shift, fraction of the image size (0.1: 3 px at 32)"
        )
        max_rotation: float = Field(10.0, ge=0, le=180, description="rotation, degrees")
        max_scale: float = Field(0.1, ge=0, lt=1, description="zoom in [1 - s, 1 + s]")

    config: Options

    def __init__(self, **options: Any):
        super().__init__(**options)
        side = self.config.resolution
        self.input_shape = (self.config.channels, side, side)
        self.num_classes = 10
        self.classes = [str(digit) for digit in range(10)]

    def load_raw(self) -> RawData:
        """The digits scaled to [0, 1], resized and copied to ``channels`` channels."""
        pixels, labels = _digits()
        images = torch.from_numpy(pixels.reshape(-1, 8, 8).astype(np.float32) / 16.0)[:, None]
        side = self.config.resolution
        if side != images.shape[-1]:
            images = F.interpolate(images, size=(side, side), mode="bilinear", align_corners=False)
        images = images.expand(-1, self.config.channels, -1, -1)
        return RawData(images.numpy().copy(), labels.astype(np.int64))

    def random_transform(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random translation, rotation and zoom per image; borders filled with background."""
        return random_affine(
            x,
            generator,
            max_translate=self.config.max_translate,
            max_rotation=self.config.max_rotation,
            max_scale=self.config.max_scale,
            fill=self.raw_zero(),
        )


# -- MNIST-1D ------------------------------------------------------------------------
class MNIST1DTask(InMemoryTask):
    """MNIST-1D (Greydanus, 2020): 10 classes of 1-D signals of length 40, shape (1, 40).

    Generated offline by the ``mnist1d`` package from ``seed`` and ``num_samples``; its own
    split gives train and val (``val_fraction`` sets its ``train_split`` to
    ``1 - val_fraction``). Augmentation: a random circular shift of up to ``max_shift``
    samples and Gaussian noise of ``noise_std`` (in normalised units).
    """

    class Options(SplitOptions):
        """Options of ``cnn.mnist1d``."""

        num_samples: int = Field(5000, ge=20, le=1_000_000, description="train + val samples")
        max_shift: int = Field(3, ge=0, le=40, description="circular shift, samples")
        noise_std: float = Field(0.05, ge=0, description="Gaussian noise, normalised units")

    config: Options
    LENGTH = 40

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.input_shape = (1, self.LENGTH)
        self.num_classes = 10
        self.classes = [str(digit) for digit in range(10)]

    def load_raw(self) -> RawData:
        """Generate the dataset; the global ``random``/``numpy`` RNG states that ``mnist1d``
        reseeds are restored afterwards."""
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.num_samples = self.config.num_samples
        args.seed = self.config.seed
        args.train_split = 1.0 - self.config.val_fraction
        args.final_seq_length = self.LENGTH
        numpy_state, python_state = np.random.get_state(), random.getstate()
        try:
            data = make_dataset(args)
        finally:
            np.random.set_state(numpy_state)
            random.setstate(python_state)

        def samples(key: str) -> np.ndarray:
            return np.asarray(data[key], dtype=np.float32)[:, None, :]

        return RawData(
            samples("x"),
            np.asarray(data["y"], dtype=np.int64),
            samples("x_test"),
            np.asarray(data["y_test"], dtype=np.int64),
        )

    def random_transform(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random circular shift per signal, then Gaussian noise."""
        x = random_shift(x, self.config.max_shift, generator, circular=True)
        return add_noise(x, self.config.noise_std, generator)


# -- a folder of images per class --------------------------------------------------------
def _scan_image_folder(root: Path, field: str) -> dict[str, list[Path]]:
    """Class folder name -> its image files (both sorted); errors name ``field``."""
    if not root.is_dir():
        raise ValueError(f"{field}: no such folder: {root}")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise ValueError(f"{field}: {root} has no class folders (expected {root}/<class>/*.png)")
    files = {}
    for class_dir in class_dirs:
        images = sorted(
            f for f in class_dir.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
        )
        if not images:
            raise ValueError(
                f"{field}: class folder {class_dir} has no images ({', '.join(IMAGE_SUFFIXES)})"
            )
        files[class_dir.name] = images
    return files


def _read_image(path: Path, mode: str, side: int) -> np.ndarray:
    """One image as float32 ``[C, side, side]`` in [0, 1]."""
    try:
        with Image.open(path) as image:
            resized = image.convert(mode).resize((side, side), Image.Resampling.BILINEAR)
    except (OSError, ValueError) as exc:  # PIL.UnidentifiedImageError is an OSError
        raise ValueError(f"cannot read image {path}: {exc}") from None
    array = np.asarray(resized, dtype=np.float32) / 255.0
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


class ImageFolderTask(InMemoryTask):
    """Images in ``root/<class>/*.png|jpg|jpeg|bmp``, resized to ``resolution`` squares.

    Classes are the sorted class folder names (index = position, names in ``classes``).
    Images are read once with Pillow, as RGB (or grey with ``channels: 1``). Validation is
    ``val_root`` (same layout, a subset of the classes) or a stratified ``val_fraction``.
    Augmentation: random crop after padding by ``pad`` pixels (black), and a random
    horizontal mirror unless ``hflip`` is off.
    """

    class Options(SplitOptions):
        """Options of ``cnn.image_folder``."""

        root: PathOption = Field(description="folder of class folders of images")
        val_root: PathOption | None = Field(None, description="validation images, same layout")
        resolution: int = Field(32, ge=4, le=1024, description="side of the square images")
        channels: Literal[1, 3] = Field(3, description="1 (grey) or 3 (RGB)")
        pad: int = Field(4, ge=0, description="random crop: pad by this many pixels")
        hflip: bool = Field(True, description="random horizontal mirror")

    config: Options

    def __init__(self, **options: Any):
        super().__init__(**options)
        train = _scan_image_folder(Path(self.config.root), "root")
        if len(train) < 2:
            raise ValueError(f"root: {self.config.root} needs at least 2 class folders")
        self.classes = list(train)
        self._train_files = train
        self._val_files: dict[str, list[Path]] | None = None
        if self.config.val_root is not None:
            val = _scan_image_folder(Path(self.config.val_root), "val_root")
            unknown = sorted(set(val) - set(train))
            if unknown:
                raise ValueError(
                    f"val_root: class folders {unknown} in {self.config.val_root} are not "
                    f"classes of root {self.config.root}"
                )
            self._val_files = val
        side = self.config.resolution
        self.input_shape = (self.config.channels, side, side)
        self.num_classes = len(self.classes)

    def _read(self, files: dict[str, list[Path]]) -> tuple[np.ndarray, np.ndarray]:
        mode = "RGB" if self.config.channels == 3 else "L"
        side = self.config.resolution
        index = {name: i for i, name in enumerate(self.classes)}
        pairs = [(path, index[name]) for name, paths in files.items() for path in paths]
        x = np.stack([_read_image(path, mode, side) for path, _ in pairs])
        return x, np.array([label for _, label in pairs], dtype=np.int64)

    def load_raw(self) -> RawData:
        """Every image, read and resized."""
        x, y = self._read(self._train_files)
        if self._val_files is None:
            return RawData(x, y)
        return RawData(x, y, *self._read(self._val_files))

    def random_transform(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random crop with black padding, then (with ``hflip``) a random mirror."""
        x = random_shift(x, self.config.pad, generator, fill=self.raw_zero())
        return random_hflip(x, generator) if self.config.hflip else x


# -- arrays in .npz files --------------------------------------------------------------
Layout = Literal["NCHW", "NCL", "NHW", "NL"]


def _open_npz(path: Path, field: str) -> np.lib.npyio.NpzFile:
    if not path.is_file():
        raise ValueError(f"{field}: no such file: {path}")
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{field}: cannot read {path} as .npz: {exc}") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ValueError(f"{field}: {path} is a single array, not an .npz of named arrays")
    return npz


def _require_key(npz: np.lib.npyio.NpzFile, key: str, key_field: str, path: Path, field: str):
    if key not in npz.files:
        raise ValueError(
            f"{field}: {path} has no array '{key}' ({key_field}); "
            f"it holds: {', '.join(npz.files) or 'nothing'}"
        )


def _array_header(npz: np.lib.npyio.NpzFile, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of ``key`` read from its header, without loading the array."""
    with npz.zip.open(f"{key}.npy") as stream:
        version = np.lib.format.read_magic(stream)
        read = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read(stream)
    return tuple(shape), dtype


def _infer_layout(shape: tuple[int, ...], path: Path, field: str) -> str:
    if len(shape) == 4:
        return "NCHW"
    if len(shape) == 2:
        return "NL"
    if len(shape) == 3:
        if shape[1] == shape[2]:
            return "NHW"
        raise ValueError(
            f"layout: x in {path} ({field}) has shape {shape}; set layout to 'NCL' "
            "(channels, length) or 'NHW' (single-channel images)"
        )
    raise ValueError(
        f"{field}: x in {path} has shape {shape}; expected [N, C, H, W], [N, C, L], "
        "[N, H, W] or [N, L]"
    )


class NpzTask(InMemoryTask):
    """Samples and labels from ``.npz`` files (read with ``allow_pickle=False``).

    ``train`` (and optionally ``val``) hold arrays ``x_key`` — ``[N, C, H, W]``,
    ``[N, C, L]``, or without the channel axis ``[N, H, W]`` / ``[N, L]`` (``layout`` says
    which; by default 4-D is NCHW, 2-D is NL, 3-D square is NHW, any other 3-D shape must
    be named) — and ``y_key`` (integer labels ``[N]``). ``num_classes`` defaults to the
    largest label + 1. Without ``val``, a stratified ``val_fraction`` of train is held out.
    Augmentation: random crop/shift after padding by ``pad`` (0: none) and, with
    ``hflip``, a random mirror of the last axis.
    """

    class Options(SplitOptions):
        """Options of ``cnn.npz``."""

        train: PathOption = Field(description=".npz file of training samples")
        val: PathOption | None = Field(None, description=".npz file of validation samples")
        x_key: str = Field("x", min_length=1, description="name of the samples array")
        y_key: str = Field("y", min_length=1, description="name of the labels array")
        layout: Layout | None = Field(None, description="axes of x; inferred when unset")
        num_classes: int | None = Field(None, ge=2, description="default: largest label + 1")
        pad: int = Field(0, ge=0, description="random shift: pad by this many pixels/samples")
        hflip: bool = Field(False, description="random mirror of the last axis")

    config: Options

    def __init__(self, **options: Any):
        super().__init__(**options)
        files = [("train", Path(self.config.train))]
        if self.config.val is not None:
            files.append(("val", Path(self.config.val)))
        self.layout = self.config.layout
        shapes, max_label = {}, 0
        for field, path in files:
            shape, y = self._inspect(path, field)
            shapes[field] = shape
            max_label = max(max_label, int(y.max()))
        if len(shapes) == 2 and shapes["train"] != shapes["val"]:
            raise ValueError(
                f"val: mismatched sizes: samples in {self.config.train} have shape "
                f"{shapes['train']} but in {self.config.val} {shapes['val']}"
            )
        self.input_shape = shapes["train"]
        if self.config.num_classes is None:
            if max_label < 1:
                raise ValueError(f"train: the labels in {self.config.train} name a single class")
            self.num_classes = max_label + 1
        elif self.config.num_classes <= max_label:
            raise ValueError(
                f"num_classes: {self.config.num_classes}, but the labels go up to {max_label}"
            )
        else:
            self.num_classes = self.config.num_classes
        self.classes = [str(label) for label in range(self.num_classes)]

    def _inspect(self, path: Path, field: str) -> tuple[tuple[int, ...], np.ndarray]:
        """Check one file's keys, shapes and labels; return its sample shape and labels."""
        x_key, y_key = self.config.x_key, self.config.y_key
        with _open_npz(path, field) as npz:
            _require_key(npz, x_key, "x_key", path, field)
            _require_key(npz, y_key, "y_key", path, field)
            shape, dtype = _array_header(npz, x_key)
            try:
                y = npz[y_key]
            except ValueError as exc:  # e.g. an object array, refused without pickle
                raise ValueError(f"{field}: cannot read '{y_key}' from {path}: {exc}") from None
        if not (np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.bool_)):
            raise ValueError(f"{field}: x ('{x_key}') in {path} has non-numeric dtype {dtype}")
        if self.layout is None:
            self.layout = _infer_layout(shape, path, field)
        elif len(self.layout) != len(shape):
            raise ValueError(
                f"layout: {self.layout} does not fit x of shape {shape} in {path} ({field})"
            )
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(
                f"{field}: y ('{y_key}') in {path} must be integer labels [N], "
                f"got {y.dtype} of shape {y.shape}"
            )
        if len(y) != shape[0] or not len(y):
            raise ValueError(
                f"{field}: mismatched sizes in {path}: {shape[0]} samples ('{x_key}') "
                f"and {len(y)} labels ('{y_key}')"
            )
        if y.min() < 0:
            raise ValueError(f"{field}: negative label {y.min()} in {path}")
        sample = shape[1:] if self.layout in ("NCHW", "NCL") else (1, *shape[1:])
        return tuple(sample), y

    def _read(self, path: str) -> tuple[np.ndarray, np.ndarray]:
        with np.load(path, allow_pickle=False) as npz:
            x = npz[self.config.x_key].astype(np.float32)
            y = npz[self.config.y_key].astype(np.int64)
        return x.reshape(len(x), *self.input_shape), y

    def load_raw(self) -> RawData:
        """The arrays of ``train`` (and ``val``), with a channel axis added when missing."""
        x, y = self._read(self.config.train)
        if self.config.val is None:
            return RawData(x, y)
        return RawData(x, y, *self._read(self.config.val))

    def random_transform(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random shift with zero (raw) padding, then (with ``hflip``) a random mirror."""
        x = random_shift(x, self.config.pad, generator, fill=self.raw_zero())
        return random_hflip(x, generator) if self.config.hflip else x


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits: 1,797 rows of 64 pixel values (0-16) and their labels.

    Read straight from the CSV that scikit-learn ships, as ``load_digits`` does: importing
    ``sklearn.datasets`` costs seconds, paid in every training worker. Falls back to
    ``load_digits`` where the file is not found.
    """
    spec = importlib.util.find_spec("sklearn")
    origin = Path(spec.origin).parent if spec and spec.origin else None
    path = origin / "datasets" / "data" / "digits.csv.gz" if origin else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.data, digits.target
    table = np.loadtxt(path, delimiter=",")
    return table[:, :-1], table[:, -1].astype(np.int64)
