"""The search engine: the Optuna study as the record, Ray Tune fanning trials out.

- :mod:`.storage` opens the study's storage (SQLite in the run directory, any RDB URL, or
  an Optuna journal file);
- :mod:`.worker` is the Ray Tune trainable that evaluates a batch of archs on a worker,
  with the estimators and hardware models built once per worker process;
- :mod:`.searcher` is the Tune searcher that asks the Optuna study for archs, collapses
  identical archs, and tells the study every result;
- :mod:`.search` runs a search phase: locking the run, resuming the study, launching Tune.
"""

from typing import Any

__all__ = ["SearchSummary", "run_search"]


def __getattr__(name: str) -> Any:
    """``run_search`` and ``SearchSummary`` on first use: importing a submodule such as
    :mod:`.worker` (as hardware plugins do in every Ray worker) must not import Ray Tune,
    which :mod:`.search` needs and which takes seconds to import."""
    if name in __all__:
        from . import search

        return getattr(search, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
