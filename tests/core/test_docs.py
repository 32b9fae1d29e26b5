"""The docs show code that runs: the complete minimal plugin of ``docs/plugins.md``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from nasforge.experiment import parse_experiment
from nasforge.plan import resolve
from nasforge.testing import check_estimator, check_hardware, check_space

DOCS = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def minimal_plugin() -> tuple[str, dict]:
    """The Python and YAML blocks of the page's "A complete minimal plugin" section."""
    section = DOCS.read_text().split("## A complete minimal plugin", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    experiment = yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))
    return code, experiment


def test_the_minimal_plugin_passes_the_conformance_suite_and_validates(tmp_path, monkeypatch):
    code, experiment = minimal_plugin()
    (tmp_path / "acme_doc_plugin.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    experiment["plugins"] = ["acme_doc_plugin"]
    plan = resolve(parse_experiment(experiment))
    check_space(plan.space)
    check_estimator(plan.estimators[0], plan.space)
    check_hardware(plan.hardware[0], plan.space)
    assert plan.estimators[0].options == {"scale": 2.0}
    assert [o.metric for o in plan.objectives] == ["score", "params"]
    path = tmp_path / "acme.yaml"
    path.write_text(yaml.safe_dump(experiment))
    validated = subprocess.run(
        [sys.executable, "-m", "nasforge.cli", "validate", str(path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={"PYTHONPATH": str(tmp_path), "PATH": ""},
    )  # fmt: skip
    assert validated.returncode == 0, validated.stderr
    assert "space      acme.tiny" in validated.stdout


def test_every_hook_is_on_the_page():
    from nasforge import hookspecs

    page = DOCS.read_text()
    hooks = [n for n, f in vars(hookspecs).items() if hasattr(f, "nasforge_spec")]
    assert len(hooks) == 11
    missing = [h for h in hooks if f"`{h}(" not in page]
    assert not missing, f"docs/plugins.md does not show {missing}"
