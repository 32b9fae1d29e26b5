"""Where a run executes: the lock on its run directory, the Ray it runs on, what it may ask.

:class:`RunLock` keeps two nasforge processes off one run directory (released by the OS if
the holder dies); :func:`ray_init` joins ``RAY_ADDRESS`` or starts a local Ray bound to
127.0.0.1 only; :func:`check_resources` refuses (local Ray) or warns about (a cluster that
may autoscale) work bigger than the cluster.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

from ..errors import NasforgeError, StudyError

log = logging.getLogger(__name__)


class RunLock:
    """An exclusive lock on a run directory, released by the OS if the process dies."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / ".lock"
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StudyError(
                f"{self.path.parent}: another nasforge process (pid {holder}) is running this "
                "experiment; wait for it or stop it"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def ray_init(num_cpus: int | None = None) -> None:
    """Join ``RAY_ADDRESS`` if set, else start a local Ray (``num_cpus``: all by default)
    whose every server listens on 127.0.0.1 only, without a dashboard.

    Ray replaces a ``127.0.0.1`` node address by the machine's network address and then
    listens on every interface; its single-machine mode (the default on macOS and Windows,
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``) keeps the GCS, raylets, workers and agents on
    loopback. A local Ray is one machine, so nasforge always starts it that way.
    """
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
        return
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # inherited by Ray's processes
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False  # read at import: this process imported it
    ray.init(
        address="local",  # a new Ray of our own, never one another process started here
        num_cpus=num_cpus,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    # processes that join it through RAY_ADDRESS (nasforge commands a test runs, the
    # pytest plugin's sessions) must still know it cannot grow: see check_resources
    os.environ[LOCAL_RAY] = ray.get_runtime_context().gcs_address
    node = ray._private.worker.global_worker.node.node_ip_address
    if node != "127.0.0.1":
        log.warning("the local Ray listens on %s, not only on 127.0.0.1", node)


#: set to the address of a local Ray that nasforge started (inherited by subprocesses)
LOCAL_RAY = "NASFORGE_LOCAL_RAY"


def is_local_ray() -> bool:
    """Whether the Ray in use is one nasforge started on this machine (fixed size), not a
    cluster that an autoscaler may grow."""
    address = os.environ.get("RAY_ADDRESS")
    return not address or address == os.environ.get(LOCAL_RAY)


def check_resources(cpu: float, gpu: float, field: str, what: str) -> None:
    """Fail (local Ray) or warn (a cluster that may autoscale) when ``what`` asks for more
    CPUs/GPUs than the cluster has; ``field`` names the experiment field to blame, with
    ``{}`` standing for ``cpu`` or ``gpu``."""
    import ray

    total = ray.cluster_resources()
    for name, key, asked in (("cpu", "CPU", cpu), ("gpu", "GPU", gpu)):
        have = total.get(key, 0.0)
        if asked > have:
            message = f"{field.format(name)}: {what} asks for {asked:g} {key}, but the Ray cluster has {have:g}"
            if is_local_ray():  # a local Ray cannot grow: the trials would wait forever
                raise NasforgeError(message)
            log.warning("%s (waiting for the autoscaler)", message)
