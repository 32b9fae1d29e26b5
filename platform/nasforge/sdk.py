"""The plugin SDK: the types a plugin implements and the context the core hands them.

A plugin registers *factories* (usually the classes below) under a name through the hooks
in :mod:`nasforge.hookspecs`. The core builds them from the experiment file:
``factory(space=..., **options)`` for estimators and hardware models, ``factory(**options)``
for spaces and strategies. A factory that declares a pydantic ``Options`` model gets its
options validated against it first, so a typo in ``options:`` is reported with its YAML
path before any work starts.

Construction must be cheap: the core builds every component on the driver to validate an
experiment. Heavy work (loading tables, weights) belongs in :meth:`Component.setup`, which
runs once per Ray worker process and is cached there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from .space import Arch, SearchSpace

if TYPE_CHECKING:
    import optuna
    from pydantic import BaseModel

Direction = Literal["maximize", "minimize"]


@dataclass(frozen=True)
class Metric:
    """A number an estimator or hardware model produces for an arch.

    ``unit`` labels report axes (``"ms"``, ``"%"``, ``"M"``); ``better`` is the direction in
    which the metric improves, used as the default when an objective names no direction.
    """

    name: str
    unit: str = ""
    better: Direction | None = None
    description: str = ""

    @property
    def label(self) -> str:
        """Axis label: the name with its unit, e.g. ``latency_ms [ms]``."""
        return f"{self.name} [{self.unit}]" if self.unit else self.name


@dataclass(frozen=True)
class Objective:
    """One objective of a search: a metric and the direction to push it."""

    metric: str
    direction: Direction


@dataclass
class EvalContext:
    """What the core hands an estimator or hardware model on a worker.

    ``cache`` is a dict private to the component that persists across every trial the
    worker process runs (put loaded weights or tables there); ``device`` is the torch device
    string the trial runs on and ``device_name`` a human name recorded on the trial.
    """

    run_dir: Path
    device: str = "cpu"
    device_name: str = "cpu"
    trial_number: int | None = None
    cache: dict[str, Any] = field(default_factory=dict)


class Component:
    """Shared base of estimators and hardware models.

    Subclasses set ``metrics`` (in ``__init__`` when they depend on options) and may narrow
    ``space_types`` to the space classes they understand; an experiment pairing them with
    another space is rejected at validation time. ``requires_supernet`` marks components
    that read trained supernet weights.
    """

    Options: ClassVar[type[BaseModel] | None] = None
    space_types: ClassVar[tuple[type[SearchSpace], ...]] = ()
    requires_supernet: ClassVar[bool] = False

    def __init__(self, space: SearchSpace, **options: Any):
        self.space = space
        self.options = options
        self.metrics: Mapping[str, Metric] = {}

    def setup(self, context: EvalContext) -> None:
        """Load what evaluation needs; called once per worker process before first use."""


class Estimator(Component, ABC):
    """Quality metrics of an arch: weight-sharing accuracy, perplexity, a table look-up…"""

    @abstractmethod
    def evaluate(self, arch: Arch, context: EvalContext) -> dict[str, float]:
        """Return every metric in ``self.metrics`` for ``arch`` (already validated).

        Raise to mark the trial failed: the message is stored on the trial and the search
        goes on.
        """


class Hardware(Component, ABC):
    """Cost metrics of an arch on a target: MACs, parameters, latency, memory…"""

    @abstractmethod
    def measure(self, arch: Arch, subnet: Any, context: EvalContext) -> dict[str, float]:
        """Return every metric in ``self.metrics``. ``subnet`` is the extracted static
        model when the space has a supernet, else ``None`` (tabular spaces)."""


class Strategy(ABC):
    """A search algorithm: builds the Optuna sampler that proposes archs.

    The engine records each finished trial's constraint values with
    ``Trial.set_constraint`` (``<= 0`` feasible), where Optuna's samplers read them.
    """

    Options: ClassVar[type[BaseModel] | None] = None
    multi_objective: ClassVar[bool] = True

    def __init__(self, **options: Any):
        self.options = options

    @abstractmethod
    def sampler(
        self,
        space: SearchSpace,
        objectives: Sequence[Objective],
        seed: int | None,
    ) -> optuna.samplers.BaseSampler:
        """Return a fresh sampler; called once per search run (samplers are not persisted)."""


class Supernet(ABC):
    """A weight-sharing network (mix into an ``nn.Module``).

    ``set_active(arch)`` selects the subnet the next forward runs; ``extract(arch)`` returns
    a standalone static module with copied weights whose outputs match the supernet with
    that arch active.
    """

    @abstractmethod
    def set_active(self, arch: Arch) -> None: ...

    @abstractmethod
    def extract(self, arch: Arch) -> Any: ...


@dataclass
class TrainContext:
    """What a trainer gets on each worker: its rank, where to checkpoint, how to report."""

    rank: int
    world_size: int
    checkpoint_dir: Path
    report: Callable[[Mapping[str, float]], None]


class Trainer(ABC):
    """A supernet training procedure (sandwich rule, progressive shrinking, LoRA…)."""

    Options: ClassVar[type[BaseModel] | None] = None

    def __init__(self, **options: Any):
        self.options = options

    @abstractmethod
    def fit(self, supernet: Supernet, task: Any, context: TrainContext) -> Path:
        """Train ``supernet`` on ``task`` and return the path of the final checkpoint."""
