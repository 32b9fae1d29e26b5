"""Free metrics: hardware costs a strategy may compute for archs it has not evaluated.

A hardware model whose class sets ``free = True`` measures an arch cheaply, exactly and
without a trained supernet (a table look-up, a latency look-up table, a parameter count
from the arch alone). A strategy whose class sets ``uses_free_metrics = True`` receives them
as a :class:`FreeMetrics` and can rank thousands of candidate archs by their true cost,
predicting only what needs an evaluation (accuracy). The experiment's constraints on free
metrics (``weight_mb <= 134.5``) come with them: such a strategy knows, before evaluating an
arch, whether it fits the budget (:meth:`FreeMetrics.feasible`). :func:`build_sampler` is
the one place where samplers are built, by the engine and by ``nasforge bench-search`` alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from .errors import ArchError
from .sdk import EvalContext, Objective, Strategy
from .space import SearchSpace

if TYPE_CHECKING:
    from .experiment import Constraint
    from .plan import Plan


class FreeMetrics:
    """``free(arch)`` -> ``{metric: value}`` from the plan's free hardware models, or
    ``None`` when the arch cannot be measured (for instance no table entry). Results are
    cached by the arch's canonical key.

    ``constraints`` are the plan's constraints on these metrics: exact before any
    evaluation, so :meth:`feasible` tells a strategy which candidates fit the budget.
    """

    def __init__(self, plan: Plan, run_dir: Path):
        self.space = plan.space
        self.components = [hw for hw in plan.hardware if getattr(hw, "free", False)]
        self.metrics: tuple[str, ...] = tuple(m for hw in self.components for m in hw.metrics)
        self.constraints: tuple[Constraint, ...] = tuple(
            c for c in plan.constraints if c.metric in self.metrics
        )
        self._contexts = [EvalContext(run_dir=Path(run_dir)) for _ in self.components]
        self._ready = False
        self._cache: dict[str, dict[str, float] | None] = {}

    def __bool__(self) -> bool:
        return bool(self.metrics)

    def __call__(self, arch: Mapping[str, Any], key: str | None = None) -> dict[str, float] | None:
        """The free metrics of ``arch`` (``key``: its canonical key, if already known)."""
        key = key or self.space.key(arch)
        if key in self._cache:
            return self._cache[key]
        if not self._ready:
            for hw, context in zip(self.components, self._contexts, strict=True):
                hw.setup(context)
            self._ready = True
        values: dict[str, float] | None = {}
        try:
            for hw, context in zip(self.components, self._contexts, strict=True):
                values.update(hw.measure(dict(arch), None, context))
        except ArchError:
            values = None
        if values is not None and not all(math.isfinite(float(v)) for v in values.values()):
            values = None
        self._cache[key] = values
        return values

    def feasible(self, values: Mapping[str, float]) -> bool:
        """Whether free metrics ``values`` (a result of calling this object) satisfy every
        constraint on free metrics."""
        return all(c.violation(values[c.metric]) <= 0 for c in self.constraints)


def build_sampler(
    strategy: Strategy,
    space: SearchSpace,
    objectives: Sequence[Objective],
    seed: int | None,
    free_metrics: FreeMetrics | None,
) -> optuna.samplers.BaseSampler:
    """The strategy's sampler, given ``free_metrics`` when its class asks for them: the one
    place samplers are built (the search driver, ``nasforge bench-search``)."""
    if getattr(strategy, "uses_free_metrics", False):
        return strategy.sampler(space, objectives, seed, free_metrics=free_metrics)
    return strategy.sampler(space, objectives, seed)
