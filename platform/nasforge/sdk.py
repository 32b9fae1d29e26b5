"""The plugin SDK: the types a plugin implements and the context the core hands them.

A plugin registers *factories* (usually the classes below) under a name through the hooks
in :mod:`nasforge.hookspecs`. Every component follows one constructor convention
(:class:`Configurable`): the core builds it with keyword arguments only, its validated
``options`` plus what it is built for, named by what it is — ``space=`` for estimators and
hardware models, ``seed=`` for predictors, nothing more for spaces, tasks, trainers and
strategies. A factory that declares a pydantic ``Options`` model gets its options validated
against it, so a typo in ``options:`` is reported with its YAML path before any work starts.

Construction must be cheap: the core builds every component on the driver to validate an
experiment. Heavy work (loading tables, weights) belongs in :meth:`Component.setup`, which
runs once per Ray worker process and is cached there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np

from .space import Arch, SearchSpace

if TYPE_CHECKING:
    import optuna
    import torch
    from pydantic import BaseModel
    from torch import nn

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
    supernet: Supernet | None = None
    """The trained :class:`Supernet` (an ``nn.Module`` on ``device``, weights loaded once per
    worker) when the experiment trains one, else ``None``."""
    task: Task | None = None
    """The experiment's :class:`Task` (its data), set up once per worker, else ``None``."""


class Configurable:
    """The constructor convention every component shares.

    ``Cls(**options)``: ``options`` are the experiment's ``options:`` for the component;
    when the class declares a pydantic ``Options`` model they are validated against it (the
    core does so first, naming the YAML path; a component built directly, in a test or a
    notebook, is checked here the same way: pydantic's ``ValidationError`` names the field)
    and ``self.options`` holds them as a plain dict with the defaults filled in. Subclasses
    that are built *for* something take it as one more keyword: ``space`` (estimators,
    hardware models), ``seed`` (predictors).
    """

    Options: ClassVar[type[BaseModel] | None] = None

    def __init__(self, **options: Any):
        self.options: dict[str, Any] = self.validate_options(options)

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` checked against ``Options`` (when declared), defaults filled in."""
        if cls.Options is None:
            return dict(options)
        return cls.Options.model_validate(dict(options)).model_dump()


class Component(Configurable):
    """Shared base of estimators and hardware models, built as ``Cls(space=..., **options)``.

    Subclasses set ``metrics`` (in ``__init__`` when they depend on options) and may narrow
    ``space_types`` to the space classes they understand; an experiment pairing them with
    another space is rejected at validation time. ``requires_supernet`` marks components
    that read trained supernet weights.
    """

    space_types: ClassVar[tuple[type[SearchSpace], ...]] = ()
    requires_supernet: ClassVar[bool] = False
    requires_task: ClassVar[bool] = False

    def __init__(self, space: SearchSpace, **options: Any):
        super().__init__(**options)
        self.space = space
        self.metrics: Mapping[str, Metric] = {}

    def setup(self, context: EvalContext) -> None:
        """Load what evaluation needs; called once per worker process before first use."""


class Estimator(Component, ABC):
    """Quality metrics of an arch: weight-sharing accuracy, perplexity, a table look-up…"""

    @abstractmethod
    def evaluate(self, arch: Arch, context: EvalContext) -> dict[str, float]:
        """Return every metric in ``self.metrics`` for ``arch`` (already validated).

        Raise to mark the trial failed: the message is stored on the trial and the search
        goes on. With a supernet, :meth:`prepare` has run for ``arch`` just before.
        """

    def prepare(self, arch: Arch, context: EvalContext) -> None:
        """Make ``context.supernet`` (already ``set_active(arch)``) ready to run ``arch``.

        Called before :meth:`evaluate` and before the engine extracts a subnet for hardware
        models or export, e.g. to re-calibrate batch-norm statistics for the active subnet.
        The default does nothing.
        """

    def evaluate_subnet(
        self, subnet: Callable[[torch.Tensor], torch.Tensor], arch: Arch, context: EvalContext
    ) -> dict[str, float]:
        """Score a static (extracted or exported) subnet the way :meth:`evaluate` scores the
        supernet; used to check that an export reproduces the trial. Optional."""
        raise NotImplementedError(f"{type(self).__name__} cannot score a static subnet")


class Hardware(Component, ABC):
    """Cost metrics of an arch on a target: MACs, parameters, latency, memory…

    ``free = True`` declares the metrics cheap, exact and computable without a trained
    supernet (``measure(arch, None, context)`` works on the driver): strategies that use
    free metrics then rank candidate archs by them without evaluating those archs.
    """

    free: ClassVar[bool] = False

    @abstractmethod
    def measure(
        self, arch: Arch, subnet: nn.Module | None, context: EvalContext
    ) -> dict[str, float]:
        """Return every metric in ``self.metrics``. ``subnet`` is the extracted static
        model when the space has a supernet, else ``None`` (tabular spaces)."""


@runtime_checkable
class Tabular(Protocol):
    """An estimator or hardware model whose every answer is a row of a table it can list.

    ``table(context)`` is called once, after ``setup(context)``, and yields every arch the
    table measures (each inside the space; one per canonical class is enough) with the
    component's metrics for it, exactly what ``evaluate``/``measure`` would return.
    """

    def table(self, context: EvalContext) -> Iterable[tuple[Arch, Mapping[str, float]]]: ...


@dataclass(frozen=True)
class Baseline:
    """A reference method outside the search space, scored on the experiment's own
    evaluation data: what the front has to beat.

    ``metrics`` holds the estimator's metrics for it (the same names, units and trials as
    the trials' values) and, where the baseline knows them, cost metrics under the
    experiment's metric names (``macs_m``, ``params_m``); ``note`` says where it comes from
    (a pretrained model's name, a recipe).
    """

    name: str
    metrics: Mapping[str, float]
    note: str = ""


@runtime_checkable
class Baselines(Protocol):
    """An estimator that scores reference methods on its own evaluation: the report shows
    them beside the Pareto front (``pareto.json``, ``pareto.png``, ``nasforge report``).

    ``baselines(context)`` runs once per run directory, on the driver, with
    ``context.task`` set and no supernet (``setup`` is not called for it); the core keeps
    the result in ``baselines.json``. If it raises, the report says so and is written
    without baselines.
    """

    def baselines(self, context: EvalContext) -> Sequence[Baseline]: ...


class Strategy(Configurable, ABC):
    """A search algorithm: builds the Optuna sampler that proposes archs.

    The engine records each finished trial's constraint values with
    ``Trial.set_constraint`` (``<= 0`` feasible), where Optuna's samplers read them. The
    sampler lives in the search driver only and is never pickled: it may hold locks, open
    files or connections (Ray Tune gets plain counts; resume rebuilds from the study).
    """

    multi_objective: ClassVar[bool] = True
    uses_free_metrics: ClassVar[bool] = False
    """When ``True``, ``sampler`` is also given ``free_metrics=``: a
    :class:`nasforge.free_metrics.FreeMetrics` (``free(arch)`` -> the free hardware models'
    metrics, or ``None``), built by :func:`nasforge.free_metrics.build_sampler`."""

    @abstractmethod
    def sampler(
        self,
        space: SearchSpace,
        objectives: Sequence[Objective],
        seed: int | None,
    ) -> optuna.samplers.BaseSampler:
        """Return a fresh sampler; called once per search run (samplers are not persisted)."""


class Predictor(Configurable, ABC):
    """A learned model of one metric over encoded archs (rows of ``SearchSpace.encode``).

    Registered through ``register_predictors`` and built as ``factory(seed=None, **options)``:
    options are validated against ``Options`` here, so a bad one raises pydantic's
    ``ValidationError`` (a :class:`ValueError`) naming the field. ``seed`` makes fitting
    reproducible; ``None`` leaves it to fresh randomness. Strategies fit one predictor per
    objective on the archs evaluated so far and rank many candidates with it, so ``fit`` on a
    few hundred rows and ``predict`` on thousands must be fast. A predictor with
    ``has_uncertainty`` also returns a standard deviation per prediction.
    """

    has_uncertainty: ClassVar[bool] = False

    def __init__(self, *, seed: int | None = None, **options: Any):
        super().__init__(**options)
        self.seed = seed

    @abstractmethod
    def fit(self, X: np.ndarray, y: np.ndarray) -> Predictor:
        """Learn ``y`` (shape ``(n,)``) from ``X`` (shape ``(n, width)``); return ``self``.

        Refitting replaces what an earlier fit learned.
        """

    @abstractmethod
    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted metric for each row of ``X`` (shape ``(m,)``, float64), in ``y``'s units."""

    def predict_with_std(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)`` per row of ``X``: the prediction and its standard deviation.

        Only predictors with ``has_uncertainty`` implement it; the default raises
        :class:`NotImplementedError`.
        """
        raise NotImplementedError(f"{type(self).__name__} does not estimate its uncertainty")


class Supernet(ABC):
    """A weight-sharing network (mix into an ``nn.Module``).

    Registered with its space (``register(name, Space, supernet=factory)``) and built as
    ``factory(space)``. ``set_active(arch)`` selects the subnet the next forward runs;
    ``extract(arch)`` returns a standalone static module with copied weights whose outputs
    match the supernet with that arch active (the conformance suite checks it to 1e-5).
    """

    @abstractmethod
    def set_active(self, arch: Arch) -> None:
        """Select the subnet that the next forward passes run (weights are sliced in place)."""

    @abstractmethod
    def extract(self, arch: Arch) -> nn.Module:
        """A standalone static ``nn.Module`` of ``arch`` with copied weights."""


class SubnetFormats(ABC):
    """Mixed into the static subnet :meth:`Supernet.extract` returns when it writes formats
    of its own beyond TorchScript and ONNX (e.g. a Hugging Face directory).

    ``nasforge export --trial N --format NAME`` accepts any ``NAME`` in
    :attr:`export_formats`, calls :meth:`save_export`, then scores what :meth:`load_export`
    reads back with the experiment's estimators, so an export is checked to reproduce the
    trial, not only to load.
    """

    #: format name -> one line saying what it writes (shown when a format is refused)
    export_formats: ClassVar[dict[str, str]] = {}

    @abstractmethod
    def save_export(self, out_dir: Path, fmt: str) -> Path:
        """Write this subnet as ``fmt`` under ``out_dir`` and return the file or folder
        written. Write atomically (a partial name, then a rename), so that a failed export
        leaves nothing that looks finished."""

    @abstractmethod
    def load_export(self, path: Path, fmt: str) -> Callable[[torch.Tensor], torch.Tensor]:
        """What :meth:`save_export` wrote at ``path``, loaded back without this object, as a
        function from an input batch to logits (what ``Estimator.evaluate_subnet`` scores)."""


class Task(Configurable, ABC):
    """A labelled dataset with splits fixed by a seed, read by trainers and estimators.

    ``input_shape`` is the shape of one sample (``(C, H, W)`` or ``(C, L)``) and
    ``num_classes`` the number of labels; both are set in ``__init__`` (cheap, so the core
    can check a task against a space when it validates an experiment). Loading or
    generating the data happens in :meth:`arrays`, cached per process.
    """

    input_shape: tuple[int, ...] = ()
    num_classes: int = 0

    @abstractmethod
    def arrays(self, split: Literal["train", "val", "calib"]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` tensors of a split: float32 samples and int64 labels.

        ``train`` is what trainers learn from, ``val`` what estimators score on, ``calib``
        a fixed subset of the training data (no augmentation) for batch-norm calibration.
        The same options always give the same splits.
        """

    def augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment a training batch (a tensor) with randomness from ``generator``
        (a ``torch.Generator``); the default returns ``x`` unchanged."""
        return x


@dataclass
class TrainContext:
    """What a trainer gets on each training worker (one per Ray Train rank).

    ``resume`` is the state passed to the last :attr:`checkpoint` call of an interrupted
    run (loaded with ``weights_only=True``), else ``None``. ``checkpoint(state, metrics)``
    must be called by every rank at the end of each epoch: rank 0's ``state`` (tensors,
    numbers, strings, lists and dicts of them) is written atomically and the metrics
    reported. ``report(metrics)`` reports progress without a checkpoint.
    ``sync_gradients(parameters)`` averages gradients over ranks (no-op on one worker).
    ``seed`` is the experiment's seed: derive per-step randomness from ``(seed, step)``
    so that every rank samples the same subnets.

    ``arch`` set means *standalone training* (``nasforge fidelity``): train that one arch
    alone, from the weights as built, with the trainer's own recipe and sampling switched
    off (no other subnets, no distillation from them), for ``epochs`` epochs when set, else
    the recipe's own total. Only trainers that set :attr:`Trainer.trains_standalone` get it.
    """

    rank: int
    world_size: int
    device: str
    seed: int
    resume: dict[str, Any] | None
    checkpoint: Callable[[dict[str, Any], Mapping[str, float]], None]
    report: Callable[[Mapping[str, float]], None]
    sync_gradients: Callable[[Iterable[torch.nn.Parameter]], None]
    run_dir: Path | None = None
    arch: dict[str, Any] | None = None
    epochs: int | None = None


class Trainer(Configurable, ABC):
    """A supernet training procedure (sandwich rule, progressive shrinking, LoRA…).

    ``num_workers`` (how many Ray Train workers) and ``use_gpu`` are read from the
    trainer's options by the engine when present.
    """

    #: ``True`` when :meth:`fit` honours :attr:`TrainContext.arch` (train one arch alone):
    #: what ``nasforge fidelity`` needs to compare weight sharing with standalone training
    trains_standalone: bool = False

    def check_space(self, space: SearchSpace) -> None:
        """Raise ``ValueError`` (naming the option) when this trainer's options do not fit
        ``space`` — e.g. a phase that samples a group the space lacks. Called when the
        experiment is validated, so the error comes before any work; the default accepts."""

    def standalone_recipe(self, space: SearchSpace) -> dict[str, Any]:
        """What shapes this trainer's standalone training of an arch (plain JSON data):
        fidelity checks of supernets trained with different recipes share their standalone
        runs when this is equal. The default, every option, never shares wrongly."""
        return dict(self.options)

    @abstractmethod
    def fit(self, supernet: Supernet, task: Task, context: TrainContext) -> None:
        """Train ``supernet`` on ``task`` on this rank, resuming from ``context.resume``
        when it is set and calling ``context.checkpoint`` at the end of every epoch. The
        engine keeps the supernet's weights of the last checkpoint as the trained ones."""
