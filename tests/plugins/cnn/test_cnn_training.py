"""Supernet training on Ray Train, the search over a trained supernet, and export.

The contract: ``nasforge train`` runs a trainer on ``num_workers`` Ray Train workers that
stay in step (same subnets, averaged gradients), checkpoints every epoch, resumes after a
kill, and leaves ``supernet/final.pt``; the search loads those weights once per worker,
scores subnets by weight sharing, measures their extracted static networks, and
``nasforge export --format`` writes a subnet that reproduces its trial's accuracy.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from tiny_cnn import tiny_experiment

from nasforge.errors import ConfigError, NasforgeError
from nasforge.plan import Plan, load_plan

pytestmark = pytest.mark.usefixtures("nasforge_ray")


def write(exp: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(exp))
    return path


def nasforge(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nasforge.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.smoke
def test_training_on_two_workers_reports_every_epoch_and_leaves_loadable_weights(trained_run):
    run_dir, path, stdout = trained_run.run_dir, trained_run.experiment, trained_run.stdout
    assert "train: epoch 1/3" in stdout and "train: epoch 3/3" in stdout
    assert "val_top1_largest" in stdout and "val_top1_smallest" in stdout
    lines = [
        json.loads(x) for x in (run_dir / "supernet" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [int(x["epoch"]) for x in lines] == [1, 2, 3]
    assert all(x["loss"] > 0 for x in lines)
    state = torch.load(run_dir / "supernet" / "final.pt", weights_only=True)
    plan = load_plan(path)
    plan.build_supernet().load_state_dict(state, strict=True)
    meta = json.loads((run_dir / "supernet" / "meta.json").read_text())
    assert meta["epochs"] == 3


def test_a_trained_supernet_is_not_trained_again(trained_run):
    run_dir, path = trained_run.run_dir, trained_run.experiment
    before = (run_dir / "supernet" / "final.pt").stat().st_mtime_ns
    result = nasforge("train", str(path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "already trained (3 epochs)" in result.stdout
    assert (run_dir / "supernet" / "final.pt").stat().st_mtime_ns == before


def test_a_changed_training_recipe_is_refused_in_the_same_run_dir(trained_run, tmp_path):
    path = trained_run.experiment
    exp = yaml.safe_load(path.read_text())
    exp["train"]["options"]["lr"] = 0.2
    result = nasforge("train", str(write(exp, tmp_path / "changed.yaml")))
    assert result.returncode == 2
    assert "trained with a different space, task or trainer" in result.stderr


@pytest.mark.smoke
def test_search_scores_subnets_of_the_trained_supernet(trained_run):
    run_dir, stdout = trained_run.run_dir, trained_run.stdout
    assert "search: 6 complete, 0 failed" in stdout
    from nasforge.report import load_run

    _plan, study = load_run(run_dir)
    trials = study.get_trials()
    assert len({t.user_attrs["key"] for t in trials}) == len(trials)
    for t in trials:
        assert 0 <= t.user_attrs["top1"] <= 100 and t.user_attrs["top5"] >= t.user_attrs["top1"]
        assert t.user_attrs["macs_m"] > 0 and t.user_attrs["latency_ms"] > 0
        assert t.user_attrs["device"]


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
@pytest.mark.smoke
def test_an_exported_subnet_reproduces_its_trials_accuracy(trained_run, fmt):
    run_dir = trained_run.run_dir
    result = nasforge("export", str(run_dir), "--trial", "0", "--format", fmt)
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((run_dir / "subnets" / "0" / "arch.json").read_text())
    exported = record["export"]
    assert exported["format"] == fmt
    assert (run_dir / "subnets" / "0" / exported["file"]).exists()
    assert abs(exported["metrics"]["top1"] - record["metrics"]["top1"]) < 1e-6
    assert "exported model" in result.stdout


def test_a_tampered_supernet_checkpoint_is_refused_with_a_clear_error(trained_run, tmp_path):
    run_dir, path = trained_run.run_dir, trained_run.experiment
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("study.db*", ".lock"))

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    import pickle

    (copy / "supernet" / "final.pt").write_bytes(pickle.dumps({"weights": Exploit()}))
    exp = yaml.safe_load(path.read_text())
    exp["run_dir"] = str(copy)
    result = nasforge("search", str(write(exp, tmp_path / "exp.yaml")))
    assert result.returncode == 2
    assert "final.pt: not a loadable checkpoint" in result.stderr
    assert not (tmp_path / "pwned").exists()


def test_training_resumes_from_its_last_checkpoint_after_the_driver_is_killed(tmp_path):
    """Killed once two epochs are checkpointed (so the rerun must pick the newer of two
    checkpoints), the rerun trains only the last epoch."""
    exp = tiny_experiment(tmp_path / "run", epochs=3, num_workers=1)
    path = write(exp, tmp_path / "exp.yaml")
    command = [sys.executable, "-m", "nasforge.cli", "train", str(path)]
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    metrics = tmp_path / "run" / "supernet" / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and driver.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.1)
    assert driver.poll() is None, driver.communicate()[0].decode()[-2000:]
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    done = len(metrics.read_text().splitlines())
    assert done == 2

    result = nasforge("train", str(path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resumed after epoch {done}" in result.stdout
    epochs = [int(json.loads(x)["epoch"]) for x in metrics.read_text().splitlines()]
    assert epochs == list(range(1, 4))  # the rerun continued; no epoch trained twice
    assert json.loads((tmp_path / "run" / "supernet" / "meta.json").read_text())["epochs"] == 3


def test_progressive_shrinking_runs_its_phases_in_order(progressive_run):
    """Each phase trains its epochs in turn (the session's run: conftest.py)."""
    lines = [
        json.loads(x) for x in (progressive_run / "supernet/metrics.jsonl").read_text().splitlines()
    ]
    assert [int(x["phase"]) for x in lines] == [1, 2, 3]
    assert json.loads((progressive_run / "supernet" / "meta.json").read_text())["epochs"] == 3


# -- validation of the pieces, before any work ------------------------------------------


def test_training_needs_a_task(tmp_path):
    exp = tiny_experiment(tmp_path)
    del exp["task"]
    with pytest.raises(ConfigError, match=r"^train: training a supernet needs data"):
        Plan.from_json(exp)


def test_a_task_that_does_not_fit_the_space_is_refused(tmp_path):
    exp = tiny_experiment(tmp_path)
    exp["task"]["options"]["channels"] = 3
    with pytest.raises(ConfigError, match=r"^task.name: task 'cnn.digits' does not fit space"):
        Plan.from_json(exp)


def test_a_tabular_space_cannot_be_trained(tmp_path):
    exp = tiny_experiment(tmp_path)
    exp["space"] = {"name": "gnn.nasbench_graph", "options": {"dataset": "cora"}}
    with pytest.raises(ConfigError, match=r"^train.trainer: space 'gnn.nasbench_graph' has no"):
        Plan.from_json(exp)


def test_bad_trainer_options_name_the_field(tmp_path):
    exp = tiny_experiment(tmp_path, num_random=-1)
    with pytest.raises(ConfigError, match=r"^train.options.num_random"):
        Plan.from_json(exp)


def test_a_phase_that_does_not_fit_the_space_is_refused_before_training(tmp_path):
    phases = [{"name": "full", "epochs": 1}, {"name": "d", "epochs": 1, "sample": {"depth": [1]}}]
    exp = tiny_experiment(tmp_path, trainer="cnn.progressive", phases=phases)
    with pytest.raises(ConfigError, match=r"^train.options: .*depth=1 is not one of \[2, 3, 4\]"):
        Plan.from_json(exp)
    phases[1]["sample"] = {"colour": [1]}
    with pytest.raises(ConfigError, match=r"^train.options: .*unknown groups \['colour'\]"):
        Plan.from_json(exp)


def test_search_without_trained_weights_says_what_to_run(tmp_path):
    from nasforge.engine import run_search

    plan = Plan.from_json(tiny_experiment(tmp_path / "run"))
    with pytest.raises(NasforgeError, match=r"no trained supernet: run `nasforge train`"):
        run_search(plan, tmp_path / "run", progress=False)


def test_nasforge_lut_reports_the_tables_error_against_measured_latency(tmp_path):
    exp = tiny_experiment(tmp_path / "run")
    exp["hardware"].append(
        {"name": "hw.latency_lut", "options": {"warmup": 1, "repeats": 3, "statistic": "min"}}
    )
    result = nasforge("lut", str(write(exp, tmp_path / "exp.yaml")), "--archs", "3")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "median absolute error" in result.stdout and "over 3 random archs" in result.stdout
    summary = json.loads((tmp_path / "run" / "hw" / "lut_check.json").read_text())
    assert summary["n_archs"] == 3 and summary["median_abs_pct_error"] >= 0
    assert len((tmp_path / "run" / "hw" / "lut_check.csv").read_text().splitlines()) == 4
    table = json.loads((tmp_path / "run" / "hw" / "latency_lut.json").read_text())
    assert table  # the look-up table persisted for the search to reuse


def test_a_worker_builds_its_evaluator_and_loads_the_weights_once(monkeypatch, tmp_path):
    """Every trial a worker runs reuses the supernet it loaded for the first one."""
    from nasforge.engine import worker

    built = []
    monkeypatch.setattr(worker, "_evaluators", {})
    monkeypatch.setattr(
        worker.Evaluator, "build", classmethod(lambda cls, *args: built.append(args) or object())
    )
    exp = tiny_experiment(tmp_path)
    first = worker.evaluator_for(exp, str(tmp_path), [b"weights"], "digest-1")
    assert worker.evaluator_for(exp, str(tmp_path), [b"weights"], "digest-1") is first
    assert len(built) == 1
    worker.evaluator_for(exp, str(tmp_path), [b"other"], "digest-2")  # retrained weights
    assert len(built) == 2
