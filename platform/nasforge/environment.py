"""What a bug report needs: versions against the lock, the torch build, where things connect.

``nasforge env`` prints :func:`environment_report`. The lock is ``constraints.txt``, the
versions the test suite passed with (compiled from ``pyproject.toml``; the README's install
uses it). :func:`lock_differences` compares what is installed with it — ``nasforge env
--diff`` prints those packages alone, which is what CI shows when the newest releases fail.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .errors import NasforgeError

#: the packages a bug report names first, in this order
KEY_PACKAGES = ("ray", "optuna", "torch", "transformers", "peft", "pluggy", "pydantic")

#: file name of the lock at the repository root
LOCK_NAME = "constraints.txt"


def default_lock() -> Path | None:
    """``NASFORGE_LOCK``, else the lock beside the source tree of an editable install
    (``<repo>/constraints.txt``), else ``None`` (an install from a wheel has none)."""
    if os.environ.get("NASFORGE_LOCK"):
        return Path(os.environ["NASFORGE_LOCK"])
    here = Path(__file__).resolve()
    for folder in here.parents:
        if (folder / "pyproject.toml").exists():
            lock = folder / LOCK_NAME
            return lock if lock.exists() else None
    return None


def read_lock(path: Path) -> dict[str, Version]:
    """``{canonical name: pinned version}`` for this interpreter: lines of the form
    ``name==version[ ; marker]`` whose marker holds here (a universal lock pins some
    packages differently per Python version)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise NasforgeError(f"{path}: cannot read the lock: {exc.strerror}") from None
    pins: dict[str, Version] = {}
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text or text.startswith("-"):
            continue
        try:
            requirement = Requirement(text)
        except InvalidRequirement as exc:
            raise NasforgeError(f"{path}:{number}: not a requirement: {exc}") from None
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        specs = list(requirement.specifier)
        if len(specs) != 1 or specs[0].operator != "==":
            raise NasforgeError(f"{path}:{number}: a lock pins one version (name==x), got {text!r}")
        pins[canonicalize_name(requirement.name)] = Version(specs[0].version)
    return pins


def installed_versions() -> dict[str, str]:
    """``{canonical name: version}`` of every distribution this interpreter sees."""
    out: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            out.setdefault(canonicalize_name(name), dist.version)
    return out


@dataclass
class Difference:
    """One package whose installed version is not the locked one (``None``: not installed)."""

    name: str
    locked: str
    installed: str | None

    def __str__(self) -> str:
        return f"{self.name} {self.installed or 'not installed'} (lock: {self.locked})"


def is_locked(installed: str, locked: Version) -> bool:
    """``2.13.0+cpu`` is the locked ``2.13.0``: local build labels do not count."""
    try:
        return Version(installed).public == locked.public
    except InvalidVersion:
        return False


def lock_differences(
    lock: dict[str, Version], installed: dict[str, str], *, include_missing: bool = False
) -> list[Difference]:
    """Installed packages whose version is not the locked one, by name (packages the lock
    lists but that are not installed — CUDA wheels on a CPU build — only with
    ``include_missing``)."""
    out = []
    for name, version in sorted(lock.items()):
        have = installed.get(name)
        if have is None:
            if include_missing:
                out.append(Difference(name, str(version), None))
        elif not is_locked(have, version):
            out.append(Difference(name, str(version), have))
    return out


def _torch_build() -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        return {"installed": False}
    cuda = torch.version.cuda
    devices = []
    if torch.cuda.is_available():
        devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "installed": True,
        "build": f"CUDA {cuda}" if cuda else "CPU",
        "cuda_available": torch.cuda.is_available(),
        "devices": devices,
        "threads": torch.get_num_threads(),
    }


def _plugins(installed: dict[str, str]) -> list[dict[str, str]]:
    """Every module in the ``nasforge`` entry-point group, with its distribution."""
    out = []
    for ep in metadata.entry_points(group="nasforge"):
        dist = ep.dist.metadata["Name"] if ep.dist is not None else "?"
        out.append(
            {
                "name": ep.name,
                "module": ep.value,
                "distribution": dist,
                "version": installed.get(canonicalize_name(dist), "?"),
            }
        )
    return sorted(out, key=lambda p: (p["distribution"], p["name"]))


def _connections() -> dict[str, str]:
    from .engine.storage import mask_url

    ray_address = os.environ.get("RAY_ADDRESS")
    storage = os.environ.get("NASFORGE_STORAGE")
    return {
        "ray": mask_url(ray_address)
        if ray_address
        else "a local Ray on 127.0.0.1 (RAY_ADDRESS unset)",
        "storage": mask_url(storage)
        if storage
        else "each experiment's search.storage, else sqlite in its run directory "
        "(NASFORGE_STORAGE unset)",
    }


def _source() -> str:
    """Where this nasforge is imported from, with the git commit of a checkout."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    where = str(Path(__file__).resolve().parent)
    if (root / ".git").exists():
        try:
            commit = subprocess.run(
                ["git", "-C", str(root), "describe", "--always", "--dirty"],
                capture_output=True, text=True, timeout=5,
            ).stdout.strip()  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            commit = ""
        if commit:
            where += f" (git {commit})"
    return where


def environment_report(lock_path: Path | None) -> dict[str, Any]:
    """Everything ``nasforge env`` prints, as plain data (``--json`` prints it as is)."""
    installed = installed_versions()
    lock = read_lock(lock_path) if lock_path is not None else None
    names = ["nasforge", *KEY_PACKAGES]
    plugins = _plugins(installed)
    for plugin in plugins:
        dist = canonicalize_name(plugin["distribution"])
        if dist not in names:
            names.append(dist)
    packages = []
    for name in names:
        have = installed.get(canonicalize_name(name))
        entry: dict[str, Any] = {"name": name, "version": have}
        if lock is not None and canonicalize_name(name) in lock:
            locked = lock[canonicalize_name(name)]
            entry["locked"] = str(locked)
            entry["is_locked"] = have is not None and is_locked(have, locked)
        packages.append(entry)
    return {
        "nasforge_source": _source(),
        "python": f"{platform.python_version()} ({sys.executable})",
        "platform": platform.platform(),
        "packages": packages,
        "plugins": plugins,
        "torch": _torch_build(),
        "connections": _connections(),
        "lock": str(lock_path) if lock_path is not None else None,
        "differences": [vars(d) for d in lock_differences(lock, installed)]
        if lock is not None
        else None,
    }


def format_report(report: dict[str, Any]) -> list[str]:
    """The report as aligned text lines."""
    lines = [
        f"nasforge   {report['nasforge_source']}",
        f"python     {report['python']}",
        f"platform   {report['platform']}",
        "",
    ]
    width = max(len(p["name"]) for p in report["packages"])
    for package in report["packages"]:
        version = package["version"] or "not installed"
        if package["name"] == "nasforge" or report["lock"] is None:
            status = ""
        elif "locked" not in package:
            status = "(not in the lock)"
        elif package["is_locked"]:
            status = "(locked)"
        else:
            status = f"(lock: {package['locked']})"
        lines.append(f"{package['name']:<{width}}  {version:<14} {status}".rstrip())
    torch = report["torch"]
    if torch["installed"]:
        devices = ", ".join(torch["devices"]) or "no CUDA device"
        lines += ["", f"torch build  {torch['build']}; {devices}; {torch['threads']} CPU threads"]
    lines += ["", "plugins (entry-point group 'nasforge'):"]
    for plugin in report["plugins"]:
        lines.append(
            f"  {plugin['name']:<22} {plugin['module']:<28} "
            f"{plugin['distribution']} {plugin['version']}"
        )
    connections = report["connections"]
    lines += ["", f"ray        {connections['ray']}", f"storage    {connections['storage']}"]
    if report["lock"] is None:
        lines += ["", "lock       none found (an install from a wheel; set NASFORGE_LOCK)"]
    else:
        differences = report["differences"]
        lines += ["", f"lock       {report['lock']}"]
        if differences:
            lines.append(f"differs from the lock ({len(differences)}):")
            lines += [f"  {Difference(**d)}" for d in differences]
        else:
            lines.append("every installed package the lock names is at its locked version")
    return lines
