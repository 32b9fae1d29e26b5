"""The command line as a user runs it: `nasforge run` end to end, and the dashboard."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
import yaml

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gnn_nasbench_cora.yaml"


def nasforge(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nasforge.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, nasforge_ray):
    """The shipped example, shortened to 60 trials, run with `nasforge run` in a subprocess."""
    cwd = tmp_path_factory.mktemp("cli")
    experiment = yaml.safe_load(EXAMPLE.read_text())
    experiment["search"]["n_trials"] = 60
    (cwd / "exp.yaml").write_text(yaml.safe_dump(experiment))
    result = nasforge("run", "exp.yaml", cwd=cwd)
    return cwd, result


@pytest.mark.smoke
def test_run_searches_reports_and_says_where(finished_run):
    cwd, result = finished_run
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "search: 60 complete" in out
    run_dir = Path("runs") / "gnn_nasbench_cora"
    for name in ("trials.csv", "pareto.csv", "pareto.json", "pareto.png"):
        assert f"  {run_dir / name}" in out
        assert (cwd / run_dir / name).stat().st_size > 0
    assert "search: 60/60 complete" in result.stderr  # progress, trials done / total


def test_running_a_finished_experiment_again_does_nothing_new(finished_run):
    cwd, _ = finished_run
    again = nasforge("run", "exp.yaml", cwd=cwd)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "search: 60 complete (60 from before), 0 failed" in again.stdout


@pytest.mark.smoke
def test_export_writes_the_arch_and_metrics(finished_run):
    cwd, _ = finished_run
    pareto = json.loads((cwd / "runs/gnn_nasbench_cora/pareto.json").read_text())
    best = pareto["trials"][0]
    result = nasforge("export", "runs/gnn_nasbench_cora", "--trial", str(best["number"]), cwd=cwd)
    assert result.returncode == 0, result.stderr
    exported = json.loads(
        (cwd / f"runs/gnn_nasbench_cora/subnets/{best['number']}/arch.json").read_text()
    )
    assert exported["arch"] == best["arch"]
    assert exported["metrics"]["valid_acc"] == best["valid_acc"]


def test_a_bad_experiment_is_one_line_and_exit_code_2(tmp_path):
    (tmp_path / "bad.yaml").write_text(
        EXAMPLE.read_text().replace("strategy: nsga2", "strategy: nsga4")
    )
    result = nasforge("run", "bad.yaml", cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: bad.yaml: search.strategy: unknown strategy 'nsga4' "
        "(available: ehvi, gp, linas, nsga2, nsga3, random, tpe)"
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dashboard_serves_the_study_on_localhost_only(finished_run):
    cwd, _ = finished_run
    studies, listening = dashboard_studies(["runs/gnn_nasbench_cora"], cwd=cwd)
    assert studies == ["gnn_nasbench_cora"]
    assert listening and all(addr.ip == "127.0.0.1" for addr in listening)


def dashboard_studies(args: list[str], cwd=None, env=None) -> tuple[list[str], list]:
    """Start ``nasforge dashboard ARGS`` on a free port, read its study list over HTTP, stop
    it; returns the study names and the addresses it listened on."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "nasforge.cli", "dashboard", *args, "--port", str(port)],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        body = None
        while time.monotonic() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as r:
                    body = json.loads(r.read())
            except OSError:
                assert server.poll() is None, server.stdout.read().decode()
                time.sleep(0.3)
        assert body is not None, "the dashboard never answered"
        listening = [
            c.laddr
            for c in psutil.Process(server.pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        ]
        return [s["study_name"] for s in body["study_summaries"]], listening
    finally:
        server.terminate()
        server.wait(timeout=10)
