"""The plugin manager and the registry of everything plugins provide.

Plugins come from the ``nasforge`` entry-point group — the first-party ones in this
distribution exactly like third-party ones — and register factories by name through the
register-callback hooks of :mod:`nasforge.hookspecs`. :class:`Registry` records, for each
name, the factory, its kind, and which plugin and distribution provided it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy

from . import hookspecs
from .errors import ConfigError, PluginError

if TYPE_CHECKING:
    from .sdk import Predictor

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "nasforge"

#: kind of registered thing -> the hook that registers it
KIND_HOOKS: dict[str, str] = {
    "space": "register_spaces",
    "task": "register_tasks",
    "trainer": "register_trainers",
    "estimator": "register_estimators",
    "hardware": "register_hardware",
    "strategy": "register_strategies",
    "predictor": "register_predictors",
    "command": "register_commands",
}


@dataclass(frozen=True)
class Registered:
    """One named factory and where it came from."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    distribution: str | None = None
    version: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        """``plugin (distribution version)`` — how errors and listings name the source."""
        dist = (self.distribution, self.version) if self.distribution else None
        return _describe(self.plugin, dist)

    @property
    def options_model(self) -> Any:
        """The factory's pydantic ``Options`` model, if it declares one."""
        return getattr(self.factory, "Options", None)

    @property
    def summary(self) -> str:
        if isinstance(self.factory, lazy):
            return self.factory.summary
        doc = (getattr(self.factory, "__doc__", None) or "").strip()
        return doc.splitlines()[0] if doc else ""


class Registry:
    """Everything the installed plugins registered, by kind and name."""

    def __init__(
        self,
        pm: pluggy.PluginManager,
        distributions: dict[str, tuple[str, str]],
        unavailable: Sequence[Unavailable] = (),
    ):
        self.pm = pm
        self.distributions = distributions
        self.unavailable = list(unavailable)
        self._items: dict[str, dict[str, Registered]] = {kind: {} for kind in KIND_HOOKS}
        for kind, hook_name in KIND_HOOKS.items():
            for impl in getattr(pm.hook, hook_name).get_hookimpls():
                dist, version = distributions.get(impl.plugin_name, (None, None))
                register = self._register_callback(kind, impl.plugin_name, dist, version)
                try:
                    impl.function(register=register)
                except PluginError:
                    raise
                except Exception as exc:  # a plugin bug: name the plugin, keep the cause
                    raise PluginError(
                        f"plugin '{self.describe(impl.plugin_name)}' raised in {hook_name}: "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc

    def _register_callback(self, kind: str, plugin: str, dist: str | None, version: str | None):
        def register(name: str, factory: Callable[..., Any], **extras: Any) -> None:
            if not isinstance(name, str) or not name:
                raise PluginError(f"plugin '{plugin}' registered a {kind} without a name")
            if not callable(factory):
                raise PluginError(
                    f"plugin '{plugin}' registered {kind} '{name}' with a non-callable"
                )
            item = Registered(kind, name, factory, plugin, dist, version, dict(extras))
            existing = self._items[kind].get(name)
            if existing is not None:
                raise PluginError(
                    f"{kind} '{name}' is registered twice: by {existing.origin} and by {item.origin}"
                )
            self._items[kind][name] = item

        return register

    def describe(self, plugin: str) -> str:
        """``name (distribution version)`` for a loaded plugin, or its bare name."""
        return _describe(plugin, self.distributions.get(plugin))

    def names(self, kind: str) -> list[str]:
        return sorted(self._items[kind])

    def get(self, kind: str, name: str) -> Registered:
        """The item registered as ``name``; :class:`KeyError` lists what is available."""
        try:
            return self._items[kind][name]
        except KeyError:
            available = ", ".join(self.names(kind)) or "none installed"
            missing = "".join(
                f"; plugin {u.plugin} is unavailable, it {u.hint}" for u in self.unavailable
            )
            raise KeyError(f"unknown {kind} '{name}' (available: {available}){missing}") from None

    def __iter__(self) -> Iterator[Registered]:
        for kind in KIND_HOOKS:
            yield from (self._items[kind][n] for n in self.names(kind))

    # -- lifecycle hooks -------------------------------------------------------------
    def lifecycle_hooks(self) -> dict[str, list[str]]:
        """Plugin name -> the lifecycle hooks it implements (loggers, integrations)."""
        hooks: dict[str, list[str]] = {}
        for hook_name in ("experiment_start", "trial_complete", "experiment_end"):
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                hooks.setdefault(impl.plugin_name, []).append(hook_name)
        return hooks

    def notify(self, hook_name: str, *, raise_errors: bool, **kwargs: Any) -> None:
        """Call every implementation of a lifecycle hook, naming the plugin on failure."""
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            try:
                impl.function(**{k: kwargs[k] for k in impl.argnames})
            except Exception as exc:
                message = (
                    f"plugin '{self.describe(impl.plugin_name)}' raised in {hook_name}: "
                    f"{type(exc).__name__}: {exc}"
                )
                if raise_errors:
                    raise PluginError(message) from exc
                log.warning(message)


def _describe(plugin: str, dist: tuple[str, str] | None) -> str:
    return f"{plugin} ({dist[0]} {dist[1]})" if dist else plugin


class lazy:
    """A factory named by ``"module:attr"`` and imported on first use.

    Plugins whose components need heavy imports (torch) register them lazily, so that
    building the registry (``nasforge plugins``, every table-backed worker) stays cheap::

        register("cnn.sandwich", lazy("nasforge_cnn.sandwich:SandwichTrainer"))

    Calling it, or reading an attribute such as ``Options``, imports the target; an import
    failure is a :class:`PluginError` naming the target.
    """

    def __init__(self, target: str, summary: str = ""):
        module, _, attr = target.partition(":")
        if not module or not attr:
            raise ValueError(f"lazy factory {target!r}: expected 'module:attr'")
        self.target = target
        self.summary = summary
        self._resolved: Any = None

    def resolve(self) -> Any:
        """The factory itself (imported once)."""
        if self._resolved is None:
            module, _, attr = self.target.partition(":")
            try:
                self._resolved = getattr(importlib.import_module(module), attr)
            except Exception as exc:
                raise PluginError(
                    f"cannot import {self.target}: {type(exc).__name__}: {exc}"
                ) from exc
        return self._resolved

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("target", "summary", "_resolved"):
            raise AttributeError(name)
        return getattr(self.resolve(), name)

    def __repr__(self) -> str:
        return f"lazy({self.target!r})"


def _one_line(exc: Exception) -> str:
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def _entry_points() -> Iterable[importlib.metadata.EntryPoint]:
    return importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)


def missing_requirements(dist: Any, extra: str) -> list[str]:
    """The requirements of ``dist``'s ``extra`` (an ``importlib.metadata`` distribution)
    that are not installed at a version they accept, as ``name>=x`` strings."""
    from packaging.requirements import Requirement

    missing = []
    for text in getattr(dist, "requires", None) or ():
        requirement = Requirement(text)
        if requirement.marker is None or not requirement.marker.evaluate({"extra": extra}):
            continue
        if requirement.marker.evaluate({"extra": ""}):  # not specific to this extra
            continue
        try:
            version = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(str(requirement).split(";")[0].strip())
            continue
        if not requirement.specifier.contains(version, prereleases=True):
            missing.append(str(requirement).split(";")[0].strip())
    return missing


@dataclass(frozen=True)
class Unavailable:
    """An installed plugin whose extra's requirements are missing: what to install."""

    plugin: str
    distribution: str
    extra: str
    missing: tuple[str, ...]

    @property
    def hint(self) -> str:
        return f"needs {', '.join(self.missing)}: pip install '{self.distribution}[{self.extra}]'"


def build_plugin_manager(
    extra_plugins: Iterable[tuple[str, object]] = (), *, entry_points: bool = True
) -> tuple[pluggy.PluginManager, dict[str, tuple[str, str]], list[Unavailable]]:
    """Load every ``nasforge`` entry point (and ``extra_plugins`` as ``(name, module)``).

    Returns the manager, ``plugin name -> (distribution, version)`` and the plugins that
    are installed but unavailable: a plugin module that sets ``requires_extra = "x"``
    (its heavy imports deferred, e.g. with :class:`lazy`) is only registered when its
    distribution's extra ``x`` is installed. Import failures, hooks the specs do not know,
    and bad hook signatures raise :class:`PluginError` naming the plugin and its
    distribution.
    """
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    distributions: dict[str, tuple[str, str]] = {}
    unavailable: list[Unavailable] = []
    sources: list[tuple[str, Callable[[], object], tuple[str, str] | None, Any]] = []
    if entry_points:
        for ep in _entry_points():
            dist = (ep.dist.name, ep.dist.version) if ep.dist is not None else None
            sources.append((ep.name, ep.load, dist, ep.dist))
    for name, module in extra_plugins:
        sources.append((name, lambda module=module: module, None, None))

    for name, load, dist, metadata in sources:
        where = _describe(name, dist)
        previous = pm.get_plugin(name)
        try:
            plugin = load()
        except Exception as exc:
            raise PluginError(
                f"plugin '{where}' failed to import: {type(exc).__name__}: {exc}"
            ) from exc
        extra = getattr(plugin, "requires_extra", None)
        if extra and metadata is not None:
            missing = missing_requirements(metadata, extra)
            if missing:
                unavailable.append(Unavailable(name, metadata.name, extra, tuple(missing)))
                continue
        if previous is not None or pm.is_registered(plugin):
            if previous is plugin or previous is None:  # listed twice (two dist-infos, or an
                continue  # experiment's `plugins:` naming an installed plugin module)
            first_where = _describe(name, distributions.get(name))
            raise PluginError(f"two plugins are named '{name}': {first_where} and {where}")
        try:
            pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin '{where}' is invalid: {_one_line(exc)}") from exc
        if dist:
            distributions[name] = dist
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) or repr(exc.plugin)
        callers = {n: c for n, c in vars(pm.hook).items() if not n.startswith("_")}
        unknown = sorted(
            n for n, c in callers.items()
            if not c.has_spec() and any(i.plugin is exc.plugin for i in c.get_hookimpls())
        )  # fmt: skip
        known = ", ".join(sorted(n for n, c in callers.items() if c.has_spec()))
        raise PluginError(
            f"plugin '{_describe(name, distributions.get(name))}' implements an unknown hook "
            f"{', '.join(repr(n) for n in unknown)} (known hooks: {known})"
        ) from exc
    return pm, distributions, unavailable


def build_registry(
    extra_plugins: Iterable[tuple[str, object]] = (), *, entry_points: bool = True
) -> Registry:
    """A fresh :class:`Registry` of all installed plugins plus ``extra_plugins``."""
    pm, distributions, unavailable = build_plugin_manager(extra_plugins, entry_points=entry_points)
    return Registry(pm, distributions, unavailable)


_default: Registry | None = None


def registry() -> Registry:
    """The registry of installed plugins, built once per process."""
    global _default
    if _default is None:
        _default = build_registry()
    return _default


_registries: dict[tuple[str, ...], Registry] = {}


def registry_for(modules: Sequence[str]) -> Registry:
    """The installed plugins plus the experiment's own ``plugins:`` modules (import paths,
    for project-local plugins that are not packaged); built once per process."""
    if not modules:
        return registry()
    key = tuple(modules)
    if key not in _registries:
        extra = []
        for i, name in enumerate(modules):
            try:
                extra.append((name, importlib.import_module(name)))
            except Exception as exc:
                raise ConfigError(
                    f"plugins[{i}]",
                    f"cannot import plugin module {name!r}: {type(exc).__name__}: {exc}",
                ) from None
        _registries[key] = build_registry(extra)
    return _registries[key]


def build_predictor(name: str, *, seed: int | None = None, **options: Any) -> Predictor:
    """The unfitted :class:`nasforge.Predictor` registered as ``name``, built as
    ``factory(seed=seed, **options)`` — how a strategy gets the predictors its options name.

    An unknown name raises the registry's :class:`KeyError` listing what is available; a bad
    option raises pydantic's ``ValidationError`` naming the field.
    """
    return registry().get("predictor", name).factory(seed=seed, **options)
