"""Measured inference latency (``hw.latency``) and the one timing loop latency models share.

:func:`stage_times_ms` times ``repeats`` runs of a chain of stages (one stage: a forward)
after ``warmup`` untimed ones, under ``torch.inference_mode()``, with
``torch.set_num_threads(threads)`` for the duration only (restored after) and the garbage
collector paused. On CUDA the device is synchronised before the clock starts and after
each stage, so each figure is the whole computation, not its launch.
:class:`LatencyModel` (``hw.latency``) reports the median of :func:`forward_times_ms`.
"""

from __future__ import annotations

import contextlib
import gc
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import torch
from pydantic import Field, NonNegativeInt, PositiveInt
from torch import nn
from torch.utils._pytree import tree_leaves

from nasforge import Arch, EvalContext, Metric

from .base import RuntimeOptions, SubnetHardware, module_on, resolve_device

Statistic = Literal["median", "min"]


class TimingOptions(RuntimeOptions):
    """How a latency is measured: warm-up and timed forwards, CPU threads."""

    warmup: NonNegativeInt = Field(10, description="untimed forwards before timing")
    repeats: PositiveInt = Field(50, description="timed forwards; the median is reported")
    threads: PositiveInt = Field(1, description="torch CPU threads while timing")
    statistic: Statistic = Field(
        "median",
        description="what summarises the timed forwards: the median, or the minimum (robust "
        "on shared machines, where other processes only ever add time)",
    )


def summarise(times: Sequence[float], statistic: Statistic = "median") -> float:
    """The median or the minimum of timings."""
    return min(times) if statistic == "min" else statistics.median(times)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)``; the previous count is
    restored afterwards, also when the block raises."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _cuda_devices(inputs: Any, stages: Sequence[Any]) -> list[torch.device]:
    tensors = [t for t in tree_leaves(inputs) if isinstance(t, torch.Tensor)]
    for stage in stages:
        if isinstance(stage, nn.Module):
            tensors += list(stage.parameters())
    return sorted({t.device for t in tensors if t.device.type == "cuda"}, key=str)


def stage_times_ms(
    stages: Sequence[Callable[[Any], Any]],
    inputs: Any,
    *,
    warmup: int = 10,
    repeats: int = 50,
    threads: int = 1,
) -> list[list[float]]:
    """The timing loop: run the chain ``x = stage(x)`` over ``stages`` from ``inputs``,
    ``warmup`` times untimed, then ``repeats`` times reading the clock between stages.

    Returns ``times[r][i]``, the milliseconds of stage ``i`` in timed repeat ``r``. One
    stage is a plain forward; several time each unit of a model in the context of the
    whole forward (caches and allocator in the state the real forward leaves them), which
    is how look-up tables measure their units.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    if not stages:
        raise ValueError("nothing to time: no stages")
    devices = _cuda_devices(inputs, stages)

    def sync() -> None:
        for device in devices:
            torch.cuda.synchronize(device)

    clock = time.perf_counter
    times: list[list[float]] = []
    with torch_threads(threads), torch.inference_mode(), _gc_paused():
        for repeat in range(warmup + repeats):
            x = inputs
            row = []
            sync()
            start = clock()
            for stage in stages:
                x = stage(x)
                sync()
                end = clock()
                row.append((end - start) * 1000.0)
                start = end
            del x
            if repeat >= warmup:
                times.append(row)
    return times


def forward_times_ms(
    module: Callable[[Any], Any],
    inputs: Any,
    *,
    warmup: int = 10,
    repeats: int = 50,
    threads: int = 1,
) -> list[float]:
    """Wall-clock milliseconds of each of ``repeats`` forwards ``module(inputs)``, after
    ``warmup`` untimed ones, on the device the module and inputs are on."""
    times = stage_times_ms([module], inputs, warmup=warmup, repeats=repeats, threads=threads)
    return [row[0] for row in times]


def forward_ms(
    module: Callable[[Any], Any],
    inputs: Any,
    *,
    warmup: int = 10,
    repeats: int = 50,
    threads: int = 1,
    statistic: Statistic = "median",
) -> float:
    """The median (or minimum) of :func:`forward_times_ms`: the latency every model reports."""
    times = forward_times_ms(module, inputs, warmup=warmup, repeats=repeats, threads=threads)
    return summarise(times, statistic)


class LatencyModel(SubnetHardware):
    """Measured latency: median of timed forwards after warm-up, on the trial's device.

    The subnet runs where ``device`` says (``auto``: the trial's device, so the device the
    engine records on the trial is the one timed); a subnet elsewhere is copied there.
    """

    Options = TimingOptions
    config: TimingOptions
    METRICS = {
        "latency_ms": Metric(
            "latency_ms", "ms", "minimize", "median inference latency of the built subnet"
        )
    }

    def measure_subnet(self, arch: Arch, subnet: nn.Module, context: EvalContext):
        """``latency_ms`` of ``subnet`` at the configured batch size."""
        return {"latency_ms": self.latency_ms(arch, subnet, context)}

    def latency_ms(self, arch: Arch, subnet: nn.Module, context: EvalContext) -> float:
        """The median forward time of ``subnet`` in milliseconds."""
        device = resolve_device(self.config.device, context)
        model = module_on(subnet, device)
        x = self.input_for(arch, context, batch_size=self.config.batch_size, device=device)
        return forward_ms(
            model,
            x,
            warmup=self.config.warmup,
            repeats=self.config.repeats,
            threads=self.config.threads,
            statistic=self.config.statistic,
        )
