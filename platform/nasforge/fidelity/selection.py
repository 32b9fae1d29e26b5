"""Which archs a fidelity check trains alone.

- ``spread`` (default): the largest and smallest archs, up to a quarter of the K from the
  run's Pareto front (spread along it), and the rest spread over the cost axis and the
  space's dimensions: a seeded pool of sampled archs is cut into equal-count bins of the
  first cost objective, and from each bin the arch farthest (in the space's encoding) from
  those already chosen is taken.
- ``pareto``: the run's Pareto front, thinned evenly along the first objective to K.
- a JSON file: a list of archs (or ``{"archs": [...]}``), each validated against the space.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArchError, NasforgeError, StudyError
from ..plan import Plan
from ..sdk import EvalContext

#: sampled archs per chosen one in the ``spread`` pool
POOL_PER_ARCH = 8


def quality_metrics(plan: Plan) -> list[tuple[str, bool]]:
    """``(metric, maximize)`` of the quality metrics a fidelity check compares: the
    objectives that estimators produce, else every estimator metric."""
    produced = {name: m for est in plan.estimators for name, m in est.metrics.items()}
    chosen = [
        (o.metric, o.direction == "maximize") for o in plan.objectives if o.metric in produced
    ]
    return chosen or [(name, m.direction == "maximize") for name, m in produced.items()]


def cost_metric(plan: Plan) -> str | None:
    """The first objective a hardware model measures (the cost axis), if any."""
    measured = {name for hw in plan.hardware for name in hw.metrics}
    return next((o.metric for o in plan.objectives if o.metric in measured), None)


def cost_function(plan: Plan, run_dir: Path) -> Callable[[dict[str, Any]], float] | None:
    """The cost axis as a function of an arch: the hardware model of :func:`cost_metric`
    measuring the arch (on an untrained supernet's extracted subnet when it needs one)."""
    metric = cost_metric(plan)
    if metric is None:
        return None
    hardware = next(hw for hw in plan.hardware if metric in hw.metrics)
    supernet = None
    if not getattr(hardware, "free", False) and plan.supernet_factory is not None:
        supernet = plan.build_supernet().eval()
    context = EvalContext(run_dir=Path(run_dir), supernet=supernet, task=plan.task)
    hardware.setup(context)

    def cost(arch: dict[str, Any]) -> float:
        subnet = supernet.extract(arch).eval() if supernet is not None else None
        return float(hardware.measure(dict(arch), subnet, context)[metric])

    return cost


def front_records(plan: Plan, run_dir: Path) -> list[dict[str, Any]]:
    """What the study recorded for each arch on the run's Pareto front (``arch`` and every
    metric), best first by the first objective; none when the run has no study yet."""
    from ..engine.study import open_study
    from ..report import front_trials

    try:
        study, _ = open_study(plan, run_dir, create=False)
    except StudyError:
        return []
    return [dict(t.user_attrs) for t in front_trials(plan, study.get_trials(deepcopy=False))]


def evenly(items: list[Any], k: int) -> list[Any]:
    """``k`` items taken evenly along a list (its ends included)."""
    if len(items) <= k:
        return list(items)
    if k == 1:
        return [items[0]]
    return [items[round(i * (len(items) - 1) / (k - 1))] for i in range(k)]


def archs_from_file(plan: Plan, path: Path) -> list[dict[str, Any]]:
    """The archs listed in a JSON file, each validated against the space."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise NasforgeError(f"{path}: cannot read a JSON list of archs ({exc})") from None
    archs = data.get("archs") if isinstance(data, dict) else data
    if not isinstance(archs, list) or not archs:
        raise NasforgeError(f"{path}: expected a non-empty list of archs (or {{'archs': [...]}})")
    out = []
    for i, arch in enumerate(archs):
        try:
            out.append(plan.space.validate(arch))
        except (ArchError, TypeError, ValueError) as exc:
            raise NasforgeError(f"{path}: archs[{i}]: {exc}") from None
    return out


def spread_archs(
    plan: Plan,
    k: int,
    *,
    front: list[dict[str, Any]],
    cost: Callable[[dict[str, Any]], float] | None,
    seed: int,
) -> list[tuple[dict[str, Any], str]]:
    """``k`` archs spread over the cost axis and the space, each with why it was chosen."""
    space = plan.space
    rng = np.random.default_rng(seed)
    chosen: dict[str, tuple[dict[str, Any], str]] = {}

    def take(arch: dict[str, Any], why: str) -> None:
        if len(chosen) < k:
            chosen.setdefault(space.key(arch), (space.canonical(arch), why))

    take(space.largest(), "largest")
    take(space.smallest(), "smallest")
    for arch in evenly(front, max(1, k // 4) if front else 0):
        take(arch, "front")
    pool: dict[str, dict[str, Any]] = {}
    for _ in range(POOL_PER_ARCH * k * 4):
        arch = space.sample(rng)
        pool.setdefault(space.key(arch), space.canonical(arch))
        if len(pool) >= POOL_PER_ARCH * k:
            break
    for key in chosen:
        pool.pop(key, None)
    candidates = list(pool.values())
    if not candidates or len(chosen) >= k:
        return list(chosen.values())
    codes = np.array([space.encode(a) for a in candidates], dtype=float)
    low, span = codes.min(axis=0), np.ptp(codes, axis=0)
    span[span == 0] = 1.0
    codes = (codes - low) / span
    taken = np.array([(space.encode(a) - low) / span for a, _ in chosen.values()], dtype=float)
    bins = k - len(chosen)
    if cost is not None:
        costs = np.array([cost(a) for a in candidates])
        order = np.argsort(costs, kind="stable")
        groups = np.array_split(order, bins)
    else:
        groups = [np.arange(len(candidates))] * bins
    used: set[int] = set()
    for group in groups:
        group = [i for i in group if i not in used]
        if not group:
            continue
        distance = np.min(
            np.linalg.norm(codes[group][:, None, :] - taken[None, :, :], axis=2), axis=1
        )
        best = group[int(np.argmax(distance))]
        used.add(best)
        taken = np.vstack([taken, codes[best]])
        take(candidates[best], "spread")
    return list(chosen.values())


def choose_archs(
    plan: Plan, run_dir: Path, k: int, source: str, seed: int
) -> list[tuple[dict[str, Any], str]]:
    """The archs of a fidelity check, each with why it was chosen (``source``: ``spread``,
    ``pareto`` or a JSON file of archs, all of which are taken)."""
    if k < 2:
        raise NasforgeError(f"--archs: a ranking needs at least 2 archs, got {k}")
    if source == "pareto":
        front = [r["arch"] for r in front_records(plan, run_dir)]
        if len(front) < 2:
            raise NasforgeError(
                f"{run_dir}: --from pareto needs a searched run with at least 2 archs on "
                f"its front (found {len(front)}); run `nasforge search` first or use --from spread"
            )
        return [(plan.space.canonical(a), "front") for a in evenly(front, k)]
    if source == "spread":
        front = [r["arch"] for r in front_records(plan, run_dir)]
        return spread_archs(plan, k, front=front, cost=cost_function(plan, run_dir), seed=seed)
    archs = archs_from_file(plan, Path(source))  # all of them: the file is the choice
    if len(archs) < 2:
        raise NasforgeError(f"{source}: a ranking needs at least 2 archs, found {len(archs)}")
    return [(a, "given") for a in archs]
