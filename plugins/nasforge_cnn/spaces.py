"""The CNN plugin's search spaces: Once-for-All MobileNetV3 and ResNet, 1-D or 2-D.

Both are plain :class:`nasforge.SearchSpace` subclasses built from a validated pydantic
``Options`` model (so experiment files are checked field by field) and importable without
torch: the supernets that realise them live in :mod:`nasforge_cnn.mobilenetv3` and
:mod:`nasforge_cnn.resnet` and read every size from ``space.config``.

Dimensions come in *groups* (all ``kernel_i`` form the group ``kernel``) that
:meth:`restrict` narrows for progressive shrinking, e.g.
``space.restrict(kernel=[7], depth=[4], expand=[6])``. Defaults are a small network for
32x32 digits on a CPU; :meth:`MobileNetV3Space.imagenet` and :meth:`ResNetSpace.imagenet`
give the published ImageNet configurations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from nasforge import Categorical, Dimension, GroupedSpace, PerLayer

Activation = Literal["relu", "hswish"]


def _sorted_unique(name: str, values: Sequence[Any] | None) -> list[Any] | None:
    if values is None:
        return None
    if not values:
        raise ValueError(f"{name} needs at least one value")
    seen: list[Any] = []
    for v in values:
        if v in seen:
            raise ValueError(f"{name} lists {v!r} twice")
        seen.append(v)
    return sorted(seen)


class CNNOptions(BaseModel):
    """Options every CNN space shares (see the subclasses for the sizes)."""

    model_config = ConfigDict(extra="forbid")

    dims: Literal[1, 2] = Field(2, description="2 for images (C,H,W), 1 for sequences (C,L)")
    in_channels: int = Field(3, ge=1, description="input channels")
    num_classes: int = Field(10, ge=2, description="classifier outputs")
    input_size: int = Field(32, ge=1, description="H=W (2-D) or L (1-D) when not searched")
    resolutions: list[int] | None = Field(
        None, description="searchable input resolutions (arch key 'resolution'); None = fixed"
    )
    kernel_mode: Literal["transform", "crop"] = Field(
        "transform", description="smaller kernels by Once-for-All transform or centre crop"
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout before the classifier")
    stem_width: int = Field(16, ge=1)
    stem_stride: int = Field(
        2,
        ge=1,
        description="2 halves the input at once (ImageNet; 32x32 digits, which are 8x8 "
        "upscaled); 1 keeps full resolution (costs about 4x the MACs)",
    )
    stage_widths: list[int]
    stage_strides: list[int]

    @field_validator("resolutions")
    @classmethod
    def _resolutions(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and any(v < 1 for v in value):
            raise ValueError("resolutions must be positive")
        return _sorted_unique("resolutions", value)

    @field_validator("stage_widths", "stage_strides")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if not value or any(v < 1 for v in value):
            raise ValueError("needs at least one stage and positive values")
        return value

    def _check_stage_lists(self, *names: str) -> None:
        lengths = {name: len(getattr(self, name)) for name in ("stage_widths", *names)}
        if len(set(lengths.values())) > 1:
            listed = ", ".join(f"{k} has {v}" for k, v in lengths.items())
            raise ValueError(f"per-stage lists must have one entry per stage: {listed}")


class _CNNSpace(GroupedSpace):
    """What both CNN spaces share: options, groups and restriction, input shape, task fit."""

    Options: ClassVar[type[CNNOptions]]
    IMAGENET: ClassVar[dict[str, Any]]

    @classmethod
    def imagenet(cls, **overrides: Any) -> _CNNSpace:
        """The published ImageNet-size configuration (``IMAGENET``), with overrides."""
        return cls(**{**cls.IMAGENET, **overrides})

    # -- what subclasses define ----------------------------------------------------------
    @property
    def num_stages(self) -> int:
        """How many elastic stages the network has."""
        return len(self.config.stage_widths)

    # -- data shapes ---------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """How many classes the classifier outputs."""
        return self.config.num_classes

    @property
    def dims(self) -> int:
        """Spatial dimensions of the input: 2 (images) or 1 (sequences)."""
        return self.config.dims

    def input_shape(self, arch: Mapping[str, Any] | None = None) -> tuple[int, ...]:
        """One sample's shape, ``(C, H, W)`` or ``(C, L)``, at ``arch``'s resolution (or
        ``input_size`` when the arch has none)."""
        size = self.config.input_size
        if arch is not None and "resolution" in arch:
            size = int(arch["resolution"])
        return (self.config.in_channels, *([size] * self.config.dims))

    def check_task(self, task: Any) -> None:
        """Raise ``ValueError`` when ``task``'s samples or labels do not fit this space."""
        shape = tuple(getattr(task, "input_shape", ()))
        name = type(task).__name__
        expected = "(C, H, W)" if self.config.dims == 2 else "(C, L)"
        if len(shape) != self.config.dims + 1:
            raise ValueError(
                f"task {name} has samples of shape {shape} but the space (dims="
                f"{self.config.dims}) expects {expected}; set the space's dims option"
            )
        if shape[0] != self.config.in_channels:
            raise ValueError(
                f"task {name} has {shape[0]} input channels but the space's in_channels is "
                f"{self.config.in_channels}"
            )
        if task.num_classes != self.config.num_classes:
            raise ValueError(
                f"task {name} has {task.num_classes} classes but the space's num_classes is "
                f"{self.config.num_classes}"
            )

    def _tail_dimensions(self, choices: Mapping[str, list[Any]]) -> list[Dimension]:
        dims: list[Dimension] = []
        if "width_mult" in choices:
            dims.append(Categorical("width_mult", choices["width_mult"]))
        if "resolution" in choices:
            dims.append(Categorical("resolution", choices["resolution"]))
        return dims

    def _tail_groups(self) -> dict[str, list[Any]]:
        if self.config.resolutions is None:
            return {}
        return {"resolution": list(self.config.resolutions)}


# --------------------------------------------------------------------------- MobileNetV3
class MobileNetV3Options(CNNOptions):
    """Options of :class:`MobileNetV3Space`. The defaults are a small net for 32x32 digits
    on a CPU (16x16 after the stem, 4x4 in the last stages; largest subnet about 12M MACs
    per sample, smallest about 2.4M); ``MobileNetV3Space.IMAGENET`` is the published one."""

    depths: list[int] = Field([2, 3, 4], description="blocks per stage (choices)")
    kernels: list[int] = Field([3, 5, 7], description="depthwise kernel sizes (choices)")
    expands: list[int | float] = Field([3, 4, 6], description="expand ratios (choices)")
    width_mults: list[float] | None = Field(
        None, description="stage-width multipliers (choices, arch key 'width_mult'); None = 1"
    )
    first_block_width: int = Field(16, ge=1)
    stage_widths: list[int] = [24, 32, 48, 64]
    stage_strides: list[int] = [2, 2, 1, 1]
    stage_activations: list[Activation] = ["relu", "relu", "hswish", "hswish"]
    stage_se: list[bool] = [False, True, False, True]
    final_expand_width: int = Field(192, ge=1)
    feature_width: int = Field(256, ge=1)

    @field_validator("depths")
    @classmethod
    def _depths(cls, value: list[int]) -> list[int]:
        if any(v < 1 for v in value):
            raise ValueError("depths must be >= 1 (a stage's first block is always kept)")
        return _sorted_unique("depths", value)

    @field_validator("kernels")
    @classmethod
    def _kernels(cls, value: list[int]) -> list[int]:
        if any(v < 1 or v % 2 == 0 for v in value):
            raise ValueError("kernels must be positive odd integers")
        return _sorted_unique("kernels", value)

    @field_validator("expands", "width_mults")
    @classmethod
    def _ratios(cls, value: list[float] | None, info: ValidationInfo) -> list[float] | None:
        if value is not None and any(v <= 0 for v in value):
            raise ValueError("ratios must be positive")
        return _sorted_unique(info.field_name, value)

    @model_validator(mode="after")
    def _stages(self) -> MobileNetV3Options:
        self._check_stage_lists("stage_strides", "stage_activations", "stage_se")
        return self


class MobileNetV3Space(_CNNSpace):
    """Once-for-All MobileNetV3 (``ofa_mbv3_d234_e346_k357``): per stage ``depth_i``, per
    block ``kernel_i`` and ``expand_i`` (lists as long as the stage's depth), optional
    ``width_mult`` and ``resolution``."""

    Options = MobileNetV3Options
    config: MobileNetV3Options
    IMAGENET: ClassVar[dict[str, Any]] = {
        "dims": 2,
        "in_channels": 3,
        "num_classes": 1000,
        "input_size": 224,
        "resolutions": list(range(128, 225, 4)),
        "dropout": 0.1,
        "stem_width": 16,
        "stem_stride": 2,
        "first_block_width": 16,
        "stage_widths": [24, 40, 80, 112, 160],
        "stage_strides": [2, 2, 2, 1, 2],
        "stage_activations": ["relu", "relu", "hswish", "hswish", "hswish"],
        "stage_se": [False, True, False, True, True],
        "final_expand_width": 960,
        "feature_width": 1280,
    }

    def groups(self) -> dict[str, list[Any]]:
        c = self.config
        return {
            "depth": list(c.depths),
            "kernel": list(c.kernels),
            "expand": list(c.expands),
            **({} if c.width_mults is None else {"width_mult": list(c.width_mults)}),
            **self._tail_groups(),
        }

    def _dimensions(self, choices: Mapping[str, list[Any]]) -> list[Dimension]:
        max_depth = max(self.config.depths)
        dims: list[Dimension] = []
        for i in range(1, self.num_stages + 1):
            depth = f"depth_{i}"
            dims.append(Categorical(depth, choices["depth"]))
            dims.append(PerLayer(f"kernel_{i}", choices["kernel"], depth, max_length=max_depth))
            dims.append(PerLayer(f"expand_{i}", choices["expand"], depth, max_length=max_depth))
        return dims + self._tail_dimensions(choices)


# --------------------------------------------------------------------------------- ResNet
class ResNetOptions(CNNOptions):
    """Options of :class:`ResNetSpace`. The defaults are a small net for 32x32 digits on a
    CPU (largest subnet about 8M MACs per sample, smallest about 0.9M);
    ``ResNetSpace.IMAGENET`` is the published ResNet50 one."""

    base_depths: list[int] = Field([1, 1, 1, 1], description="blocks per stage at extra 0")
    depth_extras: list[int] = Field([0, 1, 2], description="extra blocks per stage (choices)")
    expands: list[float] = Field([0.2, 0.25, 0.35], description="bottleneck ratios (choices)")
    width_mults: list[float] = Field([0.65, 0.8, 1.0], description="per-stage width choices")
    stem_pool: bool = Field(False, description="3x3 stride-2 max pool after the stem")
    stage_widths: list[int] = [32, 64, 128, 256]
    stage_strides: list[int] = [1, 2, 2, 2]

    @field_validator("base_depths")
    @classmethod
    def _base(cls, value: list[int]) -> list[int]:
        if not value or any(v < 1 for v in value):
            raise ValueError("base depths must be >= 1 (a stage's first block is always kept)")
        return value

    @field_validator("depth_extras")
    @classmethod
    def _extras(cls, value: list[int]) -> list[int]:
        if any(v < 0 for v in value):
            raise ValueError("depth extras must be >= 0")
        return _sorted_unique("depth_extras", value)

    @field_validator("expands", "width_mults")
    @classmethod
    def _ratios(cls, value: list[float], info: ValidationInfo) -> list[float]:
        if any(v <= 0 for v in value):
            raise ValueError("ratios must be positive")
        return _sorted_unique(info.field_name, value)

    @model_validator(mode="after")
    def _stages(self) -> ResNetOptions:
        self._check_stage_lists("stage_strides", "base_depths")
        return self


class ResNetSpace(_CNNSpace):
    """Once-for-All ResNet (bottleneck blocks): per stage ``depth_i`` (the block count,
    ``base_depths[i] + extra`` with extra in ``depth_extras``), per block ``expand_i``
    (bottleneck ratio; a list as long as the stage's depth) and per stage ``width_i``
    (stage-width multiplier); optional ``resolution``. The ``depth`` group of
    :meth:`restrict` is given in extra blocks."""

    Options = ResNetOptions
    config: ResNetOptions
    IMAGENET: ClassVar[dict[str, Any]] = {
        "dims": 2,
        "in_channels": 3,
        "num_classes": 1000,
        "input_size": 224,
        "resolutions": list(range(128, 225, 4)),
        "dropout": 0.1,
        "stem_width": 64,
        "stem_stride": 2,
        "stem_pool": True,
        "stage_widths": [256, 512, 1024, 2048],
        "stage_strides": [1, 2, 2, 2],
        "base_depths": [2, 2, 4, 2],
    }

    def groups(self) -> dict[str, list[Any]]:
        c = self.config
        return {
            "depth": list(c.depth_extras),
            "expand": list(c.expands),
            "width": list(c.width_mults),
            **self._tail_groups(),
        }

    def _dimensions(self, choices: Mapping[str, list[Any]]) -> list[Dimension]:
        max_extra = max(self.config.depth_extras)
        dims: list[Dimension] = []
        for i, base in enumerate(self.config.base_depths, start=1):
            depth = f"depth_{i}"
            dims.append(Categorical(depth, [base + extra for extra in choices["depth"]]))
            dims.append(
                PerLayer(f"expand_{i}", choices["expand"], depth, max_length=base + max_extra)
            )
            dims.append(Categorical(f"width_{i}", choices["width"]))
        return dims + self._tail_dimensions(choices)
