"""The ``nasforge_gnn`` plugin: NAS-Bench-Graph space, tabular estimator and cost model.

Registered names:

- space ``gnn.nasbench_graph`` — arch ``{"link": [0, 0, 1, 2], "ops": [4 op names]}``;
- estimator ``gnn.nasbench_graph`` — ``valid_acc`` and ``test_acc`` from the table;
- hardware ``gnn.nasbench_graph`` — ``latency_ms`` and ``params_m`` from the table.

Every lookup goes through the benchmark's canonical hash, so equivalent archs share one
table row (and one evaluation).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from nasforge import (
    ArchError,
    Categorical,
    Estimator,
    EvalContext,
    Hardware,
    Metric,
    PerLayer,
    RegisterEstimator,
    RegisterHardware,
    RegisterSpace,
    SearchSpace,
    hookimpl,
)

from . import nasbench_graph as nbg

#: registered only when ``nasforge[gnn]`` is installed (the NAS-Bench-Graph tables)
requires_extra = "gnn"


Dataset = Literal[
    "cora", "citeseer", "pubmed", "cs", "physics", "photo", "computers", "arxiv", "proteins"
]


class NasBenchGraphSpace(SearchSpace):
    """NAS-Bench-Graph macro space: 9 link patterns x 4 computing nodes' ops."""

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        dataset: Dataset = "cora"

    def __init__(self, dataset: str = "cora"):
        self.dataset = dataset
        self.ops = nbg.ops_for(dataset)
        super().__init__(
            [
                Categorical("link", [list(link) for link in nbg.LINKS]),
                PerLayer("ops", self.ops, length=4),
            ]
        )

    # The op list is the benchmark's, not ordered by size, and the all-skip arch (the last
    # choices) was never trained: the extremes are the measured ones, by parameter count.
    def largest(self):
        return {"link": [0, 0, 0, 0], "ops": ["arma"] * 4}

    def smallest(self):
        return {"link": [0, 0, 0, 0], "ops": ["gcn", "skip", "skip", "skip"]}

    def canonical(self, arch):
        arch = self.validate(arch)
        link, ops, _ = nbg.canonical(tuple(arch["link"]), tuple(arch["ops"]))
        return {"link": list(link), "ops": list(ops)}

    def bench_hash(self, arch) -> int:
        """The key of ``arch``'s row in the benchmark's tables."""
        arch = self.validate(arch)
        return nbg.canonical(tuple(arch["link"]), tuple(arch["ops"]))[2]


class _TableOptions(BaseModel):
    """``dataset`` defaults to the space's; ``bench_file`` reads your own ``.bench`` table."""

    model_config = ConfigDict(extra="forbid")
    dataset: Dataset | None = None
    bench_file: str | None = None

    @field_validator("bench_file")
    @classmethod
    def _exists(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"no such file: {value}")
        return value


class _TableLookup:
    """Shared by the estimator and the cost model: one table row per canonical arch."""

    Options = _TableOptions
    space_types = (NasBenchGraphSpace,)
    METRICS: dict[str, Metric] = {}
    space: NasBenchGraphSpace
    options: dict

    def __init__(self, space, **options):
        super().__init__(space, **options)
        dataset = self.options.get("dataset") or self.space.dataset
        if dataset != self.space.dataset:
            raise ValueError(
                f"dataset {dataset!r} differs from the space's dataset {self.space.dataset!r}"
            )
        self.options["dataset"] = dataset
        self.metrics = dict(self.METRICS)

    def _table(self, context: EvalContext) -> dict[int, dict[str, float]]:
        table = context.cache.get("table")
        if table is None:
            table = context.cache["table"] = nbg.load_table(
                self.options["dataset"], self.options.get("bench_file")
            )
        return table

    def _row(self, arch, context: EvalContext) -> dict[str, float]:
        key = self.space.bench_hash(arch)
        try:
            return self._table(context)[key]
        except KeyError:
            hint = " (all-skip archs were never trained)" if set(arch["ops"]) == {"skip"} else ""
            raise ArchError(
                f"arch {arch} (hash {key}) has no entry in the NAS-Bench-Graph "
                f"{self.options['dataset']} table{hint}"
            ) from None

    def setup(self, context: EvalContext) -> None:
        self._table(context)

    def _metrics(self, row: dict[str, float]) -> dict[str, float]:
        """This component's metrics from a table row, in the units they declare."""
        raise NotImplementedError

    def table(self, context: EvalContext) -> Iterator[tuple[dict, dict[str, float]]]:
        """Every measured arch, one per table row, with this component's metrics: the
        :class:`nasforge.Tabular` protocol that ``nasforge bench-search`` reads."""
        table = self._table(context)
        dataset, bench_file = self.options["dataset"], self.options.get("bench_file")
        for link, ops, key in nbg.measured_archs(dataset, bench_file):
            yield {"link": list(link), "ops": list(ops)}, self._metrics(table[key])


class NasBenchGraphAccuracy(_TableLookup, Estimator):
    """Validation and test accuracy (fraction correct) measured by NAS-Bench-Graph."""

    METRICS = {
        "valid_acc": Metric("valid_acc", "", "maximize", "validation accuracy (fraction)"),
        "test_acc": Metric("test_acc", "", "maximize", "test accuracy (fraction)"),
    }

    def _metrics(self, row):
        return {"valid_acc": row["valid_perf"], "test_acc": row["perf"]}

    def evaluate(self, arch, context):
        return self._metrics(self._row(arch, context))


class NasBenchGraphCost(_TableLookup, Hardware):
    """Inference latency and parameter count measured by NAS-Bench-Graph.

    A table look-up: free, so strategies may rank archs they have not evaluated by it.
    """

    free = True
    METRICS = {
        "latency_ms": Metric("latency_ms", "ms", "minimize", "inference latency"),
        "params_m": Metric("params_m", "M", "minimize", "parameters (millions)"),
    }

    def _metrics(self, row):
        return {"latency_ms": row["latency"] * 1000.0, "params_m": row["para"]}

    def measure(self, arch, subnet, context):
        return self._metrics(self._row(arch, context))


@hookimpl
def register_spaces(register: RegisterSpace) -> None:
    register("gnn.nasbench_graph", NasBenchGraphSpace)


@hookimpl
def register_estimators(register: RegisterEstimator) -> None:
    register("gnn.nasbench_graph", NasBenchGraphAccuracy)


@hookimpl
def register_hardware(register: RegisterHardware) -> None:
    register("gnn.nasbench_graph", NasBenchGraphCost)
