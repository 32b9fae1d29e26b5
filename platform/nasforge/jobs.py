"""Talking to a Ray cluster's job server: submit an experiment, follow it, list, stop.

:func:`submit` checks the experiment here first (a bad file never travels), then hands
Ray's Job Submission SDK the working directory — less :data:`DEFAULT_EXCLUDES` and the
lines of its ``.nasforgeignore`` (gitignore syntax; Ray itself also honours ``.gitignore``
and ``.rayignore``) — and the entrypoint ``nasforge run EXP.yaml``, which runs on the
cluster inside the unpacked copy. That copy is on the job's ``PYTHONPATH``, so plugin
modules beside the experiment travel with it; ``nasforge`` must be installed on the
cluster. Ray deletes the copy with the job, so :func:`submit` refuses an experiment whose
results would be written inside it (:func:`lost_results`) unless the run is ``scratch``.

The job server's address is ``--address``, else ``RAY_API_SERVER_ADDRESS`` or
``RAY_ADDRESS`` when it is an ``http(s)://`` URL, else ``http://127.0.0.1:8265``.

Authentication is Ray's token, found by Ray's own loader in Ray's order: ``RAY_AUTH_TOKEN``,
then the file named by ``RAY_AUTH_TOKEN_PATH``, then ``~/.ray/auth_token`` — never the
experiment file — and sent as ``Authorization: Bearer``. The SDK adds it by itself only when
this process has ``RAY_AUTH_MODE=token``; we send it whenever a token exists, unless
``RAY_AUTH_MODE=disabled``. The token, ``NASFORGE_STORAGE`` and ``PGPASSWORD`` (the last
two passed on to the job when set here) are never printed unmasked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import NasforgeError

if TYPE_CHECKING:
    from ray.job_submission import JobDetails, JobSubmissionClient

    from .plan import Plan

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
#: never uploaded: run directories, virtual environments, caches, version control
DEFAULT_EXCLUDES = (
    "runs/", ".venv/", "venv/", ".ci/venv/", ".git/", "__pycache__/", "*.pyc",
    ".pytest_cache/", ".ruff_cache/",
)  # fmt: skip
IGNORE_FILE = ".nasforgeignore"
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})


class JobError(NasforgeError):
    """The job server cannot be reached, refuses the request, or does not know the job."""


def resolve_address(address: str | None = None) -> str:
    """The job server's URL: ``address``, else an ``http(s)://`` ``RAY_API_SERVER_ADDRESS``
    or ``RAY_ADDRESS`` (a ``host:port`` GCS address is not a job server), else the local
    default."""
    candidates = [address] if address else []
    candidates += [os.environ.get("RAY_API_SERVER_ADDRESS"), os.environ.get("RAY_ADDRESS")]
    for candidate in candidates:
        if candidate and candidate.startswith(("http://", "https://")):
            return candidate.rstrip("/")
    if address:
        raise JobError(f"--address {address}: expected the job server's URL, http://HOST:8265")
    return DEFAULT_ADDRESS


def token_source() -> str | None:
    """Where Ray's loader takes the token from, for messages (never the token itself)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    if os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return f"RAY_AUTH_TOKEN_PATH={os.environ['RAY_AUTH_TOKEN_PATH']}"
    if (Path.home() / ".ray" / "auth_token").is_file():
        return "~/.ray/auth_token"
    return None


def auth_headers(address: str) -> dict[str, str]:
    """``{"authorization": "Bearer <token>"}`` from Ray's token loader, or ``{}`` when
    there is no token or ``RAY_AUTH_MODE=disabled``; ``address`` is for the error."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return {}
    from ray._raylet import AuthenticationTokenLoader  # what `ray get-auth-token` reads
    from ray.exceptions import AuthenticationError

    try:
        return dict(
            AuthenticationTokenLoader.instance().get_token_for_http_header(ignore_auth_mode=True)
        )
    except AuthenticationError:  # RAY_AUTH_TOKEN_PATH names a missing or empty file
        raise JobError(
            f"{address}: cannot read Ray's auth token from {token_source()} (missing or empty)"
        ) from None


@contextlib.contextmanager
def _requests(address: str, job_id: str | None = None) -> Iterator[None]:
    """Turn the SDK's exceptions into one-line :class:`JobError` naming the address."""
    import requests
    from ray.exceptions import AuthenticationError

    try:
        yield
    except AuthenticationError as exc:
        source = token_source()
        if "Authentication failed" in str(exc):  # 403: a token, but not this cluster's
            raise JobError(f"{address} refused Ray's auth token from {source}") from None
        if source and os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
            raise JobError(
                f"{address} requires Ray's auth token, which RAY_AUTH_MODE=disabled keeps "
                "from being sent"
            ) from None
        if source:  # sent, yet missing on arrival
            raise JobError(
                f"{address} requires Ray's auth token and did not get the one from {source} "
                "(does a proxy drop the Authorization header?)"
            ) from None
        raise JobError(
            f"{address} requires Ray's auth token and none was found: set RAY_AUTH_TOKEN, "
            "RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token (`ray get-auth-token` on the head "
            "prints it)"
        ) from None
    except (ConnectionError, requests.exceptions.ConnectionError):
        raise JobError(f"cannot reach a Ray job server at {address}") from None
    except RuntimeError as exc:
        text = " ".join(str(exc).split())
        if job_id is not None and "status code 404" in text:
            raise JobError(f"{address}: no job '{job_id}' (see `nasforge jobs list`)") from None
        raise JobError(f"{address}: {text}") from None


@contextlib.contextmanager
def _api_server_env(address: str) -> Iterator[None]:
    # The SDK prefers RAY_API_SERVER_ADDRESS / RAY_ADDRESS over its address argument; pin
    # the one we resolved while it builds the client.
    previous = os.environ.get("RAY_API_SERVER_ADDRESS")
    os.environ["RAY_API_SERVER_ADDRESS"] = address
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("RAY_API_SERVER_ADDRESS", None)
        else:
            os.environ["RAY_API_SERVER_ADDRESS"] = previous


def client(address: str | None = None) -> tuple[str, JobSubmissionClient]:
    """The resolved address and an SDK client for it (its version check already done)."""
    from ray.job_submission import JobSubmissionClient

    url = resolve_address(address)
    headers = auth_headers(url)
    with _requests(url), _api_server_env(url):
        return url, JobSubmissionClient(url, headers=headers)


def excludes_for(working_dir: Path) -> list[str]:
    """:data:`DEFAULT_EXCLUDES` plus the pattern lines of ``working_dir/.nasforgeignore``."""
    patterns = list(DEFAULT_EXCLUDES)
    ignore = working_dir / IGNORE_FILE
    if ignore.is_file():
        lines = (line.strip() for line in ignore.read_text().splitlines())
        patterns += [line for line in lines if line and not line.startswith("#")]
    return patterns


#: the submitter's environment variables the job gets, when set: where the study and the
#: run directories live
JOB_ENV_VARS = ("NASFORGE_STORAGE", "PGPASSWORD", "NASFORGE_RUN_ROOT")


def job_env() -> dict[str, str]:
    """The values of :data:`JOB_ENV_VARS` set here (secrets: print them masked or not)."""
    return {k: os.environ[k] for k in JOB_ENV_VARS if os.environ.get(k)}


def lost_results(plan: Plan) -> str | None:
    """What a job of ``plan`` would lose with its working directory, or ``None``.

    The job runs in a copy of the working directory that Ray deletes when the job ends: a
    study that is a file at a relative path (the SQLite default in ``runs/<name>``, a
    relative journal or SQLite path) goes with it, and so does a relative run directory,
    which matters when the experiment trains a supernet (its weights live only there; a
    search alone can be reported again from a shared study, ``nasforge report EXP.yaml``).
    ``NASFORGE_STORAGE`` and ``NASFORGE_RUN_ROOT`` set here are what the job gets
    (:func:`job_env`).
    """
    from .engine.storage import STUDY_FILE, mask_url, requested_storage, storage_file
    from .experiment import is_uri

    experiment = plan.experiment
    run_dir = experiment.resolved_run_dir
    url = requested_storage(experiment.search.storage)
    cloud = is_uri(run_dir)  # durable; a study file in it is impossible_run's to refuse
    if cloud and url is None:
        return None
    base = Path(".") if cloud else run_dir  # (with a cloud run dir: the working directory)
    study = base / STUDY_FILE if url is None else storage_file(url, base)
    if study is not None and not study.is_absolute():
        what = "SQLite" if url is None or url.startswith("sqlite") else mask_url(url)
        return (
            f"the study would be {what} at {study}, inside the job's working directory, which "
            "Ray deletes when the job ends: set NASFORGE_STORAGE to a database the cluster "
            "shares (PostgreSQL), or pass --scratch for a throw-away run"
        )
    if experiment.train is not None and not cloud and not run_dir.is_absolute():
        return (
            f"the run directory {run_dir} is inside the job's working directory, which Ray "
            "deletes when the job ends, and the trained supernet would go with it: set "
            "run_dir (or NASFORGE_RUN_ROOT) to a path every node shares, or pass --scratch "
            "for a throw-away run"
        )
    return None


def impossible_run(plan: Plan) -> str | None:
    """Why a job of ``plan`` cannot run at all (``--scratch`` or not), or ``None``: a study
    file (the SQLite default, a relative journal) in a cloud run directory, where a study
    file cannot live."""
    from .engine.storage import STUDY_FILE, requested_storage, storage_file
    from .experiment import is_uri

    experiment = plan.experiment
    if not is_uri(experiment.resolved_run_dir):
        return None
    url = requested_storage(experiment.search.storage)
    run_dir = Path("/RUN_DIR")  # stands for the run directory: where storage_file puts files
    study = run_dir / STUDY_FILE if url is None else storage_file(url, run_dir)
    if study is not None and run_dir in study.parents:
        what = STUDY_FILE if url is None else url
        return (
            f"the study would be a file ({what}) in the cloud run directory, where a study file "
            "cannot live: set NASFORGE_STORAGE to a database the cluster shares (PostgreSQL)"
        )
    return None


def submit(
    experiment: str | Path,
    address: str | None = None,
    working_dir: str | Path = ".",
    excludes: Sequence[str] = (),
    *,
    scratch: bool = False,
) -> str:
    """Validate ``experiment``, upload ``working_dir`` and start ``nasforge run`` on the
    cluster; returns the submission id. ``excludes`` adds to :func:`excludes_for`; an
    experiment that would lose its results with the job (:func:`lost_results`) is refused
    unless ``scratch``."""
    from .plan import load_plan

    root = Path(working_dir).resolve()
    if not root.is_dir():
        raise JobError(f"--working-dir {working_dir}: not a directory")
    path = Path(experiment)
    if not path.is_file():
        raise JobError(f"{experiment}: no such experiment file")
    try:
        relative = path.resolve().relative_to(root)
    except ValueError:
        raise JobError(
            f"{experiment}: outside the working directory {root}, so it would not travel "
            "(pass --working-dir)"
        ) from None
    sys.path.insert(0, str(root))  # as on the cluster, where the copy is on PYTHONPATH
    try:
        plan = load_plan(path)
    finally:
        sys.path.remove(str(root))
    patterns = [*excludes_for(root), *excludes]
    from ray._private.thirdparty.pathspec import PathSpec  # the matcher Ray applies to them

    for pattern in patterns:
        if PathSpec.from_lines("gitwildmatch", [pattern]).match_file(relative.as_posix()):
            raise JobError(f"{experiment}: excluded from the upload by '{pattern}'")
    if (problem := impossible_run(plan)) or (not scratch and (problem := lost_results(plan))):
        raise JobError(f"{experiment}: {problem}")
    runtime_env: dict = {"working_dir": str(root), "excludes": patterns}
    if env := job_env():
        runtime_env["env_vars"] = env
    url, sdk = client(address)
    with _requests(url):
        try:
            return sdk.submit_job(
                entrypoint=f"nasforge run {shlex.quote(relative.as_posix())}",
                runtime_env=runtime_env,
                metadata={"nasforge_experiment": plan.experiment.name},
            )
        except ValueError as exc:  # e.g. the package is over Ray's size limit
            raise JobError(f"{root}: cannot upload: {' '.join(str(exc).split())}") from None


def status(job_id: str, address: str | None = None) -> JobDetails:
    """The job's details: ``.status`` (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED),
    ``.message``, ``.entrypoint``, ``.start_time``/``.end_time`` (ms), ``.metadata``."""
    url, sdk = client(address)
    with _requests(url, job_id):
        return sdk.get_job_info(job_id)


def list_jobs(address: str | None = None) -> list[JobDetails]:
    """Every job the cluster knows, oldest first."""
    url, sdk = client(address)
    with _requests(url):
        return sorted(sdk.list_jobs(), key=lambda j: j.start_time or 0)


def logs(job_id: str, address: str | None = None) -> str:
    """The job's output so far (stdout and stderr of ``nasforge run``)."""
    url, sdk = client(address)
    with _requests(url, job_id):
        return sdk.get_job_logs(job_id)


def stop(job_id: str, address: str | None = None) -> bool:
    """Ask the job to stop (SIGTERM, then SIGKILL after Ray's grace period); ``False``
    when it had already ended."""
    url, sdk = client(address)
    with _requests(url, job_id):
        return sdk.stop_job(job_id)


def wait(
    job_id: str, address: str | None = None, until: Sequence[str] = TERMINAL, timeout: float = 600
) -> JobDetails:
    """Poll the job until its status is in ``until`` (or ``timeout`` seconds pass)."""
    url, sdk = client(address)
    deadline = time.monotonic() + timeout
    with _requests(url, job_id):
        while True:
            info = sdk.get_job_info(job_id)
            if info.status.value in until or time.monotonic() > deadline:
                return info
            time.sleep(0.5)


def follow_logs(
    job_id: str, write: Callable[[str], object], address: str | None = None
) -> JobDetails:
    """Pass the job's output to ``write`` as it comes, until the job ends; returns its
    final details."""
    url, sdk = client(address)

    async def tail() -> None:
        async for chunk in sdk.tail_job_logs(job_id):
            write(chunk)

    with _requests(url, job_id):
        sdk.get_job_info(job_id)  # an unknown id fails here, clearly
        asyncio.run(tail())
    return wait(job_id, url, timeout=60)
