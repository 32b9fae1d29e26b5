"""Baselines beside the front: reference methods an estimator scores on its own evaluation.

An estimator that implements :class:`~nasforge.sdk.Baselines` (speaker verification's
``tdnn.eer``: mean-MFCC scoring and a pretrained encoder) is asked once per run directory;
the rows are kept in ``baselines.json`` with a key of the experiment's ``space``, ``task``
and ``estimators`` sections, so an edited experiment measures them again and a report
rebuilt later (``nasforge report``) costs nothing. A baseline that raises is reported
(:attr:`MeasuredBaselines.errors`) and not kept, so the next report tries again; the
report itself is written either way.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .engine.weights import save_json_atomic
from .sdk import Baselines, EvalContext

if TYPE_CHECKING:
    from .plan import Plan

BASELINES_FILE = "baselines.json"


@dataclass(frozen=True)
class MeasuredBaselines:
    """The baselines of a run: ``rows`` as ``pareto.json`` lists them (``name``,
    ``estimator``, ``note``, ``metrics``) and one message per estimator that failed."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _key(plan: Plan) -> str:
    experiment = plan.to_json()
    sections = {name: experiment.get(name) for name in ("space", "task", "estimators")}
    return hashlib.sha256(json.dumps(sections, sort_keys=True).encode()).hexdigest()[:16]


def _cached(path: Path, key: str) -> list[dict[str, Any]] | None:
    try:
        data = json.loads(path.read_text())
        return list(data["baselines"]) if data["key"] == key else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def measure_baselines(plan: Plan, run_dir: str | Path) -> MeasuredBaselines:
    """The baselines of the plan's estimators, from ``run_dir/baselines.json`` when it was
    made for this experiment, else measured (on the driver) and kept there."""
    providers = [
        (spec.name, estimator)
        for spec, estimator in zip(plan.experiment.estimators, plan.estimators, strict=True)
        if isinstance(estimator, Baselines)
    ]
    if not providers:
        return MeasuredBaselines()
    run_dir = Path(run_dir)
    path, key = run_dir / BASELINES_FILE, _key(plan)
    cached = _cached(path, key)
    if cached is not None:
        return MeasuredBaselines(cached)
    context = EvalContext(run_dir=run_dir, task=plan.task)
    rows, errors = [], []
    for name, estimator in providers:
        try:
            for baseline in estimator.baselines(context):
                metrics = {k: float(v) for k, v in baseline.metrics.items()}
                if not all(math.isfinite(v) for v in metrics.values()):
                    raise ValueError(f"baseline {baseline.name!r} has a non-finite metric")
                rows.append(
                    {
                        "name": baseline.name,
                        "estimator": name,
                        "note": baseline.note,
                        "metrics": metrics,
                    }
                )
        except Exception as exc:  # a plugin's failure costs its baselines, not the report
            errors.append(f"estimator '{name}': baselines failed: {type(exc).__name__}: {exc}")
    if not errors:
        save_json_atomic({"key": key, "baselines": rows}, path)
    return MeasuredBaselines(rows, errors)
