"""What every ``nasforge_hw`` cost model shares: options, the input it feeds, its device.

:class:`SubnetHardware` is the base of the models that measure the static subnet the engine
extracts for an arch (MACs, latency, memory, latency look-up tables). It validates its
pydantic ``Options`` in ``__init__`` (so a model built directly is checked exactly like one
built from an experiment file), refuses ``subnet=None`` with a clear message (tabular spaces
have no model to measure), and builds the example input from :func:`input_shape_for`.
"""

from __future__ import annotations

import copy
import re
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator
from torch import nn

from nasforge import Arch, EvalContext, Hardware, Metric, SearchSpace, Task, cpu_name

InputDtype = Literal["float32", "float16", "bfloat16", "int64"]
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def input_shape_for(
    space: SearchSpace,
    arch: Arch,
    default: tuple[int, ...] | None = None,
    *,
    task: Task | None = None,
) -> tuple[int, ...]:
    """The shape of one input sample (no batch dimension) for ``arch``.

    In order: the space's ``input_shape(arch)`` (spaces whose archs choose a resolution
    define it), else ``default`` (a hardware model's ``input_shape`` option), else the
    task's ``input_shape``. Raises :class:`ValueError` naming the option to set when none
    of them is known.
    """
    method = getattr(space, "input_shape", None)
    if callable(method):
        shape = method(arch)
    elif method is not None:
        shape = method
    elif default is not None:
        shape = default
    elif task is not None and task.input_shape:
        shape = task.input_shape
    else:
        raise ValueError(
            f"cannot tell the input shape of {type(space).__name__} archs: the space has no "
            "input_shape(arch); set the hardware model's option input_shape, e.g. [3, 32, 32]"
        )
    shape = tuple(int(d) for d in shape)
    if not shape or any(d < 1 for d in shape):
        raise ValueError(f"input_shape must be positive sizes, got {shape}")
    return shape


def example_input(
    shape: tuple[int, ...], batch_size: int, dtype: InputDtype, device: str
) -> torch.Tensor:
    """A fixed (seeded) input batch of ``batch_size`` samples of ``shape``: standard-normal
    floats, or zeros for integer inputs (token ids)."""
    full = (batch_size, *shape)
    torch_dtype = getattr(torch, dtype)
    if not torch_dtype.is_floating_point:
        return torch.zeros(full, dtype=torch_dtype, device=device)
    generator = torch.Generator().manual_seed(0)
    return torch.randn(full, generator=generator).to(device=device, dtype=torch_dtype)


def resolve_device(option: str, context: EvalContext) -> str:
    """The device a model runs on: ``"auto"`` is the trial's device (``context.device``)."""
    device = context.device if option == "auto" else option
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was asked for, but CUDA is not available here")
    return device


def device_label(device: str, context: EvalContext | None = None) -> str:
    """A human name of ``device``: the trial's ``device_name`` when it is the trial's
    device, else the GPU's or CPU's model name."""
    kind = torch.device(device).type
    if context is not None and torch.device(context.device).type == kind:
        return context.device_name
    if kind == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    return cpu_name()


def module_on(module: nn.Module, device: str) -> nn.Module:
    """``module`` itself when its tensors are on ``device``, else an eval-mode copy there
    (the engine's subnet is never moved in place)."""
    target = torch.device(device)
    tensors = [*module.parameters(), *module.buffers()]
    here = tensors[0].device if tensors else target
    if here.type == target.type and (target.index is None or here.index == target.index):
        return module
    return copy.deepcopy(module).to(target).eval()


class SubnetOptions(BaseModel):
    """Options of every model that runs the subnet: the input it is fed."""

    model_config = ConfigDict(extra="forbid")
    input_shape: tuple[PositiveInt, ...] | None = Field(
        None,
        min_length=1,
        description="one sample's shape, e.g. [3, 32, 32]; used when the space has no "
        "input_shape(arch)",
    )
    input_dtype: InputDtype = Field("float32", description="dtype of the example input")
    memory_format: Literal["channels_last", "contiguous"] = Field(
        "channels_last",
        description="layout of image (4-D) inputs; channels-last is what fast CPU and GPU "
        "inference uses (depthwise convolutions are several times slower without it)",
    )


class RuntimeOptions(SubnetOptions):
    """Options of the models that run inference on a device at a batch size."""

    batch_size: PositiveInt = Field(1, description="samples per forward")
    device: str = Field(
        "auto", description='"auto" (the trial\'s device), "cpu", "cuda" or "cuda:N"'
    )

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not _DEVICE_PATTERN.match(value):
            raise ValueError(f'device must be "auto", "cpu", "cuda" or "cuda:N", got {value!r}')
        return value


class SubnetHardware(Hardware):
    """Base of cost models that measure the static subnet of an arch.

    Subclasses set ``Options`` (a :class:`SubnetOptions` subclass) and ``METRICS`` and
    implement :meth:`measure_subnet`; ``self.config`` is the validated options model.
    """

    Options: ClassVar[type[SubnetOptions]] = SubnetOptions
    METRICS: ClassVar[Mapping[str, Metric]] = {}

    def __init__(self, space: SearchSpace, **options: Any):
        config = self.Options.model_validate(options)
        super().__init__(space, **config.model_dump())
        self.config = config
        self.metrics = dict(self.METRICS)

    def measure(self, arch: Arch, subnet: Any, context: EvalContext) -> dict[str, float]:
        """Measure ``subnet`` (the static model of ``arch``); ``None`` is an error."""
        if subnet is None:
            raise ValueError(
                f"{type(self).__name__} measures the model built for an arch, but got none: "
                f"{type(self.space).__name__} has no supernet to extract subnets from "
                "(a tabular space needs a table-backed hardware model)"
            )
        if not isinstance(subnet, nn.Module):
            raise TypeError(
                f"{type(self).__name__} expects the subnet as an nn.Module, "
                f"got {type(subnet).__name__}"
            )
        return self.measure_subnet(arch, subnet, context)

    @abstractmethod
    def measure_subnet(
        self, arch: Arch, subnet: nn.Module, context: EvalContext
    ) -> dict[str, float]:
        """Every metric in ``self.metrics`` for ``subnet``, the static model of ``arch``."""

    def input_for(
        self, arch: Arch, context: EvalContext, *, batch_size: int, device: str
    ) -> torch.Tensor:
        """The example input batch of ``arch`` on ``device``."""
        shape = input_shape_for(self.space, arch, self.config.input_shape, task=context.task)
        x = example_input(shape, batch_size, self.config.input_dtype, device)
        if x.ndim == 4 and self.config.memory_format == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        return x
