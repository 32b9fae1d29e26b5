"""The third-party plugin template installs with pip and is found through entry points alone.

``examples/plugin-template`` is pip-installed (once per module) into a temporary
``--target`` folder that only the subprocesses below see on ``PYTHONPATH``; nothing in
nasforge names the template, so finding it proves entry-point discovery. The only Ray started
is the local one of the template's end-to-end test, in its own pytest subprocess.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

TEMPLATE = Path(__file__).resolve().parents[2] / "examples" / "plugin-template"
PLUGIN, DISTRIBUTION, VERSION = "nasforge_template", "nasforge-plugin-template", "0.1.0"
REGISTERED = {
    ("space", "template.mlp"),
    ("estimator", "template.digits_mlp"),
    ("hardware", "template.params"),
}


@dataclass
class Installed:
    """The install folder and how to run a Python that sees it."""

    root: Path
    target: Path
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args],
            cwd=self.root,  # not the repo: only the installed template may be importable
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    """``pip install --target`` of a copy of the template (the build writes ``build/`` and
    ``*.egg-info`` into its source folder, which must stay clean)."""
    root = tmp_path_factory.mktemp("plugin-template")
    source, target = root / "source", root / "site"
    shutil.copytree(
        TEMPLATE,
        source,
        ignore=shutil.ignore_patterns(
            "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache", "runs"
        ),
    )
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
         "--no-index", "--disable-pip-version-check", "--quiet", "--target", str(target),
         str(source)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert pip.returncode == 0, f"pip install of the template failed:\n{pip.stdout}\n{pip.stderr}"
    assert (target / "nasforge_template" / "plugin.py").is_file()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS")}
    env.update(PYTHONPATH=str(target), PYTHONDONTWRITEBYTECODE="1", PYTHONWARNINGS="ignore")
    return Installed(root, target, env)


def test_plugins_lists_the_template_with_its_distribution(installed):
    result = installed.run("-m", "nasforge.cli", "plugins", "--json")
    assert result.returncode == 0, result.stderr
    items = {(i["kind"], i["name"]): i for i in json.loads(result.stdout)}
    assert set(items) >= REGISTERED, f"missing {sorted(REGISTERED - set(items))}"
    for key in REGISTERED:
        item = items[key]
        assert (item["plugin"], item["distribution"], item["version"]) == (
            PLUGIN,
            DISTRIBUTION,
            VERSION,
        ), item
        assert item["summary"], f"{key} has no docstring summary"
    # the built-in plugins are still there, next to the third-party one
    assert ("space", "gnn.nasbench_graph") in items
    assert ("strategy", "tpe") in items


def test_the_template_is_loaded_from_the_install(installed):
    probe = (
        "import json, nasforge_template.plugin as p, importlib.metadata as md;"
        "ep, = md.entry_points(group='nasforge', name='nasforge_template');"
        "print(json.dumps([p.__file__, ep.value, ep.dist.name]))"
    )
    result = installed.run("-c", probe)
    assert result.returncode == 0, result.stderr
    path, value, dist = json.loads(result.stdout)
    assert Path(path).is_relative_to(installed.target), path
    assert (value, dist) == ("nasforge_template.plugin", DISTRIBUTION)


def test_the_template_passes_its_own_tests_end_to_end_search_included(installed):
    """The template's tests, run against the install: the conformance suite and the
    20-trial search through nasforge's pytest plugin (its ``run_experiment`` fixture, on a
    local Ray of the subprocess's own), none skipped."""
    if importlib.util.find_spec("sklearn") is None:
        pytest.fail("scikit-learn is not installed: the template's estimator needs it")
    # Run a copy of the tests (and the experiment the end-to-end test reads) away from the
    # template's source, so the package they import, and the plugin nasforge builds, can
    # only be the installed one.
    project = installed.root / "project"
    shutil.copytree(TEMPLATE / "tests", project / "tests", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copy(TEMPLATE / "experiment.yaml", project)
    report = installed.root / "template-tests.xml"
    result = installed.run(
        "-m", "pytest", str(project / "tests"), "-q", "-rs", "-p", "no:cacheprovider",
        f"--rootdir={project}", f"--junitxml={report}", "--durations=0", timeout=300,
    )  # fmt: skip
    output = f"{result.stdout}\n{result.stderr}"
    assert result.returncode == 0, output
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    assert counts["tests"] > 0 and counts["failures"] == counts["errors"] == 0, output
    assert counts["skipped"] == 0, f"the installed template's tests skipped:\n{output}"
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert "test_installed_plugin_conforms" in cases
    end_to_end = cases["test_a_search_records_every_trial_and_finds_a_front"]
    assert float(end_to_end.get("time")) < 60, output  # Ray start included (< 20 s when quiet)


def test_validate_accepts_the_template_experiment(installed):
    experiment = TEMPLATE / "experiment.yaml"
    result = installed.run("-m", "nasforge.cli", "validate", str(experiment))
    assert result.returncode == 0, result.stderr
    assert f"{experiment}: ok" in result.stdout
    assert "template.mlp" in result.stdout
    assert "maximize digits_acc, minimize params" in result.stdout


@pytest.mark.skipif(
    importlib.util.find_spec("nasforge_template") is not None,
    reason="nasforge_template is installed in this environment too (pip install -e?)",
)
def test_without_the_install_the_template_experiment_is_rejected(installed):
    env = {k: v for k, v in installed.env.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-m", "nasforge.cli", "validate", str(TEMPLATE / "experiment.yaml")],
        cwd=installed.root, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "space.name: unknown space 'template.mlp'" in result.stderr
