"""The plugin run the way nasforge runs it: a 20-trial search of the template's space and
estimator, fanned out by Ray Tune on a local Ray, every trial recorded in an Optuna study.

``run_experiment`` and the session's Ray (``nasforge_ray``) come from nasforge's pytest
plugin, which pytest loads wherever nasforge is installed. Like the last conformance test,
this one needs the package installed (``pip install -e .``): Ray's workers find the
plugin through its entry point, as a user's run would.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from nasforge_template.space import MLPSpace

EXPERIMENT = Path(__file__).resolve().parents[1] / "experiment.yaml"


@pytest.fixture(autouse=True)
def _installed():
    if not importlib.metadata.entry_points(group="nasforge", name="nasforge_template"):
        pytest.skip(
            "nasforge-plugin-template is not installed, so nasforge cannot discover it: "
            "run `pip install -e .` in the plugin's folder"
        )


def test_a_search_records_every_trial_and_finds_a_front(run_experiment):
    # the shipped experiment with a test's budget: 20 trials, 2 at a time, short training
    result = run_experiment(
        EXPERIMENT, n_trials=20, concurrency=2, overrides={"estimators.0.options.max_iter": 5}
    )
    assert len(result.complete) == 20 and not result.failed
    assert len(result.study.trials) == len(result.trials)  # the study is the record
    space = MLPSpace(max_depth=3, widths=[16, 32, 64])  # experiment.yaml's options
    for trial in result.complete:
        space.validate(trial.arch)
        assert 0.0 < trial.metrics["digits_acc"] <= 1.0 and trial.metrics["params"] > 0
    front = result.front
    assert front and all(t.state == "COMPLETE" for t in front)
    accuracy = [t.metrics["digits_acc"] for t in front]  # best first: accuracy falls ...
    params = [t.metrics["params"] for t in front]  # ... as the networks shrink
    assert accuracy == sorted(accuracy, reverse=True) and params == sorted(params, reverse=True)
    assert (result.run_dir / "trials.csv").exists() and (result.run_dir / "pareto.png").exists()
