"""Opening the study's storage: SQLite in the run directory, an RDB URL, or a journal file.

``None`` means ``sqlite:///<run_dir>/study.db``; ``journal:PATH`` an Optuna journal file
(relative paths are taken inside the run directory); anything with a scheme is passed to
SQLAlchemy. ``NASFORGE_STORAGE`` in the environment overrides the experiment's choice, so
a cluster can point every run at its database without editing experiment files.
Passwords never reach logs: use :func:`mask_url` whenever a URL is printed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import optuna
from optuna.storages import BaseStorage

from ..config import SECRET_QUERY_KEYS
from ..errors import StudyError


def storage_url(configured: str | None, run_dir: Path) -> str:
    """The storage this run uses, after the environment override and defaults."""
    url = os.environ.get("NASFORGE_STORAGE") or configured
    if url is None:
        return f"sqlite:///{(run_dir / 'study.db').resolve()}"
    return url


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (in the authority and the query), for
    printing: ``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``."""
    url = re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)
    keys = "|".join(sorted(SECRET_QUERY_KEYS))
    return re.sub(rf"([?&](?:{keys})=)[^&]*", r"\1***", url, flags=re.IGNORECASE)


def open_storage(url: str, run_dir: Path) -> BaseStorage:
    """Build the Optuna storage object for ``url`` (raising :class:`StudyError` clearly)."""
    try:
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            path = Path(url[len("journal:") :])
            path = path if path.is_absolute() else run_dir / path
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
            storage = optuna.storages.RDBStorage(url)
            _fast_sqlite(storage)
            return storage
        return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
    except Exception as exc:
        raise StudyError(f"cannot open study storage {mask_url(url)}: {exc}") from None


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
