"""``nasforge fidelity``: archs trained alone as Ray Tune trials, compared with weight sharing.

The contract: the chosen archs are trained alone (only their own weights move), scored by the
experiment's estimators beside their weight-sharing scores, and the ranking agreement is
written to ``fidelity.csv`` / ``fidelity.json`` / ``fidelity.png``; a killed check resumes
and trains only what is missing.
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

from nasforge.engine.fit import fit_in_process
from nasforge.errors import NasforgeError
from nasforge.fidelity import run_fidelity
from nasforge.plan import Plan

pytestmark = pytest.mark.usefixtures("nasforge_ray")


def nasforge(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nasforge.cli", *args], capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


@pytest.mark.smoke
def test_fidelity_trains_archs_alone_in_parallel_resumes_after_a_kill_and_reports(progressive_run):
    """Killed once the first of 4 standalone runs is finished, the rerun trains only the
    others; the report compares all 4 (1 epoch each), and a third run trains nothing."""
    run = progressive_run
    command = [sys.executable, "-m", "nasforge.cli", "fidelity", str(run), "--archs", "4",
               "--epochs", "1"]  # fmt: skip
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    results = run / "fidelity" / "runs"
    while time.monotonic() < deadline and driver.poll() is None:
        if len(list(results.glob("*/result.json"))) >= 1:
            break
        time.sleep(0.1)
    assert driver.poll() is None, driver.communicate()[0].decode()[-2000:]
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    finished = {p.parent.name: p.read_text() for p in results.glob("*/result.json")}
    assert 1 <= len(finished) < 4

    result = nasforge(*command[3:])
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{4 - len(finished)} trained alone now, {len(finished)} kept from before" in (
        result.stdout
    )
    for name, text in finished.items():  # kept as they were, not trained again
        assert (results / name / "result.json").read_text() == text
    assert "Kendall tau" in result.stdout and "Spearman rho" in result.stdout
    summary = json.loads((run / "fidelity.json").read_text())
    plan = Plan.from_json(json.loads((run / "experiment.json").read_text()))
    assert summary["archs"] == 4 and summary["epochs"] == [1]
    stats = summary["agreement"]["top1"]
    assert -1 <= stats["kendall_tau"] <= 1 and -1 <= stats["spearman_rho"] <= 1
    assert stats["top_k"] == 1 and stats["gap_mean"] == pytest.approx(
        sum(r["gap_top1"] for r in summary["rows"]) / 4
    )
    whys = {r["why"] for r in summary["rows"]}
    assert {"largest", "smallest"} <= whys and "front" in whys  # the front is included
    assert len({plan.space.key(r["arch"]) for r in summary["rows"]}) == 4
    for row in summary["rows"]:
        plan.space.validate(row["arch"])
        assert 0 <= row["shared_top1"] <= 100 and 0 <= row["alone_top1"] <= 100
        assert row["gap_top1"] == pytest.approx(row["alone_top1"] - row["shared_top1"])
        assert row[summary["cost_metric"]] > 0  # the cost axis
    parallel = summary["parallel"]
    assert parallel["archs"] == 4 - len(finished) and parallel["concurrency"] == 2
    csv = (run / "fidelity.csv").read_text().splitlines()
    assert len(csv) == 5 and "alone_top1" in csv[0]
    assert (run / "fidelity.png").stat().st_size > 0
    for folder in results.iterdir():  # each run's learning curve
        if folder.name not in finished:
            assert json.loads((folder / "history.jsonl").read_text().splitlines()[-1])["epoch"] == 1

    # in this process from here on (the same code as the command, without its start-up)
    again = run_fidelity(run, archs=4, epochs=1, progress=False)
    assert again.trained == 0 and len(again.rows) == 4
    assert [r["alone_top1"] for r in again.rows] == [r["alone_top1"] for r in summary["rows"]]

    # another supernet in the run (here: its weights halved) is scored again by weight
    # sharing; the standalone runs are kept
    final = run / "supernet" / "final.pt"
    trained = final.read_bytes()
    state = torch.load(final, weights_only=True)
    torch.save({k: v * 0.5 if v.is_floating_point() else v for k, v in state.items()}, final)
    try:
        third = run_fidelity(run, archs=4, epochs=1, progress=False)
    finally:  # the session's run is shared: put its supernet back
        final.write_bytes(trained)
    assert third.trained == 0
    assert len(list((run / "fidelity").glob("shared-*.json"))) == 2
    rescored = json.loads((run / "fidelity.json").read_text())["rows"]
    assert [r["alone_top1"] for r in rescored] == [r["alone_top1"] for r in summary["rows"]]
    assert [r["shared_top1"] for r in rescored] != [r["shared_top1"] for r in summary["rows"]]


def test_standalone_training_moves_only_the_archs_own_weights(progressive_run, tmp_path):
    """Sampling is switched off: weights outside the arch (deeper layers it skips) keep
    their initial values, and the arch itself learns."""
    plan = Plan.from_json(json.loads((progressive_run / "experiment.json").read_text()))
    arch = plan.space.smallest()
    torch.manual_seed(plan.experiment.train.seed)
    initial = plan.build_supernet().state_dict()
    state = fit_in_process(
        plan, tmp_path / "alone", device="cpu", on_epoch=lambda m: None, arch=arch, epochs=1
    )
    trained = state["model"]
    moved = {k for k, v in trained.items() if v.dtype.is_floating_point
             and not torch.equal(v, initial[k]) and "running" not in k}  # fmt: skip
    unmoved = {k for k, v in trained.items() if v.dtype.is_floating_point and k not in moved}
    assert moved and any("weight" in k for k in unmoved - {k for k in unmoved if "running" in k})
    assert state["epoch"] == 1 and (tmp_path / "alone" / "state.pt").exists()


def test_a_trainer_that_cannot_train_an_arch_alone_is_refused(
    progressive_run, tmp_path, monkeypatch
):
    from nasforge_cnn.progressive import ProgressiveTrainer

    monkeypatch.setattr(ProgressiveTrainer, "trains_standalone", False)
    with pytest.raises(NasforgeError, match="cannot train an arch alone"):
        run_fidelity(progressive_run, archs=4, epochs=1, progress=False)


def test_an_archs_file_with_an_arch_outside_the_space_names_the_file_and_index(
    progressive_run, tmp_path
):
    plan = Plan.from_json(json.loads((progressive_run / "experiment.json").read_text()))
    bad = dict(plan.space.largest())
    bad["kernel_1"] = [9] * len(bad["kernel_1"])
    path = tmp_path / "archs.json"
    path.write_text(json.dumps([plan.space.smallest(), bad]))
    result = nasforge("fidelity", str(progressive_run), "--from", str(path))
    assert result.returncode == 2
    assert f"{path}: archs[1]:" in result.stderr and "kernel_1" in result.stderr


def test_a_directory_that_is_not_a_run_is_refused(tmp_path):
    result = nasforge("fidelity", str(tmp_path))
    assert result.returncode == 2 and "not a nasforge run directory" in result.stderr
