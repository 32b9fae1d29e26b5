"""Strategy ``ehvi``: its hypervolume arithmetic, and its proposals on NAS-Bench-Graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import yaml

from nasforge.free_metrics import FreeMetrics, build_sampler
from nasforge.pareto import hypervolume_improvement_2d, non_dominated
from nasforge.plan import Plan
from nasforge_search.ehvi import _ehvi_one_uncertain

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "gnn_nasbench_cora.yaml"


def test_closed_form_ehvi_equals_the_monte_carlo_mean():
    rng = np.random.default_rng(1)
    front = rng.uniform(0, 1, (8, 2))
    front = front[non_dominated(front)]
    mu = rng.uniform(0, 1, (5, 2))
    sigma = np.column_stack([np.zeros(5), rng.uniform(0.05, 0.3, 5)])  # objective 1 uncertain
    exact = _ehvi_one_uncertain(front, mu, sigma, uncertain=1, reference=1.1)
    draws = mu[None] + sigma[None] * rng.standard_normal((40000, 5, 2))
    monte_carlo = np.mean([hypervolume_improvement_2d(front, d, 1.1) for d in draws], axis=0)
    np.testing.assert_allclose(exact, monte_carlo, atol=2e-3)


def plan_and_free(tmp_path, constraints=(), **options):
    exp = yaml.safe_load(EXAMPLE.read_text())
    exp["search"] = {"strategy": "ehvi", "n_trials": 10, "options": options}
    exp["constraints"] = list(constraints)
    plan = Plan.from_json(exp)
    return plan, FreeMetrics(plan, tmp_path)


def run(plan, free, n: int, seed: int = 0) -> list[dict]:
    sampler = build_sampler(plan.strategy, plan.space, plan.objectives, seed, free)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    estimator, context = plan.estimators[0], None
    from nasforge.sdk import EvalContext

    context = EvalContext(run_dir=free._contexts[0].run_dir)
    estimator.setup(context)
    archs = []
    for _ in range(n):
        trial = study.ask()
        arch = plan.space.suggest(trial)
        archs.append(arch)
        acc = estimator.evaluate(arch, context)["valid_acc"]
        metrics = {"valid_acc": acc, **free(arch)}
        for constraint in plan.constraints:  # as the engine records them
            trial.set_constraint(str(constraint), constraint.violation(metrics[constraint.metric]))
        study.tell(trial, [acc, metrics["latency_ms"]])
    return archs


def test_free_metrics_come_from_the_table_cost_model(tmp_path):
    plan, free = plan_and_free(tmp_path)
    assert free.metrics == ("latency_ms", "params_m")
    arch = plan.space.sample(np.random.default_rng(0))
    assert free(arch) == plan.hardware[0].measure(arch, None, free._contexts[0])


def test_ehvi_spreads_its_initial_design_and_never_repeats_an_arch(tmp_path):
    plan, free = plan_and_free(tmp_path, n_initial=8, candidates=500, refit_every=3)
    archs = run(plan, free, 24)
    keys = [plan.space.key(a) for a in archs]
    assert len(set(keys)) == len(keys)
    latencies = sorted(free(a)["latency_ms"] for a in archs[:8])
    pool = [free(plan.space.sample(np.random.default_rng(i))) for i in range(300)]
    spread = np.percentile([p["latency_ms"] for p in pool if p], [10, 90])
    assert latencies[0] <= spread[0] and latencies[-1] >= spread[1]  # both ends covered
    again = run(plan_and_free(tmp_path, n_initial=8, candidates=500, refit_every=3)[0], free, 24)
    assert [plan.space.key(a) for a in again] == keys  # deterministic by seed


def test_extreme_steps_search_around_the_most_accurate_archs(tmp_path):
    """Every third proposal after the initial design is a neighbour or a recombination of
    the 3 most accurate archs so far: each gene one of theirs, at most one gene re-drawn."""
    plan, free = plan_and_free(
        tmp_path, n_initial=6, candidates=300, refit_every=2, extreme_every=3, extreme_centres=3
    )
    archs = run(plan, free, 21)
    estimator = plan.estimators[0]
    from nasforge.sdk import EvalContext

    context = EvalContext(run_dir=free._contexts[0].run_dir)
    accuracy = [estimator.evaluate(a, context)["valid_acc"] for a in archs]
    checked = 0
    for n in range(6, 21):
        if (n - 6 + 1) % 3:  # not an extreme step
            continue
        best = np.argsort(-np.asarray(accuracy[:n]), kind="stable")[:3]
        centres = [plan.space.to_params(archs[i]) for i in best]
        proposed = plan.space.to_params(archs[n])
        foreign = [k for k, v in proposed.items() if all(c.get(k) != v for c in centres)]
        assert len(foreign) <= 1, (n, proposed, centres)
        checked += 1
    assert checked == 5


def test_a_budget_on_a_free_metric_keeps_every_proposal_inside_it(tmp_path):
    """``latency_ms <= median``: every proposal fits (the initial design spreads inside the
    budget), and the extreme steps climb from the most accurate archs that fit."""
    plan, free = plan_and_free(tmp_path, n_initial=6, candidates=300, refit_every=2)
    pool = [free(plan.space.sample(np.random.default_rng(i))) for i in range(300)]
    bound = float(np.median([p["latency_ms"] for p in pool if p]))
    plan, free = plan_and_free(
        tmp_path,
        constraints=[f"latency_ms <= {bound!r}", "valid_acc >= 0.5"],
        n_initial=6, candidates=300, refit_every=2, extreme_every=3, extreme_centres=3,
    )  # fmt: skip
    assert [str(c) for c in free.constraints] == [f"latency_ms <= {bound!r}"]  # free ones only
    archs = run(plan, free, 18)
    latencies = [free(a)["latency_ms"] for a in archs]
    assert max(latencies) <= bound
    assert min(latencies) < np.percentile([p["latency_ms"] for p in pool if p], 20)
    unconstrained = run(*plan_and_free(tmp_path, n_initial=6, candidates=300), 18)
    assert max(free(a)["latency_ms"] for a in unconstrained) > bound  # the budget did it
