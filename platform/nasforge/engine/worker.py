"""The Ray Tune trainable: evaluate a batch of archs on a worker and report every metric.

The experiment reaches each worker once (through the object store, via
``tune.with_parameters``); the estimators and hardware models it names are built and
``setup()`` once per worker process and cached, so reused actors pay nothing per trial.
When the experiment has a trained supernet, its weights travel once through the object
store (an ``ObjectRef`` fetched only by a process that has not loaded them yet) and the
supernet and task stay cached in the worker. Per arch: ``set_active`` → every estimator's
``prepare`` (e.g. batch-norm re-calibration) → ``evaluate`` → ``extract`` once for the
hardware models. An arch whose estimator raises is reported as failed with the error
message; it does not kill the worker or the batch.
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

from ..devices import trial_device
from ..plan import Plan
from ..sdk import Estimator, EvalContext

_evaluators: dict[str, Evaluator] = {}


@dataclass
class Evaluator:
    """A worker's built plan and the contexts its components keep between trials."""

    plan: Plan
    contexts: list[EvalContext]

    supernet: Any = None
    components: tuple[Any, ...] = ()

    @classmethod
    def build(
        cls,
        experiment: dict[str, Any],
        run_dir: str,
        weights: list[Any] | None = None,
        *,
        hardware: bool = True,
    ) -> Evaluator:
        """Resolve the experiment and set every component up; ``weights`` is ``[ref]`` to
        the supernet's state-dict bytes in the object store (or ``[bytes]``) when it has one.
        ``hardware=False`` sets up the estimators only (quality, no cost)."""
        plan = Plan.from_json(experiment)
        device, device_name = trial_device()
        supernet = None
        if weights:
            from .weights import load_state, supernet_from_state

            blob = weights[0]
            if not isinstance(blob, bytes):
                import ray

                blob = ray.get(blob)
            state = load_state(blob, "supernet weights")
            supernet = supernet_from_state(plan, state, device, "supernet weights")
        contexts = []
        components = (*plan.estimators, *(plan.hardware if hardware else ()))
        for component in components:
            context = EvalContext(
                run_dir=Path(run_dir),
                device=device,
                device_name=device_name,
                supernet=supernet,
                task=plan.task,
            )
            component.setup(context)
            contexts.append(context)
        return cls(plan, contexts, supernet, components)

    def subnet(self, arch: dict[str, Any], number: int | None = None) -> Any:
        """Activate ``arch`` in the supernet, let every estimator prepare it (batch-norm
        re-calibration…), and return the extracted static subnet in eval mode."""
        self._activate(arch, number)
        return self._extract(arch)

    def _extract(self, arch: dict[str, Any]) -> Any:
        return self.supernet.extract(arch).to(self.contexts[0].device).eval()

    def _activate(self, arch: dict[str, Any], number: int | None) -> None:
        self.supernet.set_active(arch)
        for component, context in zip(self.plan.estimators, self.contexts, strict=False):
            context.trial_number = number
            component.prepare(arch, context)

    def evaluate(self, arch: dict[str, Any], number: int | None = None) -> dict[str, Any]:
        """Every metric of ``arch`` as ``{"ok": True, "metrics": ...}`` or the error."""
        start = time.perf_counter()
        try:
            arch = self.plan.space.validate(arch)
            metrics: dict[str, float] = {}
            if self.supernet is not None:
                self._activate(arch, number)
            subnet = None
            for component, context in zip(self.components, self.contexts, strict=True):
                context.trial_number = number
                if isinstance(component, Estimator):
                    produced = component.evaluate(arch, context)
                else:
                    if subnet is None and self.supernet is not None and not component.free:
                        subnet = self._extract(arch)  # free metrics need no subnet
                    produced = component.measure(arch, subnet, context)
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


def evaluator_for(
    experiment: dict[str, Any],
    run_dir: str,
    weights: list[Any] | None = None,
    weights_digest: str | None = None,
) -> Evaluator:
    """This process's evaluator for ``experiment`` (and supernet weights ``weights_digest``),
    built on first use; the weights are fetched from the object store only then."""
    key = repr(sorted(experiment.items())) + run_dir + (weights_digest or "")
    evaluator = _evaluators.get(key)
    if evaluator is None:
        evaluator = _evaluators[key] = Evaluator.build(experiment, run_dir, weights)
    return evaluator


def evaluate_trial(
    config: dict[str, Any],
    experiment: dict[str, Any],
    run_dir: str,
    weights: list[Any] | None = None,
    weights_digest: str | None = None,
) -> None:
    """Tune function trainable: evaluate ``config["archs"]`` and report them in one result."""
    from ray import tune

    try:
        evaluator = evaluator_for(experiment, run_dir, weights, weights_digest)
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
