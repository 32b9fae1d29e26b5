"""The ``linas`` strategy: DyNAS-T's LINAS as an Optuna sampler (nasforge_search.linas).

- **Inner NSGA-II.** Ranks and crowding distances equal brute-force definitions; on a
  small additive problem the final population lies on the true Pareto front (with one
  objective: holds the optimum), from 5,000 evaluations in well under a second.
- **Proposals.** The first ``population`` archs are random, every later one comes from a
  predictor round; no arch (by canonical key) is proposed twice, enqueued archs included.
  On an additive objective over NAS-Bench-Graph the second population is far better than
  the first (random) one, with two objectives and with one.
- **Runs.** A seed fixes every proposal; a conditional space works; the sampler pickles;
  ``linas`` is registered, its options are validated, and it runs in ``bench-search``.
"""

from __future__ import annotations

import itertools
import pickle
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from pydantic import ValidationError

from nasforge import Categorical, IntRange, Objective, PerLayer, SearchSpace
from nasforge.benchmark import BenchSearch, build_strategies, ground_truth
from nasforge.pareto import non_dominated_ranks
from nasforge.plan import load_plan
from nasforge.plugins import registry
from nasforge_gnn.plugin import NasBenchGraphSpace
from nasforge_search.linas import LINASSampler, LINASStrategy, nsga2

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "gnn_nasbench_cora.yaml"
TWO = [Objective("acc", "maximize"), Objective("cost", "minimize")]

optuna.logging.set_verbosity(optuna.logging.WARNING)


# -- the inner NSGA-II --------------------------------------------------------------------


def additive(counts, seed):
    """Two additive objectives over integer genes (their one-hot weights) and a scorer."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(2, sum(counts)))
    offsets = np.cumsum([0, *counts[:-1]])

    def evaluate(G):
        return np.stack([W[k][offsets + G].sum(1) for k in range(2)], axis=1)

    return evaluate


def test_nsga2_converges_to_the_pareto_front_of_a_small_problem():
    counts = [5, 4, 5, 3]
    evaluate = additive(counts, 1)
    every = np.array(list(itertools.product(*map(range, counts))))
    front = {tuple(g) for g in every[non_dominated_ranks(evaluate(every)) == 0]}
    calls = []

    def counted(G):
        calls.append(len(G))
        return evaluate(G)

    start = time.process_time()
    X, F = nsga2(counted, counts, population=20, evaluations=2000, rng=0)
    assert time.process_time() - start < 2.0
    assert len(X) == 20 and len({tuple(g) for g in X}) == 20  # distinct genomes
    assert np.allclose(F, evaluate(X))
    assert sum(calls) <= 2000
    on_front = sum(tuple(g) in front for g in X)
    assert on_front >= min(len(front), 20) - 2, (on_front, len(front))
    # one objective: an elitist GA that holds the optimum, best first
    _, F1 = nsga2(lambda G: evaluate(G)[:, :1], counts, population=20, evaluations=2000, rng=0)
    assert F1[0, 0] == pytest.approx(evaluate(every)[:, 0].min())
    assert (np.diff(F1[:, 0]) >= 0).all()


def test_nsga2_runs_5000_predicted_evaluations_in_well_under_a_second():
    counts = [9, 9, 9, 9, 9]  # NAS-Bench-Graph's genes
    evaluate = additive(counts, 2)
    nsga2(evaluate, counts, evaluations=500, rng=0)  # warm up
    start = time.process_time()
    nsga2(evaluate, counts, population=50, evaluations=5000, rng=0)
    assert time.process_time() - start < 1.0


# -- proposals ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nbg():
    return NasBenchGraphSpace("cora")


def weights(space, seed):
    """An additive synthetic objective pair over the arch's one-hot encoding."""
    rng = np.random.default_rng(seed)
    acc = rng.normal(size=space.encoded_width())
    cost = np.abs(rng.normal(size=space.encoded_width())) + 0.5 * acc  # partly conflicting
    return lambda arch: (float(space.encode(arch) @ acc), float(space.encode(arch) @ cost))


def run(space, sampler, objective, n, objectives=TWO):
    """Ask/tell ``n`` trials; return the archs in proposal order and the study."""
    study = optuna.create_study(directions=[o.direction for o in objectives], sampler=sampler)
    archs = []
    for _ in range(n):
        trial = study.ask()
        arch = space.suggest(trial)
        archs.append(arch)
        values = objective(arch)
        study.tell(trial, list(values[: len(objectives)]))
    return archs, study


def dominated_share(first, second):
    """Share of ``second``'s points (acc max, cost min) dominated by some point of ``first``."""
    a, b = np.array(first), np.array(second)
    dom = (a[None, :, 0] >= b[:, None, 0]) & (a[None, :, 1] <= b[:, None, 1])
    strict = (a[None, :, 0] > b[:, None, 0]) | (a[None, :, 1] < b[:, None, 1])
    return float((dom & strict).any(1).mean())


def test_rounds_propose_unseen_archs_that_the_predictors_say_are_good(nbg):
    objective = weights(nbg, 0)
    sampler = LINASSampler(nbg, TWO, seed=0, population=30, inner_evals=1500)
    archs, _ = run(nbg, sampler, objective, 90)
    keys = [nbg.key(a) for a in archs]
    assert len(set(keys)) == len(keys)  # never the same network twice
    assert len(sampler.rounds) == 2 and [r["trials"] for r in sampler.rounds] == [30, 60]
    assert all(r["from_inner"] > 0 for r in sampler.rounds)
    values = [objective(a) for a in archs]
    first, second = values[:30], values[30:60]
    # the predicted population dominates most of the random one, and hardly the reverse
    assert dominated_share(first, second) < 0.3 and dominated_share(second, first) > 0.7


def test_one_objective_makes_the_inner_search_a_ga(nbg):
    objective = weights(nbg, 3)
    one = [Objective("acc", "maximize")]
    sampler = LINASSampler(nbg, one, seed=0, population=25, inner_evals=1000)
    archs, _ = run(nbg, sampler, objective, 50, objectives=one)
    acc = np.array([objective(a)[0] for a in archs])
    assert len({nbg.key(a) for a in archs}) == 50
    assert np.median(acc[25:]) > np.quantile(acc[:25], 0.9)


def test_a_seed_fixes_every_proposal(nbg):
    objective = weights(nbg, 4)

    def proposals(seed):
        sampler = LINASSampler(nbg, TWO, seed=seed, population=10, inner_evals=300)
        return [nbg.key(a) for a in run(nbg, sampler, objective, 25)[0]]

    assert proposals(7) == proposals(7)
    assert proposals(7) != proposals(8)


def test_enqueued_archs_are_evaluated_as_given_and_never_proposed_again(nbg):
    objective = weights(nbg, 5)
    sampler = LINASSampler(nbg, TWO, seed=0, population=10, inner_evals=300)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    given = [nbg.largest(), nbg.smallest()]
    for arch in given:
        study.enqueue_trial(nbg.to_params(arch))
    archs = []
    for _ in range(25):
        trial = study.ask()
        archs.append(nbg.suggest(trial))
        study.tell(trial, list(objective(archs[-1])))
    assert archs[:2] == given
    keys = [nbg.key(a) for a in archs]
    assert len(set(keys)) == len(keys)


def test_a_resumed_study_continues_with_predictor_rounds(nbg):
    objective = weights(nbg, 6)
    first = LINASSampler(nbg, TWO, seed=0, population=10, inner_evals=300)
    archs, study = run(nbg, first, objective, 12)
    resumed = LINASSampler(nbg, TWO, seed=1, population=10, inner_evals=300)
    study.sampler = resumed
    for _ in range(10):
        trial = study.ask()
        archs.append(nbg.suggest(trial))
        study.tell(trial, list(objective(archs[-1])))
    assert len(resumed.rounds) == 1 and resumed.rounds[0]["trials"] == 12
    assert len({nbg.key(a) for a in archs}) == len(archs)


def test_a_conditional_space_works():
    space = SearchSpace(
        [
            IntRange("depth", 1, 3),
            PerLayer("width", [8, 16, 32], length="depth", max_length=3),
            Categorical("act", ["relu", "gelu"], when={"depth": [2, 3]}),
        ]
    )
    rng = np.random.default_rng(0)
    w = rng.normal(size=space.encoded_width())
    sampler = LINASSampler(space, TWO, seed=0, population=8, inner_evals=400)
    archs, _ = run(space, sampler, lambda a: (space.encode(a) @ w, a["depth"]), 40)
    keys = [space.key(a) for a in archs]
    assert len(set(keys)) == len(keys)  # 3 + 9 * 2 + 27 * 2 = 75 archs, none twice
    assert len(sampler.rounds) >= 2


def test_the_sampler_pickles(nbg):
    sampler = LINASSampler(nbg, TWO, seed=0, population=5, inner_evals=100)
    run(nbg, sampler, weights(nbg, 0), 7)
    copy = pickle.loads(pickle.dumps(sampler))
    assert copy._handed == sampler._handed and copy.rounds == sampler.rounds


# -- the strategy -------------------------------------------------------------------------------


def test_linas_is_registered_with_validated_options(nbg):
    assert registry().get("strategy", "linas").factory is LINASStrategy
    with pytest.raises(ValidationError, match="population"):
        LINASStrategy.Options.model_validate({"population": 1})
    with pytest.raises(ValidationError, match="mutation_prob"):
        LINASStrategy.Options.model_validate({"mutation_prob": 2})
    options = LINASStrategy.Options().model_dump()
    assert options["population"] == 50 and options["predictors"] == ["ridge", "svr"]
    assert (options["inner_population"], options["inner_evals"]) == (None, 5000)
    assert (options["crossover_prob"], options["mutation_prob"]) == (0.9, 0.02)
    with pytest.raises(ValueError, match="unknown predictor 'nope'"):
        LINASStrategy(predictors=["nope"]).sampler(nbg, TWO, 0)


def test_linas_runs_in_bench_search():
    plan = load_plan(EXAMPLE)
    truth = ground_truth(plan, plan.objectives, Path("unused"))
    options = {"linas": {"population": 15, "inner_evals": 750}}
    strategies = build_strategies(plan, ["linas"], options)
    cell = BenchSearch(plan, truth, strategies, [0], [15, 45]).cell("linas", 0)
    assert cell.evaluations == 45 and cell.repeats == 0 and cell.note is None
    assert cell.proposals == cell.evaluations + cell.missing
    assert 0 < cell.hv[14] <= cell.hv[-1] <= 1
