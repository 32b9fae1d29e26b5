"""The study on a real PostgreSQL server: record, resume, masked passwords, and a database
that restarts (or never comes back) under a running search.

The server is the session's ``postgres`` fixture (127.0.0.1, a password only in the
environment); every test gets its own database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from test_cli import dashboard_studies
from test_engine import experiment, faulty, plan_of

from nasforge.engine import run_search
from nasforge.engine.storage import ReconnectingStorage, open_storage

pytestmark = pytest.mark.usefixtures("nasforge_ray")


def study_trials(url: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="engine_test", storage=url).get_trials()


def count_complete(url: str) -> int:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            row = conn.execute("select count(*) from trials where state='COMPLETE'").fetchone()
            return row[0]
    except psycopg.Error:  # tables not created yet, or the server is down
        return 0


def start_driver(tmp_path: Path, exp: dict, env: dict | None = None) -> tuple[list, Path]:
    exp["run_dir"] = str(tmp_path / "run")
    path = tmp_path / "exp.yaml"
    path.write_text(json.dumps(exp))
    return [sys.executable, "-m", "nasforge.cli", "search", str(path)], path


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_search_keeps_its_record_in_postgres_and_resumes_from_it(tmp_path, postgres_db):
    summary = run_search(
        plan_of(experiment(n_trials=12, batch_size=3, storage=postgres_db)),
        tmp_path / "run",
        progress=False,
    )
    assert summary.complete == 12 and summary.storage == postgres_db
    assert not (tmp_path / "run" / "study.db").exists()
    trials = study_trials(postgres_db)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == 12 and len({t.user_attrs["key"] for t in done}) == 12
    assert all("valid_acc" in t.user_attrs and "arch" in t.user_attrs for t in done)

    # the dashboard opens the shared study from the experiment file alone
    path = tmp_path / "exp.yaml"
    path.write_text(json.dumps(experiment(n_trials=12)))
    env = {**os.environ, "NASFORGE_STORAGE": postgres_db}
    studies, _ = dashboard_studies([str(path)], env=env)
    assert studies == ["engine_test"]

    more = run_search(
        plan_of(experiment(n_trials=20, batch_size=3, storage=postgres_db)),
        tmp_path / "run",
        progress=False,
    )
    assert more.resumed_complete == 12 and more.complete == 20
    keys = [t.user_attrs["key"] for t in study_trials(postgres_db) if t.state.is_finished()]
    assert len(keys) == len(set(keys)) == 20


def test_the_password_comes_from_the_environment_and_is_never_shown(
    tmp_path, postgres, postgres_db
):
    secret = postgres.password
    with_password = postgres_db.replace("nasforge@", f"nasforge:{secret}@")
    command, _ = start_driver(tmp_path, experiment(n_trials=4, batch_size=2))
    env = {**os.environ, "NASFORGE_STORAGE": with_password}
    env.pop("PGPASSWORD", None)
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "nasforge:***@127.0.0.1" in result.stdout
    assert secret not in result.stdout + result.stderr
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert len(study_trials(postgres_db)) == 4


def test_a_database_restart_mid_search_is_waited_out(tmp_path, postgres, postgres_db):
    """The server restarts (down 6 s) while trials are in flight: the search waits,
    reconnects and ends with exactly the requested COMPLETE trials, each arch evaluated
    once, nothing left RUNNING."""
    log = tmp_path / "evaluations.log"
    exp = faulty(
        experiment(n_trials=32, strategy="random", batch_size=2, storage=postgres_db),
        delay_s=0.4,  # slow enough that the restart lands mid-search
        log_file=str(log),
    )
    command, _ = start_driver(tmp_path, exp)
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: count_complete(postgres_db) >= 8, 120, "8 complete trials")
        postgres.restart(
            down_s=6
        )  # long enough that the driver itself needs the database meanwhile
        _, err = driver.communicate(timeout=300)
    finally:
        driver.kill()
    assert driver.returncode == 0, err[-3000:]
    assert "unreachable" in err and "is back" in err, err[-3000:]
    states = Counter(t.state for t in study_trials(postgres_db))
    assert states[TrialState.COMPLETE] == 32
    assert states[TrialState.RUNNING] == 0 and states[TrialState.WAITING] == 0
    evaluations = Counter(line.split()[1] for line in log.read_text().splitlines())
    assert max(evaluations.values()) == 1, evaluations.most_common(3)


def test_a_database_that_stays_down_stops_the_search_clearly_and_loses_nothing(
    tmp_path, postgres, postgres_db
):
    log = tmp_path / "evaluations.log"
    exp = faulty(
        experiment(n_trials=30, strategy="random", batch_size=2, storage=postgres_db),
        delay_s=0.4,
        log_file=str(log),
    )
    command, _ = start_driver(tmp_path, exp)
    env = {**os.environ, "NASFORGE_STORAGE_WAIT_S": "4"}
    driver = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        wait_for(lambda: count_complete(postgres_db) >= 6, 120, "6 complete trials")
        before = count_complete(postgres_db)
        postgres.stop()
        _, err = driver.communicate(timeout=120)
    finally:
        driver.kill()
        if postgres.process.poll() is not None:
            postgres.start()
    assert driver.returncode == 2, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "did not come back within 4s" in errors[0], err[-3000:]
    assert "run the same command again to resume" in errors[0]
    done_before = {
        t.user_attrs["key"] for t in study_trials(postgres_db) if t.state == TrialState.COMPLETE
    }
    assert len(done_before) >= before

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    trials = study_trials(postgres_db)
    assert Counter(t.state for t in trials)[TrialState.COMPLETE] == 30
    assert not any(t.state == TrialState.RUNNING for t in trials)
    evaluations = Counter(line.split()[1] for line in log.read_text().splitlines())
    twice = {key: evaluations[key] for key in done_before if evaluations[key] != 1}
    assert not twice, (twice, err[-2000:], rerun.stdout[-2000:])


def test_an_unreachable_database_is_a_clear_error_after_a_bounded_wait(tmp_path, monkeypatch):
    from pg_server import free_port

    from nasforge.errors import StudyError

    monkeypatch.setenv("NASFORGE_STORAGE_WAIT_S", "1")
    url = f"postgresql://nasforge@127.0.0.1:{free_port()}/nowhere"
    start = time.monotonic()
    with pytest.raises(StudyError, match=r"cannot open study storage postgresql://nasforge@"):
        open_storage(url, tmp_path)
    assert time.monotonic() - start < 10


def test_a_bad_query_is_not_retried(postgres_db, tmp_path):
    storage = open_storage(postgres_db, tmp_path)
    assert isinstance(storage, ReconnectingStorage)
    with pytest.raises(KeyError):
        storage.get_study_id_from_name("no such study")
    assert storage.reconnects == 0 and storage.calls == 1
