"""The ``linas`` strategy: DyNAS-T's LINAS as an Optuna sampler, and its inner NSGA-II.

LINAS (Lightweight Iterative NAS, IntelLabs/DyNAS-T ``search_tactic.LINAS``) alternates
real and predicted evaluations. The first ``population`` archs are random; then every round

1. fits one predictor per objective on every arch evaluated so far (one-hot encoded genes),
   choosing among ``predictors`` (DyNAS-T: ridge or RBF SVR) by cross-validated
   ``selection_metric`` (:func:`nasforge_search.predictors.select_predictor`);
2. runs an NSGA-II over the predicted objectives (``inner_evals`` predictions, a population
   of ``inner_population``, by default ``population`` as in DyNAS-T; one objective makes it
   an elitist GA);
3. hands the inner search's final population, best first, out as the next ``population``
   real evaluations, leaving out archs evaluated or handed out before (by canonical key)
   and topping up with random unseen archs when too few are left.

This module owns :class:`LINASStrategy` (options), :class:`LINASSampler` (rounds, the
genome <-> Optuna params mapping, never proposing an arch twice) and :func:`nsga2`, a
vectorised NumPy NSGA-II over integer genes with DyNAS-T's operators (pymoo 0.6: SBX
crossover and polynomial mutation on the gene indices, rounded back to integers, duplicate
genomes eliminated); non-dominated sorting and crowding are the core's
(:mod:`nasforge.pareto`, moocore underneath).

Why not pymoo itself, as DyNAS-T does: the operators above are pymoo's, re-implemented in
about 150 vectorised lines that run an inner search of 5,000 predicted evaluations in a
fraction of a second (``tests/plugins/search/test_linas.py``); pymoo would add a dependency
tree (autograd, cma, alive-progress, dill, Deprecated) to every install for them, and the
``linas`` fidelity figures (16 of 18 cells within 0.02 of DyNAS-T's, benchmarks/RESULTS.md)
were measured with this implementation: switching would have to be re-measured first.

The sampler proposes whole archs: ``before_trial`` takes the next arch off its queue
(computing a round when it is empty) and ``sample_independent`` answers each parameter of
it, so the engine's study, resume and fan-out work unchanged. A gene is an Optuna parameter
(index into a categorical's choices, or an integer's grid position), read off the study's
trials; a parameter an arch lacks (conditional spaces) is drawn at random.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel, ConfigDict, Field

from nasforge import (
    Arch,
    Objective,
    SearchSpace,
    Strategy,
    build_predictor,
    crowding_distance,
    dominates,
    non_dominated_ranks,
)

from .predictors import select_predictor

# -- the inner search: NSGA-II over integer genes ----------------------------------------


def _rank_and_crowding(F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rank = non_dominated_ranks(F)
    return rank, crowding_distance(F, rank)


def _survive(
    F: np.ndarray, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NSGA-II survival: whole fronts while they fit, the split front by crowding (ties
    random). Returns the survivors' indices best first (rank, then crowding), their ranks
    and crowding distances."""
    rank, crowding = _rank_and_crowding(F)
    tie_break = rng.random(len(F))
    order = np.lexsort((tie_break, -crowding, rank))[:n]
    return order, rank[order], crowding[order]


def _tournament(
    F: np.ndarray, crowding: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """``n`` winners of binary tournaments: Pareto dominance, then larger crowding, then a
    coin. Competitors come from concatenated random permutations, so each takes part
    about equally often."""
    size = len(F)
    perms = np.concatenate([rng.permutation(size) for _ in range(math.ceil(2 * n / size))])
    a, b = perms[: 2 * n].reshape(n, 2).T
    a_dom, b_dom = dominates(F[a], F[b]), dominates(F[b], F[a])
    coin = rng.random(n) < 0.5
    a_wins = a_dom | (
        ~b_dom & ((crowding[a] > crowding[b]) | ((crowding[a] == crowding[b]) & coin))
    )
    return np.where(a_wins, a, b)


def _sbx(
    p1: np.ndarray, p2: np.ndarray, upper: np.ndarray, eta: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Simulated binary crossover (pymoo's, each gene with probability 0.5) on float
    genes in ``[0, upper]``; returns two children, unrounded."""
    c1, c2 = p1.astype(float), p2.astype(float)
    cross = (rng.random(p1.shape) < 0.5) & (np.abs(p1 - p2) > 1e-14) & (upper > 0)
    y1 = np.minimum(p1, p2)[cross].astype(float)
    y2 = np.maximum(p1, p2)[cross].astype(float)
    hi = np.broadcast_to(upper, p1.shape)[cross].astype(float)
    u = rng.random(y1.shape)
    delta = y2 - y1

    def spread(beta: np.ndarray) -> np.ndarray:
        alpha = 2.0 - np.power(beta, -(eta + 1.0))
        inside = u <= 1.0 / alpha
        return np.where(
            inside,
            np.power(np.where(inside, u * alpha, 1.0), 1.0 / (eta + 1.0)),
            np.power(1.0 / np.where(inside, 1.0, 2.0 - u * alpha), 1.0 / (eta + 1.0)),
        )

    low_child = 0.5 * ((y1 + y2) - spread(1.0 + 2.0 * y1 / delta) * delta)
    high_child = 0.5 * ((y1 + y2) + spread(1.0 + 2.0 * (hi - y2) / delta) * delta)
    swap = rng.random(y1.shape) < 0.5  # which child goes to which slot
    c1[cross] = np.where(swap, high_child, low_child)
    c2[cross] = np.where(swap, low_child, high_child)
    return np.clip(c1, 0, upper), np.clip(c2, 0, upper)


def _polynomial_mutation(
    X: np.ndarray, upper: np.ndarray, eta: float, gene_prob: float, rng: np.random.Generator
) -> np.ndarray:
    """Polynomial mutation (pymoo's) of each gene with probability ``gene_prob``."""
    X = X.astype(float)
    mutate = (rng.random(X.shape) < gene_prob) & (upper > 0)
    x = X[mutate]
    hi = np.broadcast_to(upper, X.shape)[mutate].astype(float)
    d1, d2 = x / hi, (hi - x) / hi
    u = rng.random(x.shape)
    power = 1.0 / (eta + 1.0)
    down = np.power(2.0 * u + (1.0 - 2.0 * u) * np.power(1.0 - d1, eta + 1.0), power) - 1.0
    up = 1.0 - np.power(2.0 * (1.0 - u) + 2.0 * (u - 0.5) * np.power(1.0 - d2, eta + 1.0), power)
    with np.errstate(invalid="ignore"):
        X[mutate] = np.clip(x + np.where(u <= 0.5, down, up) * hi, 0.0, hi)
    return X


def nsga2(
    evaluate: Callable[[np.ndarray], np.ndarray],
    counts: Sequence[int],
    *,
    population: int = 50,
    evaluations: int = 5000,
    crossover_prob: float = 0.9,
    crossover_eta: float = 15.0,
    mutation_prob: float = 0.02,
    mutation_eta: float = 20.0,
    rng: np.random.Generator | int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Minimise ``evaluate`` over integer genomes (gene ``i`` in ``0..counts[i]-1``).

    ``evaluate`` maps genomes (``(n, genes)`` ints) to objectives (``(n, objectives)``,
    minimised; one column makes this an elitist GA). DyNAS-T's inner search, as pymoo 0.6
    runs it: ``evaluations // population`` generations (the random first one included);
    parents by binary tournament; with ``crossover_prob`` a mating is SBX crossover, else the
    parents are copied; with ``mutation_prob`` a child is polynomially mutated, each gene
    with probability ``min(0.5, 1 / genes)``; genes are rounded back to integers; children
    equal to a genome of the population or to each other are bred again (pymoo's limit).

    Returns the final population, best first (rank, then crowding), and its objectives.
    """
    rng = np.random.default_rng(rng)
    upper = np.asarray(counts, dtype=np.int64) - 1
    if upper.ndim != 1 or (upper < 0).any():
        raise ValueError("counts must be one positive count per gene")
    genes = len(upper)
    operators = {
        "crossover_prob": crossover_prob,
        "crossover_eta": crossover_eta,
        "mutation_prob": mutation_prob,
        "mutation_eta": mutation_eta,
        "gene_prob": min(0.5, 1.0 / max(genes, 1)),
    }

    X = rng.integers(0, upper + 1, size=(population, genes))
    _, first = np.unique(_codes(X, upper), return_index=True)
    X = X[np.sort(first)]
    F = np.asarray(evaluate(X), dtype=float).reshape(len(X), -1)
    order, _, crowding = _survive(F, len(X), rng)
    X, F = X[order], F[order]
    for _ in range(max(1, evaluations // population) - 1):
        offspring = _breed(X, F, crowding, population, upper, rng, **operators)
        if not len(offspring):
            break  # nothing new can be bred around this population
        G = np.asarray(evaluate(offspring), dtype=float).reshape(len(offspring), -1)
        X, F = np.vstack([X, offspring]), np.vstack([F, G])
        order, _, crowding = _survive(F, population, rng)
        X, F = X[order], F[order]
    return X, F


def _breed(
    X: np.ndarray,
    F: np.ndarray,
    crowding: np.ndarray,
    n: int,
    upper: np.ndarray,
    rng: np.random.Generator,
    *,
    crossover_prob: float,
    crossover_eta: float,
    mutation_prob: float,
    mutation_eta: float,
    gene_prob: float,
) -> np.ndarray:
    """Up to ``n`` children of the population, none equal to a member or to each other: the
    first distinct ones of a stream of matings (pymoo breeds ``n / 2`` matings at a time,
    up to 100 times; the stream is drawn in larger chunks, which is the same stream)."""
    seen = np.sort(_codes(X, upper))  # sorted, for searchsorted
    children: list[np.ndarray] = []
    wanted = n
    budget = 100 * math.ceil(n / 2)  # matings pymoo would try at most
    matings = math.ceil(n / 2)  # doubled before each draw: n, 2n, 4n... matings
    while wanted > 0 and budget > 0:
        matings = min(budget, 2 * matings)
        budget -= matings
        parents = _tournament(F, crowding, 2 * matings, rng).reshape(matings, 2).T
        p1, p2 = X[parents[0]], X[parents[1]]
        c1, c2 = _sbx(p1, p2, upper, crossover_eta, rng)
        copy = rng.random(matings) >= crossover_prob
        c1[copy], c2[copy] = p1[copy], p2[copy]
        brood = np.round(np.stack([c1, c2], axis=1).reshape(2 * matings, -1))  # pairs adjacent
        mutate = rng.random(len(brood)) < mutation_prob
        if mutate.any():
            mutated = _polynomial_mutation(brood[mutate], upper, mutation_eta, gene_prob, rng)
            brood[mutate] = np.round(mutated)
        brood = brood.astype(np.int64)
        codes = _codes(brood, upper)
        unique, first = np.unique(codes, return_index=True)
        at = np.minimum(np.searchsorted(seen, unique), len(seen) - 1)
        first = np.sort(first[seen[at] != unique])[:wanted]  # new ones, in stream order
        seen = np.sort(np.concatenate([seen, codes[first]]))
        children.append(brood[first])
        wanted -= len(first)
    return np.vstack(children) if children else np.empty((0, len(upper)), dtype=np.int64)


def _codes(X: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """One integer per genome: exact (mixed radix) when the genome space fits in 62 bits,
    else a 64-bit hash (a collision only makes a new child look like a repeat)."""
    sizes = [int(u) + 1 for u in upper]
    if math.prod(sizes) < 2**62:
        radix = np.cumprod([1, *sizes[:-1]]).astype(np.int64)
        return X.astype(np.int64) @ radix
    multipliers = np.random.default_rng(0).integers(1, 2**63, size=len(sizes), dtype=np.uint64)
    with np.errstate(over="ignore"):
        return (X.astype(np.uint64) * (multipliers | np.uint64(1))).sum(1).view(np.int64)


# -- genomes <-> Optuna params -----------------------------------------------------------


class _Genes:
    """The Optuna parameters the study has seen (categorical or integer), each a gene whose
    value is the index of its choice (or grid position)."""

    def __init__(self, trials: Sequence[FrozenTrial]):
        found: dict[str, BaseDistribution] = {}
        for trial in trials:
            for name, dist in trial.distributions.items():
                if name not in found and _count(dist) > 0:
                    found[name] = dist
        self.names = list(found)
        self.distributions = list(found.values())
        self.counts = np.array([_count(d) for d in self.distributions], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)

    def genome(self, params: Mapping[str, Any]) -> np.ndarray:
        """Gene indices of a trial's params; ``-1`` where a gene is absent or out of range."""
        out = np.full(len(self.names), -1, dtype=np.int64)
        for g, (name, dist) in enumerate(zip(self.names, self.distributions, strict=True)):
            if name in params:
                out[g] = _index(dist, params[name])
        return out

    def params(self, genome: np.ndarray) -> dict[str, Any]:
        out = {}
        for g, (name, dist) in enumerate(zip(self.names, self.distributions, strict=True)):
            i = int(genome[g])
            if i >= 0:
                if isinstance(dist, CategoricalDistribution):
                    out[name] = dist.choices[i]
                else:
                    out[name] = dist.low + i * dist.step
        return out

    def one_hot(self, genomes: np.ndarray) -> np.ndarray:
        """DyNAS-T's predictor features: each gene one-hot; an absent gene is all zeros."""
        n = len(genomes)
        X = np.zeros((n, int(self.counts.sum())))
        rows, genes = np.nonzero(genomes >= 0)
        X[rows, self.offsets[genes] + genomes[rows, genes]] = 1.0
        return X


def _count(dist: BaseDistribution) -> int:
    if isinstance(dist, CategoricalDistribution):
        return len(dist.choices)
    if isinstance(dist, IntDistribution):
        return (dist.high - dist.low) // dist.step + 1
    return 0  # a float: not a gene, drawn at random


def _index(dist: BaseDistribution, value: Any) -> int:
    if isinstance(dist, CategoricalDistribution):
        for i, choice in enumerate(dist.choices):
            if type(choice) is type(value) and choice == value:
                return i
        return -1
    step = (value - dist.low) // dist.step
    ok = dist.low <= value <= dist.high and (value - dist.low) % dist.step == 0
    return int(step) if ok else -1


class _ParamTrial:
    """What ``SearchSpace.suggest`` asks of a trial, answered from ``params``; a parameter
    missing there (or not among the choices offered) is drawn at random. Records every
    answer, so ``asked`` holds exactly the params a trial of this arch will have."""

    def __init__(self, params: Mapping[str, Any], rng: np.random.Generator):
        self.params = params
        self.rng = rng
        self.asked: dict[str, Any] = {}

    def _answer(self, name: str, dist: BaseDistribution) -> Any:
        value = self.params.get(name, _MISSING)
        if value is _MISSING or _index(dist, value) < 0:
            i = int(self.rng.integers(_count(dist)))
            value = dist.choices[i] if isinstance(dist, CategoricalDistribution) else None
            if isinstance(dist, IntDistribution):
                value = dist.low + i * dist.step
        self.asked[name] = value
        return value

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self._answer(name, CategoricalDistribution(list(choices)))

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        return self._answer(name, IntDistribution(low, high, step=step))

    def suggest_float(self, name: str, low: float, high: float, **kwargs: Any) -> float:
        value = self.params.get(name, _MISSING)
        if value is _MISSING or not low <= value <= high:
            value = float(self.rng.uniform(low, high))
        self.asked[name] = value
        return value


_MISSING: Any = object()


# -- the sampler -------------------------------------------------------------------------


class LINASSampler(optuna.samplers.BaseSampler):
    """Proposes whole archs, a round at a time, as the module docstring describes.

    Rounds are computed from ``study.get_trials``: a resumed study continues with a
    predictor round once ``population`` archs exist. No arch (by ``space.key``) is proposed
    twice: archs of the study's trials and every arch handed out are remembered.
    Enqueued trials (fixed params) pass through untouched.
    """

    def __init__(
        self,
        space: SearchSpace,
        objectives: Sequence[Objective],
        *,
        seed: int | None = None,
        population: int = 50,
        inner_population: int | None = None,
        inner_evals: int = 5000,
        predictors: Sequence[str] = ("ridge", "svr"),
        selection_metric: Literal["mape", "kendall_tau"] = "mape",
        crossover_prob: float = 0.9,
        crossover_eta: float = 15.0,
        mutation_prob: float = 0.02,
        mutation_eta: float = 20.0,
    ):
        for name in predictors:
            try:
                build_predictor(name)
            except KeyError as exc:
                raise ValueError(f"predictors: {exc.args[0]}") from None
        self.space = space
        self.objectives = list(objectives)
        self.population = population
        self.inner_population = inner_population or population
        self.inner_evals = inner_evals
        self.predictors = list(predictors)
        self.selection_metric = selection_metric
        self.operators = {
            "crossover_prob": crossover_prob,
            "crossover_eta": crossover_eta,
            "mutation_prob": mutation_prob,
            "mutation_eta": mutation_eta,
        }
        self._rng = np.random.default_rng(seed)
        self._random = optuna.samplers.RandomSampler(seed=int(self._rng.integers(2**31)))
        self._queue: list[dict[str, Any]] = []  # params of the archs still to hand out
        self._handed: set[str] = set()  # keys of every arch proposed in this run
        self._assigned: dict[int, dict[str, Any]] = {}  # trial number -> its params
        self._keys: dict[int, str | None] = {}  # finished trial number -> its arch's key
        # per predictor round: archs fitted on, predictor chosen per objective, archs taken
        # from the inner search (the rest of the round is random), seconds it took
        self.rounds: list[dict[str, Any]] = []

    # -- Optuna's interface ----------------------------------------------------------
    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        return {}

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        fixed = trial.system_attrs.get("fixed_params")
        if fixed is not None:  # enqueued (initial archs, retries): remember, don't replace
            key = self._key(fixed)
            if key is not None:
                self._handed.add(key)
            return
        if not self._queue:
            self._queue = self._next_round(study, trial.number)
        if self._queue:
            self._assigned[trial.number] = self._queue.pop(0)

    def sample_independent(self, study, trial, param_name, param_distribution) -> Any:
        value = self._assigned.get(trial.number, {}).get(param_name, _MISSING)
        if value is not _MISSING and _index_any(param_distribution, value):
            return value
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self._assigned.pop(trial.number, None)

    # -- rounds ----------------------------------------------------------------------
    def _key(self, params: Mapping[str, Any]) -> str | None:
        """The canonical key of the arch a trial with ``params`` builds (None if it cannot)."""
        try:
            return self.space.key(self.space.suggest(optuna.trial.FixedTrial(dict(params))))
        except Exception:
            return None

    def _next_round(self, study: optuna.Study, current: int) -> list[dict[str, Any]]:
        trials = [t for t in study.get_trials(deepcopy=False) if t.number != current]
        seen = set(self._handed)
        for t in trials:
            params = t.params or t.system_attrs.get("fixed_params")
            if not params:
                continue
            if t.state.is_finished():
                if t.number not in self._keys:
                    self._keys[t.number] = self._key(params)
                key = self._keys[t.number]
            else:
                key = self._key(params)
            if key is not None:
                seen.add(key)
        complete = [
            t
            for t in trials
            if t.state == TrialState.COMPLETE
            and t.values is not None
            and len(t.values) == len(self.objectives)
            and all(math.isfinite(v) for v in t.values)
        ]
        started = len(complete) + sum(t.state == TrialState.RUNNING for t in trials)
        batch: list[tuple[dict[str, Any], str]] = []
        if started < self.population or len(complete) < 3:
            wanted = max(1, self.population - started)  # the random first population
        else:
            wanted = self.population
            batch = self._predicted(complete, trials, seen, wanted)
        batch += self._random_unseen(seen, wanted - len(batch))
        self._handed.update(key for _, key in batch)
        return [params for params, _ in batch]

    def _predicted(
        self,
        complete: Sequence[FrozenTrial],
        trials: Sequence[FrozenTrial],
        seen: set[str],
        wanted: int,
    ) -> list[tuple[dict[str, Any], str]]:
        """One LINAS round: fit predictors, run the inner NSGA-II, take its unseen archs
        (params and key, at most ``wanted``, added to ``seen``)."""
        start = time.perf_counter()

        genes = _Genes(trials)
        if not genes.names:
            return []
        genomes = np.array([genes.genome(t.params) for t in complete])
        _, first = np.unique(genomes, axis=0, return_index=True)  # DyNAS-T drops duplicates
        first.sort()
        X = genes.one_hot(genomes[first])
        values = np.array([t.values for t in complete], dtype=float)[first]
        models, chosen = [], []
        fit_seed = int(self._rng.integers(2**31))
        for j, objective in enumerate(self.objectives):
            selection = select_predictor(
                self.predictors, X, values[:, j], self.selection_metric, seed=fit_seed
            )
            models.append((selection.predictor, -1.0 if objective.direction == "maximize" else 1.0))
            chosen.append(selection.name)

        def predicted(G: np.ndarray) -> np.ndarray:
            features = genes.one_hot(G)
            return np.column_stack([sign * model.predict(features) for model, sign in models])

        final, _ = nsga2(
            predicted,
            genes.counts,
            population=self.inner_population,
            evaluations=self.inner_evals,
            rng=int(self._rng.integers(2**31)),
            **self.operators,
        )
        batch: list[tuple[dict[str, Any], str]] = []
        for genome in final:
            if len(batch) >= wanted:
                break
            params, key = self._arch_params(genes.params(genome))
            if key is not None and key not in seen:
                seen.add(key)
                batch.append((params, key))
        self.rounds.append(
            {
                "trials": len(complete),
                "predictors": chosen,
                "from_inner": len(batch),
                "seconds": round(time.perf_counter() - start, 3),
            }
        )
        return batch

    def _arch_params(self, params: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
        """The params a trial of the arch ``params`` describe will have (missing ones drawn
        at random), and that arch's key (None when the space rejects it)."""
        trial = _ParamTrial(params, self._rng)
        try:
            arch: Arch = self.space.suggest(trial)
            return trial.asked, self.space.key(arch)
        except Exception:
            return trial.asked, None

    def _random_unseen(self, seen: set[str], wanted: int) -> list[tuple[dict[str, Any], str]]:
        """Up to ``wanted`` random archs not in ``seen`` (params and key, added to it)."""
        batch: list[tuple[dict[str, Any], str]] = []
        for _ in range(100 * max(wanted, 0)):
            if len(batch) >= wanted:
                break
            arch = self.space.sample(self._rng)
            key = self.space.key(arch)
            if key not in seen:
                seen.add(key)
                batch.append((self.space.to_params(arch), key))
        return batch


def _index_any(dist: BaseDistribution, value: Any) -> bool:
    """Whether ``value`` is a valid value of ``dist`` (a gene's, or a float range)."""
    if _count(dist) > 0:
        return _index(dist, value) >= 0
    return (
        isinstance(dist, FloatDistribution)
        and isinstance(value, int | float)
        and dist.low <= value <= dist.high
    )


# -- the strategy ------------------------------------------------------------------------


class LINASStrategy(Strategy):
    """DyNAS-T's LINAS: predictor-guided rounds of ``population`` evaluations, each the final
    population of an NSGA-II run on per-objective predictors (ridge or SVR, chosen by
    cross-validation). Works with one objective too (the inner search is then a GA)."""

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        population: int = Field(50, ge=2)
        """Real evaluations per round; the first round is random."""
        inner_population: int | None = Field(None, ge=2)
        """Population of the inner NSGA-II on predicted objectives; ``None``: ``population``,
        as DyNAS-T runs it."""
        inner_evals: int = Field(5000, ge=1)
        """Predicted evaluations per round (DyNAS-T's 5000: 100 generations of 50)."""
        predictors: list[str] = Field(default_factory=lambda: ["ridge", "svr"], min_length=1)
        """Registered predictors to choose from per objective and round."""
        selection_metric: Literal["mape", "kendall_tau"] = "mape"
        """Cross-validated score that picks the predictor."""
        crossover_prob: float = Field(0.9, ge=0.0, le=1.0)
        """Probability that a mating is SBX crossover (else the parents are copied)."""
        crossover_eta: float = Field(15.0, gt=0.0)
        """SBX distribution index (larger keeps children closer to their parents)."""
        mutation_prob: float = Field(0.02, ge=0.0, le=1.0)
        """Probability that a child is mutated (each gene then with ``min(0.5, 1/genes)``)."""
        mutation_eta: float = Field(20.0, gt=0.0)
        """Polynomial mutation distribution index."""

    def sampler(self, space, objectives, seed):
        return LINASSampler(space, objectives, seed=seed, **self.options)
