"""Peak memory of one inference (``hw.memory``).

The figure is ``weights + input + peak of live activations`` for one forward at the
configured batch size, where *weights* are the bytes of the model's parameters and buffers
and *input* the example batch. The activation peak is measured one of two ways:

- ``liveness`` (the default on CPU): every tensor an aten operator returns during the
  forward is recorded (a :class:`~torch.utils._python_dispatch.TorchDispatchMode`) with its
  storage's bytes, and released when the last Python tensor on that storage dies; the peak
  of the running sum is exact for what the operators hand back (views and in-place results
  count once, parameters and the input are not activations). Scratch buffers that an
  operator frees before returning (e.g. convolution workspaces) are not seen.
- ``allocator`` (the default on CUDA): ``torch.cuda.max_memory_allocated`` during the
  forward minus what was allocated before it; this includes workspaces and the caching
  allocator's rounding to 512-byte blocks.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from nasforge import Arch, EvalContext, Metric

from .base import RuntimeOptions, SubnetHardware, module_on, resolve_device

MemoryMethod = Literal["auto", "liveness", "allocator"]


@dataclass(frozen=True)
class MemoryPeak:
    """The parts of one inference's peak memory, in bytes."""

    weights_bytes: int
    input_bytes: int
    activations_bytes: int

    @property
    def total_bytes(self) -> int:
        """Weights, input and the activation peak together."""
        return self.weights_bytes + self.input_bytes + self.activations_bytes


def _storage_key(t: torch.Tensor) -> tuple[str, int]:
    return str(t.device), t.untyped_storage().data_ptr()


def tensor_bytes(tensors: Any) -> int:
    """Bytes of the distinct storages behind the tensors in ``tensors`` (any pytree)."""
    seen: dict[tuple[str, int], int] = {}
    for t in tree_leaves(tensors):
        if isinstance(t, torch.Tensor):
            seen[_storage_key(t)] = t.untyped_storage().nbytes()
    return sum(seen.values())


class _ActivationLiveness(TorchDispatchMode):
    """Tracks the bytes of tensors that operators return, live until their last Python
    reference dies, and the peak of their sum."""

    def __init__(self, static: set[tuple[str, int]]):
        super().__init__()
        self.static = static
        self.live: dict[tuple[str, int], list[int]] = {}  # key -> [bytes, references]
        self.current = 0
        self.peak = 0

    def _release(self, key: tuple[str, int]) -> None:
        entry = self.live.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del self.live[key]
            self.current -= entry[0]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = (str(t.device), storage.data_ptr())
            if storage.nbytes() == 0 or key in self.static:
                continue
            entry = self.live.get(key)
            if entry is None:
                self.live[key] = [storage.nbytes(), 1]
                self.current += storage.nbytes()
                self.peak = max(self.peak, self.current)
            else:
                entry[1] += 1
            weakref.finalize(t, self._release, key)
        return out


def activation_peak_liveness(module: nn.Module, inputs: Any) -> int:
    """Peak bytes of live activations during ``module(inputs)`` (see module doc)."""
    static = {
        _storage_key(t)
        for t in (*module.parameters(), *module.buffers(), *tree_leaves(inputs))
        if isinstance(t, torch.Tensor)
    }
    tracker = _ActivationLiveness(static)
    with torch.inference_mode(), tracker:
        out = module(inputs)
    del out
    return tracker.peak


def activation_peak_allocator(module: nn.Module, inputs: Any) -> int:
    """Peak bytes the CUDA caching allocator handed out during ``module(inputs)`` beyond
    what was allocated before it."""
    devices = {t.device for t in tree_leaves(inputs) if isinstance(t, torch.Tensor)}
    devices = {d for d in devices if d.type == "cuda"}
    if len(devices) != 1:
        raise ValueError("the allocator method needs the input on exactly one CUDA device")
    (device,) = devices
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode():
        out = module(inputs)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    del out
    return peak


def peak_memory(module: nn.Module, inputs: Any, method: MemoryMethod = "auto") -> MemoryPeak:
    """Weights, input and activation-peak bytes of one forward ``module(inputs)``.

    ``auto`` picks ``allocator`` when the input is on a CUDA device, else ``liveness``.
    """
    on_cuda = any(
        isinstance(t, torch.Tensor) and t.device.type == "cuda" for t in tree_leaves(inputs)
    )
    if method == "auto":
        method = "allocator" if on_cuda else "liveness"
    if method == "allocator":
        if not on_cuda:
            raise ValueError("memory method 'allocator' measures CUDA devices only; use 'liveness'")
        activations = activation_peak_allocator(module, inputs)
    elif method == "liveness":
        activations = activation_peak_liveness(module, inputs)
    else:
        raise ValueError(f"unknown memory method {method!r} (auto, liveness, allocator)")
    weights = tensor_bytes([*module.parameters(), *module.buffers()])
    return MemoryPeak(weights, tensor_bytes(inputs), activations)


class MemoryOptions(RuntimeOptions):
    """How peak memory is measured."""

    method: MemoryMethod = Field(
        "auto", description="auto: allocator statistics on CUDA, tensor liveness on CPU"
    )


class MemoryModel(SubnetHardware):
    """Peak memory of one inference: weights + input + peak of live activations."""

    Options = MemoryOptions
    config: MemoryOptions
    METRICS = {
        "peak_memory_mb": Metric(
            "peak_memory_mb",
            "MiB",
            "minimize",
            "peak memory of one inference: weights + input + live activations (MiB)",
        )
    }

    def measure_subnet(self, arch: Arch, subnet: nn.Module, context: EvalContext):
        """``peak_memory_mb`` of one forward of ``subnet`` at the configured batch size."""
        device = resolve_device(self.config.device, context)
        model = module_on(subnet, device)
        x = self.input_for(arch, context, batch_size=self.config.batch_size, device=device)
        peak = peak_memory(model, x, self.config.method)
        return {"peak_memory_mb": peak.total_bytes / 2**20}
