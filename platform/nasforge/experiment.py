"""The experiment file's schema: YAML validated into typed models, every error one line.

:func:`load_experiment` reads a YAML file into an :class:`Experiment` (shape and types,
checked by pydantic; a key given twice is an error); :func:`parse_experiment` does the same
for a document already parsed. Errors are :class:`~nasforge.errors.ConfigError` naming the
YAML path at fault, e.g. ``search.n_trials: must be >= 1, got 0``. Binding the names to
installed plugins is the next step, :func:`nasforge.plan.resolve`.
"""

from __future__ import annotations

import math
import operator
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_serializer,
)

from .errors import ConfigError


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ComponentSpec(_Model):
    """A plugin item named in the experiment, with the options it is built with."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class RecipeSpec(_Model):
    """One alternative of a sweep: a trainer (default: the experiment's) and options. With
    the experiment's trainer the options are merged over ``train.options``; with another
    trainer they stand alone."""

    trainer: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class SweepSpec(_Model):
    """``train.sweep``: supernet recipes trained side by side as Ray Tune trials, ASHA
    stopping the weak ones early on the supernet's per-epoch quality (the mean quality of
    ``quality_archs`` fixed subnets spread over the space); the best recipe's weights
    become the experiment's supernet."""

    recipes: list[RecipeSpec] = Field(default_factory=lambda: [RecipeSpec()], min_length=1)
    grid: dict[str, list[Any]] = Field(
        default_factory=dict, description="option -> values, crossed with every recipe"
    )
    n_trials: StrictInt | None = Field(
        None, ge=1, description="a seeded sample of this many combinations (default: all)"
    )
    workers_per_trial: StrictInt = Field(1, ge=1, description="Ray Train workers per recipe")
    concurrency: StrictInt | None = Field(None, ge=1, description="default: what fits")
    quality_archs: StrictInt = Field(8, ge=1)
    grace_period: StrictInt = Field(1, ge=1, description="ASHA: epochs before any stop")
    reduction_factor: float = Field(2.0, gt=1, description="ASHA: keep 1/this at each rung")

    @field_validator("grid")
    @classmethod
    def _values_given(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        empty = sorted(name for name, values in grid.items() if not values)
        if empty:
            raise ValueError(f"every grid option needs at least one value: {empty}")
        return grid


class TrainSpec(_Model):
    """Supernet training: which trainer, its options, the seed every rank shares; with a
    ``sweep``, the recipes to try (see :class:`SweepSpec`)."""

    trainer: str
    options: dict[str, Any] = Field(default_factory=dict)
    seed: StrictInt = 0
    max_retries: StrictInt = Field(2, ge=0)
    sweep: SweepSpec | None = None

    @model_serializer(mode="wrap")
    def _without_unset_sweep(self, handler):
        # a section without a sweep reads as it did before sweeps existed: the fingerprints
        # of supernets and studies made then stay the same
        data = handler(self)
        if isinstance(data, dict) and data.get("sweep") is None:
            data.pop("sweep", None)
        return data

    def recipes(self) -> list[dict[str, Any]]:
        """Every recipe of the sweep as ``{"trainer", "options"}`` (just this one without
        a sweep): each recipe crossed with the grid, then the seeded ``n_trials`` sample."""
        import itertools
        import random

        if self.sweep is None:
            return [{"trainer": self.trainer, "options": dict(self.options)}]
        names = list(self.sweep.grid)
        out = []
        for recipe in self.sweep.recipes:
            trainer = recipe.trainer or self.trainer
            base = dict(self.options) if trainer == self.trainer else {}
            for values in itertools.product(*(self.sweep.grid[n] for n in names)):
                options = {**base, **recipe.options, **dict(zip(names, values, strict=True))}
                out.append({"trainer": trainer, "options": options})
        if self.sweep.n_trials is not None and self.sweep.n_trials < len(out):
            chosen = sorted(random.Random(self.seed).sample(range(len(out)), self.sweep.n_trials))
            out = [out[i] for i in chosen]
        return out


class ObjectiveSpec(_Model):
    """A metric to optimise; ``direction`` defaults to the metric's natural one."""

    metric: str
    direction: Literal["maximize", "minimize"] | None = None


class Resources(_Model):
    """Resources one Ray Tune trial reserves."""

    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)


class SearchSpec(_Model):
    """How the search runs: strategy, budget, parallelism, retries and the study's storage."""

    strategy: str = "nsga2"
    options: dict[str, Any] = Field(default_factory=dict)
    n_trials: StrictInt = Field(ge=1)
    seed: StrictInt | None = 0
    concurrency: StrictInt = Field(1, ge=1)
    batch_size: StrictInt | None = Field(
        None,
        ge=1,
        description="archs per Ray Tune trial; default: adapts (grows while evaluations are "
        "cheap compared with a Tune trial's own overhead, up to 64)",
    )
    resources_per_trial: Resources = Field(default_factory=Resources)
    max_retries: StrictInt = Field(2, ge=0)
    max_failed_trials: StrictInt | None = Field(None, ge=0)
    storage: str | None = None
    study_name: str | None = None
    initial_archs: list[Literal["largest", "smallest"] | dict[str, Any]] = Field(
        default_factory=list,
        description="archs evaluated first on a new study: 'largest', 'smallest' or an arch "
        "(dimensions left out take their largest choice; one value for a per-layer dimension "
        "applies to every layer)",
    )

    @field_validator("storage")
    @classmethod
    def _storage_kind(cls, value: str | None) -> str | None:
        if value is None or value.startswith("journal:"):
            return value
        if not re.match(r"^[a-z0-9+]+://", value):
            raise ValueError(
                "expected an RDB URL (sqlite:///PATH, postgresql://HOST/DB, mysql://…) or "
                f"journal:PATH, got {value!r}"
            )
        if url_has_password(value):
            raise ValueError(
                "a password does not belong in an experiment file: leave it out of the URL "
                "and give it through the environment (NASFORGE_STORAGE, or PGPASSWORD for "
                "PostgreSQL)"
            )
        return value


#: URL query keys that carry secrets
SECRET_QUERY_KEYS = frozenset(
    {"password", "passwd", "pwd", "sslpassword", "access_key", "secret_key", "session_token"}
)


def url_has_password(url: str) -> bool:
    """Whether a database URL carries a password (in its authority or its query)."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # not parseable as SQLAlchemy URL: look for user:secret@
        return bool(re.match(r"^[a-z0-9+]+://[^/@:]*:[^/@]*@", url))
    return bool(parsed.password) or any(k.lower() in SECRET_QUERY_KEYS for k in parsed.query)


class Experiment(_Model):
    """A whole experiment as written in its YAML file."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    run_dir: str | None = None
    plugins: list[str] = Field(default_factory=list)
    space: ComponentSpec
    task: ComponentSpec | None = None
    train: TrainSpec | None = None
    estimators: list[ComponentSpec] = Field(min_length=1)
    hardware: list[ComponentSpec] = Field(default_factory=list)
    objectives: list[ObjectiveSpec] = Field(min_length=1)
    constraints: list[str] = Field(default_factory=list)
    search: SearchSpec

    @field_validator("run_dir")
    @classmethod
    def _run_dir_without_credentials(cls, value: str | None) -> str | None:
        if value is not None and is_uri(value) and uri_has_credential(value):
            raise ValueError(CREDENTIAL_IN_URI)
        return value

    @property
    def resolved_run_dir(self) -> Path | str:
        """``run_dir`` if set, else ``$NASFORGE_RUN_ROOT/<name>`` when that is set (a cluster's
        shared folder for every run), else ``runs/<name>`` (relative to the working
        directory). A path, or a cloud URI string (``s3://…``, ``gs://…``: see
        :mod:`nasforge.engine.run_location`)."""
        if self.run_dir:
            return self.run_dir if is_uri(self.run_dir) else local_path(self.run_dir)
        root = os.environ.get(RUN_ROOT_ENV)
        if not root:
            return Path("runs") / self.name
        if not is_uri(root):
            return Path(root).expanduser() / self.name
        if uri_has_credential(root):
            raise ConfigError(RUN_ROOT_ENV, CREDENTIAL_IN_URI)
        return join_uri(root, self.name)


#: why a run directory URI with a credential in its query is refused
CREDENTIAL_IN_URI = (
    "a credential does not belong in a run directory URI: give it through the environment "
    "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, GOOGLE_APPLICATION_CREDENTIALS, …)"
)


def uri_has_credential(uri: str) -> bool:
    """Whether a run directory URI carries a credential: a user (``user@``, ``user:secret@``)
    or a secret in its query (``secret_key=``…)."""
    return url_has_password(uri) or bool(urlsplit(uri).username)


def is_uri(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` names cloud storage (``scheme://…``, not ``file://``) rather than
    a path."""
    text = str(run_dir)
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text)) and not text.startswith("file:")


def local_path(run_dir: str | Path) -> Path:
    """A run directory that is not a cloud URI as a path (``file:///x`` is ``/x``)."""
    text = str(run_dir)
    return Path(text[len("file://") :]) if text.startswith("file://") else Path(run_dir)


def join_uri(uri: str, *parts: str) -> str:
    """``uri`` with ``parts`` appended to its path, its query kept at the end:
    ``join_uri("s3://b/runs?scheme=http", "x")`` -> ``"s3://b/runs/x?scheme=http"``."""
    base, sep, query = uri.partition("?")
    path = "/".join([base.rstrip("/"), *(p.strip("/") for p in parts if p)])
    return path + sep + query


#: the environment variable naming the folder runs go to when an experiment sets no run_dir
RUN_ROOT_ENV = "NASFORGE_RUN_ROOT"


# -- constraints -------------------------------------------------------------------------

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
}
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(<=|>=|<|>)\s*(\S+)\s*$")


@dataclass(frozen=True)
class Constraint:
    """``metric <= bound`` (or ``>=``); :meth:`violation` is ``<= 0`` when satisfied."""

    metric: str
    op: str
    bound: float

    @classmethod
    def parse(cls, text: str) -> Constraint:
        match = _CONSTRAINT.match(text)
        if not match:
            raise ValueError(f"expected 'METRIC <= NUMBER' or 'METRIC >= NUMBER', got {text!r}")
        metric, op, bound = match.groups()
        try:
            value = float(bound)
        except ValueError:
            raise ValueError(f"expected a number after {op!r}, got {bound!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"expected a finite bound, got {bound!r}")
        return cls(metric, op, value)

    def violation(self, value: float) -> float:
        """Optuna's constraint value: how far ``value`` is on the wrong side (≤ 0 is feasible).

        A strict bound met with equality (``x < 5`` at 5) is infeasible by the least amount.
        """
        diff = value - self.bound if self.op in ("<=", "<") else self.bound - value
        if diff == 0 and self.op in ("<", ">"):
            return math.ulp(0.0)
        return diff

    def __str__(self) -> str:
        """``metric op bound`` with the bound exact (distinct bounds print distinctly): it is
        also the constraint's name on the trials."""
        short = f"{self.bound:g}"
        return (
            f"{self.metric} {self.op} {short if float(short) == self.bound else repr(self.bound)}"
        )


# -- loading -----------------------------------------------------------------------------


def _dotted(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _fields_of(model: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    """The field names allowed at ``loc`` (for 'unknown field' messages)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        current = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
    return sorted(getattr(current, "model_fields", {}))


def _message(error: Mapping[str, Any], model: type[BaseModel]) -> tuple[str, str]:
    loc = list(error["loc"])
    kind = error["type"]
    value = error.get("input")
    if kind == "missing":
        return _dotted(loc), "required field is missing"
    if kind == "extra_forbidden":
        allowed = _fields_of(model, loc[:-1])
        hint = f" (expected one of: {', '.join(allowed)})" if allowed else ""
        return _dotted(loc), f"unknown field{hint}"
    if kind == "value_error":
        return _dotted(loc), str(error["ctx"]["error"])
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return _dotted(loc), f"expected an integer, got {value!r}"
    if kind in ("float_parsing", "float_type"):
        return _dotted(loc), f"expected a number, got {value!r}"
    if kind in ("bool_parsing", "bool_type"):
        return _dotted(loc), f"expected true or false, got {value!r}"
    if kind in ("string_type",):
        return _dotted(loc), f"expected a string, got {value!r}"
    if kind in ("list_type",):
        return _dotted(loc), f"expected a list, got {value!r}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return _dotted(loc), f"expected a mapping, got {value!r}"
    if kind == "too_short":
        return _dotted(loc), f"expected at least {error['ctx']['min_length']} entry, got none"
    if kind == "string_pattern_mismatch":
        return _dotted(loc), f"expected letters, digits, '_', '.' or '-', got {value!r}"
    if kind == "literal_error":
        return _dotted(loc), f"expected {error['ctx']['expected']}, got {value!r}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        sign = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
                "less_than_equal": "<="}[kind]  # fmt: skip
        bound = next(iter(error["ctx"].values()))
        return _dotted(loc), f"must be {sign} {bound}, got {value!r}"
    return _dotted(loc), f"{error['msg']} (got {value!r})"


def validation_error(exc: ValidationError, model: type[BaseModel], prefix: str = "") -> ConfigError:
    """pydantic's first error as one :class:`ConfigError` naming its YAML path (under
    ``prefix``, e.g. ``search.options``)."""
    error = exc.errors(include_url=False)[0]  # one line: the first problem found
    path, message = _message(error, model)
    if prefix:
        path = f"{prefix}.{path}" if path and not path.startswith("[") else f"{prefix}{path}"
    return ConfigError(path, message)


def parse_experiment(data: Any) -> Experiment:
    """Validate an already-parsed YAML document into an :class:`Experiment`."""
    if not isinstance(data, Mapping):
        raise ConfigError("", f"expected a mapping of experiment fields, got {type(data).__name__}")
    try:
        experiment = Experiment.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, Experiment) from None
    for i, text in enumerate(experiment.constraints):
        try:
            Constraint.parse(text)
        except ValueError as exc:
            raise ConfigError(f"constraints[{i}]", str(exc)) from None
    return experiment


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error (the
    stock loader keeps the last one, silently dropping a whole section)."""

    def construct_mapping(self, node, deep=False):
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str | int | float | bool | type(None)):
                raise yaml.constructor.ConstructorError(
                    None, None, f"a key must be a plain value, got {type(key).__name__}",
                    key_node.start_mark,
                )  # fmt: skip
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment file; errors name the file and the YAML path."""
    data = read_experiment_file(path)
    try:
        return parse_experiment(data)
    except ConfigError as exc:
        raise exc.with_file(str(path)) from None


def read_experiment_file(path: str | Path) -> dict[str, Any]:
    """The mapping an experiment file holds, not yet validated (errors name the file)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError("", f"cannot read experiment file: {exc.strerror}", str(path)) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError("", f"invalid YAML{where}: {problem}", str(path)) from None
    if data is None:
        raise ConfigError(
            "", "the file is empty: expected a mapping of experiment fields", str(path)
        )
    if not isinstance(data, dict):
        raise ConfigError(
            "", f"expected a mapping of experiment fields, got {type(data).__name__}", str(path)
        )
    return data
