"""Built-in predictors, and how to score them and choose one per objective.

A predictor (:class:`nasforge.Predictor`) learns one metric from encoded archs (rows of
``SearchSpace.encode``). This module owns the built-in ones — ``ridge``, ``svr``,
``kernel_ridge``, ``gbt``, ``mlp``, ``gp`` and the ``mean`` baseline — registered through the
``nasforge`` entry point like any third-party plugin, and the tools a strategy uses to pick
one per objective: :func:`cross_validate` (out-of-fold Kendall τ and MAPE) and
:func:`select_predictor` (best by cross-validation, refitted on all the data).

The built-ins check their inputs, standardise their targets (zero mean, unit variance) and
run with at most ``threads`` BLAS/OpenMP/torch threads (an option, default 1): on a few
hundred rows more threads only contend, and a Ray worker shares its cores. The previous
thread settings are restored when ``fit`` or ``predict`` returns. scikit-learn and torch are
imported on the first fit, so building the registry stays cheap.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import warnings
from abc import abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat

from nasforge import Predictor, Registry, registry

PredictorFactory = Callable[..., Predictor]
"""Builds an unfitted predictor as ``factory(seed=...)``: a registered class, or a
``functools.partial`` of one with options bound."""

Candidate = str | PredictorFactory
"""A registered predictor name, or a factory."""

# -- inputs and threads ------------------------------------------------------------------


def _as_matrix(X: Any) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (one encoded arch per row), got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("X holds NaN or infinite values")
    return X


def _as_data(X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    X = _as_matrix(X)
    y = np.asarray(y, dtype=np.float64)
    if y.shape != (len(X),):
        raise ValueError(f"y must have shape ({len(X)},), one value per row of X; got {y.shape}")
    if len(y) == 0:
        raise ValueError("cannot fit a predictor on no data")
    if not np.isfinite(y).all():
        raise ValueError("y holds NaN or infinite values")
    return X, y


def _sq_distances(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between the rows of ``A`` and ``B`` (one matrix product)."""
    d = (
        np.einsum("ij,ij->i", A, A)[:, None]
        + np.einsum("ij,ij->i", B, B)[None, :]
        - 2.0 * (A @ B.T)
    )
    return np.maximum(d, 0.0, out=d)


_threadpool_controllers: dict[tuple[bool, ...], Any] = {}


def _threadpools() -> Any:
    """threadpoolctl's handle on the loaded BLAS/OpenMP libraries (building one costs
    milliseconds, so it is kept; rebuilt once scipy, scikit-learn or torch get imported)."""
    from threadpoolctl import ThreadpoolController

    key = tuple(m in sys.modules for m in ("scipy.linalg", "sklearn", "torch"))
    if key not in _threadpool_controllers:
        _threadpool_controllers[key] = ThreadpoolController()
    return _threadpool_controllers[key]


@contextlib.contextmanager
def limited_threads(threads: int | None) -> Iterator[None]:
    """Run the body with at most ``threads`` BLAS/OpenMP threads and torch intra-op threads
    (when torch is imported), restoring the previous settings afterwards. ``None`` changes
    nothing. The limits are process-wide while the body runs."""
    if threads is None:
        yield
        return
    torch = sys.modules.get("torch")
    previous = torch.get_num_threads() if torch is not None else None
    try:
        with _threadpools().limit(limits=threads):
            if torch is not None:
                torch.set_num_threads(threads)
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(previous)


# -- the built-in predictors -------------------------------------------------------------


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_fitted(predictor: Any, X: Any) -> np.ndarray:
    if not hasattr(predictor, "_width"):
        raise RuntimeError(f"{type(predictor).__name__} is not fitted: call fit(X, y) first")
    X = _as_matrix(X)
    if X.shape[1] != predictor._width:
        raise ValueError(
            f"X has {X.shape[1]} columns; the predictor was fitted on {predictor._width}"
        )
    return X


class MeanPredictor(Predictor):
    """Constant baseline: predicts the mean of the training targets."""

    Options = _Options

    def fit(self, X: np.ndarray, y: np.ndarray) -> MeanPredictor:
        X, y = _as_data(X, y)
        self._width = X.shape[1]
        self._mean = float(y.mean())
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = _check_fitted(self, X)
        return np.full(len(X), self._mean)


class StandardisedPredictor(Predictor):
    """Base of the built-in models: checks inputs, standardises targets, limits threads.

    Subclasses list the modules they need in ``requires`` (imported before the thread limit
    is set, so it covers them) and implement :meth:`_fit` and, unless ``self._model`` is a
    scikit-learn regressor, :meth:`_predict`, both on the standardised scale. A constant
    target is only centred.
    """

    class Options(_Options):
        threads: int | None = Field(1, ge=1)
        """BLAS/OpenMP/torch threads while fitting and predicting; ``None``: leave as set."""

    requires: ClassVar[tuple[str, ...]] = ()

    def fit(self, X: np.ndarray, y: np.ndarray) -> StandardisedPredictor:
        X, y = _as_data(X, y)
        for module in self.requires:
            importlib.import_module(module)
        self._y_mean = float(y.mean())
        scale = float(y.std())
        self._y_scale = scale if scale > 0.0 else 1.0
        with limited_threads(self.options["threads"]):
            self._fit(X, (y - self._y_mean) / self._y_scale)
        self._width = X.shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = _check_fitted(self, X)
        with limited_threads(self.options["threads"]):
            z = np.asarray(self._predict(X), dtype=np.float64).reshape(len(X))
        return self._y_mean + self._y_scale * z

    @abstractmethod
    def _fit(self, X: np.ndarray, z: np.ndarray) -> None:
        """Fit the model to standardised targets ``z``."""

    def _predict(self, X: np.ndarray) -> np.ndarray:
        """Standardised predictions (the default asks ``self._model``)."""
        return self._model.predict(X)


class RidgePredictor(StandardisedPredictor):
    """Ridge regression: linear in the encoding; the fastest and hardest to overfit."""

    class Options(StandardisedPredictor.Options):
        alpha: float = Field(1.0, gt=0)

    requires = ("sklearn.linear_model",)

    def _fit(self, X, z):
        from sklearn.linear_model import Ridge

        self._model = Ridge(alpha=self.options["alpha"]).fit(X, z)


class SVRPredictor(StandardisedPredictor):
    """RBF support-vector regression (DyNAS-T's setup: gamma 'auto', epsilon 0)."""

    class Options(StandardisedPredictor.Options):
        C: float = Field(10.0, gt=0)
        epsilon: float = Field(0.0, ge=0)
        """Width of the insensitive tube, in standard deviations of the target."""
        gamma: PositiveFloat | Literal["scale", "auto"] = "auto"
        """RBF width; ``"auto"`` is ``1 / width``, ``"scale"`` ``1 / (width * X.var())``."""

    requires = ("sklearn.svm",)

    def _fit(self, X, z):
        from sklearn.svm import SVR

        o = self.options
        gamma = o["gamma"]
        if gamma == "auto":
            gamma = 1.0 / X.shape[1]
        elif gamma == "scale":
            spread = float(X.var())
            gamma = 1.0 / (X.shape[1] * spread) if spread > 0.0 else 1.0
        svr = SVR(kernel="rbf", C=o["C"], epsilon=o["epsilon"], gamma=gamma, max_iter=1_000_000)
        svr.fit(X, z)
        self._model, self._gamma = svr, gamma

    def _predict(self, X):
        # libsvm predicts row by row; one matrix product over the support vectors is the
        # same sum, many times faster on thousands of candidates.
        svr = self._model
        kernel = np.exp(-self._gamma * _sq_distances(X, svr.support_vectors_))
        return kernel @ svr.dual_coef_[0] + svr.intercept_[0]


class KernelRidgePredictor(StandardisedPredictor):
    """RBF kernel ridge regression."""

    class Options(StandardisedPredictor.Options):
        alpha: float = Field(0.1, gt=0)
        gamma: PositiveFloat | None = None
        """RBF width; ``None`` is ``1 / width``."""

    requires = ("sklearn.kernel_ridge",)

    def _fit(self, X, z):
        from sklearn.kernel_ridge import KernelRidge

        o = self.options
        self._model = KernelRidge(alpha=o["alpha"], kernel="rbf", gamma=o["gamma"]).fit(X, z)


class GBTPredictor(StandardisedPredictor):
    """Gradient-boosted regression trees (small, stochastic; seeded)."""

    class Options(StandardisedPredictor.Options):
        n_estimators: int = Field(100, ge=1)
        max_depth: int = Field(3, ge=1)
        learning_rate: float = Field(0.1, gt=0, le=1)
        subsample: float = Field(0.8, gt=0, le=1)
        min_samples_leaf: int = Field(1, ge=1)

    requires = ("sklearn.ensemble",)

    def _fit(self, X, z):
        from sklearn.ensemble import GradientBoostingRegressor

        o = self.options
        self._model = GradientBoostingRegressor(
            n_estimators=o["n_estimators"],
            max_depth=o["max_depth"],
            learning_rate=o["learning_rate"],
            subsample=o["subsample"] if len(X) > 1 else 1.0,  # one row cannot be split
            min_samples_leaf=o["min_samples_leaf"],
            random_state=self.seed,
        ).fit(X, z)


class MLPPredictor(StandardisedPredictor):
    """Multilayer perceptron (torch): two ReLU hidden layers, Adam, a fixed number of epochs."""

    class Options(StandardisedPredictor.Options):
        hidden: int = Field(64, ge=1)
        epochs: int = Field(100, ge=1)
        batch_size: int | None = Field(None, ge=1)
        """Rows per Adam step; ``None``: the whole training set (one step per epoch)."""
        lr: float = Field(1e-2, gt=0)
        weight_decay: float = Field(1e-4, ge=0)

    requires = ("torch",)

    def _fit(self, X, z):
        import torch

        o = self.options
        x = torch.as_tensor(X, dtype=torch.float32)
        t = torch.as_tensor(z, dtype=torch.float32).unsqueeze(1)
        batch = min(o["batch_size"] or len(x), len(x))
        # Initialisation and shuffling draw from torch's global generator, seeded here and
        # restored afterwards, so a seed reproduces the fit and the caller's RNG is untouched.
        with torch.random.fork_rng(devices=[]), torch.enable_grad():
            if self.seed is None:
                torch.seed()
            else:
                torch.manual_seed(self.seed)
            h = o["hidden"]
            net = torch.nn.Sequential(
                torch.nn.Linear(x.shape[1], h),
                torch.nn.ReLU(),
                torch.nn.Linear(h, h),
                torch.nn.ReLU(),
                torch.nn.Linear(h, 1),
            )
            adam = torch.optim.Adam(net.parameters(), lr=o["lr"], weight_decay=o["weight_decay"])
            for _ in range(o["epochs"]):
                order = torch.randperm(len(x)) if batch < len(x) else None
                for start in range(0, len(x), batch):
                    rows = order[start : start + batch] if order is not None else slice(None)
                    adam.zero_grad(set_to_none=True)
                    torch.nn.functional.mse_loss(net(x[rows]), t[rows]).backward()
                    adam.step()
        self._net = net.eval()

    def _predict(self, X):
        import torch

        with torch.inference_mode():
            return self._net(torch.as_tensor(X, dtype=torch.float32)).double().numpy()


class GPPredictor(StandardisedPredictor):
    """Gaussian process (Matern or RBF kernel + white noise) with a predictive std."""

    has_uncertainty = True

    class Options(StandardisedPredictor.Options):
        kernel: Literal["matern", "rbf"] = "matern"
        nu: Literal[0.5, 1.5, 2.5] = 2.5
        """Smoothness of the Matern kernel."""
        n_restarts: int = Field(0, ge=0)
        """Extra random starts of the hyperparameter optimiser (drawn with the seed)."""

    requires = ("sklearn.gaussian_process",)

    def _fit(self, X, z):
        import scipy.linalg
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Matern, WhiteKernel

        o = self.options
        shape = (
            Matern(1.0, (1e-2, 1e3), nu=o["nu"])
            if o["kernel"] == "matern"
            else RBF(1.0, (1e-2, 1e3))
        )
        kernel = ConstantKernel(1.0, (1e-3, 1e3)) * shape + WhiteKernel(0.1, (1e-6, 1e1))
        # The targets are already standardised, which is what normalize_y would do.
        gp = GaussianProcessRegressor(
            kernel, normalize_y=False, n_restarts_optimizer=o["n_restarts"], random_state=self.seed
        )
        with warnings.catch_warnings():  # a hyperparameter at its bound is not an error here
            warnings.simplefilter("ignore", ConvergenceWarning)
            self._model = gp.fit(X, z)
        # Predictions use the fitted hyperparameters directly: distances by one matrix
        # product and the posterior variance through K^-1, several times faster than
        # GaussianProcessRegressor.predict on thousands of rows (tested to agree with it).
        fitted = gp.kernel_
        self._signal = float(fitted.k1.k1.constant_value)
        self._length = float(fitted.k1.k2.length_scale)
        self._noise = float(fitted.k2.noise_level)
        self._X = gp.X_train_
        self._alpha = gp.alpha_
        self._K_inv = scipy.linalg.cho_solve((gp.L_, True), np.eye(len(X)))

    def _cross_kernel(self, X: np.ndarray) -> np.ndarray:
        """``k(X, X_train)`` without the noise term."""
        scaled = _sq_distances(X, self._X) / self._length**2
        o = self.options
        if o["kernel"] == "rbf":
            return self._signal * np.exp(-0.5 * scaled)
        s = np.sqrt(2.0 * o["nu"] * scaled)  # Matern: sqrt(2 nu) * distance / length
        if o["nu"] == 0.5:
            poly = 1.0
        elif o["nu"] == 1.5:
            poly = 1.0 + s
        else:
            poly = 1.0 + s + s * s / 3.0
        return self._signal * poly * np.exp(-s)

    def _predict(self, X):
        return self._cross_kernel(X) @ self._alpha

    def predict_with_std(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)``: ``std`` is the posterior std of the metric's mean at each row, not
        counting the fitted observation noise; it grows with the distance from the data."""
        X = _check_fitted(self, X)
        with limited_threads(self.options["threads"]):
            k = self._cross_kernel(X)
            z = k @ self._alpha
            latent_var = self._signal - np.einsum("ij,ij->i", k @ self._K_inv, k)
        std = np.sqrt(np.maximum(latent_var, 1e-12))
        return self._y_mean + self._y_scale * z, self._y_scale * std


# -- scores --------------------------------------------------------------------------------


def mape(y_true: Any, y_pred: Any) -> float:
    """Mean absolute percentage error, in percent, on the metric's own scale.

    Each denominator ``|y_i|`` is floored at ``1e-3 * mean(|y|)`` (and at the smallest
    positive float), so a target at or near zero cannot blow the score up. MAPE suits
    metrics of one sign (accuracy, latency); for metrics that cross zero use Kendall τ.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    magnitude = np.abs(y_true)
    floor = max(1e-3 * float(magnitude.mean()), np.finfo(np.float64).tiny)
    return float(100.0 * np.mean(np.abs(y_pred - y_true) / np.maximum(magnitude, floor)))


def kendall_tau(y_true: Any, y_pred: Any) -> float:
    """Kendall's τ-b between targets and predictions; 0.0 where it is undefined (either side
    constant), as a constant predictor ranks nothing."""
    from scipy.stats import kendalltau

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tau = kendalltau(y_true, y_pred).statistic
    return 0.0 if np.isnan(tau) else float(tau)


@dataclass(frozen=True)
class PredictorScore:
    """How well a predictor ranks and fits data it was not fitted on (out-of-fold)."""

    kendall_tau: float
    """Rank agreement of out-of-fold predictions with the targets, -1..1 (higher is better)."""
    mape: float
    """Mean absolute percentage error of the out-of-fold predictions, % (lower is better)."""
    n: int
    """Rows scored (every row once)."""
    folds: int
    """Folds used."""


METRICS: dict[str, Literal["minimize", "maximize"]] = {
    "mape": "minimize",
    "kendall_tau": "maximize",
}
"""The scores :func:`select_predictor` can choose by, and the direction each improves in."""


def _resolve(candidate: Candidate, reg: Registry | None) -> tuple[str, PredictorFactory]:
    if isinstance(candidate, str):
        return candidate, (reg or registry()).get("predictor", candidate).factory
    if not callable(candidate):
        raise TypeError(
            f"a predictor candidate is a registered name or a factory, got {candidate!r}"
        )
    name = getattr(candidate, "__name__", None) or repr(candidate)
    return name, candidate


def cross_validate(
    predictor_factory: Candidate,
    X: Any,
    y: Any,
    folds: int = 5,
    seed: int = 0,
    *,
    registry: Registry | None = None,
) -> PredictorScore:
    """Score a predictor by ``folds``-fold cross-validation.

    Rows are shuffled with ``seed`` and dealt into ``folds`` folds of near-equal size (with
    fewer rows than folds, one fold per row: leave-one-out). For each fold a fresh
    ``predictor_factory(seed=seed)`` is fitted on the other rows and predicts the fold; τ and
    MAPE (:func:`kendall_tau`, :func:`mape`) are computed once over all the out-of-fold
    predictions. The same ``seed`` gives the same folds for every predictor, so scores are
    comparable. Needs at least 3 rows (:class:`ValueError` otherwise).
    """
    _, factory = _resolve(predictor_factory, registry)
    X, y = _as_data(X, y)
    n = len(y)
    if n < 3:
        raise ValueError(f"cross-validation needs at least 3 rows, got {n}")
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
    folds = min(folds, n)
    order = np.random.default_rng(seed).permutation(n)
    predictions = np.empty(n)
    for k in range(folds):
        held_out = np.zeros(n, dtype=bool)
        held_out[order[k::folds]] = True
        model = factory(seed=seed).fit(X[~held_out], y[~held_out])
        predictions[held_out] = model.predict(X[held_out])
    return PredictorScore(kendall_tau(y, predictions), mape(y, predictions), n, folds)


class Selection(NamedTuple):
    """What :func:`select_predictor` chose: the winner's name, the winner refitted on all
    the data, and every candidate's cross-validated score by name."""

    name: str
    predictor: Predictor
    scores: dict[str, PredictorScore]


def select_predictor(
    candidates: Sequence[Candidate] | Mapping[str, PredictorFactory],
    X: Any,
    y: Any,
    metric: Literal["mape", "kendall_tau"] = "mape",
    *,
    folds: int = 5,
    seed: int = 0,
    registry: Registry | None = None,
) -> Selection:
    """Cross-validate every candidate (:func:`cross_validate`, the same folds for all), pick
    the best by ``metric`` (lowest MAPE or highest τ; a tie goes to the earlier candidate)
    and refit it on all of ``X, y`` with ``seed``.

    Candidates are registered names or factories (named by ``__name__``), or a mapping
    ``name -> factory``. With fewer than 3 rows there is nothing to cross-validate: the
    result is a fitted ``mean`` predictor (:class:`MeanPredictor`) and no scores.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}")
    if isinstance(candidates, Mapping):
        named = [(name, _resolve(f, registry)[1]) for name, f in candidates.items()]
    else:
        named = [_resolve(candidate, registry) for candidate in candidates]
    if not named:
        raise ValueError("select_predictor needs at least one candidate")
    names = [name for name, _ in named]
    if len(set(names)) != len(names):
        raise ValueError(f"candidate names must be unique, got {names}")
    X, y = _as_data(X, y)
    if len(y) < 3:
        return Selection("mean", MeanPredictor(seed=seed).fit(X, y), {})
    scores = {name: cross_validate(f, X, y, folds, seed) for name, f in named}
    sign = 1.0 if METRICS[metric] == "minimize" else -1.0
    best = min(names, key=lambda name: sign * getattr(scores[name], metric))
    factory = dict(named)[best]
    return Selection(best, factory(seed=seed).fit(X, y), scores)
