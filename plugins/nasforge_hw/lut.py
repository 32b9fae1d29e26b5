"""Latency look-up tables (``hw.latency_lut``) in the Once-for-All / ProxylessNAS manner.

A static subnet is cut into *units*: the modules of a plain ``nn.Sequential`` (nested plain
``nn.Sequential`` containers are opened, since running their children in turn is the same
computation; subclasses such as a ``Stem(nn.Sequential)`` block stay one unit), or the whole
model when it is not one. A unit's key is its input's dtype and
shape (batch included) and its ``repr()``. When a subnet has units missing from the table,
its forward is timed unit by unit with the same loop as ``hw.latency``
(:func:`~nasforge_hw.latency.stage_times_ms`), so each unit is timed on its real input
in the state the real forward leaves caches and allocator in (timed alone, units measured
10-20 % faster than in the whole forward on CPU); the missing entries are stored. The
prediction is the sum over units plus, per ``nn.Sequential`` container opened, the
measured cost of calling one (an entry of its own, about 3 us on CPU).

The table is JSON, ``run_dir/hw/latency_lut.json`` unless the ``table`` option names
another file, in sections keyed by device name and thread count::

    {"format": "nasforge.latency_lut/1",
     "sections": {"<device name> | threads=1": {"<key>": <ms>, ...}}}

It is loaded in ``setup`` and written after every arch that measured new units: under an
exclusive file lock (POSIX) the file is re-read, merged (entries already there win) and
replaced atomically, so workers sharing a run directory add to it and never corrupt it.

:func:`check_lut` reports a table's prediction error against measured latency.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import statistics
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn

from nasforge import Arch, EvalContext, Metric, NasforgeError, SearchSpace

from .base import SubnetHardware, device_label, module_on, resolve_device
from .latency import (
    LatencyModel,
    Statistic,
    TimingOptions,
    forward_ms,
    forward_times_ms,
    stage_times_ms,
    summarise,
)

TABLE_FORMAT = "nasforge.latency_lut/1"
#: the entry holding what one ``nn.Sequential`` call costs beyond its children's
CONTAINER_CALL_KEY = "(nn.Sequential call overhead)"


class LatencyTableError(NasforgeError, ValueError):
    """A latency table file that cannot be read, or a look-up it cannot answer."""


# -- units and keys ----------------------------------------------------------------------
def _is_container(module: nn.Module) -> bool:
    # only plain nn.Sequential: a subclass is a block with an identity (and repr) of its own
    return type(module) is nn.Sequential


def lut_units(model: nn.Module) -> list[nn.Module]:
    """The units a model's latency is summed over: the children of a plain
    ``nn.Sequential``, opening plain ``nn.Sequential`` children in turn, or ``[model]``
    when it is not one. Subclasses of ``nn.Sequential`` (blocks) stay whole."""
    if not _is_container(model):
        return [model]
    return [unit for child in model for unit in lut_units(child)]


def count_containers(model: nn.Module) -> int:
    """How many ``nn.Sequential`` containers :func:`lut_units` opens for ``model``."""
    if not _is_container(model):
        return 0
    return 1 + sum(count_containers(child) for child in model)


def _identity(value: Any) -> Any:
    return value


def describe_input(value: Any) -> str:
    """A stable text of an input's structure: dtypes and shapes, e.g. ``float32[1, 3, 32]``."""
    if isinstance(value, torch.Tensor):
        return f"{str(value.dtype).removeprefix('torch.')}{list(value.shape)}"
    if isinstance(value, tuple | list):
        return "(" + ", ".join(describe_input(v) for v in value) + ")"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {describe_input(v)}" for k, v in value.items()) + "}"
    return type(value).__name__


def unit_key(unit: nn.Module, inputs: Any) -> str:
    """The table key of ``unit`` run on ``inputs``: input structure, then the unit's repr."""
    return f"{describe_input(inputs)} {unit!r}"


def unit_keys(units: Sequence[nn.Module], inputs: Any) -> list[str]:
    """The table key of each unit of a chain started from ``inputs`` (runs it once)."""
    keys = []
    x = inputs
    with torch.inference_mode():
        for unit in units:
            keys.append(unit_key(unit, x))
            x = unit(x)
    return keys


def unit_shares_ms(
    times: Sequence[Sequence[float]], statistic: Statistic = "median"
) -> list[float]:
    """Each unit's share of the median (or minimum) forward, from ``times[repeat][unit]``:
    the units' medians, scaled so that they add up to the statistic of the repeats' totals
    (medians of parts add up to less than the median of their sums when timings are
    skewed)."""
    medians = [summarise(column, statistic) for column in zip(*times, strict=True)]
    total = summarise([sum(row) for row in times], statistic)
    scale = total / sum(medians) if sum(medians) > 0 else 1.0
    return [m * scale for m in medians]


def section_name(device_name: str, threads: int, statistic: Statistic = "median") -> str:
    """The table section of measurements made on ``device_name`` with ``threads`` threads
    (summarised by ``statistic``; median sections carry no suffix)."""
    suffix = "" if statistic == "median" else f" | {statistic}"
    return f"{device_name} | threads={threads}{suffix}"


# -- the table file ----------------------------------------------------------------------
def _empty_table() -> dict[str, Any]:
    return {"format": TABLE_FORMAT, "sections": {}}


def read_table_file(path: Path) -> dict[str, Any]:
    """The parsed table at ``path`` (empty when the file does not exist); a file that is
    not a latency table raises :class:`LatencyTableError` naming it."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return _empty_table()
    except OSError as exc:
        raise LatencyTableError(f"{path}: cannot read the latency table: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LatencyTableError(f"{path}: not a valid latency table (bad JSON: {exc})") from None
    problem = None
    if not isinstance(data, dict) or data.get("format") != TABLE_FORMAT:
        problem = f'expected an object with "format": "{TABLE_FORMAT}"'
    elif not isinstance(data.get("sections"), dict):
        problem = '"sections" must be an object'
    else:
        for name, entries in data["sections"].items():
            if not isinstance(entries, dict) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
                for v in entries.values()
            ):
                problem = f"section {name!r} must map keys to non-negative milliseconds"
                break
    if problem:
        raise LatencyTableError(f"{path}: not a valid latency table ({problem})")
    return data


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path``'s companion ``.lock`` file (POSIX ``flock``; elsewhere
    writes are still atomic, only concurrent additions may be lost)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write_atomically(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class LatencyTable:
    """One section (device, threads) of a latency table file: unit key -> milliseconds."""

    def __init__(self, path: Path, section: str, entries: dict[str, float] | None = None):
        self.path = Path(path)
        self.section = section
        self.entries: dict[str, float] = dict(entries or {})
        self._unsaved: dict[str, float] = {}
        self._replace: set[str] = set()

    @classmethod
    def load(cls, path: str | Path, section: str) -> LatencyTable:
        """The section of the file at ``path`` (empty if the file or section is absent)."""
        path = Path(path)
        return cls(path, section, read_table_file(path)["sections"].get(section))

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: str) -> float | None:
        """The stored latency of ``key`` in milliseconds, or ``None``."""
        return self.entries.get(key)

    def put(self, key: str, latency_ms: float, *, replace: bool = False) -> None:
        """Store a measured latency; written by the next :meth:`save`. A new key never
        overwrites what another writer stored first; ``replace`` (a refined entry) does."""
        self.entries[key] = float(latency_ms)
        self._unsaved[key] = float(latency_ms)
        if replace:
            self._replace.add(key)

    def save(self) -> None:
        """Merge unsaved entries into the file (under a lock, atomically) and pick up the
        entries other writers added meanwhile. Entries already in the file win."""
        if not self._unsaved:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(self.path):
            data = read_table_file(self.path)
            stored = data["sections"].setdefault(self.section, {})
            for key, value in self._unsaved.items():
                if key in self._replace:
                    stored[key] = value
                else:
                    stored.setdefault(key, value)
            _write_atomically(self.path, data)
        self.entries.update(stored)
        self._unsaved.clear()
        self._replace.clear()


# -- the hardware model ------------------------------------------------------------------
class LutOptions(TimingOptions):
    """Where the table lives and whether missing units may be measured."""

    table: str | None = Field(
        None, description="table file to read and extend (default: run_dir/hw/latency_lut.json)"
    )
    measure_missing: bool = Field(
        True, description="time units missing from the table; false: a missing unit is an error"
    )

    @model_validator(mode="after")
    def _table_exists_for_lookups(self) -> LutOptions:
        if not self.measure_missing and (self.table is None or not Path(self.table).is_file()):
            raise ValueError(
                f"table: measure_missing is false, so table must name an existing file "
                f"(got {self.table!r})"
            )
        return self


@dataclass(frozen=True)
class LutPrediction:
    """A table prediction: the summed latency, the units' keys, how many were timed now."""

    latency_ms: float
    keys: list[str]
    measured: int


class LatencyLutModel(SubnetHardware):
    """Latency predicted from a per-unit look-up table, timing units not yet in it."""

    Options = LutOptions
    config: LutOptions
    METRICS = {
        "latency_lut_ms": Metric(
            "latency_lut_ms", "ms", "minimize", "latency summed from a per-unit look-up table"
        )
    }

    def __init__(self, space: SearchSpace, **options: Any):
        super().__init__(space, **options)
        self._samples: dict[str, list[float]] = {}  # refine(): every time taken per entry

    def table_path(self, context: EvalContext) -> Path:
        """The table file: the ``table`` option, else ``run_dir/hw/latency_lut.json``."""
        if self.config.table is not None:
            return Path(self.config.table)
        return Path(context.run_dir) / "hw" / "latency_lut.json"

    def table(self, context: EvalContext) -> LatencyTable:
        """This worker's table section for the device measured on (loaded once)."""
        device = resolve_device(self.config.device, context)
        path = self.table_path(context)
        section = section_name(
            device_label(device, context), self.config.threads, self.config.statistic
        )
        cache_key = ("latency_lut", str(path), section)
        table = context.cache.get(cache_key)
        if table is None:
            table = context.cache[cache_key] = LatencyTable.load(path, section)
        return table

    def setup(self, context: EvalContext) -> None:
        """Load the table (a corrupt file fails here, naming it)."""
        self.table(context)

    def _units(self, arch: Arch, subnet: nn.Module, context: EvalContext):
        """The table, the subnet on its device, its input, its units and their keys."""
        device = resolve_device(self.config.device, context)
        model = module_on(subnet, device)
        x = self.input_for(arch, context, batch_size=self.config.batch_size, device=device)
        units = lut_units(model)
        return self.table(context), model, x, units, unit_keys(units, x)

    def predict(self, arch: Arch, subnet: nn.Module, context: EvalContext) -> LutPrediction:
        """Sum the table's latencies over ``subnet``'s units, timing the missing ones.

        Missing units are timed in the context of the whole forward (the chain of units
        runs ``repeats`` times with the clock read between units); each unit's entry is its
        median time scaled so that the units' entries add up to the median forward.
        """
        table, model, x, units, keys = self._units(arch, subnet, context)
        missing: dict[str, int] = {}  # key -> the first unit with it
        for i, key in enumerate(keys):
            if table.get(key) is None:
                missing.setdefault(key, i)
        containers = count_containers(model)
        missing_call = containers > 0 and table.get(CONTAINER_CALL_KEY) is None
        if (missing or missing_call) and not self.config.measure_missing:
            absent = next(iter(missing), CONTAINER_CALL_KEY)
            raise LatencyTableError(
                f"{table.path}: section {table.section!r} has no entry {absent!r} "
                "and measure_missing is false"
            )
        if missing:
            times = stage_times_ms(
                units,
                x,
                warmup=self.config.warmup,
                repeats=self.config.repeats,
                threads=self.config.threads,
            )
            shares = unit_shares_ms(times, self.config.statistic)
            for key, i in missing.items():
                table.put(key, shares[i])
        if missing_call:
            table.put(CONTAINER_CALL_KEY, self._container_call_ms(x))
        table.save()
        total = sum(table.entries[key] for key in keys)
        total += containers * table.entries.get(CONTAINER_CALL_KEY, 0.0)
        return LutPrediction(total, keys, len(missing))

    def refine(self, arch: Arch, subnet: nn.Module, context: EvalContext) -> None:
        """Time every unit of ``subnet`` again and store, per entry, the statistic (median
        or minimum) of all the times taken of it in this process. Building a table over
        several passes spread in time keeps one slow spell of a shared machine out of it."""
        table, _, x, units, keys = self._units(arch, subnet, context)
        times = stage_times_ms(
            units, x, warmup=self.config.warmup, repeats=self.config.repeats,
            threads=self.config.threads,
        )  # fmt: skip
        for key, share in zip(keys, unit_shares_ms(times, self.config.statistic), strict=True):
            samples = self._samples.setdefault(key, [table.get(key)] if table.get(key) else [])
            samples.append(share)
            table.put(key, summarise(samples, self.config.statistic), replace=True)
        table.save()

    def _container_call_ms(self, inputs: Any) -> float:
        """What calling an ``nn.Sequential`` costs beyond its children: an empty one's call
        time less that of a plain identity function (the timing loop's own cost)."""
        timing = {
            "warmup": self.config.warmup,
            "repeats": max(self.config.repeats, 100),
            "threads": self.config.threads,
            "statistic": self.config.statistic,
        }
        empty = forward_ms(nn.Sequential(), inputs, **timing)
        bare = forward_ms(_identity, inputs, **timing)
        return max(empty - bare, 0.0)

    def measure_subnet(self, arch: Arch, subnet: nn.Module, context: EvalContext):
        """``latency_lut_ms`` of ``subnet``."""
        return {"latency_lut_ms": self.predict(arch, subnet, context).latency_ms}


# -- checking a table against measurement ------------------------------------------------
@dataclass(frozen=True)
class LutCheckRow:
    """One arch of a :class:`LutCheck`: predicted and measured latency."""

    arch: Arch
    predicted_ms: float
    measured_ms: float
    remeasured_ms: float

    @property
    def abs_pct_error(self) -> float:
        """``|predicted - measured| / measured`` in percent."""
        return abs(self.predicted_ms - self.measured_ms) / self.measured_ms * 100.0

    @property
    def repeat_abs_pct_error(self) -> float:
        """``|remeasured - measured| / measured`` in percent: the machine's own noise."""
        return abs(self.remeasured_ms - self.measured_ms) / self.measured_ms * 100.0


@dataclass
class LutCheck:
    """A latency table's prediction error over sampled archs."""

    rows: list[LutCheckRow]
    device: str
    device_name: str
    threads: int
    batch_size: int
    table: Path
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def median_abs_pct_error(self) -> float:
        """Median absolute percentage error of predicted versus measured latency."""
        return statistics.median(row.abs_pct_error for row in self.rows)

    @property
    def median_repeat_abs_pct_error(self) -> float:
        """Median absolute percentage difference of two measurements of the same arch: the
        noise floor the table's error should be judged against."""
        return statistics.median(row.repeat_abs_pct_error for row in self.rows)

    @property
    def max_abs_pct_error(self) -> float:
        """Largest absolute percentage error over the archs."""
        return max(row.abs_pct_error for row in self.rows)

    def summary(self) -> dict[str, Any]:
        """The figures a report prints (JSON-serialisable)."""
        return {
            "n_archs": len(self.rows),
            "median_abs_pct_error": self.median_abs_pct_error,
            "max_abs_pct_error": self.max_abs_pct_error,
            "median_repeat_abs_pct_error": self.median_repeat_abs_pct_error,
            "median_measured_ms": statistics.median(r.measured_ms for r in self.rows),
            "device": self.device,
            "device_name": self.device_name,
            "threads": self.threads,
            "batch_size": self.batch_size,
            "table": str(self.table),
        }

    def write_csv(self, path: str | Path) -> None:
        """One row per arch: ``arch`` (JSON), predicted/measured ms, absolute % error."""
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(
                ["arch", "predicted_ms", "measured_ms", "remeasured_ms", "abs_pct_error"]
            )
            for row in self.rows:
                writer.writerow(
                    [
                        json.dumps(row.arch, sort_keys=True),
                        f"{row.predicted_ms:.6f}",
                        f"{row.measured_ms:.6f}",
                        f"{row.remeasured_ms:.6f}",
                        f"{row.abs_pct_error:.3f}",
                    ]
                )


def check_lut(
    space: SearchSpace,
    build_subnet: Callable[[Arch], nn.Module],
    n_archs: int = 50,
    seed: int = 0,
    *,
    run_dir: str | Path | None = None,
    csv_path: str | Path | None = None,
    device: str = "cpu",
    rounds: int = 10,
    build_passes: int = 3,
    **options: Any,
) -> LutCheck:
    """Predict ``n_archs`` random archs' latency with the table and measure it for real.

    The table is filled first (each block configuration measured once); then every arch
    is measured ``rounds`` times, round-robin: the median of the even rounds is the
    reference, that of the odd rounds the repeat, whose difference is the machine's noise
    floor the table's error should be judged against.

    ``build_subnet(arch)`` returns the static model of an arch; ``options`` are
    ``hw.latency_lut`` options (``table``, ``warmup``, ``repeats``, ``threads``,
    ``batch_size``, ``input_shape``…), the measured latency uses the same timing options.
    The table is ``run_dir``'s (a temporary one when ``run_dir`` is ``None``) unless
    ``table`` names a file. Rows are written to ``csv_path`` when given.
    """
    if n_archs < 1:
        raise ValueError(f"n_archs must be at least 1, got {n_archs}")
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    lut = LatencyLutModel(space, device=device, **options)
    timing = {k: v for k, v in lut.options.items() if k in TimingOptions.model_fields}
    latency = LatencyModel(space, **timing)
    rng = np.random.default_rng(seed)
    archs = [space.sample(rng) for _ in range(n_archs)]
    with contextlib.ExitStack() as stack:
        if run_dir is None:
            run_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="nasforge-lut-"))
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        resolved = resolve_device(device, EvalContext(run_dir=Path(run_dir), device=device))
        context = EvalContext(
            run_dir=Path(run_dir), device=resolved, device_name=device_label(resolved)
        )
        lut.setup(context)
        rows = []
        subnets = [build_subnet(arch).eval().to(resolved) for arch in archs]
        pairs = list(zip(archs, subnets, strict=True))
        for arch, subnet in pairs:  # fill the table: each block configuration timed once
            lut.predict(arch, subnet, context)
        for _ in range(build_passes - 1):  # then refine it over passes spread in time
            for arch, subnet in pairs:
                lut.refine(arch, subnet, context)
        predicted = [lut.predict(arch, subnet, context).latency_ms for arch, subnet in pairs]
        # Reference latencies: the archs are timed round-robin, ``rounds`` short bursts
        # each, so that a slow spell of a shared machine touches every arch a little rather
        # than a few archs a lot; the bursts' samples are pooled, even rounds giving the
        # reference and odd rounds the repeat.
        timing = latency.config
        per_round = max(5, -(-timing.repeats // rounds))
        inputs = [
            latency.input_for(arch, context, batch_size=timing.batch_size, device=resolved)
            for arch in archs
        ]
        timed: list[list[list[float]]] = [[[], []] for _ in archs]
        for r in range(rounds):
            for i, (subnet, x) in enumerate(zip(subnets, inputs, strict=True)):
                timed[i][r % 2] += forward_times_ms(
                    subnet, x, warmup=max(2, timing.warmup // rounds), repeats=per_round,
                    threads=timing.threads,
                )  # fmt: skip
        for arch, guess, (even, odd) in zip(archs, predicted, timed, strict=True):
            measured = summarise(even, timing.statistic)
            remeasured = summarise(odd, timing.statistic) if odd else measured
            rows.append(LutCheckRow(arch, guess, measured, remeasured))
        check = LutCheck(
            rows,
            device=resolved,
            device_name=context.device_name,
            threads=lut.config.threads,
            batch_size=lut.config.batch_size,
            table=lut.table_path(context),
            options=dict(lut.options),
        )
    if csv_path is not None:
        check.write_csv(csv_path)
    return check
