"""Run directories on cloud storage: a real S3 API on 127.0.0.1 (``moto``'s server, see
``s3_server``), reached through the ``pyarrow.fs`` filesystem Ray Train and Tune write to.

One tiny CNN run trains its supernet (a sweep of two recipes, each a Ray Tune trial that
mirrors its own folder) and searches with ``run_dir: s3://…``: the recipes' checkpoints,
``final.pt``, the report and Tune's state land in the bucket and nothing is left on local
disk; a second run resumes from the bucket (trained already, the study complete);
``nasforge report EXP.yaml`` and ``nasforge export EXP.yaml --trial N`` from a fresh folder
get the same front and a working subnet from the bucket's weights. Ray Train checkpointing
to a bucket, and resuming from it, is tested on 3 nodes in ``test_cluster_faults``.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from tiny_cnn import tiny_experiment

from nasforge.cli import main
from nasforge.engine.run_location import durable, local_run_dir, ray_storage, sync
from nasforge.errors import ConfigError, NasforgeError, StudyError
from nasforge.experiment import RUN_ROOT_ENV, is_uri, join_uri, parse_experiment

CORA = Path(__file__).parents[2] / "examples" / "gnn_nasbench_cora.yaml"


def test_uris_and_paths_are_told_apart_and_joined_before_the_query():
    assert is_uri("s3://b/x") and is_uri("gs://b/x") and not is_uri("/shared/runs")
    assert not is_uri("runs/x") and not is_uri("file:///tmp/x")
    assert join_uri("s3://b/runs?scheme=http", "x") == "s3://b/runs/x?scheme=http"
    assert join_uri("gs://b/runs/", "x", "supernet") == "gs://b/runs/x/supernet"


def test_a_run_root_uri_names_each_run_and_credentials_in_it_are_refused(monkeypatch, tmp_path):
    exp = yaml.safe_load(
        (Path(__file__).parents[2] / "examples/gnn_nasbench_cora.yaml").read_text()
    )
    exp.pop("run_dir", None)
    monkeypatch.setenv(RUN_ROOT_ENV, "s3://bucket/runs?endpoint_override=minio:9000")
    experiment = parse_experiment(exp)
    assert experiment.resolved_run_dir == (
        "s3://bucket/runs/gnn_nasbench_cora?endpoint_override=minio:9000"
    )
    monkeypatch.setenv(RUN_ROOT_ENV, "s3://bucket/runs?secret_key=hunter2")
    with pytest.raises(ConfigError, match="NASFORGE_RUN_ROOT: a credential") as info:
        _ = parse_experiment(exp).resolved_run_dir
    assert "hunter2" not in str(info.value)
    with pytest.raises(ConfigError, match=r"run_dir.*credential") as info:
        parse_experiment({**exp, "run_dir": "s3://b/x?access_key=AKIA123&secret_key=hunter2"})
    assert "hunter2" not in str(info.value)


def test_a_mirror_uploads_what_changed_and_a_second_one_sees_it(s3):
    uri = s3.uri()
    prefix = uri.split("?")[0].split("/", 3)[3]
    with local_run_dir(uri) as local:
        (local / "a.txt").write_text("one")
        (local / "tune").mkdir()
        (local / "tune" / "state.json").write_text("{}")  # Ray's to write at the URI itself
        (local / ".lock").write_text("123")
        sync(local)
        assert s3.keys(prefix) == ["a.txt"]
        with local_run_dir(uri) as again:  # the same URI again: the same mirror
            assert again == local
        (local / "sub").mkdir()
        (local / "sub" / "b.bin").write_bytes(b"\0" * 10)
    assert not local.exists()  # uploaded, then removed
    assert s3.keys(prefix) == ["a.txt", "sub/b.bin"]
    with local_run_dir(uri) as fresh:
        assert fresh != local and (fresh / "a.txt").read_text() == "one"
        assert (fresh / "sub" / "b.bin").read_bytes() == b"\0" * 10


def _enter(uri: str) -> None:
    with local_run_dir(uri):
        pass


def test_a_missing_bucket_or_a_credential_in_the_uri_is_one_clear_error(s3):
    missing = s3.uri().replace(s3.bucket, "no-such-bucket")
    with pytest.raises(NasforgeError, match=r"bucket 'no-such-bucket' does not exist") as info:
        _enter(missing)
    assert "endpoint_override" not in str(info.value)  # messages drop the query
    for uri in ("s3://AKIA123:hunter2@bucket/x", f"{missing}&secret_key=hunter2"):
        with pytest.raises(NasforgeError, match="credential") as info:
            _enter(uri)
        assert "hunter2" not in str(info.value)
    assert not list(Path(tempfile.gettempdir()).glob("nasforge-run-*"))


def test_a_mirror_behind_a_symbolic_link_still_sends_ray_to_the_bucket(s3, tmp_path, monkeypatch):
    """macOS's temporary folder is behind a link (/var -> /private/var): Ray's storage must
    still be the bucket, or its checkpoints would land in the mirror and be lost."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "link"))
    uri = s3.uri()
    with local_run_dir(uri) as local:
        path, filesystem = ray_storage(local / "supernet" / "ray")
        assert filesystem is not None and path.endswith("/supernet/ray")
        assert durable(local / "pareto.csv") == uri.split("?")[0] + "/pareto.csv"


@pytest.fixture(scope="module")
def s3_run(s3, nasforge_ray, tmp_path_factory):
    """The tiny CNN trained and searched with its run directory in the bucket (the study in
    a SQLite file outside it); returns (experiment file, result, S3 prefix, study file)."""
    from nasforge import run_experiment

    folder = tmp_path_factory.mktemp("s3run")
    uri = s3.uri()
    # a sweep of two recipes: each trains in a Ray Tune trial of its own, which mirrors its
    # recipe's folder and uploads every epoch's checkpoint; the driver picks the best
    exp = tiny_experiment(uri, n_trials=4, num_workers=1, epochs=2)
    exp["train"]["sweep"] = {"grid": {"lr": [0.1, 0.05]}, "concurrency": 1, "quality_archs": 3}
    exp["search"]["storage"] = f"sqlite:///{folder / 'study.db'}"
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    result = run_experiment(path, progress=False)
    return path, result, uri.split("?")[0].split("/", 3)[3], folder


def test_a_run_on_s3_keeps_checkpoints_weights_and_report_in_the_bucket(s3, s3_run):
    path, result, prefix, _ = s3_run
    keys = s3.keys(prefix)
    for key in ("supernet/final.pt", "supernet/meta.json", "supernet/sweep.json",
                "experiment.json", "trials.csv", "pareto.csv", "pareto.json", "pareto.png"):  # fmt: skip
        assert key in keys, keys
    assert any(k.startswith("tune/train-") for k in keys)  # Ray Tune's own state
    summary = json.loads(s3.read(f"{prefix}/supernet/sweep.json"))
    for recipe in summary["recipes"]:  # uploaded by the trial (state) and the driver
        for name in ("state.pt", "result.json", "history.jsonl"):
            assert f"supernet/sweep/{recipe['id']}/{name}" in keys, keys
    chosen = next(r for r in summary["recipes"] if r["id"] == summary["best"])
    assert chosen["status"] == "complete" and chosen["epochs"] == 2  # (ASHA may stop the other)
    best = torch.load(io.BytesIO(s3.read(f"{prefix}/supernet/sweep/{summary['best']}/state.pt")),
                      weights_only=True)["model"]  # fmt: skip
    final = torch.load(io.BytesIO(s3.read(f"{prefix}/supernet/final.pt")), weights_only=True)
    assert all(torch.equal(final[k], best[k]) for k in final)
    assert str(result.run_dir).startswith("s3://") and all(
        str(f).startswith("s3://") for f in result.files
    )
    assert len(result.complete) == 4
    assert not list(Path(tempfile.gettempdir()).glob("nasforge-run-*"))  # no mirror left

    from nasforge import run_experiment

    again = run_experiment(path, progress=False)  # another machine would see the same
    assert again.training.skipped and len(again.complete) == 4


def test_report_and_export_from_a_fresh_folder_use_the_bucket(s3, s3_run, tmp_path, capsys):
    path, result, prefix, _ = s3_run
    out = tmp_path / "laptop"
    assert main(["report", str(path), "--out", str(out)]) == 0
    assert (out / "pareto.csv").read_bytes() == s3.read(f"{prefix}/pareto.csv")
    number = result.front[0].number
    capsys.readouterr()
    code = main(["export", str(path), "--trial", str(number), "--format", "torchscript",
                 "--out", str(tmp_path / "subnet")])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    record = json.loads((tmp_path / "subnet" / "arch.json").read_text())
    assert record["arch"] == result.front[0].arch and (tmp_path / "subnet" / "model.pt").exists()
    top1 = record["export"]["metrics"]["top1"]
    assert top1 == pytest.approx(result.front[0].metrics["top1"], abs=0.02), printed


def test_a_study_file_cannot_live_in_a_cloud_run_directory(s3, tmp_path, capsys):
    exp = yaml.safe_load(CORA.read_text())
    exp["run_dir"] = s3.uri()
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    assert main(["search", str(path)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1, err
    assert "a study file (study.db) cannot live in a cloud run directory" in err[0]
    assert "NASFORGE_STORAGE" in err[0] and "endpoint_override" not in err[0]
    with pytest.raises(StudyError):
        from nasforge.engine.storage import storage_url

        with local_run_dir(s3.uri()) as local:
            storage_url("journal:study.log", local)
