"""``train.sweep``: supernet recipes trained side by side as Ray Tune trials, ASHA's rule
stopping the weak ones, the best one's weights kept as the experiment's supernet.

The contract: every recipe reports the supernet's quality each epoch; a recipe that falls
behind at a rung is stopped; the complete recipe with the best final quality becomes
``supernet/final.pt``; a sweep killed mid-way resumes, keeping what finished.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from tiny_cnn import tiny_experiment

from nasforge.engine.sweep import SuccessiveHalving
from nasforge.errors import ConfigError
from nasforge.experiment import parse_experiment
from nasforge.plan import resolve

pytestmark = pytest.mark.usefixtures("nasforge_ray")


def sweep_experiment(run_dir) -> dict:
    exp = tiny_experiment(run_dir, num_workers=1, epochs=2)
    exp["train"]["sweep"] = {
        "grid": {"lr": [0.1, 0.00001]},  # lr 1e-5 learns nothing in an epoch
        "concurrency": 1,  # in order, so the weak recipe meets a recorded rung
        "quality_archs": 3,
    }
    return exp


def test_a_sweep_stops_the_weak_recipe_keeps_the_best_and_resumes_after_a_kill(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(sweep_experiment(tmp_path / "run")))
    command = [sys.executable, "-m", "nasforge.cli", "train", str(path)]
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sweep_dir = tmp_path / "run" / "supernet" / "sweep"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and driver.poll() is None:
        if list(sweep_dir.glob("*/result.json")):
            break
        time.sleep(0.1)
    assert driver.poll() is None, driver.communicate()[0].decode()[-2000:]
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    kept = {p.parent.name: p.read_text() for p in sweep_dir.glob("*/result.json")}
    assert len(kept) == 1

    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "stopped by ASHA at epoch 1" in result.stdout
    for name, text in kept.items():  # the recipe finished before the kill is not retrained
        assert (sweep_dir / name / "result.json").read_text() == text
    summary = json.loads((tmp_path / "run" / "supernet" / "sweep.json").read_text())
    by_lr = {r["recipe"]["options"]["lr"]: r for r in summary["recipes"]}
    assert by_lr[0.00001]["status"] == "stopped" and by_lr[0.00001]["epochs"] == 1
    complete = [r for r in summary["recipes"] if r["status"] == "complete"]
    assert complete and all(r["epochs"] == 2 for r in complete)
    best = max(complete, key=lambda r: r["supernet_quality"])
    assert summary["best"] == best["id"]
    final = torch.load(tmp_path / "run" / "supernet" / "final.pt", weights_only=True)
    chosen = torch.load(sweep_dir / best["id"] / "state.pt", weights_only=True)["model"]
    assert all(torch.equal(final[k], chosen[k]) for k in final)
    meta = json.loads((tmp_path / "run" / "supernet" / "meta.json").read_text())
    assert meta["metrics"]["sweep"] == best["id"]


def test_successive_halving_stops_below_the_rung_quantile_and_replays_history():
    rule = SuccessiveHalving(1, 2.0, True, {"a": [50.0, 60.0, 70.0]})
    assert rule.milestones >= {1, 2, 4, 8}
    assert rule.stops("b", 1, 40.0)  # below the median of {50, 40}
    assert not rule.stops("c", 1, 55.0)
    assert not rule.stops("c", 3, 1.0)  # not a rung
    assert rule.stops("c", 2, 59.0) and not rule.stops("d", 2, 65.0)
    lower = SuccessiveHalving(1, 2.0, False, {"a": [5.0]})  # e.g. perplexity
    assert lower.stops("b", 1, 9.0) and not lower.stops("c", 1, 1.0)


def test_every_recipe_of_a_sweep_is_validated_before_training(tmp_path):
    exp = sweep_experiment(tmp_path / "run")
    exp["train"]["sweep"]["recipes"] = [{"options": {"no_such_option": 1}}]
    with pytest.raises(ConfigError, match=r"train.sweep \(recipe 0.*no_such_option"):
        resolve(parse_experiment(exp))
    exp["train"]["sweep"] = {"grid": {"lr": []}}
    with pytest.raises(ConfigError, match="at least one value"):
        parse_experiment(exp)


def test_recipes_cross_the_grid_and_sample_n_trials_with_the_seed(tmp_path):
    exp = sweep_experiment(tmp_path / "run")
    exp["train"]["sweep"] = {
        "recipes": [{}, {"trainer": "cnn.progressive", "options": {"epochs": 4}}],
        "grid": {"lr": [0.1, 0.2], "warmup_epochs": [0, 1]},
    }
    train = parse_experiment(exp).train
    recipes = train.recipes()
    assert len(recipes) == 8
    assert recipes[0] == {"trainer": "cnn.sandwich", "options": {**exp["train"]["options"],
                          "lr": 0.1, "warmup_epochs": 0}}  # fmt: skip
    assert recipes[4]["options"] == {"epochs": 4, "lr": 0.1, "warmup_epochs": 0}  # stands alone
    exp["train"]["sweep"]["n_trials"] = 3
    sampled = parse_experiment(exp).train.recipes()
    assert len(sampled) == 3 and all(r in recipes for r in sampled)
    assert sampled == parse_experiment(exp).train.recipes()  # seeded


def test_a_supernet_trained_before_sweeps_existed_keeps_its_fingerprint(tmp_path):
    """``train.sweep`` unset leaves the training section what it was, so supernets and
    studies made before it was added are not refused as made by another experiment."""
    import hashlib

    from nasforge.engine.train import training_fingerprint

    exp = tiny_experiment(tmp_path / "run")
    plan = resolve(parse_experiment(exp))
    spec = plan.experiment
    before = {
        "space": spec.space.model_dump(mode="json"),
        "task": spec.task.model_dump(mode="json"),
        "train": {k: v for k, v in spec.train.model_dump(mode="json").items() if k != "sweep"},
    }
    digest = hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:16]
    assert training_fingerprint(plan) == digest
    # and a study made then still opens: its defining sections read the same
    assert "sweep" not in spec.model_dump(mode="json")["train"]
    exp["train"]["sweep"] = {"grid": {"lr": [0.1, 0.2]}}
    assert training_fingerprint(resolve(parse_experiment(exp))) != digest
