"""The EfficientTDNN search space (``tdnn.ecapa``), importable without torch.

An ECAPA-style dilated TDNN for speaker verification (Wang et al., EfficientTDNN, IEEE/ACM
TASLP 2022; shapes from ``mechanicalsea/sugar``, ``sugar/models/dynamictdnn.py``): log-mel
filterbanks → a stem convolution → up to four SE-Res2 blocks with fixed dilations
(2, 3, 4, 5) and summed dense residuals → concatenation → 1x1 convolution to three times the
block width → attentive statistics pooling → a 192-d embedding.

Dimensions, in three groups that :meth:`~nasforge.GroupedSpace.restrict` narrows for
progressive training:

- ``depth`` — how many SE-Res2 blocks run (``depths``, default 2, 3, 4);
- ``kernel`` — the stem's kernel (``kernel_0``) and each block's Res2 kernel (``kernel``,
  a list as long as ``depth``), from ``kernels`` (1, 3, 5);
- ``width`` — the block width, the same for every block since their outputs are summed:
  ``width_ratios`` (0.25, 0.35, 0.5, 0.75, 1) of ``max_channels``, rounded to a multiple of
  ``res2_scale``; the concatenation convolution follows (three times the width).

The defaults are a CPU-size network (``max_channels`` 256, largest subnet about 0.4 G MACs
per second of audio); :meth:`TDNNSpace.voxceleb` gives the published sizes (512 → channels
128, 176, 256, 384, 512; concatenation 384 … 1,536). The published space counts ≈10¹³
subnets because its widths are chosen per layer in steps of 8; this one keeps one width per
network (the dense residual sums need equal widths) and the published five ratios.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nasforge import Categorical, Dimension, GroupedSpace, PerLayer

#: frames per second of audio (10 ms hop): the space's input is one second of filterbanks
FRAMES_PER_SECOND = 100


def _rounded(value: float, multiple: int) -> int:
    """``value`` rounded to the nearest positive multiple of ``multiple``."""
    return max(multiple, round(value / multiple) * multiple)


class TDNNOptions(BaseModel):
    """Options of :class:`TDNNSpace` (sizes of the supernet that realises it)."""

    model_config = ConfigDict(extra="forbid")

    n_mels: int = Field(80, ge=1, description="filterbank channels of the input")
    num_speakers: int = Field(
        40, ge=2, description="training speakers (the classes of the trainer's AAM-softmax head)"
    )
    max_channels: int = Field(256, ge=8, description="block width at ratio 1 (512 published)")
    width_ratios: list[float] = Field(
        [0.25, 0.35, 0.5, 0.75, 1.0], description="block-width ratios (choices)"
    )
    depths: list[int] = Field([2, 3, 4], description="SE-Res2 blocks (choices)")
    kernels: list[int] = Field([1, 3, 5], description="stem and Res2 kernel sizes (choices)")
    dilations: list[int] = Field(
        [2, 3, 4, 5], description="each block's dilation (fixed, one per block)"
    )
    res2_scale: int = Field(8, ge=2, description="Res2 groups per block")
    se_reduction: int = Field(4, ge=1, description="squeeze-excitation reduction")
    attention_channels: int = Field(64, ge=1, description="attentive pooling hidden units")
    embedding_dim: int = Field(192, ge=1, description="speaker embedding size")
    kernel_mode: str = Field(
        "transform", description="smaller kernels by Once-for-All transform or centre crop"
    )

    @model_validator(mode="after")
    def _check(self) -> TDNNOptions:
        for name in ("width_ratios", "depths", "kernels"):
            values = getattr(self, name)
            if not values or len(set(values)) != len(values):
                raise ValueError(f"{name} needs distinct values, got {values}")
            setattr(self, name, sorted(values))
        if any(not 0 < r <= 1 for r in self.width_ratios):
            raise ValueError(f"width_ratios must lie in (0, 1], got {self.width_ratios}")
        if any(k < 1 or k % 2 == 0 for k in self.kernels):
            raise ValueError(f"kernels must be positive odd integers, got {self.kernels}")
        if any(d < 1 for d in self.depths) or max(self.depths) > len(self.dilations):
            raise ValueError(
                f"depths must lie in 1..{len(self.dilations)} (one dilation per block), "
                f"got {self.depths}"
            )
        if self.kernel_mode not in ("transform", "crop"):
            raise ValueError(f"kernel_mode must be 'transform' or 'crop', got {self.kernel_mode}")
        if self.max_channels % self.res2_scale:
            raise ValueError(
                f"max_channels ({self.max_channels}) must be a multiple of res2_scale "
                f"({self.res2_scale})"
            )
        return self

    @property
    def channels(self) -> list[int]:
        """The block widths the ratios give (multiples of ``res2_scale``)."""
        return sorted({_rounded(r * self.max_channels, self.res2_scale) for r in self.width_ratios})


class TDNNSpace(GroupedSpace):
    """EfficientTDNN: ``depth``, ``kernel_0`` (stem), ``kernel`` (per block) and ``width``
    (block channels); see the module docstring."""

    Options = TDNNOptions
    config: TDNNOptions
    VOXCELEB: ClassVar[dict[str, Any]] = {
        "n_mels": 80,
        "num_speakers": 1211,  # VoxCeleb1 dev
        "max_channels": 512,
        "attention_channels": 128,
        "embedding_dim": 192,
    }

    @classmethod
    def voxceleb(cls, **overrides: Any) -> TDNNSpace:
        """The published VoxCeleb sizes (``VOXCELEB``: block width 512, concatenation
        1,536, attention 128, 1,211 training speakers), with overrides."""
        return cls(**{**cls.VOXCELEB, **overrides})

    def groups(self) -> dict[str, list[Any]]:
        c = self.config
        return {"depth": list(c.depths), "kernel": list(c.kernels), "width": c.channels}

    def _dimensions(self, choices: Mapping[str, Sequence[Any]]) -> list[Dimension]:
        return [
            Categorical("depth", list(choices["depth"])),
            Categorical("kernel_0", list(choices["kernel"])),
            PerLayer(
                "kernel", list(choices["kernel"]), "depth", max_length=max(self.config.depths)
            ),
            Categorical("width", list(choices["width"])),
        ]

    # -- data shapes -----------------------------------------------------------------
    @property
    def num_speakers(self) -> int:
        """Training speakers. The supernet outputs embeddings (``embedding_dim``), not
        classes: the AAM-softmax head over the speakers belongs to the trainer."""
        return self.config.num_speakers

    def input_shape(self, arch: Mapping[str, Any] | None = None) -> tuple[int, ...]:
        """One second of filterbanks, ``(n_mels, 100)``: MACs and latency are per second
        of audio."""
        return (self.config.n_mels, FRAMES_PER_SECOND)

    def check_task(self, task: Any) -> None:
        """Raise ``ValueError`` when ``task``'s features or speakers do not fit this space."""
        shape = tuple(getattr(task, "input_shape", ()))
        name = type(task).__name__
        if len(shape) != 2 or shape[0] != self.config.n_mels:
            raise ValueError(
                f"task {name} has samples of shape {shape} but the space expects "
                f"({self.config.n_mels}, frames): set the space's n_mels option"
            )
        if task.num_classes != self.config.num_speakers:
            raise ValueError(
                f"task {name} has {task.num_classes} training speakers but the space's "
                f"num_speakers is {self.config.num_speakers}"
            )
