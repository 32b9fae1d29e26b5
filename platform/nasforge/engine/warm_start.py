"""Warm start: Ray Tune starts its workers while the driver opens the study.

Opening a study (connecting, creating its tables, reading its trials to resume, building the
strategy's sampler) and starting a Tune worker (a process that imports Ray Tune, then builds
the experiment's estimators and hardware models) each take about a second, and nothing in
one needs the other. The search opens its study in a thread; until it is open,
:class:`WarmStart` answers Ray Tune's first requests with *warm-up* trials, one per
concurrent slot: an empty batch that starts a worker and builds its evaluator — cached in
the worker process and reused by every later trial on that actor (``reuse_actors``) — and
records nothing. Once the study is open every request goes to its :class:`StudySearcher`.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from ray.tune.search import Searcher

from ..errors import NasforgeError
from .searcher import StudySearcher

#: the config of a warm-up trial: no arch to evaluate (the worker only sets up)
WARM_UP: dict[str, list] = {"archs": [], "numbers": []}


class WarmStart(Searcher):
    """Hands Ray Tune warm-up trials until ``opening`` gives the study's searcher, then
    passes everything to it. ``opening`` failing ends the search (the driver re-raises its
    error); a worker that cannot set up during warm-up ends it the same way it would on a
    real batch (``fatal``)."""

    def __init__(self, opening: Future[StudySearcher], concurrency: int):
        super().__init__()
        self.opening = opening
        self.concurrency = concurrency
        self.warming: list[str] = []  # tune trial ids of warm-up trials still running
        self.warm_ups = 0
        self.fatal: str | None = None

    def open_searcher(self) -> StudySearcher | None:
        """The study's searcher once it is open, else None (still opening, failed, or
        nothing left to search)."""
        opening = self.opening
        if opening is None or not opening.done() or opening.exception() is not None:
            return None
        searcher = self.opening.result()
        if searcher is not None and self.fatal and searcher.gave_up is None:
            searcher.gave_up = self.fatal
        return searcher

    def __getstate__(self) -> dict[str, Any]:
        """Plain data only, for Ray Tune's experiment state: the study searcher's name and
        counts (:meth:`StudySearcher.__getstate__`), none while the study is opening."""
        searcher = self.open_searcher()
        return searcher.__getstate__() if searcher else {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A detached searcher: it reports the counts it was pickled with but cannot search."""
        self.__dict__.update(state)
        self.opening = None
        self.concurrency, self.warming, self.warm_ups, self.fatal = 0, [], 0, None

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.opening is None:
            raise NasforgeError(
                f"study '{getattr(self, 'study_name', '?')}': this searcher was restored from "
                "Ray Tune's pickled state, which holds no study or sampler; run the same "
                "nasforge command again to resume from the study"
            )
        if self.opening.done():
            searcher = self.open_searcher()
            if searcher is None or self.fatal:
                return Searcher.FINISHED  # the driver raises the opening's error
            return searcher.suggest(trial_id)
        if self.fatal:
            return Searcher.FINISHED
        if self.warm_ups < self.concurrency:
            self.warm_ups += 1
            self.warming.append(trial_id)
            return dict(WARM_UP)
        return None  # Tune asks again shortly

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if trial_id in self.warming:
            self.warming.remove(trial_id)
            if result and result.get("fatal"):
                self.fatal = self.fatal or result["fatal"]
            return  # a worker that died warming up is started again by the next trial
        searcher = self.open_searcher()
        if searcher is not None:
            searcher.on_trial_complete(trial_id, result, error)

    def save_to_dir(self, checkpoint_dir: str, session_str: str = "default") -> None:
        """Nothing to save: the study is the record (see :class:`StudySearcher`)."""
