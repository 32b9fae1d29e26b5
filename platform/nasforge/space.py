"""Search spaces: named dimensions and the archs (plain JSON dicts) they describe.

A :class:`SearchSpace` is an ordered list of dimensions. Each dimension owns one key of
the arch dict. A dimension may be *conditional* (``when={"depth": [3, 4]}``: it exists only
when earlier dimensions hold those values) and a :class:`PerLayer` dimension's length may be
another, earlier dimension's value (per-block choices that exist only when depth allows).
Archs carry only active keys; ``validate`` rejects anything else with a message naming the
bad key, so an arch typed by a user fails clearly rather than silently.

Choices are listed from smallest to largest model: ``largest()`` takes the last choice of
every dimension, ``smallest()`` the first.

This module is the space algebra only: no model code lives here.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from .errors import ArchError

Arch = dict[str, Any]
#: stands for a dimension that does not exist in an arch (``None`` is a valid choice)
_ABSENT: Any = object()
JSONScalar = (str, int, float, bool, type(None))


def _as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def _same(a: Any, b: Any) -> bool:
    """Equality for JSON values that keeps ``True`` apart from ``1`` and compares lists
    element-wise (so a tuple read from YAML equals the list stored in a study)."""
    if isinstance(a, list | tuple) or isinstance(b, list | tuple):
        return (
            isinstance(a, list | tuple)
            and isinstance(b, list | tuple)
            and len(a) == len(b)
            and all(map(_same, a, b))
        )
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float | np.number) and isinstance(b, int | float | np.number):
        return a == b
    return type(a) is type(b) and a == b


def _to_json_value(value: Any) -> Any:
    """Tuples become lists and numpy scalars plain numbers, so archs survive JSON."""
    if isinstance(value, tuple | list):
        return [_to_json_value(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _same_key(value: Any) -> tuple[Any, Any]:
    """A key under which JSON values are equal exactly when :func:`_same` says so (``True``
    apart from ``1``, ``1`` equal to ``1.0``, lists and tuples element-wise); hashable
    unless ``value`` holds a mapping."""
    if isinstance(value, list | tuple):
        return (list, tuple(map(_same_key, value)))
    if isinstance(value, bool):
        return (bool, value)
    if isinstance(value, int | float):
        return (float, value)
    return (type(value), value)


class Dimension(ABC):
    """One key of an arch.

    ``when`` maps earlier dimension names to the values under which this dimension exists.
    """

    def __init__(self, name: str, *, when: Mapping[str, Sequence[Any]] | None = None):
        if not isinstance(name, str) or not name:
            raise ValueError("a dimension needs a non-empty string name")
        self.name = name
        self.when = {k: [_to_json_value(v) for v in vs] for k, vs in (when or {}).items()}

    # -- structure -------------------------------------------------------------------
    def depends_on(self) -> set[str]:
        """Names of earlier dimensions this one's existence or shape depends on."""
        return set(self.when)

    def is_active(self, arch: Mapping[str, Any]) -> bool:
        """Whether this dimension exists given the earlier values in ``arch``."""
        return all(
            k in arch and any(_same(arch[k], v) for v in allowed)
            for k, allowed in self.when.items()
        )

    # -- per-dimension operations ----------------------------------------------------
    @abstractmethod
    def values(self, arch: Mapping[str, Any]) -> list[Any]:
        """Every value this dimension can take given the earlier values in ``arch``."""

    def count(self, arch: Mapping[str, Any]) -> int:
        """How many values this dimension can take (``len(values)`` without listing them)."""
        return len(self.values(arch))

    @abstractmethod
    def sample(self, rng: np.random.Generator, arch: Mapping[str, Any]) -> Any: ...

    @abstractmethod
    def largest(self, arch: Mapping[str, Any]) -> Any: ...

    @abstractmethod
    def smallest(self, arch: Mapping[str, Any]) -> Any: ...

    @abstractmethod
    def suggest(self, trial: Any, arch: Mapping[str, Any]) -> Any:
        """Ask an Optuna trial for this dimension's value."""

    @abstractmethod
    def to_params(self, value: Any) -> dict[str, Any]:
        """The Optuna parameters that ``suggest`` would have recorded for ``value``."""

    @abstractmethod
    def check(self, value: Any, arch: Mapping[str, Any]) -> None:
        """Raise :class:`ArchError` (naming this key) if ``value`` is not allowed."""

    @abstractmethod
    def encoded_width(self) -> int: ...

    @abstractmethod
    def encode(self, value: Any) -> list[float]:
        """Fixed-width numeric encoding for predictors; ``_ABSENT`` (an inactive dimension)
        encodes as zeros."""


class Categorical(Dimension):
    """One choice out of a list of JSON values (strings, numbers, or lists of them)."""

    def __init__(self, name: str, choices: Sequence[Any], *, when=None):
        super().__init__(name, when=when)
        self.choices = [_to_json_value(c) for c in choices]
        if not self.choices:
            raise ValueError(f"dimension {name!r} has no choices")
        for i, c in enumerate(self.choices):
            if any(_same(c, d) for d in self.choices[:i]):
                raise ValueError(f"dimension {name!r} lists choice {c!r} twice")
        self._primitive = all(isinstance(c, JSONScalar) for c in self.choices)
        self._optuna_choices = (
            self.choices if self._primitive else [json.dumps(c) for c in self.choices]
        )
        # a choice is found by one dict look-up: index runs for every key of every arch
        # validated, hashed or encoded (choices holding mappings are scanned instead)
        try:
            self._positions: dict | None = {_same_key(c): i for i, c in enumerate(self.choices)}
        except TypeError:
            self._positions = None

    def values(self, arch):
        return list(self.choices)

    def count(self, arch):
        return len(self.choices)

    def index(self, value: Any) -> int:
        value = _to_json_value(value)
        try:
            position = self._positions.get(_same_key(value)) if self._positions else None
        except TypeError:  # a mapping inside: never one of hashable choices
            position = None
        if position is not None:
            return position
        if self._positions is None:
            for i, c in enumerate(self.choices):
                if _same(c, value):
                    return i
        raise ArchError(f"{self.name}: {value!r} is not one of {self.choices}")

    def sample(self, rng, arch):
        return self.choices[int(rng.integers(len(self.choices)))]

    def largest(self, arch):
        return self.choices[-1]

    def smallest(self, arch):
        return self.choices[0]

    def suggest(self, trial, arch):
        picked = trial.suggest_categorical(self.name, self._optuna_choices)
        return picked if self._primitive else json.loads(picked)

    def to_params(self, value):
        return {self.name: self._optuna_choices[self.index(value)]}

    def check(self, value, arch):
        self.index(value)

    def encoded_width(self):
        return len(self.choices)

    def encode(self, value):
        out = [0.0] * len(self.choices)
        if value is not _ABSENT:
            out[self.index(value)] = 1.0
        return out


class IntRange(Dimension):
    """An integer in ``[low, high]`` on a grid of ``step``."""

    def __init__(self, name: str, low: int, high: int, step: int = 1, *, when=None):
        super().__init__(name, when=when)
        if step < 1 or high < low or (high - low) % step:
            raise ValueError(f"dimension {name!r}: need low <= high on a grid of step >= 1")
        self.low, self.high, self.step = int(low), int(high), int(step)

    def values(self, arch):
        return list(range(self.low, self.high + 1, self.step))

    def count(self, arch):
        return (self.high - self.low) // self.step + 1

    def sample(self, rng, arch):
        return self.low + self.step * int(rng.integers(self.count(arch)))

    def largest(self, arch):
        return self.high

    def smallest(self, arch):
        return self.low

    def suggest(self, trial, arch):
        return trial.suggest_int(self.name, self.low, self.high, step=self.step)

    def to_params(self, value):
        return {self.name: int(value)}

    def check(self, value, arch):
        if not isinstance(value, int | np.integer) or isinstance(value, bool):
            raise ArchError(f"{self.name}: expected an integer, got {value!r}")
        if not (self.low <= value <= self.high) or (value - self.low) % self.step:
            raise ArchError(
                f"{self.name}: {value} is outside {self.low}..{self.high} step {self.step}"
            )

    def encoded_width(self):
        return 1

    def encode(self, value):
        if value is _ABSENT:
            return [0.0]
        span = self.high - self.low
        return [1.0 if span == 0 else (value - self.low) / span]


class PerLayer(Dimension):
    """A list with one choice per layer; its length is fixed or another dimension's value.

    ``PerLayer("kernel", [3, 5, 7], length="depth")`` is a kernel size for each of the
    ``depth`` blocks that exist. Slots beyond the current length do not exist in the arch.
    """

    def __init__(
        self,
        name: str,
        choices: Sequence[Any],
        length: int | str,
        *,
        max_length: int | None = None,
        when=None,
    ):
        super().__init__(name, when=when)
        self.slot = Categorical(name, choices)
        self.choices = self.slot.choices
        self.length = length
        if isinstance(length, int):
            if length < 1:
                raise ValueError(f"dimension {name!r}: length must be >= 1")
            self.max_length = length
        else:
            if max_length is None:
                raise ValueError(
                    f"dimension {name!r}: a length taken from {length!r} needs max_length"
                )
            self.max_length = int(max_length)

    def depends_on(self):
        deps = super().depends_on()
        if isinstance(self.length, str):
            deps.add(self.length)
        return deps

    def length_for(self, arch: Mapping[str, Any]) -> int:
        if isinstance(self.length, int):
            return self.length
        n = arch.get(self.length)
        if not isinstance(n, int) or not 0 <= n <= self.max_length:
            raise ArchError(
                f"{self.name}: its length comes from {self.length!r}, which must be an "
                f"integer in 0..{self.max_length} (got {n!r})"
            )
        return n

    def _slot_param(self, i: int) -> str:
        return f"{self.name}.{i}"

    def values(self, arch):
        import itertools

        n = self.length_for(arch)
        return [list(p) for p in itertools.product(self.choices, repeat=n)]

    def count(self, arch):
        return len(self.choices) ** self.length_for(arch)

    def sample(self, rng, arch):
        return [self.slot.sample(rng, arch) for _ in range(self.length_for(arch))]

    def largest(self, arch):
        return [self.choices[-1]] * self.length_for(arch)

    def smallest(self, arch):
        return [self.choices[0]] * self.length_for(arch)

    def suggest(self, trial, arch):
        out = []
        for i in range(self.length_for(arch)):
            picked = trial.suggest_categorical(self._slot_param(i), self.slot._optuna_choices)
            out.append(picked if self.slot._primitive else json.loads(picked))
        return out

    def to_params(self, value):
        return {
            self._slot_param(i): self.slot._optuna_choices[self.slot.index(v)]
            for i, v in enumerate(value)
        }

    def check(self, value, arch):
        if not isinstance(value, list | tuple):
            raise ArchError(f"{self.name}: expected a list, got {value!r}")
        n = self.length_for(arch)
        if len(value) != n:
            raise ArchError(f"{self.name}: expected {n} entries, got {len(value)}")
        for i, v in enumerate(value):
            try:
                self.slot.index(v)
            except ArchError:
                raise ArchError(f"{self.name}[{i}]: {v!r} is not one of {self.choices}") from None

    def encoded_width(self):
        return self.max_length * len(self.choices)

    def encode(self, value):
        out = []
        value = [] if value is _ABSENT else list(value)
        for i in range(self.max_length):
            out.extend(self.slot.encode(value[i] if i < len(value) else _ABSENT))
        return out


class SearchSpace:
    """An ordered set of dimensions; archs are plain JSON dicts keyed by dimension name.

    Subclass it to give a space a name and a canonical form: override :meth:`canonical`
    when different archs denote the same network (isomorphic cells, ignored slots), so
    that identical networks are evaluated once.
    """

    def __init__(self, dimensions: Sequence[Dimension]):
        self.dimensions: list[Dimension] = list(dimensions)
        seen: set[str] = set()
        for dim in self.dimensions:
            if dim.name in seen:
                raise ValueError(f"dimension {dim.name!r} is declared twice")
            missing = dim.depends_on() - seen
            if missing:
                raise ValueError(
                    f"dimension {dim.name!r} depends on {sorted(missing)}, "
                    "which must be declared before it"
                )
            seen.add(dim.name)
        self._dependents = {d for dim in self.dimensions for d in dim.depends_on()}

    def __repr__(self) -> str:
        names = ", ".join(d.name for d in self.dimensions)
        return f"{type(self).__name__}({names})"

    # -- building archs --------------------------------------------------------------
    def _build(self, pick) -> Arch:
        arch: Arch = {}
        for dim in self.dimensions:
            if dim.is_active(arch):
                arch[dim.name] = _to_json_value(pick(dim, arch))
        return arch

    def sample(self, rng: np.random.Generator | int | None = None) -> Arch:
        """A uniformly random choice per active dimension."""
        rng = _as_rng(rng)
        return self._build(lambda dim, arch: dim.sample(rng, arch))

    def complete(self, partial: Mapping[str, Any]) -> Arch:
        """The arch a partial description names, validated: a dimension left out takes its
        largest choice, and one value given for a per-layer dimension applies to every layer
        (``{"bits": 4}``: every layer at 4 bits, the rest largest)."""
        if not isinstance(partial, Mapping):
            raise ArchError(f"an arch must be a dict, got {type(partial).__name__}")

        def pick(dim: Dimension, arch: Arch) -> Any:
            if dim.name not in partial:
                return dim.largest(arch)
            value = partial[dim.name]
            if isinstance(dim, PerLayer) and not isinstance(value, list | tuple):
                return [value] * dim.length_for(arch)
            return value

        arch = self._build(pick)
        unused = sorted(set(partial) - set(arch))
        if unused:
            names = {d.name for d in self.dimensions}
            what = "does not exist in this arch" if set(unused) <= names else "is not a dimension"
            raise ArchError(f"{unused[0]}: {what} (dimensions: {', '.join(sorted(names))})")
        return self.validate(arch)

    def largest(self) -> Arch:
        return self._build(lambda dim, arch: dim.largest(arch))

    def smallest(self) -> Arch:
        return self._build(lambda dim, arch: dim.smallest(arch))

    def suggest(self, trial: Any) -> Arch:
        """Build an arch from an Optuna trial's suggestions (one parameter per choice)."""
        return self._build(lambda dim, arch: dim.suggest(trial, arch))

    def to_params(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        """The Optuna parameters that ``suggest`` records for ``arch`` (for enqueueing)."""
        self.validate(arch)
        params: dict[str, Any] = {}
        for dim in self.dimensions:
            if dim.name in arch:
                params.update(dim.to_params(arch[dim.name]))
        return params

    def from_params(self, params: Mapping[str, Any]) -> Arch:
        """The arch an Optuna trial with these ``params`` denotes (the inverse of
        :meth:`to_params`: :meth:`suggest` replayed on fixed parameters)."""
        import optuna

        return self.suggest(optuna.trial.FixedTrial(dict(params)))

    def neighbours(
        self, arch: Mapping[str, Any], choices: Mapping[str, Sequence[Any]]
    ) -> list[Arch]:
        """The archs one Optuna parameter away from ``arch``: each parameter set in turn to
        each other value ``choices`` lists for it (parameters without choices stay as they
        are); parameter sets that are no arch of the space are skipped."""
        params = self.to_params(arch)
        out = []
        for name, value in params.items():
            for choice in choices.get(name, ()):
                if choice == value:
                    continue
                try:
                    out.append(self.from_params({**params, name: choice}))
                except Exception:  # params of no arch of the space (incomplete, out of range)
                    continue
        return out

    # -- checking and comparing ------------------------------------------------------
    def validate(self, arch: Any) -> Arch:
        """Check ``arch`` against the space; raise :class:`ArchError` naming the bad key.

        Returns the arch as a plain JSON dict (tuples to lists), keys in dimension order.
        """
        if not isinstance(arch, Mapping):
            raise ArchError(f"an arch must be a mapping of dimension names, got {arch!r}")
        known = {d.name for d in self.dimensions}
        unknown = sorted(set(arch) - known)
        if unknown:
            raise ArchError(f"{unknown[0]}: not a dimension of this space (known: {sorted(known)})")
        out: Arch = {}
        for dim in self.dimensions:
            active = dim.is_active(out)
            if active and dim.name not in arch:
                raise ArchError(f"{dim.name}: missing")
            if not active and dim.name in arch:
                cond = ", ".join(f"{k} in {v}" for k, v in dim.when.items())
                raise ArchError(f"{dim.name}: only exists when {cond}")
            if active:
                value = _to_json_value(arch[dim.name])
                dim.check(value, out)
                out[dim.name] = value
        return out

    def canonical(self, arch: Mapping[str, Any]) -> Arch:
        """The representative of ``arch``'s equivalence class (validated).

        The default is the validated arch itself; spaces with equivalent archs override it.
        """
        return self.validate(arch)

    def key(self, arch: Mapping[str, Any]) -> str:
        """A string that is equal exactly for archs denoting the same network."""
        return json.dumps(self.canonical(arch), sort_keys=True, separators=(",", ":"))

    def contains(self, arch: Any) -> bool:
        try:
            self.validate(arch)
        except ArchError:
            return False
        return True

    # -- numbers ---------------------------------------------------------------------
    def encode(self, arch: Mapping[str, Any]) -> np.ndarray:
        """A fixed-length float vector (one-hot categoricals, scaled integers, zeros for
        absent dimensions), the input of learned predictors."""
        arch = self.validate(arch)
        out: list[float] = []
        for dim in self.dimensions:
            out.extend(dim.encode(arch.get(dim.name, _ABSENT)))
        return np.asarray(out, dtype=np.float64)

    def encoded_width(self) -> int:
        return sum(d.encoded_width() for d in self.dimensions)

    def cardinality(self) -> int:
        """The number of distinct archs (before canonicalisation), as an exact integer."""
        return self._count(0, {})

    def _count(self, i: int, arch: Arch) -> int:
        if i == len(self.dimensions):
            return 1
        dim = self.dimensions[i]
        if not dim.is_active(arch):
            return self._count(i + 1, arch)
        if dim.name not in self._dependents:
            return dim.count(arch) * self._count(i + 1, arch)
        return sum(self._count(i + 1, {**arch, dim.name: v}) for v in dim.values(arch))

    def log10_cardinality(self) -> float:
        return math.log10(self.cardinality())


class GroupedSpace(SearchSpace):
    """A space whose dimensions come in named *groups* (every per-block ``kernel_i`` in the
    group ``kernel``) that :meth:`restrict` narrows — what progressive shrinking trains on
    (``space.restrict(kernel=[7], depth=[4])``: only the largest kernel and depth).

    Subclasses set ``Options`` (a pydantic model of their sizes: ``self.config``, and
    ``self.options`` as plain data) and define :meth:`groups` (each group's full choices)
    and :meth:`_dimensions` (the dimensions for given choices per group). Invalid options
    raise ``ValueError`` naming the space, the field and the value.
    """

    Options: ClassVar[Any]

    def __init__(self, **options: Any) -> None:
        from pydantic import ValidationError

        try:
            self.config = self.Options(**options)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"])
            got = f" (got {error['input']!r})" if where else ""
            where = f"{where}: " if where else ""
            message = error["msg"].removeprefix("Value error, ")
            raise ValueError(f"{type(self).__name__}: {where}{message}{got}") from None
        self.options: dict[str, Any] = self.config.model_dump()
        self._restriction: dict[str, list[Any]] = {}
        super().__init__(self._dimensions(self.groups()))

    def groups(self) -> dict[str, list[Any]]:
        """Each dimension group's full choices (independent of any restriction)."""
        raise NotImplementedError

    def _dimensions(self, choices: Mapping[str, list[Any]]) -> list[Dimension]:
        """The space's dimensions when each group offers ``choices[group]``."""
        raise NotImplementedError

    @property
    def restriction(self) -> dict[str, list[Any]]:
        """The groups this space narrows, with the choices it keeps (empty: the full space)."""
        return {k: list(v) for k, v in self._restriction.items()}

    def restrict(self, **groups: Sequence[Any] | Any) -> GroupedSpace:
        """A copy of this space with the named groups narrowed to the given choices (a
        value or a list; each must be one of the group's full choices). Groups not named
        keep this space's narrowing. The copy shares the options, so the same supernet
        runs its archs."""
        import copy

        full = self.groups()
        narrowed = dict(self._restriction)
        for group, values in groups.items():
            if group not in full:
                raise ValueError(f"restrict: unknown group {group!r} (groups: {sorted(full)})")
            values = list(values) if isinstance(values, list | tuple) else [values]
            if not values:
                raise ValueError(f"restrict: group {group!r} needs at least one choice")
            for v in values:
                if isinstance(v, bool) or not any(v == c for c in full[group]):
                    raise ValueError(f"restrict: {group}={v!r} is not one of {full[group]}")
            narrowed[group] = [c for c in full[group] if any(v == c for v in values)]
        space = copy.copy(self)
        space._restriction = narrowed
        SearchSpace.__init__(space, space._dimensions({**full, **narrowed}))
        return space
