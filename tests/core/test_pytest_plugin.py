"""nasforge's pytest plugin and the Python run it is built on.

The contract: the plugin loads through the ``pytest11`` entry point (and not with
``-p no:nasforge``); ``nasforge_ray`` starts one local Ray on 127.0.0.1 with the CPUs asked,
only for tests that ask for it; ``run_experiment`` runs an experiment through the real
engine in a temporary run directory and returns what ``trials.csv`` / ``pareto.json`` hold,
as plain records; :func:`nasforge.with_budget` changes a copy of the experiment, never the file.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nasforge import ConfigError, RunResult, TrialRecord, with_budget

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gnn_nasbench_cora.yaml"


def pytest_in(folder: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """pytest in a project of its own (no conftest of ours), with no Ray to join."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=folder, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_the_plugin_loads_from_its_entry_point_and_can_be_turned_off(tmp_path):
    listed = pytest_in(tmp_path, "--fixtures")
    assert "nasforge_ray [session scope]" in listed.stdout, listed.stdout[-3000:]
    assert "run_experiment" in listed.stdout and "One local Ray" in listed.stdout
    helped = pytest_in(tmp_path, "--help")
    assert "--nasforge-ray-cpus" in helped.stdout
    off = pytest_in(tmp_path, "--fixtures", "-p", "no:nasforge")
    assert "nasforge_ray" not in off.stdout and "run_experiment" not in off.stdout


def test_loading_the_plugin_imports_no_ray():
    probe = "import sys, nasforge.pytest_plugin; print('ray' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr


def test_the_sessions_ray_is_local_with_the_cpus_asked(nasforge_ray, request):
    import ray

    cpus = request.config.getoption("nasforge_ray_cpus")
    assert ray.is_initialized() and ray.cluster_resources()["CPU"] == cpus
    assert ray.util.get_node_ip_address() == "127.0.0.1"
    assert os.environ["RAY_ADDRESS"] == nasforge_ray.gcs_address  # subprocesses join it


def test_run_experiment_returns_the_study_trials_and_front_a_user_sees(run_experiment):
    result = run_experiment(EXAMPLE, n_trials=24, concurrency=2, batch_size=4)
    assert isinstance(result, RunResult) and result.run_dir.is_dir()
    assert result.run_dir.parent.name.startswith("test_run_experiment")  # a tmp_path folder
    assert len(result.complete) >= 24 and result.search.complete == len(result.complete)
    assert [t.number for t in result.study.trials] == [t.number for t in result.trials]
    assert all(isinstance(t, TrialRecord) for t in result.trials)

    with (result.run_dir / "trials.csv").open() as f:  # the records are trials.csv's rows
        rows = list(csv.DictReader(f))
    assert [int(r["number"]) for r in rows] == [t.number for t in result.trials]
    for row, trial in zip(rows, result.trials, strict=True):
        assert row["state"] == trial.state and json.loads(row["arch"]) == trial.arch
        for metric, value in trial.metrics.items():
            assert (row[metric] == "") if value is None else float(row[metric]) == value
    pareto = json.loads((result.run_dir / "pareto.json").read_text())
    assert [t.number for t in result.front] == [t["number"] for t in pareto["trials"]]
    assert result.front and all(t.feasible for t in result.front)

    again = run_experiment(EXAMPLE, n_trials=24, run_dir=result.run_dir)  # resumes: no work
    assert again.search.resumed_complete == len(result.complete)
    assert [t.number for t in again.trials] == [t.number for t in result.trials]


def test_run_experiment_names_the_file_of_a_bad_experiment(run_experiment, tmp_path):
    exp = yaml.safe_load(EXAMPLE.read_text())
    exp["estimators"][0]["name"] = "no.such_estimator"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(exp))
    with pytest.raises(ConfigError) as info:
        run_experiment(path, n_trials=2)
    assert str(path) in str(info.value) and "estimators[0].name" in str(info.value)
    assert not list(tmp_path.glob("run*/study.db"))  # nothing was started


def test_with_budget_changes_a_copy_of_the_experiment(tmp_path):
    phases = [{"name": "full", "epochs": 12}, {"name": "kernel", "epochs": 6, "sample": {}}]
    exp = {
        "name": "x",
        "train": {"trainer": "cnn.progressive", "options": {"phases": phases}},
        "estimators": [{"name": "a", "options": {"max_iter": 100}}],
        "search": {"n_trials": 500},
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    small = with_budget(
        path, n_trials=5, concurrency=1, epochs=1, overrides={"estimators.0.options.max_iter": 3}
    )
    assert small["search"] == {"n_trials": 5, "concurrency": 1}
    assert [p["epochs"] for p in small["train"]["options"]["phases"]] == [1, 1]
    assert small["estimators"][0]["options"] == {"max_iter": 3}
    assert yaml.safe_load(path.read_text()) == exp  # the file is untouched
    flat = with_budget({"train": {"trainer": "t", "options": {"epochs": 30}}}, epochs=2)
    assert flat["train"]["options"]["epochs"] == 2
    assert with_budget(exp, overrides={"search.storage": "journal:j.log"})["search"] == {
        "n_trials": 500,
        "storage": "journal:j.log",
    }
    assert exp["search"] == {"n_trials": 500}  # nor is the mapping


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"epochs": 3}, "train"),  # no train section to shorten
        ({"overrides": {"estimators.2.options.seed": 1}}, "estimators.2"),
        ({"overrides": {"name.first": 1}}, "name"),
    ],
)
def test_with_budget_names_the_field_it_cannot_set(kwargs, field):
    exp = {"name": "x", "estimators": [{"name": "a"}], "search": {}}
    with pytest.raises(ConfigError, match=f"^{field}: "):
        with_budget(exp, **kwargs)


def test_the_sessions_ray_is_known_to_be_fixed_size(nasforge_ray):
    """RAY_ADDRESS points at it, yet a request it cannot hold fails at once, not waits."""
    from nasforge.engine.runtime import check_resources, is_local_ray
    from nasforge.errors import NasforgeError

    assert is_local_ray()
    with pytest.raises(NasforgeError, match="asks for 99 CPU"):
        check_resources(99, 0, "search.resources_per_trial.{}", "each trial")


def test_a_cluster_that_may_grow_only_warns(nasforge_ray, monkeypatch, caplog):
    from nasforge.engine.runtime import check_resources, is_local_ray

    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.7:6379")  # a cluster nasforge did not start
    assert not is_local_ray()
    check_resources(99, 0, "search.resources_per_trial.{}", "each trial")
    assert "waiting for the autoscaler" in caplog.text
