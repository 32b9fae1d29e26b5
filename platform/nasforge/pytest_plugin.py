"""nasforge's pytest plugin: one local Ray per test session, and experiments run end to end.

Loaded through the ``pytest11`` entry point wherever nasforge is installed (turn it off
with ``-p no:nasforge``). Its fixtures:

- ``nasforge_ray`` (session): one local Ray started through nasforge's own start-up
  (127.0.0.1 only, single-machine mode) with ``--nasforge-ray-cpus`` CPUs (default 2), its
  address exported as ``RAY_ADDRESS`` so ``nasforge`` commands a test runs in a subprocess
  join it; shut down when the session ends. Started only if a test asks for it.
- ``run_experiment``: runs an experiment (a YAML path or a mapping) through the real engine
  (Ray Train when it has a ``train`` section, Ray Tune and the Optuna study) in a fresh
  temporary run directory and returns a :class:`nasforge.RunResult`: the study, every trial
  as a plain record, the Pareto front, the run directory. Keyword arguments shrink the
  budget (:func:`nasforge.with_budget`)::

      def test_my_plugin_searches_end_to_end(run_experiment):
          result = run_experiment("experiment.yaml", n_trials=20, concurrency=2)
          assert len(result.complete) == 20 and result.front

Importing this module costs nothing beyond pytest: Ray, Optuna and the engine load when a
fixture is first used.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .runner import RunResult


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--nasforge-ray-cpus N``: the CPUs of the session's local Ray."""
    group = parser.getgroup("nasforge", "nasforge: a local Ray for end-to-end tests")
    group.addoption(
        "--nasforge-ray-cpus",
        type=int,
        default=2,
        metavar="N",
        help="CPUs of the local Ray the nasforge_ray fixture starts (default: 2)",
    )


@pytest.fixture(scope="session")
def nasforge_ray(request: pytest.FixtureRequest) -> Iterator[Any]:
    """One local Ray for the test session (127.0.0.1 only), shared by every test that asks
    for it; yields Ray's runtime context. ``RAY_ADDRESS`` points at it while it runs, so
    ``nasforge`` subprocesses join it instead of starting their own."""
    import ray

    from .engine.runtime import LOCAL_RAY, ray_init

    cpus = request.config.getoption("nasforge_ray_cpus")
    if cpus < 1:
        raise pytest.UsageError(f"--nasforge-ray-cpus: expected at least 1, got {cpus}")
    previous = os.environ.pop("RAY_ADDRESS", None)  # a local Ray of our own, never a cluster
    ray_init(num_cpus=cpus)
    context = ray.get_runtime_context()
    os.environ["RAY_ADDRESS"] = context.gcs_address
    try:
        yield context
    finally:
        if previous is None:
            os.environ.pop("RAY_ADDRESS", None)
        else:
            os.environ["RAY_ADDRESS"] = previous
        os.environ.pop(LOCAL_RAY, None)
        ray.shutdown()


@pytest.fixture
def run_experiment(
    nasforge_ray: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., RunResult]:
    """``run_experiment(experiment, *, n_trials=None, concurrency=None, batch_size=None,
    epochs=None, overrides=None, run_dir=None, progress=False) -> RunResult``.

    Runs ``experiment`` (a YAML path or a mapping) on the session's local Ray, with the
    budget changed as :func:`nasforge.with_budget` says, in a new folder under the test's
    ``tmp_path`` (or in ``run_dir``: pass a previous result's to resume it). The study is
    the experiment's own storage, by default SQLite in the run directory;
    ``NASFORGE_STORAGE`` is ignored so that a test never writes into a shared database.
    """
    from .errors import ConfigError
    from .runner import load_experiment_plan, with_budget
    from .runner import run_experiment as run

    monkeypatch.delenv("NASFORGE_STORAGE", raising=False)
    runs = itertools.count()

    def run_one(
        experiment: str | Path | Mapping[str, Any],
        *,
        run_dir: str | Path | None = None,
        progress: bool = False,
        **budget: Any,
    ) -> RunResult:
        folder = run_dir if run_dir is not None else tmp_path / f"run{next(runs)}"  # or a URI
        try:
            data = with_budget(experiment, **budget)  # n_trials, concurrency, epochs, ...
            data["run_dir"] = str(folder)
            plan = load_experiment_plan(data)
        except ConfigError as exc:
            if isinstance(experiment, (str, Path)):
                raise exc.with_file(str(experiment)) from None
            raise
        return run(plan, folder, progress=progress)

    return run_one
