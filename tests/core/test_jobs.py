"""`nasforge submit` and `nasforge jobs` against a real Ray head with token authentication.

One head for the module, started with `ray start --head --block` on 127.0.0.1 in its own
process group, its token in a temporary file (RAY_AUTH_TOKEN_PATH) so neither it nor the
tests touch ~/.ray. Only that process group (and the processes it started) is killed at the
end: `ray stop` would take down every Ray on the machine.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import optuna
import psutil
import pytest
import yaml

from nasforge import jobs
from nasforge.cli import main

TESTS_DIR = Path(__file__).resolve().parents[1]
EXAMPLE = TESTS_DIR.parent / "examples" / "gnn_nasbench_cora.yaml"
RAY = Path(sys.executable).with_name("ray")

# A plugin module that lives in the working directory: it must travel to import on the
# cluster, and it prints what else travelled when the search starts.
TRAVEL_CHECK = """
import os
from nasforge import hookimpl

@hookimpl
def experiment_start(experiment, run_dir):
    files = sorted(os.path.relpath(os.path.join(d, f)) for d, _, fs in os.walk(".") for f in fs)
    print("travelled:", " ".join(files), flush=True)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _without_ray_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "PYTHONPATH")
        and not k.startswith("RAY_AUTH")
    }


class Head:
    """A `ray start --head` of our own: its job server URL and its token's file."""

    def __init__(self) -> None:
        self.temp = Path(tempfile.mkdtemp(prefix="nfh", dir="/tmp"))  # short: unix sockets
        self.token_file = self.temp / "auth_token"
        self.token_file.write_text(secrets.token_hex(32))
        self.dashboard_port = _free_port()
        self.url = f"http://127.0.0.1:{self.dashboard_port}"
        env = _without_ray_env()  # plugins must come with the working dir, not PYTHONPATH
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(self.token_file),
                   PATH=f"{RAY.parent}{os.pathsep}{env.get('PATH', '')}")  # fmt: skip
        with open(self.temp / "head.log", "w") as log:
            self.proc = subprocess.Popen(
                [str(RAY), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
                 f"--port={_free_port()}", "--dashboard-host=127.0.0.1",
                 f"--dashboard-port={self.dashboard_port}",
                 f"--dashboard-agent-listen-port={_free_port()}",
                 f"--ray-client-server-port={_free_port()}", "--num-cpus=1",
                 "--object-store-memory=100000000", "--include-dashboard=true",
                 f"--temp-dir={self.temp}", "--disable-usage-stats"],
                env=env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def wait_ready(self, timeout: float = 120) -> None:
        request = urllib.request.Request(
            f"{self.url}/api/jobs/",
            headers={"Authorization": f"Bearer {self.token_file.read_text()}"},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.temp / "head.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(request, timeout=2):
                    return
            except OSError:  # not up yet (HTTPError, URLError and refusals are OSErrors)
                time.sleep(0.5)
        raise TimeoutError(f"the head's job server never answered on {self.url}")

    def kill(self) -> None:
        """SIGTERM our process group, SIGKILL what is left of it after a grace period, then
        what it started in process groups of their own (workers, job drivers)."""
        try:
            started = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            started = []
        for sig, grace in ((signal.SIGTERM, 3), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=grace)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        for p in started:  # psutil checks that the pid still names the process it saw
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture(scope="module", autouse=True)
def booting_head():
    """The head starts with the module; the tests that need no cluster run while it boots."""
    head = Head()
    yield head
    head.kill()


@pytest.fixture(scope="module")
def head(booting_head):
    booting_head.wait_ready()
    return booting_head


def nasforge(*args: str, cwd: Path, env: dict[str, str], timeout: float = 180):
    return subprocess.run(
        [sys.executable, "-m", "nasforge.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def client_env(head: Head, **extra: str) -> dict[str, str]:
    """The submitter's environment: the head's token through its file, the test plugins
    importable here (for local validation), and a RAY_ADDRESS that is no job server."""
    env = _without_ray_env()
    env.update(RAY_AUTH_TOKEN_PATH=str(head.token_file), PYTHONPATH=str(TESTS_DIR),
               RAY_ADDRESS="127.0.0.1:6379", **extra)  # fmt: skip
    return env


def write_experiment(
    path: Path, name: str, n_trials: int, delay_s: float = 0.0, run_dir: Path | None = None
) -> None:
    exp = yaml.safe_load(EXAMPLE.read_text())
    exp["name"] = name
    if run_dir is not None:
        exp["run_dir"] = str(run_dir)
    exp["plugins"] = ["engine_plugins", "travel_check"]
    exp["estimators"] = [{"name": "testing.table", "options": {"delay_s": delay_s}}]
    exp["search"] = {"strategy": "random", "n_trials": n_trials, "seed": 0, "concurrency": 1,
                     "batch_size": 3, "resources_per_trial": {"cpu": 1}}  # fmt: skip
    path.write_text(yaml.safe_dump(exp))


# Refused here, before the job server is contacted: were it, this address would fail with
# "cannot reach".
NOWHERE = "http://127.0.0.1:9"


def test_an_invalid_experiment_is_refused_before_any_upload(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text(
        EXAMPLE.read_text().replace("strategy: nsga2", "strategy: nsga4")
    )
    code = main(["submit", str(tmp_path / "bad.yaml"), "--address", NOWHERE,
                 "--working-dir", str(tmp_path)])  # fmt: skip
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: {tmp_path / 'bad.yaml'}: search.strategy: unknown strategy 'nsga4' "
        "(available: ehvi, gp, linas, nsga2, nsga3, random, tpe)"
    ]


def test_a_missing_experiment_or_one_that_would_not_travel_is_refused(tmp_path, capsys):
    code = main(["submit", "nope.yaml", "--address", NOWHERE, "--working-dir", str(tmp_path)])
    assert code == 2
    assert capsys.readouterr().err.splitlines() == ["error: nope.yaml: no such experiment file"]
    (tmp_path / "project").mkdir()
    shutil.copy(EXAMPLE, tmp_path / "exp.yaml")
    code = main(["submit", str(tmp_path / "exp.yaml"), "--address", NOWHERE,
                 "--working-dir", str(tmp_path / "project")])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'exp.yaml'}: outside the working directory")
    (tmp_path / "project" / "runs").mkdir()
    shutil.copy(EXAMPLE, tmp_path / "project" / "runs" / "exp.yaml")
    code = main(["submit", str(tmp_path / "project" / "runs" / "exp.yaml"), "--address",
                 NOWHERE, "--working-dir", str(tmp_path / "project")])  # fmt: skip
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: {tmp_path / 'project' / 'runs' / 'exp.yaml'}: excluded from the upload by 'runs/'"
    ]


def test_a_run_that_would_lose_its_results_with_the_job_is_refused(tmp_path, capsys, monkeypatch):
    """Ray deletes the job's copy of the working directory when the job ends: a study or a
    trained supernet written there is refused in one line naming the fix, unless --scratch."""
    monkeypatch.delenv("NASFORGE_STORAGE", raising=False)
    shutil.copy(EXAMPLE, tmp_path / "exp.yaml")

    def refusal(*flags: str) -> list[str]:
        code = main(["submit", str(tmp_path / "exp.yaml"), "--address", NOWHERE,
                     "--working-dir", str(tmp_path), *flags])  # fmt: skip
        assert code == 2
        return capsys.readouterr().err.splitlines()

    assert refusal() == [
        f"error: {tmp_path / 'exp.yaml'}: the study would be SQLite at "
        "runs/gnn_nasbench_cora/study.db, inside the job's working directory, which Ray "
        "deletes when the job ends: set NASFORGE_STORAGE to a database the cluster shares "
        "(PostgreSQL), or pass --scratch for a throw-away run"
    ]
    monkeypatch.setenv("NASFORGE_STORAGE", "journal:study.log")  # relative: in the run dir
    assert (
        "the study would be journal:study.log at runs/gnn_nasbench_cora/study.log" in (refusal()[0])
    )
    # past the check (a throw-away run, or a shared study): the job server is contacted
    assert "cannot reach" in refusal("--scratch")[0]
    monkeypatch.setenv("NASFORGE_STORAGE", f"journal:{tmp_path / 'shared' / 'study.log'}")
    assert "cannot reach" in refusal()[0]
    # a trained supernet lives in the run directory: a relative one is refused too
    cnn = yaml.safe_load((EXAMPLE.parent / "cnn_digits.yaml").read_text())
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(cnn))
    assert refusal() == [
        f"error: {tmp_path / 'exp.yaml'}: the run directory runs/{cnn['name']} is inside the "
        "job's working directory, which Ray deletes when the job ends, and the trained "
        "supernet would go with it: set run_dir (or NASFORGE_RUN_ROOT) to a path every node "
        "shares, or pass --scratch for a throw-away run"
    ]
    monkeypatch.setenv("NASFORGE_RUN_ROOT", str(tmp_path / "shared"))  # every run there
    assert "cannot reach" in refusal()[0]
    monkeypatch.delenv("NASFORGE_RUN_ROOT")
    cnn["run_dir"] = str(tmp_path / "shared" / "cnn")
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(cnn))
    assert "cannot reach" in refusal()[0]
    # a cloud run directory is durable, but a study file cannot live in it
    monkeypatch.delenv("NASFORGE_STORAGE")
    monkeypatch.setenv("NASFORGE_RUN_ROOT", "s3://bucket/runs")
    cnn.pop("run_dir")
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(cnn))
    impossible = [
        f"error: {tmp_path / 'exp.yaml'}: the study would be a file (study.db) in the cloud "
        "run directory, where a study file cannot live: set NASFORGE_STORAGE to a database "
        "the cluster shares (PostgreSQL)"
    ]
    assert refusal() == impossible and refusal("--scratch") == impossible  # cannot run at all
    monkeypatch.setenv("NASFORGE_STORAGE", "sqlite:///study.db")  # relative: the job's folder
    assert "the study would be SQLite at study.db, inside the job's working" in refusal()[0]
    monkeypatch.setenv("NASFORGE_STORAGE", "postgresql://nasforge@db.internal/nasforge")
    assert "cannot reach" in refusal()[0]


def test_the_address_comes_from_the_flag_then_the_environment(monkeypatch):
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")  # a GCS address, not a job server
    assert jobs.resolve_address(None) == "http://127.0.0.1:8265"
    monkeypatch.setenv("RAY_ADDRESS", "http://head:8265/")
    assert jobs.resolve_address(None) == "http://head:8265"
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "https://api.example:443")
    assert jobs.resolve_address(None) == "https://api.example:443"
    assert jobs.resolve_address("http://other:8265") == "http://other:8265"


def test_the_exclude_list_is_the_defaults_plus_nasforgeignore(tmp_path):
    assert jobs.excludes_for(tmp_path) == list(jobs.DEFAULT_EXCLUDES)
    (tmp_path / ".nasforgeignore").write_text("# big inputs\n\ndata/raw/\n*.ckpt\n")
    assert jobs.excludes_for(tmp_path)[-2:] == ["data/raw/", "*.ckpt"]
    assert {"runs/", ".venv/", ".git/"} <= set(jobs.excludes_for(tmp_path))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A project folder as users have them: the experiment and its plugin modules, data,
    old run directories, a virtual environment, and scratch files listed in .nasforgeignore."""
    root = tmp_path_factory.mktemp("project")
    shutil.copy(TESTS_DIR / "engine_plugins.py", root)
    (root / "travel_check.py").write_text(TRAVEL_CHECK)
    write_experiment(root / "exp.yaml", "submitted", n_trials=6)
    write_experiment(root / "long.yaml", "long_running", n_trials=100, delay_s=30)
    (root / "data").mkdir()
    (root / "data" / "keep.txt").write_text("travels")
    for big in (root / "runs" / "old" / "study.db", root / ".venv" / "lib" / "big.bin"):
        big.parent.mkdir(parents=True)
        with open(big, "wb") as f:
            f.truncate(50 * 2**20)
    (root / "scratch").mkdir()
    (root / "scratch" / "notes.txt").write_text("stays here")
    (root / ".nasforgeignore").write_text("# local only\nscratch/\n")
    return root


@pytest.fixture(scope="module")
def submitted(head, workdir, tmp_path_factory, postgres):
    """`nasforge submit exp.yaml --follow`, the study in PostgreSQL (NASFORGE_STORAGE, the
    password in PGPASSWORD: both travel to the job) and the run directory on a path the
    cluster shares (this machine's); returns (job id, output, environment, shared run dir)."""
    url = postgres.create_database("submitted")
    shared = tmp_path_factory.mktemp("shared") / "submitted"
    write_experiment(workdir / "exp.yaml", "submitted", n_trials=6, run_dir=shared)
    env = client_env(head, NASFORGE_STORAGE=url, **postgres.env())
    result = nasforge("submit", "exp.yaml", "--address", head.url, "--follow", cwd=workdir, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    job_id = result.stdout.split()[1]
    return job_id, result, env, shared


def test_submit_prints_the_id_and_follows_the_job_to_success(head, submitted):
    job_id, result, env, _ = submitted
    lines = result.stdout.splitlines()
    assert lines[0] == f"submitted {job_id} to {head.url}"
    assert job_id.startswith("raysubmit_")
    assert f"  follow it:   nasforge jobs logs {job_id} --follow --address {head.url}" in lines
    assert f"  study storage {env['NASFORGE_STORAGE']} (NASFORGE_STORAGE)" in lines
    assert "search: 6 complete" in result.stdout  # the job's own output, followed
    assert lines[-1].startswith(f"job {job_id}: SUCCEEDED")
    assert result.stderr == ""  # Ray's own notes (uploads, websockets) are for -v
    assert env["PGPASSWORD"] not in result.stdout  # the password reached the job, unprinted
    study = optuna.load_study(study_name="submitted", storage=env["NASFORGE_STORAGE"].replace(
        "nasforge@", f"nasforge:{env['PGPASSWORD']}@"))  # fmt: skip
    assert len(study.trials) == 6  # NASFORGE_STORAGE reached the job


def test_the_report_of_the_experiment_rebuilds_the_jobs_front_here(
    head, submitted, workdir, tmp_path
):
    """`nasforge report exp.yaml` on the submitting side: the job's shared study, reported into
    a local folder, gives the job's own pareto.csv (written to the shared run directory)."""
    _, result, env, shared = submitted
    assert "  results:     nasforge report exp.yaml (from the shared study)" in result.stdout
    local = tmp_path / "here"
    report = nasforge("report", "exp.yaml", "--out", str(local), cwd=workdir, env=env)
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    assert report.stdout.startswith("report: 6 complete / 6 trials")
    assert (local / "pareto.csv").read_bytes() == (shared / "pareto.csv").read_bytes()
    assert (local / "trials.csv").exists() and (local / "pareto.png").exists()
    again = nasforge("report", str(local), cwd=workdir, env=env)  # now a run directory here
    assert again.returncode == 0, again.stderr


def test_only_the_project_travels(submitted):
    _, result, _, _ = submitted
    line = next(x for x in result.stdout.splitlines() if x.startswith("travelled: "))
    travelled = set(line.split()[1:])
    assert {"exp.yaml", "engine_plugins.py", "travel_check.py", "data/keep.txt"} <= travelled
    assert not {"runs/old/study.db", ".venv/lib/big.bin", "scratch/notes.txt"} & travelled


def test_jobs_status_logs_and_list(head, submitted, workdir):
    job_id, _, _, _ = submitted
    env = client_env(head, RAY_API_SERVER_ADDRESS=head.url)  # the address from the environment
    status = nasforge("jobs", "status", job_id, cwd=workdir, env=env)
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[:3] == [
        f"{job_id}: SUCCEEDED",
        "  experiment  submitted",
        "  entrypoint  nasforge run exp.yaml",
    ]
    logs = nasforge("jobs", "logs", job_id, cwd=workdir, env=env)
    assert logs.returncode == 0, logs.stderr
    assert "search: 6 complete" in logs.stdout
    listed = nasforge("jobs", "list", cwd=workdir, env=env)
    assert listed.returncode == 0, listed.stderr
    row = next(x for x in listed.stdout.splitlines() if x.startswith(job_id)).split()
    assert row[1:3] == ["SUCCEEDED", "submitted"]


def test_jobs_stop_ends_a_long_job(head, workdir, submitted):
    env = client_env(head)
    result = nasforge("submit", "long.yaml", "--scratch", "--address", head.url, cwd=workdir,
                      env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.split()[1]
    assert result.stdout.splitlines()[-1] == f"job {job_id}: RUNNING"  # waited for it to start
    stopped = nasforge("jobs", "stop", job_id, "--address", head.url, cwd=workdir, env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == f"job {job_id}: STOPPED"
    assert jobs_status(head, job_id) == "STOPPED"


def test_a_job_that_fails_on_the_cluster_says_why(head, tmp_path):
    # engine_plugins imports here (PYTHONPATH) but was not put in the working directory
    write_experiment(tmp_path / "exp.yaml", "stranded", n_trials=6)
    (tmp_path / "travel_check.py").write_text(TRAVEL_CHECK)
    result = nasforge("submit", "exp.yaml", "--scratch", "--address", head.url, "--follow",
                      cwd=tmp_path, env=client_env(head))  # fmt: skip
    assert result.returncode == 1
    assert "cannot import plugin module 'engine_plugins'" in result.stdout  # the job's output
    assert result.stderr.startswith(f"job {result.stdout.split()[1]}: FAILED (")


def jobs_status(head: Head, job_id: str) -> str:
    """The job's status as the job server's REST API reports it."""
    request = urllib.request.Request(
        f"{head.url}/api/jobs/{job_id}",
        headers={"Authorization": f"Bearer {head.token_file.read_text()}"},
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.loads(r.read())["status"]


@pytest.mark.parametrize(
    "auth_env, expected",
    [
        ({"RAY_AUTH_TOKEN": "wrong-token-4f1c"}, " refused Ray's auth token from RAY_AUTH_TOKEN"),
        ({}, " requires Ray's auth token and none was found: set RAY_AUTH_TOKEN, "),
        ({"RAY_AUTH_TOKEN_PATH": "/nonexistent/auth_token"},
         ": cannot read Ray's auth token from RAY_AUTH_TOKEN_PATH=/nonexistent/auth_token"),
    ],
    ids=["wrong", "missing", "unreadable"],
)  # fmt: skip
def test_a_wrong_or_missing_token_is_one_clear_line(head, tmp_path, auth_env, expected):
    env = {**_without_ray_env(), "HOME": str(tmp_path), **auth_env}  # no ~/.ray/auth_token
    result = nasforge("jobs", "list", "--address", head.url, cwd=tmp_path, env=env)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {head.url}{expected}")
    for token in (head.token_file.read_text(), auth_env.get("RAY_AUTH_TOKEN")):
        assert not token or token not in result.stdout + result.stderr


def test_an_unknown_job_or_an_unreachable_server_is_one_clear_line(head, tmp_path):
    env = client_env(head)
    unknown = nasforge("jobs", "status", "raysubmit_nope", "--address", head.url,
                       cwd=tmp_path, env=env)  # fmt: skip
    assert unknown.returncode == 2
    assert unknown.stderr.splitlines() == [
        f"error: {head.url}: no job 'raysubmit_nope' (see `nasforge jobs list`)"
    ]
    nowhere = f"http://127.0.0.1:{_free_port()}"
    down = nasforge("jobs", "list", "--address", nowhere, cwd=tmp_path, env=env)
    assert down.returncode == 2
    assert down.stderr.splitlines() == [f"error: cannot reach a Ray job server at {nowhere}"]


def test_the_job_server_listens_on_localhost_only(head):
    listening = [
        c.laddr
        for p in [psutil.Process(head.proc.pid), *psutil.Process(head.proc.pid).children(True)]
        for c in p.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == head.dashboard_port
    ]
    assert listening and all(addr.ip == "127.0.0.1" for addr in listening)


def test_quietening_the_job_sdk_leaves_handlers_it_does_not_own(caplog):
    """Ray's logger also carries the root's handlers (pytest's capture here): those keep
    their level, so a program that runs ``nasforge submit`` in-process still sees its logs."""
    import argparse
    import logging

    from nasforge.cli import _quiet_job_sdk

    ours = logging.StreamHandler()
    ray_logger = logging.getLogger("ray")
    ray_logger.addHandler(ours)
    try:
        _quiet_job_sdk(argparse.Namespace(verbose=False))
        assert ours.level == logging.NOTSET and caplog.handler.level == logging.NOTSET
        # Ray's own handler (a PlainRayHandler in a fresh process; after ray.init it may be
        # another) is quietened when it is one of Ray's classes
        own = [h for h in ray_logger.handlers if type(h).__module__.startswith("ray.")]
        assert all(h.level == logging.ERROR for h in own)
    finally:
        ray_logger.removeHandler(ours)
