"""The Ray Tune trainable: evaluate a batch of archs on a worker and report every metric.

The experiment reaches each worker once (through the object store, via
``tune.with_parameters``); the estimators and hardware models it names are built and
``setup()`` once per worker process and cached, so reused actors pay nothing per trial.
An arch whose estimator raises is reported as failed with the error message; it does not
kill the worker or the batch.
"""

from __future__ import annotations

import math
import os
import socket
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Plan, parse_experiment, resolve
from ..sdk import Estimator, EvalContext

_evaluators: dict[str, Evaluator] = {}


@dataclass
class Evaluator:
    """A worker's built plan and the contexts its components keep between trials."""

    plan: Plan
    contexts: list[EvalContext]

    @classmethod
    def build(cls, experiment: dict[str, Any], run_dir: str) -> Evaluator:
        plan = resolve(parse_experiment(experiment))
        device, device_name = _device()
        contexts = []
        for component in (*plan.estimators, *plan.hardware):
            context = EvalContext(run_dir=Path(run_dir), device=device, device_name=device_name)
            component.setup(context)
            contexts.append(context)
        return cls(plan, contexts)

    def evaluate(self, arch: dict[str, Any], number: int | None = None) -> dict[str, Any]:
        """Every metric of ``arch`` as ``{"ok": True, "metrics": ...}`` or the error."""
        start = time.perf_counter()
        try:
            arch = self.plan.space.validate(arch)
            metrics: dict[str, float] = {}
            components = (*self.plan.estimators, *self.plan.hardware)
            for component, context in zip(components, self.contexts, strict=True):
                context.trial_number = number
                if isinstance(component, Estimator):
                    produced = component.evaluate(arch, context)
                else:
                    produced = component.measure(arch, None, context)
                metrics.update(_checked(component, produced))
            return {"ok": True, "metrics": metrics, "wall_s": time.perf_counter() - start}
        except Exception as exc:  # reported on the trial, the search goes on
            return {
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=8),
                "wall_s": time.perf_counter() - start,
            }


def _checked(component: Any, produced: Any) -> dict[str, float]:
    name = type(component).__name__
    if not isinstance(produced, dict):
        raise TypeError(f"{name} returned {type(produced).__name__}, expected a dict of metrics")
    missing = set(component.metrics) - set(produced)
    if missing:
        raise ValueError(f"{name} did not return {sorted(missing)}")
    out = {}
    for key in component.metrics:  # only declared metrics reach the record
        value = float(produced[key])
        if not math.isfinite(value):
            raise ValueError(f"{name} returned a non-finite {key}: {value}")
        out[key] = value
    return out


def _device() -> tuple[str, str]:
    """The device trials run on here: the GPU Ray assigned to this worker, else the CPU.

    torch is only consulted when a GPU is assigned or a plugin already imported it, so
    table-backed searches do not pay its import on every worker.
    """
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        try:
            import ray

            gpus = ray.get_gpu_ids() if ray.is_initialized() else []
        except Exception:
            gpus = []
        if gpus:
            import torch
    if torch is not None and torch.cuda.is_available():
        return "cuda", torch.cuda.get_device_name(torch.cuda.current_device())
    return "cpu", _cpu_name()


def _cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else the machine type."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def evaluator_for(experiment: dict[str, Any], run_dir: str) -> Evaluator:
    """This process's evaluator for ``experiment``, built on first use."""
    key = repr(sorted(experiment.items())) + run_dir
    evaluator = _evaluators.get(key)
    if evaluator is None:
        evaluator = _evaluators[key] = Evaluator.build(experiment, run_dir)
    return evaluator


def evaluate_trial(config: dict[str, Any], experiment: dict[str, Any], run_dir: str) -> None:
    """Tune function trainable: evaluate ``config["archs"]`` and report them in one result."""
    from ray import tune

    try:
        evaluator = evaluator_for(experiment, run_dir)
    except Exception as exc:  # a plugin that cannot set up fails every trial the same way
        tune.report({"fatal": f"setting up the evaluation failed: {type(exc).__name__}: {exc}"})
        return
    results = [
        evaluator.evaluate(arch, number)
        for arch, number in zip(config["archs"], config["numbers"], strict=True)
    ]
    context = evaluator.contexts[0] if evaluator.contexts else None
    tune.report(
        {
            "batch": results,
            "device": context.device_name if context else "cpu",
            "node": socket.gethostname(),
            "pid": os.getpid(),
        }
    )
