"""Opening the study's storage: SQLite in the run directory, an RDB URL, or a journal file.

``None`` means ``sqlite:///<run_dir>/study.db``; ``journal:PATH`` an Optuna journal file
(relative paths are taken inside the run directory); anything with a scheme is passed to
SQLAlchemy. ``NASFORGE_STORAGE`` in the environment overrides the experiment's choice, so
a cluster can point every run at its database without editing experiment files.
Passwords never reach logs: use :func:`mask_url` whenever a URL is printed.

A database server can restart under a running search. Every storage the engine opens is
wrapped in :class:`ReconnectingStorage`: a call that fails because the connection was lost
is retried with backoff for up to ``NASFORGE_STORAGE_WAIT_S`` seconds (default 120), then
the search stops with one clear line. Completed trials are never lost: each is committed
before the next is asked for.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from ..errors import StudyError
from ..experiment import SECRET_QUERY_KEYS
from .run_location import durable, is_mirrored
from .trial_writes import StudyCountError, TrialResult, write_trials

log = logging.getLogger(__name__)

#: default seconds a storage call keeps retrying a lost database connection
DEFAULT_WAIT_S = 120.0


#: the default study: a SQLite file of this name in the run directory
STUDY_FILE = "study.db"


def requested_storage(configured: str | None) -> str | None:
    """The storage asked for: ``NASFORGE_STORAGE``, else the experiment's ``configured``
    one; ``None`` for the default (:data:`STUDY_FILE` in the run directory)."""
    return os.environ.get("NASFORGE_STORAGE") or configured


def storage_url(configured: str | None, run_dir: Path) -> str:
    """The storage this run uses, after the environment override and defaults. A study file
    in a cloud run directory's mirror would vanish with it: that is a :class:`StudyError`."""
    url = requested_storage(configured)
    if url is None:
        url = f"sqlite:///{(run_dir / STUDY_FILE).resolve()}"
    path = storage_file(url, run_dir)
    if path is not None and is_mirrored(path.parent):
        raise StudyError(
            f"run directory {durable(run_dir)}: a study file ({path.name}) cannot live in "
            "a cloud run directory: set NASFORGE_STORAGE (or search.storage) to a database "
            "URL, or to a file on a local or shared path"
        )
    return url


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (in the authority and the query), for
    printing: ``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``."""
    url = re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)
    keys = "|".join(sorted(SECRET_QUERY_KEYS))
    return re.sub(rf"([?&](?:{keys})=)[^&]*", r"\1***", url, flags=re.IGNORECASE)


def open_storage(url: str, run_dir: Path) -> ReconnectingStorage:
    """Build the Optuna storage object for ``url`` (raising :class:`StudyError` clearly),
    wrapped so that a lost database connection is waited out (see the module doc)."""
    wait_s = _wait_s()
    backoff = _Backoff(wait_s)
    while True:
        try:
            return ReconnectingStorage(_open(url, run_dir), url, wait_s)
        except StudyError as exc:
            delay = backoff.next() if _is_connection_error(exc) else None
            if delay is None:
                raise
            log.warning("%s; retrying in %.1fs", exc, delay)
            time.sleep(delay)


class _Backoff:
    """Retry delays after lost connections: 0.5 s doubling to 5 s, for ``wait_s`` seconds
    counted from the first failure."""

    def __init__(self, wait_s: float):
        self.wait_s = wait_s
        self.deadline: float | None = None
        self.delay = 0.5

    def next(self) -> float | None:
        """The delay before the next attempt, or ``None`` when the time is up."""
        now = time.monotonic()
        self.deadline = self.deadline if self.deadline is not None else now + self.wait_s
        if now + self.delay > self.deadline:
            return None
        delay, self.delay = self.delay, min(self.delay * 2, 5.0)
        return delay


def _wait_s() -> float:
    raw = os.environ.get("NASFORGE_STORAGE_WAIT_S")
    try:
        return DEFAULT_WAIT_S if raw is None else max(0.0, float(raw))
    except ValueError:
        raise StudyError(f"NASFORGE_STORAGE_WAIT_S: expected seconds, got {raw!r}") from None


def storage_file(url: str, run_dir: Path) -> Path | None:
    """The file a storage lives in: a SQLite database or a journal (a relative journal path
    is taken inside the run directory, a relative SQLite path in the working directory);
    ``None`` for a database server."""
    if url.startswith("journal:"):
        path = Path(url[len("journal:") :])
        return path if path.is_absolute() else run_dir / path
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :])
    return None


def _open(url: str, run_dir: Path) -> BaseStorage:
    try:
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            path = storage_file(url, run_dir)
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        if url.startswith("sqlite:///"):
            storage_file(url, run_dir).parent.mkdir(parents=True, exist_ok=True)
            storage = optuna.storages.RDBStorage(url)
            _fast_sqlite(storage)
            return storage
        return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
    except Exception as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        error = StudyError(f"cannot open study storage {mask_url(url)}: {message}")
        error.__cause__ = exc  # kept (not shown) so the retry can tell a lost connection
        error.__suppress_context__ = True
        raise error from exc


def _fast_sqlite(storage: optuna.storages.RDBStorage) -> None:
    """Write-ahead logging with ``synchronous=NORMAL``: a committed trial survives a crash of
    the process (the search's failure mode), and each commit stops paying an fsync."""
    import sqlalchemy

    def on_connect(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    sqlalchemy.event.listen(storage.engine, "connect", on_connect)
    storage.engine.dispose()  # reconnect so pooled connections get the pragmas too


def _is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) means the database could not be reached — as
    opposed to a bad query or bad data, which retrying cannot fix."""
    import sqlalchemy.exc

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
            return True
        if isinstance(exc, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
            return True
        if isinstance(exc, sqlalchemy.exc.DisconnectionError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class ReconnectingStorage(BaseStorage):
    """An Optuna storage that waits out a lost database connection.

    Every :class:`~optuna.storages.BaseStorage` method is forwarded to ``inner``; one that
    fails with a connection error is retried with exponential backoff (0.5 s doubling to
    5 s) until ``wait_s`` seconds have passed since the first failure, then
    :class:`~nasforge.errors.StudyError` names the (masked) URL and the cause. A write
    whose commit reached the server just before the connection broke is not applied twice:
    finishing a trial that the retry finds already in the requested state is success.
    :meth:`write_trials` writes a batch of trials in one call (see
    :mod:`nasforge.engine.trial_writes`). ``busy_s`` and ``calls`` count the time spent in
    storage calls and their number (each a round-trip), for benchmarks.
    """

    def __init__(self, inner: BaseStorage, url: str, wait_s: float = DEFAULT_WAIT_S):
        self.inner = inner
        self.url = url
        self.wait_s = wait_s
        self.busy_s = 0.0
        self.calls = 0
        self.reconnects = 0

    def write_trials(
        self, study_id: int, new: Sequence[FrozenTrial], results: Sequence[TrialResult] = ()
    ) -> list[int]:
        """:func:`~nasforge.engine.trial_writes.write_trials` on the inner storage, as one
        call; retried like the others. A retry that finds the batch already committed
        (the connection broke after the commit) returns the ids it was given."""

        attempts = 0

        def write(study_id, new, results):
            nonlocal attempts
            attempts += 1
            retrying = attempts > 1
            try:
                return write_trials(self.inner, study_id, new, results)
            except optuna.exceptions.UpdateFinishedTrialError:
                if retrying and all(self._already((r.trial_id, r.state)) for r in results):
                    return []  # (a batch with new trials fails the count check instead)
                raise
            except StudyCountError as exc:
                if not (retrying and new and exc.found == exc.expected + len(new)):
                    raise
                return [
                    self.inner.get_trial_id_from_study_id_trial_number(study_id, t.number)
                    for t in new
                ]

        return self._call("write_trials", (study_id, new, results), {}, method=write)

    def _call(self, name: str, args: tuple, kwargs: dict, method: Any = None) -> Any:
        method = method or getattr(self.inner, name)
        started = time.perf_counter()
        backoff = _Backoff(self.wait_s)
        retried = False
        try:
            while True:
                try:
                    result = method(*args, **kwargs)
                    if retried:
                        self.reconnects += 1
                        log.warning("study storage %s is back", mask_url(self.url))
                    return result
                except optuna.exceptions.UpdateFinishedTrialError:
                    if retried and name == "set_trial_state_values" and self._already(args):
                        return True  # the first attempt committed before the link broke
                    raise
                except Exception as exc:
                    if not _is_connection_error(exc):
                        raise
                    delay = backoff.next()
                    if delay is None:
                        raise StudyError(
                            f"lost the connection to study storage {mask_url(self.url)} and "
                            f"it did not come back within {self.wait_s:g}s "
                            f"(NASFORGE_STORAGE_WAIT_S): {_first_line(exc)}; completed trials "
                            "are stored: run the same command again to resume"
                        ) from None
                    log.warning(
                        "study storage %s unreachable (%s); retrying in %.1fs",
                        mask_url(self.url),
                        _first_line(exc),
                        delay,
                    )
                    self._reset_connections()
                    time.sleep(delay)
                    retried = True
        finally:
            self.busy_s += time.perf_counter() - started
            self.calls += 1

    def _already(self, args: tuple) -> bool:
        trial_id, state = args[0], args[1]
        return self.inner.get_trial(trial_id).state == state

    def _reset_connections(self) -> None:
        engine = getattr(self.inner, "engine", None)
        if engine is not None:
            engine.dispose()  # drop pooled connections to the old server process

    def __getattr__(self, name: str) -> Any:  # attributes that are not storage methods
        if name == "inner":  # unpickled: see __getstate__
            raise StudyError(
                "a pickled study storage cannot be used: open it again with open_storage()"
            )
        return getattr(self.inner, name)

    def __getstate__(self) -> dict[str, Any]:
        """Pickles (Ray Tune saves its searcher, which holds the study) keep the masked URL
        only: never the password, never a live connection."""
        return {"url": mask_url(self.url), "wait_s": self.wait_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.url, self.wait_s = state["url"], state["wait_s"]
        self.busy_s, self.calls, self.reconnects = 0.0, 0, 0


def _first_line(exc: BaseException) -> str:
    cause = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    text = str(cause).strip().splitlines()
    return text[0] if text else type(cause).__name__


def _forward(name: str):
    def method(self: ReconnectingStorage, *args: Any, **kwargs: Any) -> Any:
        return self._call(name, args, kwargs)

    method.__name__ = name
    method.__doc__ = getattr(BaseStorage, name).__doc__
    return method


# every public method of Optuna's storage interface is forwarded (with retries)
for _name, _member in vars(BaseStorage).items():
    if callable(_member) and not _name.startswith("_"):
        setattr(ReconnectingStorage, _name, _forward(_name))
ReconnectingStorage.__abstractmethods__ = frozenset()
