"""Where a run directory lives: a local or shared path, or a cloud URI.

A path (local disk, or a filesystem every node mounts) is used as it is. A cloud URI —
``s3://bucket/runs/x``, ``gs://bucket/runs/x``, anything :func:`pyarrow.fs.FileSystem.from_uri`
opens, with endpoint options in the query (``s3://b/x?endpoint_override=host:9000&scheme=http``)
— is worked on through a local *mirror*: :func:`local_run_dir` downloads what the run holds
into a temporary folder, the engine reads and writes that folder as it would any run
directory, :func:`sync` uploads what changed (after each training epoch, the trained
weights, a report), and closing the mirror uploads the rest and removes it. Ray Train and Ray
Tune write their own folders (``supernet/ray``, ``tune``) straight to the URI:
:func:`ray_storage` gives ``RunConfig`` its ``storage_path`` and ``storage_filesystem``, so a
run's checkpoints outlive the machine that wrote them and training resumes on another.

Credentials come from the environment of every node (``AWS_ACCESS_KEY_ID``…,
``GOOGLE_APPLICATION_CREDENTIALS``), never from the URI; ``AWS_ENDPOINT_URL`` also works in
place of ``endpoint_override``. Two commands on one cloud run at the same time are not
prevented (the run lock is on the mirror): run them one after the other.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import NasforgeError
from ..experiment import CREDENTIAL_IN_URI, is_uri, join_uri, local_path, uri_has_credential

log = logging.getLogger(__name__)

#: folders a command that only reads a run (report, export, dashboard) does not download:
#: every sweep recipe's and every standalone fidelity run's checkpoints
TRAINING_FOLDERS = ("supernet/sweep", "fidelity/runs")

#: names of the folders Ray Train and Ray Tune keep at the URI themselves (``supernet/ray``,
#: ``tune``, a training trial's ``ray``): never mirrored
RAY_FOLDERS = frozenset({"ray", "tune"})


def open_location(location: str, what: str = "run directory") -> tuple[Any, str]:
    """``(pyarrow filesystem, path in it)`` for a URI or a local path. A URI that carries a
    credential (``user:secret@``, ``secret_key=``…) is refused: credentials come from the
    environment, so they never reach logs, Ray's configs or pickles."""
    import pyarrow.fs as pafs

    if not is_uri(location):
        return pafs.LocalFileSystem(), str(local_path(location).resolve())
    if uri_has_credential(location):
        raise NasforgeError(f"{what} {_masked(location)}: {CREDENTIAL_IN_URI}")
    try:
        return pafs.FileSystem.from_uri(location)
    except Exception as exc:
        raise NasforgeError(f"{what} {_masked(location)}: cannot open it: {_first(exc)}") from None


def _masked(uri: str) -> str:
    """``uri`` without its query or user part, for messages."""
    parts = urlsplit(uri)
    host = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{host}{parts.path}"


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass
class Mirror:
    """A cloud run directory's local working copy: ``uri``, its pyarrow ``fs`` and ``root``
    path there, the local folder ``local``, and each file's stamp ``(size, mtime_ns, inode)``
    as last downloaded or uploaded (a file whose stamp differs has changed since); ``skip``:
    folders (relative paths) left out of the download."""

    uri: str
    fs: Any
    root: str
    local: Path
    synced: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    skip: tuple[str, ...] = ()
    users: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def pull(self) -> int:
        """Download every file of the run but Ray's own folders; returns how many."""
        import pyarrow.fs as pafs

        infos = self.fs.get_file_info(pafs.FileSelector(self.root, recursive=True,
                                                         allow_not_found=True))  # fmt: skip
        count = 0
        for info in infos:
            rel = info.path[len(self.root) :].lstrip("/")
            if info.type != pafs.FileType.File or _ray_owned(rel) or _under(rel, self.skip):
                continue
            self.download(rel)
            count += 1
        return count

    def download(self, rel: str) -> None:
        """Copy file ``rel`` from the URI over the local one, and stamp it as synced."""
        import pyarrow.fs as pafs

        target = self.local / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        pafs.copy_files(f"{self.root}/{rel}", str(target), source_filesystem=self.fs,
                        destination_filesystem=pafs.LocalFileSystem())  # fmt: skip
        self.synced[rel] = _stamp(target)

    def push(self) -> list[str]:
        """Upload every file that changed since it was last synced; returns their paths."""
        import pyarrow.fs as pafs

        with self.lock:
            changed = [
                (rel, stamp)
                for rel, stamp in _files(self.local)
                if self.synced.get(rel) != stamp and not _ray_owned(rel)
            ]
            for rel, stamp in changed:
                target = f"{self.root}/{rel}"
                self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
                pafs.copy_files(str(self.local / rel), target,
                                source_filesystem=pafs.LocalFileSystem(),
                                destination_filesystem=self.fs)  # fmt: skip
                self.synced[rel] = stamp
            return [rel for rel, _ in changed]


def _ray_owned(rel: str) -> bool:
    return any(part in RAY_FOLDERS for part in rel.split("/")[:-1])


def _under(rel: str, folders: tuple[str, ...]) -> bool:
    return any(rel.startswith(folder.rstrip("/") + "/") for folder in folders)


def _stamp(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns, st.st_ino


#: file names never uploaded: locks and files still being written (``.x.tmp``, ``x.partial``)
_UNFINISHED = re.compile(r"^\.|\.(lock|partial|tmp)$")


def _files(root: Path) -> Iterator[tuple[str, tuple[int, int, int]]]:
    """``(relative path, stamp)`` of every finished file under ``root`` (not the run lock,
    not a temporary file an atomic write has not renamed yet)."""
    for folder, _, names in os.walk(root):
        for name in sorted(names):
            if _UNFINISHED.search(name):
                continue
            path = Path(folder, name)
            with contextlib.suppress(FileNotFoundError):  # replaced while we walk
                yield path.relative_to(root).as_posix(), _stamp(path)


_mirrors: dict[str, Mirror] = {}
_mirrors_lock = threading.Lock()


@contextlib.contextmanager
def local_run_dir(run_dir: str | Path, *, skip: tuple[str, ...] = ()) -> Iterator[Path]:
    """The run directory as a local folder for the length of the block.

    A path is yielded as it is. A URI is mirrored (see the module doc): its files are
    downloaded on entry (but those under the ``skip`` folders, which a read-only command
    does not need), changed files uploaded on exit — also when the block raises — and the
    mirror removed once uploaded. Entering the same URI again inside the block yields the
    same mirror. An upload that fails keeps the mirror and names it."""
    if not is_uri(run_dir):
        yield local_path(run_dir)  # as given: what is printed reads as the user wrote it
        return
    uri = str(run_dir)
    with _mirrors_lock:
        mirror = _mirrors.get(uri)
        if mirror is None:
            mirror = _open_mirror(uri, skip)
            _mirrors[uri] = mirror
        mirror.users += 1
    failed = True
    try:
        yield mirror.local
        failed = False
    finally:
        with _mirrors_lock:
            mirror.users -= 1
            last = mirror.users == 0
            if last:
                del _mirrors[uri]
        if last:
            _close(mirror, failed)


def _open_mirror(uri: str, skip: tuple[str, ...]) -> Mirror:
    import pyarrow.fs as pafs

    fs, root = open_location(uri)
    root = root.rstrip("/")
    bucket = root.split("/", 1)[0]
    try:
        missing = fs.get_file_info(bucket).type == pafs.FileType.NotFound
    except Exception as exc:
        raise NasforgeError(
            f"run directory {_masked(uri)}: cannot reach it: {_first(exc)}"
        ) from None
    if missing:
        raise NasforgeError(
            f"run directory {_masked(uri)}: the bucket '{bucket}' does not exist (or these "
            "credentials cannot see it): create it first"
        )
    # resolved: a temporary folder behind a symbolic link (macOS's /var) is still found
    local = Path(tempfile.mkdtemp(prefix="nasforge-run-")).resolve()
    mirror = Mirror(uri, fs, root, local, skip=skip)
    try:
        pulled = mirror.pull()
    except Exception as exc:
        shutil.rmtree(local, ignore_errors=True)
        raise NasforgeError(
            f"run directory {_masked(uri)}: cannot read it: {_first(exc)}"
        ) from None
    log.info("run directory %s: %d files mirrored in %s", _masked(uri), pulled, local)
    return mirror


def _close(mirror: Mirror, failed: bool) -> None:
    """Upload what changed and remove the mirror; an upload that fails keeps the mirror and
    says where — as the error, or beside the block's own error when the block failed."""
    try:
        mirror.push()
    except Exception as exc:
        message = (
            f"run directory {_masked(mirror.uri)}: uploading its files failed ({_first(exc)}); "
            f"they are kept in {mirror.local}"
        )
        if failed:
            log.error("%s", message)  # the block's own error is the one raised
            return
        raise NasforgeError(message) from None
    shutil.rmtree(mirror.local, ignore_errors=True)


def _mirror_of(local: Path) -> tuple[Mirror, str] | None:
    """The mirror ``local`` lies in and its path relative to the mirror, if any."""
    local = Path(local).resolve()
    with _mirrors_lock:
        for mirror in _mirrors.values():
            if local == mirror.local or mirror.local in local.parents:
                rel = local.relative_to(mirror.local).as_posix()
                return mirror, "" if rel == "." else rel
    return None


def sync(local: Path) -> None:
    """Upload now what changed in the mirror ``local`` belongs to (nothing for a path):
    a finished epoch, the trained weights, a report become visible at the URI at once."""
    found = _mirror_of(local)
    if found is None:
        return
    try:
        found[0].push()
    except Exception as exc:  # a passing outage: the next sync, or the end, uploads it
        log.warning("run directory %s: upload failed (%s); retried later",
                    _masked(found[0].uri), _first(exc))  # fmt: skip


def fetch(local: Path) -> None:
    """Download ``local`` again from the URI when it lies in a mirror (a file another
    process — a training trial on another node — has uploaded since the mirror was made);
    nothing for a path."""
    found = _mirror_of(local)
    if found is None:
        return
    import pyarrow.fs as pafs

    mirror, rel = found
    if mirror.fs.get_file_info(f"{mirror.root}/{rel}").type != pafs.FileType.File:
        return
    with mirror.lock:
        mirror.download(rel)


def ray_storage(local: Path) -> tuple[str, Any]:
    """``(storage_path, storage_filesystem)`` for a Ray ``RunConfig`` keeping its folder at
    ``local``: the matching place at the URI for a mirrored run, else ``(local, None)``."""
    found = _mirror_of(local)
    if found is None:
        return str(local), None
    mirror, rel = found
    return f"{mirror.root}/{rel}".rstrip("/"), mirror.fs


def location_of(local: Path) -> str:
    """Where a worker on any node finds ``local``: its URI for a mirrored run (open it with
    :func:`open_location`), else the path."""
    found = _mirror_of(local)
    if found is None:
        return str(local)
    mirror, rel = found
    return join_uri(mirror.uri, rel)


def durable(local: Path) -> Path | str:
    """Where ``local`` is kept for good, to show a user: the path itself, or for a file of a
    cloud run's mirror its URI (without the query)."""
    found = _mirror_of(local)
    if found is None:
        return local
    return _masked(join_uri(found[0].uri, found[1]))


def is_mirrored(local: Path) -> bool:
    """Whether ``local`` lies in the mirror of a cloud run directory."""
    return _mirror_of(local) is not None
