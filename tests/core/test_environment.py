"""`nasforge env`: what a bug report needs, and how the installed versions differ from the lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.version import Version

from nasforge.environment import (
    KEY_PACKAGES,
    default_lock,
    installed_versions,
    is_locked,
    lock_differences,
    read_lock,
)
from nasforge.errors import NasforgeError

REPO = Path(__file__).resolve().parents[2]


def nasforge_env(*args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "NASFORGE_STORAGE")}
    return subprocess.run(
        [sys.executable, "-m", "nasforge.cli", "env", *args],
        capture_output=True, text=True, timeout=120, env={**environ, **env},
    )  # fmt: skip


def test_the_lock_pins_what_pyproject_requires_and_is_found_beside_the_source():
    assert default_lock() == REPO / "constraints.txt"
    lock = read_lock(REPO / "constraints.txt")
    for name in ("ray", "optuna", "torch", "pluggy", "pydantic", "pytest", "ruff", "uv"):
        assert name in lock, f"{name} is not in the lock"
    assert lock["torch"] == Version("2.13.0")


def test_a_lock_line_counts_only_where_its_marker_holds(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text(
        "# header\n"
        "numpy==2.2.6 ; python_full_version < '3.11'\n"
        "numpy==2.3.5 ; python_full_version >= '3.11'\n"
        "Ray[default]==2.60.0\n"
        "    # via nasforge\n"
        "--index-url https://example.invalid/simple\n"
    )
    pins = read_lock(lock)
    assert pins["numpy"] == Version("2.2.6" if sys.version_info < (3, 11) else "2.3.5")
    assert pins["ray"] == Version("2.60.0")


@pytest.mark.parametrize(
    ("line", "message"),
    [("optuna>=5", r"lock\.txt:2: a lock pins one version"), ("optuna==", r"lock\.txt:2: not a")],
)
def test_a_lock_that_does_not_pin_names_its_line(tmp_path, line, message):
    lock = tmp_path / "lock.txt"
    lock.write_text(f"ray==2.60.0\n{line}\n")
    with pytest.raises(NasforgeError, match=message):
        read_lock(lock)


def test_a_local_build_label_is_the_locked_version():
    assert is_locked("2.13.0+cpu", Version("2.13.0"))
    assert not is_locked("2.12.0", Version("2.13.0"))
    assert not is_locked("not-a-version", Version("2.13.0"))


def test_differences_name_the_installed_and_the_locked_version():
    lock = {"optuna": Version("5.0.0"), "ray": Version("2.60.0"), "nvidia-cublas": Version("13")}
    installed = {"optuna": "5.1.0", "ray": "2.60.0"}
    assert [str(d) for d in lock_differences(lock, installed)] == ["optuna 5.1.0 (lock: 5.0.0)"]
    missing = lock_differences(lock, installed, include_missing=True)
    assert "nvidia-cublas not installed (lock: 13)" in [str(d) for d in missing]


@pytest.mark.smoke
def test_env_json_has_what_a_bug_report_needs_and_no_password():
    result = nasforge_env(
        "--json",
        RAY_ADDRESS="127.0.0.1:6379",
        NASFORGE_STORAGE="postgresql://nas:s3cret@127.0.0.1:5432/studies",
    )
    assert result.returncode == 0, result.stderr
    assert "s3cret" not in result.stdout + result.stderr
    report = json.loads(result.stdout)
    packages = {p["name"]: p for p in report["packages"]}
    assert list(packages)[: 1 + len(KEY_PACKAGES)] == ["nasforge", *KEY_PACKAGES]
    for name in ("ray", "optuna", "torch", "pluggy"):
        assert packages[name]["version"] == metadata.version(name)
        assert packages[name]["locked"] and isinstance(packages[name]["is_locked"], bool)
    assert report["python"].startswith(".".join(map(str, sys.version_info[:3])))
    assert report["torch"]["build"] in ("CPU",) or report["torch"]["build"].startswith("CUDA")
    assert {p["name"] for p in report["plugins"]} >= {"nasforge_gnn", "nasforge_search"}
    assert report["connections"] == {
        "ray": "127.0.0.1:6379",
        "storage": "postgresql://nas:***@127.0.0.1:5432/studies",
    }
    assert report["lock"] == str(REPO / "constraints.txt")


@pytest.mark.smoke
def test_env_diff_lists_the_packages_that_differ_from_a_lock(tmp_path):
    optuna_version = installed_versions()["optuna"]
    lock = tmp_path / "lock.txt"
    lock.write_text(f"optuna==0.9.0\npluggy=={metadata.version('pluggy')}\nno-such-package==1.0\n")
    diff = nasforge_env("--lock", str(lock), "--diff")
    assert diff.returncode == 0, diff.stderr
    assert diff.stdout.splitlines() == [f"optuna {optuna_version} (lock: 0.9.0)"]
    text = nasforge_env("--lock", str(lock))
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert any(line.split()[:3] == ["optuna", optuna_version, "(lock:"] for line in lines)
    assert any(line.split() == ["pluggy", metadata.version("pluggy"), "(locked)"] for line in lines)
    assert "differs from the lock (1):" in lines


def test_env_names_a_bad_lock_on_one_line(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text("optuna>=5\n")
    result = nasforge_env("--lock", str(lock))
    assert result.returncode == 2, result.stderr
    assert f"{lock}:1: a lock pins one version" in result.stderr
    assert "Traceback" not in result.stderr
