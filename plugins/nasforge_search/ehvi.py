"""Strategy ``ehvi``: expected hypervolume improvement over a Gaussian process, with free
hardware metrics taken exactly instead of predicted.

Most of a hardware-aware search's objectives split in two: accuracy needs an evaluation,
the cost (latency from a table or a look-up table, parameters) is *free* — exact and cheap
for any arch (:mod:`nasforge.free_metrics`). LINAS predicts both; this strategy predicts
only what is not free, and so knows exactly where on the cost axis every candidate lies.

Each proposal:

1. **Initial design** (``n_initial`` archs): spread evenly over the quantiles of the first
   free metric among random candidates, so the first evaluations already span the front
   (random without free metrics).
2. **Model**: a Gaussian process per predicted objective (``predictor``, any registered
   predictor with uncertainty) on the space's one-hot ``encode`` of every evaluated arch.
3. **Candidates**: a pool of random unseen archs (``candidates``, re-drawn as the model is
   refitted) plus, around the *centres* — the archs of the current front — their one-gene
   neighbours and ``children`` recombinations (each gene from a random centre, one gene in
   ``len(genes)`` re-drawn, as in an evolutionary search); never an arch evaluated or
   already handed out in this run.
4. **Acquisition**: the expected hypervolume improvement of each candidate over the front
   of evaluated archs, in objectives scaled to [0, 1] (reference point :data:`nasforge.REFERENCE_POINT`). With two
   objectives of which one is predicted, it is exact in closed form: the improvement is
   linear in ``(level - y)^+`` on each step of the front's staircase, and
   ``E[(level - Y)^+] = (level - mu) Phi(z) + sigma phi(z)`` for ``Y ~ N(mu, sigma^2)``.
   With both predicted it is a Monte Carlo mean over posterior draws; with one objective it
   is expected improvement; with more than two, ParEGO's random Chebyshev scalarisations.
   Archs handed out but not yet finished enter the front at their predicted mean (the
   "kriging believer"), so parallel proposals spread out.
5. **Extreme steps** (every ``extreme_every``-th proposal): the centres are the
   ``extreme_centres`` archs best in the predicted objective, the candidates only their
   neighbours and recombinations, and the score that objective's expected improvement —
   a local search at the front's accurate end, where hypervolume is won last and where
   the model, flat among good archs, ranks worst. With one objective, the centres are
   always the best archs.

**Budgets.** The experiment's constraints on free metrics (``weight_mb <= 134.5``) are exact
before an evaluation, so the candidates are only archs that satisfy them, and the front,
the centres and the hypervolume are those of the *feasible* evaluated archs (all of them
while none is feasible). A search under a budget is then a search of the budget's front:
its extreme steps climb from the best arch that fits (with a memory budget: one layer's
bits, width or rank at a time) instead of from the largest model. Constraints on
predicted metrics (``perplexity <= 40``) count once measured: infeasible archs stay out of
the front but still teach the models.

The sampler hands each trial one whole arch (through ``sample_independent``), so the study,
the dashboard, resume and the Ray fan-out work as with any Optuna sampler.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel, ConfigDict, Field

from nasforge import (
    Arch,
    FreeMetrics,
    Objective,
    SearchSpace,
    Strategy,
    build_predictor,
    hypervolume_improvement_2d,
    non_dominated,
    staircase_2d,
)


class EHVIOptions(BaseModel):
    """Options of the ``ehvi`` strategy."""

    model_config = ConfigDict(extra="forbid")

    n_initial: int = Field(10, ge=2, description="archs of the initial design")
    candidates: int = Field(3000, ge=10, description="random archs in the candidate pool")
    predictor: str = Field("gp", description="a registered predictor with uncertainty")
    draws: int = Field(32, ge=4, description="posterior draws when both objectives are predicted")
    reference_point: float = Field(
        1.1,
        gt=1.0,
        description="the acquisition's hypervolume reference in objectives scaled to [0, 1] "
        "(worst seen = 1): further out values the ends of the front more (results are "
        "scored at nasforge.REFERENCE_POINT, 1.01)",
    )
    cost_features: bool = Field(
        True, description="give the models the free metrics as inputs besides the encoding"
    )
    extreme_every: int = Field(
        3,
        ge=0,
        description="every N-th proposal improves the predicted objective alone "
        "(the front's best end, where hypervolume is won last); 0: never",
    )
    extreme_centres: int = Field(
        5,
        ge=1,
        description="the extreme steps choose among the neighbours and recombinations of "
        "this many archs best in the predicted objective",
    )
    children: int = Field(
        300,
        ge=0,
        description="recombinations of the current centres (the front's archs; on extreme "
        "steps the best in the predicted objective) added to the candidates per proposal",
    )
    refit_every: int = Field(
        5,
        ge=1,
        description="refit the models after this many new evaluations (in between, "
        "the acquisition uses the newest front with the last models)",
    )


class EHVIStrategy(Strategy):
    """Expected hypervolume improvement over a Gaussian process; free metrics exact."""

    Options = EHVIOptions
    uses_free_metrics = True

    def sampler(
        self,
        space: SearchSpace,
        objectives: Sequence[Objective],
        seed: int | None,
        free_metrics: FreeMetrics | None = None,
    ) -> optuna.samplers.BaseSampler:
        return EHVISampler(space, objectives, seed, free_metrics, EHVIOptions(**self.options))


class EHVISampler(optuna.samplers.BaseSampler):
    """Proposes one arch per trial by expected hypervolume improvement (see the module)."""

    def __init__(
        self,
        space: SearchSpace,
        objectives: Sequence[Objective],
        seed: int | None,
        free_metrics: FreeMetrics | None,
        options: EHVIOptions,
    ):
        self.space = space
        self.objectives = list(objectives)
        self.options = options
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.free = free_metrics if free_metrics else None
        free_names = set(self.free.metrics) if self.free else set()
        self.exact = [o.metric in free_names for o in self.objectives]
        self._fallback = optuna.samplers.RandomSampler(seed=seed)
        self._pending: dict[int, dict[str, Any]] = {}
        self._handed: dict[str, Arch] = {}  # key -> arch proposed (or enqueued) in this run
        self._pool: dict[str, Arch] = {}  # key -> unseen candidate
        self._codes: dict[str, np.ndarray] = {}
        self._archs: dict[int, tuple[str, Arch]] = {}  # trial number -> (key, arch)
        self._distributions: dict[str, BaseDistribution] = {}
        self._initial: list[Arch] = []
        self._models: dict[int, Any] = {}
        self._rows: dict[str, list[float] | None] = {}
        self._around: dict[str, list[str]] = {}  # centre's key -> its neighbours' keys
        self._keys: dict[str, str] = {}  # an arch's JSON -> its canonical key
        self._asked = 0
        self._neighbourhood: set[str] = set()
        self._refreshed_at = 0
        self._cost_scale: tuple[np.ndarray, np.ndarray] | None = None
        self._fitted_on = 0
        self._drawn = 0  # random archs drawn for the pool, and how many of them fit
        self._fitting = 0

    # -- Optuna's sampler interface ------------------------------------------------------

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        fixed = trial.system_attrs.get("fixed_params")
        if fixed is not None:  # enqueued (initial archs, retries): Optuna serves it
            arch = self._arch_of(fixed)
            if arch is not None:
                self._handed.setdefault(self.space.key(arch), arch)
            return
        arch = self._next(study)
        if arch is not None:
            key = self.space.key(arch)
            self._handed[key] = arch
            self._pool.pop(key, None)
            self._pending[trial.number] = self.space.to_params(arch)

    def sample_independent(self, study, trial, param_name, param_distribution):
        self._distributions.setdefault(param_name, param_distribution)
        params = self._pending.get(trial.number, {})
        if param_name in params and param_distribution._contains(
            param_distribution.to_internal_repr(params[param_name])
        ):
            return params[param_name]
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self._pending.pop(trial.number, None)

    # -- choosing the next arch ----------------------------------------------------------

    def _arch_of(self, params: Mapping[str, Any]) -> Arch | None:
        try:
            return self.space.from_params(params)
        except Exception:  # params of another space version, or incomplete: not ours
            return None

    def _measured(
        self, study: optuna.Study
    ) -> tuple[list[str], list[Arch], np.ndarray, np.ndarray]:
        """Keys, archs, objective values (minimisation orientation) and feasibility (every
        recorded constraint ``<= 0``) of COMPLETE trials."""
        keys, archs, values, feasible = [], [], [], []
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if trial.values is None or len(trial.values) != len(self.objectives):
                continue
            for name, distribution in trial.distributions.items():
                self._distributions.setdefault(name, distribution)
            if trial.number not in self._archs:
                arch = self._arch_of(trial.params)
                if arch is None:
                    continue
                self._archs[trial.number] = (self.space.key(arch), arch)
            key, arch = self._archs[trial.number]
            self._handed.setdefault(key, arch)
            keys.append(key)
            archs.append(arch)
            values.append([self._oriented(i, v) for i, v in enumerate(trial.values)])
            feasible.append(all(c <= 0 for c in trial.constraints.values()))
        values = np.asarray(values, dtype=float).reshape(-1, len(self.objectives))
        return keys, archs, values, np.asarray(feasible, dtype=bool)

    def _oriented(self, i: int, value: float) -> float:
        return -float(value) if self.objectives[i].direction == "maximize" else float(value)

    def _free_row(self, arch: Arch, key: str | None = None) -> list[float] | None:
        """The exact objectives of ``arch`` (NaN where predicted), or None if unmeasurable;
        cached by canonical key (``key`` when the caller has it already)."""
        key = key or self.space.key(arch)
        if key in self._rows:
            return self._rows[key]
        row: list[float] | None = [math.nan] * len(self.objectives)
        if self.free is not None:
            values = self.free(arch, key=key)
            row = None if values is None else [
                self._oriented(i, values[o.metric]) if self.exact[i] else math.nan
                for i, o in enumerate(self.objectives)
            ]  # fmt: skip
        self._rows[key] = row
        return row

    def _code(self, key: str, arch: Arch) -> np.ndarray:
        """The model's input: the space's encoding, plus (``cost_features``) the free
        metrics as standardised logs — exact for every arch, and telling of accuracy."""
        code = self._codes.get(key)
        if code is None:
            code = np.asarray(self.space.encode(arch), dtype=float)
            if self.options.cost_features and self.free is not None:
                code = np.concatenate([code, self._cost_features(arch, key)])
            self._codes[key] = code
        return code

    def _cost_features(self, arch: Arch, key: str) -> np.ndarray:
        if self._cost_scale is None:  # from random archs, once: fixed for the whole run
            rng = np.random.default_rng(0)
            rows = [self.free(self.space.sample(rng)) for _ in range(400)]
            logs = np.log([[max(r[m], 1e-12) for m in self.free.metrics] for r in rows if r])
            self._cost_scale = (logs.mean(axis=0), np.maximum(logs.std(axis=0), 1e-9))
        values = self.free(arch, key=key) or {}
        logs = np.log([max(values.get(m, 1e-12), 1e-12) for m in self.free.metrics])
        return (logs - self._cost_scale[0]) / self._cost_scale[1]

    def _key(self, arch: Arch) -> str:
        """``space.key(arch)``, cached: the pool re-draws the same archs many times."""
        raw = json.dumps(arch)
        key = self._keys.get(raw)
        if key is None:
            key = self._keys[raw] = self.space.key(arch)
        return key

    def _fits(self, arch: Arch, key: str) -> bool:
        """Whether ``arch`` satisfies the experiment's constraints on free metrics."""
        if self.free is None or not self.free.constraints:
            return True
        values = self.free(arch, key=key)
        return values is not None and self.free.feasible(values)

    def _fill_pool(self, extra: Sequence[Arch] = ()) -> None:
        """Top the pool up with random unseen archs (and ``extra``): measurable ones that
        fit the budget (the constraints on free metrics) only. When few random archs fit
        (a tight budget), few are drawn per call: the candidates then come from around
        the archs that fit (``extra``: neighbours and recombinations)."""
        want = self.options.candidates
        draws = 20 * want
        if self._drawn >= want and self._fitting < 0.05 * self._drawn:
            draws = max(want // 10, 1)
        pending = list(extra)
        while (len(self._pool) < want and draws > 0) or pending:
            extra = bool(pending)
            if extra:
                arch = pending.pop()
            else:
                arch = self.space.sample(self.rng)
                draws -= 1
                self._drawn += 1
            key = self._key(arch)
            if key in self._handed or (key in self._pool and not extra):
                continue  # (an extra arch stands for its class: proposed as generated)
            if self._free_row(arch, key) is None:  # no table entry / not measurable: skip
                continue
            if not self._fits(arch, key):
                continue
            self._fitting += not extra
            self._pool[key] = arch

    def _choices(self, name: str) -> list[Any]:
        """The values Optuna parameter ``name`` can take (none if not seen yet)."""
        distribution = self._distributions.get(name)
        if isinstance(distribution, CategoricalDistribution):
            return list(distribution.choices)
        if isinstance(distribution, IntDistribution):
            return list(range(distribution.low, distribution.high + 1, distribution.step))
        return []

    def _neighbours(self, arch: Arch) -> list[Arch]:
        """Archs one parameter away from ``arch`` (among the values Optuna has seen)."""
        choices = {name: self._choices(name) for name in self.space.to_params(arch)}
        return self.space.neighbours(arch, choices)

    def _children(self, parents: Sequence[Arch], n: int) -> list[Arch]:
        """``n`` archs recombined from ``parents``: each parameter from a random parent,
        then one parameter in ``len(params)`` re-drawn at random."""
        if len(parents) < 2 or n == 0:
            return []
        params = [self.space.to_params(a) for a in parents]
        names = list(params[0])
        out = []
        for _ in range(n):
            child = {}
            for name in names:
                child[name] = params[int(self.rng.integers(len(params)))].get(name)
                choices = self._choices(name)
                if choices and self.rng.random() < 1 / len(names):
                    child[name] = choices[int(self.rng.integers(len(choices)))]
            arch = self._arch_of(child)
            if arch is not None:
                out.append(arch)
        return out

    def _next(self, study: optuna.Study) -> Arch | None:
        keys, archs, values, feasible = self._measured(study)
        if len(keys) < self.options.n_initial:
            arch = self._next_initial()
            if arch is not None or len(keys) < 2:
                return arch
            # no random arch fits the budget: model the few measured ones and search
            # around those that fit instead of proposing archs outside it
        self._initial = []
        if not feasible.any():  # nothing fits yet: the front of everything measured
            feasible[:] = True
        front = np.zeros(len(keys), dtype=bool)
        front[np.flatnonzero(feasible)[non_dominated(values[feasible])]] = True
        if len(keys) - self._refreshed_at >= self.options.refit_every:
            # new random candidates (neighbours of front archs stay): a fixed random pool
            # would leave most of a large space unseen for the whole run
            self._pool = {k: a for k, a in self._pool.items() if k in self._neighbourhood}
            self._refreshed_at = len(keys)
        uncertain = [i for i, e in enumerate(self.exact) if not e]
        self._asked += 1
        every = self.options.extreme_every
        extreme = bool(every and uncertain and self._asked % every == 0)
        if uncertain and (extreme or len(self.objectives) == 1):
            # around the archs best in the predicted objective
            order = np.argsort(np.where(feasible, values[:, uncertain[0]], np.inf), kind="stable")
            order = order[: min(self.options.extreme_centres, int(feasible.sum()))]
            centres = [keys[i] for i in order]
        else:  # around the front
            centres = [keys[i] for i in np.flatnonzero(front)]
        fresh = [k for k in centres if k not in self._around]
        by_key = dict(zip(keys, archs, strict=True))
        neighbours = []
        for k in fresh:  # each centre's neighbours join the pool once
            around = self._neighbours(by_key[k])
            self._around[k] = [self._key(n) for n in around]
            self._neighbourhood.update(self._around[k])
            neighbours += around
        children = self._children([by_key[k] for k in centres], self.options.children)
        self._fill_pool(neighbours + children)
        if not self._pool:
            return None
        pool_keys = list(self._pool)
        if extreme:
            local = {n for k in centres for n in self._around[k]}
            local = (local | {self._key(c) for c in children}) & self._pool.keys()
            if local:
                pool_keys = [k for k in pool_keys if k in local]
        pool_archs = [self._pool[k] for k in pool_keys]
        exact = np.asarray(
            [self._free_row(a, k) for k, a in zip(pool_keys, pool_archs, strict=True)], dtype=float
        )
        mean, std = exact.copy(), np.zeros_like(exact)
        finished = set(keys)
        running = [(k, a) for k, a in self._handed.items() if k not in finished]
        believers = np.empty((0, len(self.objectives)))
        if running:
            believers = np.asarray([self._free_row(a, k) for k, a in running], dtype=float)
        X = np.stack([self._code(k, a) for k, a in zip(keys, archs, strict=True)])
        Xc = np.stack([self._code(k, a) for k, a in zip(pool_keys, pool_archs, strict=True)])
        if not self._models or len(keys) - self._fitted_on >= self.options.refit_every:
            self._models = {
                i: _fit(self.options.predictor, self.seed, X, _tame(values[:, i]))
                for i, is_exact in enumerate(self.exact)
                if not is_exact
            }
            self._fitted_on = len(keys)
        for i, model in self._models.items():
            mean[:, i], std[:, i] = model.predict_with_std(Xc)
            if running:
                believers[:, i] = model.predict(np.stack([self._code(k, a) for k, a in running]))
        if extreme:
            # the front's predicted end: expected improvement of that objective alone
            i = uncertain[0]
            known = np.concatenate([values[feasible, i], believers[:, i]])
            score = _expected_improvement(known.min(), mean[:, i], std[:, i])
        else:
            score = self._acquisition(values[feasible], believers, mean, std, exact)
        best = np.flatnonzero(score >= score.max() - 1e-12)
        if score.max() <= 1e-12:  # nothing improves in expectation: most uncertain
            spread = std.sum(axis=1)
            best = np.flatnonzero(spread >= spread.max() - 1e-12)
        return pool_archs[int(self.rng.choice(best))]

    def _next_initial(self) -> Arch | None:
        if not self._initial:
            self._fill_pool()
            archs = list(self._pool.values())
            if not archs:
                return None
            n = min(self.options.n_initial, len(archs))
            if self.free is not None and any(self.exact):
                axis = self.exact.index(True)
                cost = np.asarray([self._free_row(a, k)[axis] for k, a in self._pool.items()])
                order = np.argsort(cost, kind="stable")
                picks = order[((np.arange(n) + 0.5) * len(archs) / n).astype(int)]
            else:
                picks = self.rng.choice(len(archs), size=n, replace=False)
            self._initial = [archs[i] for i in picks]
            self.rng.shuffle(self._initial)
        while self._initial:
            arch = self._initial.pop()
            if self.space.key(arch) not in self._handed:
                return arch
        return self._next_initial() if self._pool else None

    def _acquisition(
        self,
        measured: np.ndarray,
        believers: np.ndarray,
        mean: np.ndarray,
        std: np.ndarray,
        exact: np.ndarray,
    ) -> np.ndarray:
        """The score of each candidate (higher is better): EHVI, EI or ParEGO."""
        known = np.vstack([measured, believers])
        everything = np.vstack([known, np.where(np.isnan(exact), mean, exact)])
        low, high = everything.min(axis=0), known.max(axis=0)
        span = np.where(high - low > 0, high - low, 1.0)
        scale = lambda v: (v - low) / span  # noqa: E731 - objectives to [0, 1] (worst seen = 1)
        points, mu, sigma = scale(known), scale(mean), std / span
        m = len(self.objectives)
        if m == 1:
            return _expected_improvement(points[:, 0].min(), mu[:, 0], sigma[:, 0])
        if m == 2:
            front = points[non_dominated(points)]
            uncertain = [i for i in range(2) if not self.exact[i]]
            reference = self.options.reference_point
            if len(uncertain) == 1:
                return _ehvi_one_uncertain(front, mu, sigma, uncertain[0], reference)
            draws = mu[None] + sigma[None] * self.rng.standard_normal(
                (self.options.draws, *mu.shape)
            )
            return np.mean([hypervolume_improvement_2d(front, d, reference) for d in draws], axis=0)
        weights = self.rng.dirichlet(np.ones(m))  # ParEGO: a random Chebyshev scalarisation
        chebyshev = lambda p: (weights * p).max(axis=1) + 0.05 * (weights * p).sum(axis=1)  # noqa: E731
        return _expected_improvement(
            chebyshev(points).min(), chebyshev(mu), np.sqrt((weights**2 * sigma**2).sum(axis=1))
        )


def _fit(name: str, seed: int | None, X: np.ndarray, y: np.ndarray):
    model = build_predictor(name, seed=seed)
    if not model.has_uncertainty:
        raise ValueError(f"ehvi: predictor '{name}' gives no uncertainty (try 'gp')")
    return model.fit(X, y)


def _tame(y: np.ndarray) -> np.ndarray:
    """Targets with their worst outliers pulled in to Tukey's upper fence (minimisation):
    a few broken archs (accuracy near chance) would otherwise set the model's scale and
    noise, and blur the differences among good archs that decide the front."""
    if len(y) < 8:
        return y
    q1, q3 = np.percentile(y, [25, 75])
    return np.minimum(y, q3 + 1.5 * (q3 - q1))


def _ehvi_one_uncertain(
    front: np.ndarray, mu: np.ndarray, sigma: np.ndarray, uncertain: int, reference: float
) -> np.ndarray:
    """Exact EHVI in 2-D when objective ``uncertain`` is Gaussian and the other is known."""
    x = 1 - uncertain
    starts, ends, levels = staircase_2d(front, x, reference)
    cx = mu[:, x][:, None]
    length = np.clip(ends[None] - np.maximum(starts[None], cx), 0.0, None)
    m, s = mu[:, uncertain][:, None], np.maximum(sigma[:, uncertain][:, None], 1e-12)
    z = (levels[None] - m) / s
    gain = (levels[None] - m) * _normal_cdf(z) + s * _normal_pdf(z)
    return (length * np.maximum(gain, 0.0)).sum(axis=1)


def _expected_improvement(best: float, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    s = np.maximum(sigma, 1e-12)
    z = (best - mu) / s
    return (best - mu) * _normal_cdf(z) + s * _normal_pdf(z)


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    return ndtr(z)


def _normal_pdf(z: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
