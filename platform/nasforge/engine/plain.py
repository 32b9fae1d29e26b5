"""What nasforge hands to Ray is plain data: the one check made where it crosses over.

Ray pickles what it is given — a Tune searcher into its experiment state, the keyword
arguments of ``tune.with_parameters`` into the object store, Ray Train's
``train_loop_config`` to every rank. A sampler, a study, a storage or a live model there
breaks on the first upstream release that adds a lock to one of them (Optuna 5.1's
``NSGAIISampler`` did), and drags a database connection into processes that must not
share it. So each of those hand-overs is checked here, before Ray sees it, and refused
with the path of the first value that is not plain data.
"""

from __future__ import annotations

from typing import Any, TypeVar

from ..errors import NasforgeError

T = TypeVar("T")

#: the leaves of plain data: what JSON holds, plus bytes
PLAIN_LEAVES = (str, int, float, bool, bytes, type(None))


def check_plain(value: T, what: str, allowed: tuple[type, ...] = ()) -> T:
    """``value`` if it is plain data — dicts with string keys, lists, tuples and
    :data:`PLAIN_LEAVES`, plus instances of ``allowed`` (Ray's own handles: ``ObjectRef``,
    ``ActorHandle``) — else a :class:`NasforgeError` naming ``what`` and the bad path."""
    path = _first_not_plain(value, allowed, "")
    if path is not None:
        where, kind = path
        raise NasforgeError(
            f"{what}: {where or 'the value'} is a {kind}, not plain data; nasforge hands Ray "
            "only plain data (archs, experiment JSON, counts) and object-store references"
        )
    return value


def _first_not_plain(value: Any, allowed: tuple[type, ...], path: str) -> tuple[str, str] | None:
    if isinstance(value, PLAIN_LEAVES) or (allowed and isinstance(value, allowed)):
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path}[{key!r}]", f"key of type {type(key).__name__}"
            found = _first_not_plain(item, allowed, f"{path}.{key}" if path else key)
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _first_not_plain(item, allowed, f"{path}[{i}]")
            if found:
                return found
        return None
    return path, f"{type(value).__module__}.{type(value).__qualname__}"
