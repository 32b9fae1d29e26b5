"""The cluster files in clusters/ as a contract, checked without starting anything.

Launcher files (`ray up`) must be valid for the installed Ray, start a dashboard bound to
127.0.0.1 and install nasforge; cloud ones must have an autoscaling GPU worker type. The
KubeRay RayJob must turn on token authentication with the token from a Kubernetes Secret.
No file may hold a password or a token. Every `nasforge` command the files run must parse
with the real CLI and name an experiment file that exists in this repository.

Each rule lives in a validator that returns the problems it finds, so the tests also feed
the validators broken copies and check that they complain.
"""

from __future__ import annotations

import copy
import re
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from nasforge.environment import read_lock

REPO = Path(__file__).resolve().parents[2]
CLUSTERS = REPO / "clusters"
LAUNCHERS = ["aws.yaml", "gcp.yaml", "local.yaml"]
RAYJOB = "kuberay-rayjob.yaml"
#: where the files put this repository: ~/nasforge on `ray up` nodes, /home/ray/nasforge in
#: the KubeRay image
CHECKOUTS = ("~/nasforge/", "/home/ray/nasforge/")
#: keys whose strings are shell commands
COMMAND_KEYS = re.compile(r"(_commands|^entrypoint|^command|^args)$")


def load(name: str | Path) -> dict[str, Any]:
    """A file of clusters/ by name, or any file by absolute path."""
    return yaml.safe_load((CLUSTERS / name).read_text())


def load_all(name: str | Path) -> list[dict[str, Any]]:
    """Every document of a multi-document YAML file, like `kubectl apply` reads it."""
    return [doc for doc in yaml.safe_load_all((CLUSTERS / name).read_text()) if doc]


# --- validators: each returns a list of problems, empty when the file is right ------------


def launcher_problems(config: dict[str, Any]) -> list[str]:
    """What keeps a `ray up` config from starting a nasforge cluster safely."""
    problems = [
        f"missing {key}"
        for key in (
            "cluster_name",
            "provider",
            "auth",
            "setup_commands",
            "head_start_ray_commands",
            "worker_start_ray_commands",
        )
        if not config.get(key)
    ]
    provider = config.get("provider") or {}
    if not provider.get("type"):
        problems.append("missing provider.type")
    elif provider["type"] == "local":
        if not provider.get("head_ip") or not provider.get("worker_ips"):
            problems.append("a local provider needs head_ip and worker_ips")
        if "available_node_types" in config:
            problems.append("a local provider takes no available_node_types")
    else:
        problems += _node_type_problems(config)
    setup = config.get("setup_commands") or []
    if not any(re.search(r"\bpip install\b.*\s-e ~/nasforge\b", c) for c in setup):
        problems.append("setup_commands do not install nasforge (pip install -e ~/nasforge)")
    elif not any("-c ~/nasforge/constraints.txt" in c for c in setup):
        problems.append("setup_commands do not install at the locked versions (-c constraints.txt)")
    locked_ray = str(read_lock(REPO / "constraints.txt")["ray"])
    for pin in re.findall(r"ray\[[a-z,]+\]==([\w.]+)", " ".join(setup)):
        if pin != locked_ray:
            problems.append(f"setup_commands pin ray {pin}, the lock has {locked_ray}")
    head_start = " ".join(config.get("head_start_ray_commands") or [])
    if "--head" not in head_start or not re.search(
        r"--dashboard-host[= ]127\.0\.0\.1\b", head_start
    ):
        problems.append("the head must start with --dashboard-host=127.0.0.1")
    if "0.0.0.0" in yaml.safe_dump(config):
        problems.append("something binds 0.0.0.0")
    return problems


def _node_type_problems(config: dict[str, Any]) -> list[str]:
    node_types = config.get("available_node_types") or {}
    head = config.get("head_node_type")
    if head not in node_types:
        return [f"head_node_type {head!r} is not in available_node_types"]
    problems = []
    workers = {name: spec for name, spec in node_types.items() if name != head}
    if not workers:
        problems.append("no worker node type")
    for name, spec in node_types.items():
        if not isinstance(spec.get("node_config"), dict) or "resources" not in spec:
            problems.append(f"{name}: needs node_config and resources")
    for name, spec in workers.items():
        low, high = spec.get("min_workers"), spec.get("max_workers")
        if not (isinstance(low, int) and isinstance(high, int) and 0 <= low <= high and high):
            problems.append(f"{name}: needs 0 <= min_workers <= max_workers, max_workers >= 1")
    if not any((spec.get("resources") or {}).get("GPU", 0) >= 1 for spec in workers.values()):
        problems.append("no GPU worker node type")
    return problems


def rayjob_problems(docs: list[dict[str, Any]]) -> list[str]:
    """What keeps a KubeRay manifest from being a token-authenticated nasforge RayJob."""
    jobs = [doc for doc in docs if doc.get("kind") == "RayJob"]
    if len(jobs) != 1:
        return [f"expected one RayJob, found {len(jobs)}"]
    job = jobs[0]
    spec = job.get("spec") or {}
    problems = []
    if not str(job.get("apiVersion", "")).startswith("ray.io/"):
        problems.append("apiVersion is not ray.io/...")
    if not spec.get("entrypoint"):
        problems.append("missing spec.entrypoint")
    if spec.get("shutdownAfterJobFinishes") is not True:
        problems.append("spec.shutdownAfterJobFinishes is not true")
    cluster = spec.get("rayClusterSpec") or {}
    head = (cluster.get("headGroupSpec") or {}).get("template")
    groups = cluster.get("workerGroupSpecs") or []
    if not head or not groups:
        return [*problems, "rayClusterSpec needs a headGroupSpec and a workerGroupSpec"]
    problems += _token_auth_problems(spec, head, groups)
    storage = _env(head).get("NASFORGE_STORAGE")
    if storage is not None and not _from_secret(storage):
        problems.append("NASFORGE_STORAGE must come from a secretKeyRef")
    return problems


def _token_auth_problems(spec: dict, head: dict, groups: list[dict]) -> list[str]:
    """Token auth either through KubeRay (authOptions naming a Secret) or, with any KubeRay,
    by hand: RAY_AUTH_MODE=token and RAY_AUTH_TOKEN from a secretKeyRef in every Ray
    container and in the submitter."""
    auth = spec["rayClusterSpec"].get("authOptions") or {}
    if auth.get("mode") == "token" and auth.get("secretName"):
        return []
    templates = {"head": head}
    templates |= {f"worker group {g.get('groupName')}": g.get("template") or {} for g in groups}
    if spec.get("submissionMode", "K8sJobMode") == "K8sJobMode":
        templates["submitter"] = spec.get("submitterPodTemplate") or {}
    problems = []
    for where, template in templates.items():
        env = _env(template)
        if not env:
            problems.append(f"{where}: no containers with env")
        if (env.get("RAY_AUTH_MODE") or {}).get("value") != "token":
            problems.append(f"{where}: RAY_AUTH_MODE is not token")
        if not _from_secret(env.get("RAY_AUTH_TOKEN")):
            problems.append(f"{where}: RAY_AUTH_TOKEN is not from a secretKeyRef")
    return problems


def _env(template: dict) -> dict[str, dict]:
    """Env entries by name, kept only where every container of the pod has them alike."""
    containers = (template.get("spec") or {}).get("containers") or []
    envs = [{e["name"]: e for e in c.get("env") or []} for c in containers]
    if not envs:
        return {}
    return {k: v for k, v in envs[0].items() if all(env.get(k) == v for env in envs)}


def _from_secret(entry: dict | None) -> bool:
    ref = ((entry or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
    return "value" not in (entry or {}) and bool(ref.get("name") and ref.get("key"))


#: user:password@ in a URL, where the password is not a shell variable ($X, ${X}, $(...))
URL_PASSWORD = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s/@:'\"]+:(?!\$)[^\s/@'\"]+@")
#: a token or password given as a literal instead of a variable or a file
LITERAL_SECRET = re.compile(
    r"(RAY_AUTH_TOKEN|PGPASSWORD|auth_token|password)[\"']?\s*[:=]\s*[\"']?(?![\"'$<{(])[\w+/=.-]{6,}",
    re.IGNORECASE,
)


def secret_problems(text: str, docs: list[Any] | None = None) -> list[str]:
    """Passwords and tokens written into a file: they belong in the environment, a token
    file or a Kubernetes Secret created out of band."""
    problems = [f"password in a URL: {m.group(0)}" for m in URL_PASSWORD.finditer(text)]
    problems += [f"literal secret: {m.group(0)}" for m in LITERAL_SECRET.finditer(text)]
    for doc in docs or []:
        if isinstance(doc, dict) and doc.get("kind") == "Secret":
            problems.append("a Secret manifest with its data: create Secrets out of band")
        for entry in _walk_env(doc):
            if entry.get("name") in {"RAY_AUTH_TOKEN", "NASFORGE_STORAGE"} and "value" in entry:
                problems.append(f"{entry['name']} has a literal value")
    return problems


def _walk_env(node: Any) -> Iterator[dict]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "env" and isinstance(value, list):
                yield from (e for e in value if isinstance(e, dict))
            else:
                yield from _walk_env(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk_env(item)


def nasforge_commands(node: Any, key: str = "") -> Iterator[list[str]]:
    """The argument lists of every `nasforge ...` the file runs: simple commands in strings
    under command keys (`*_commands`, `entrypoint`, `command`, `args`), split at ; && | etc."""
    if isinstance(node, dict):
        for k, value in node.items():
            yield from nasforge_commands(value, str(k))
    elif isinstance(node, list):
        for item in node:
            yield from nasforge_commands(item, key)
    elif isinstance(node, str) and COMMAND_KEYS.search(key):
        lexer = shlex.shlex(node, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words: list[str] = []
        for token in [*lexer, ";"]:
            if set(token) <= set("();<>|&"):
                while words and re.fullmatch(r"\w+=.*", words[0]):  # FOO=bar nasforge ...
                    words.pop(0)
                if words and (words[0] == "nasforge" or words[0].endswith("/bin/nasforge")):
                    yield words[1:]
                words = []
            else:
                words.append(token)


def cli_problems(argv: list[str]) -> list[str]:
    """Whether `nasforge ARGV` parses with the real CLI and names an existing experiment."""
    from nasforge.cli import build_parser

    parser = build_parser()
    subcommands = {
        name
        for action in parser._subparsers._group_actions  # argparse keeps them here
        for name in action.choices
    }
    if not argv or argv[0] not in subcommands:
        return [f"nasforge {shlex.join(argv)}: not a subcommand of {sorted(subcommands)}"]
    try:
        args = parser.parse_args(argv)
    except SystemExit:
        return [f"nasforge {shlex.join(argv)}: the CLI rejects these arguments"]
    experiment = getattr(args, "experiment", None)
    if experiment is None:
        return []
    relative = next(
        (experiment[len(p) :] for p in CHECKOUTS if experiment.startswith(p)), experiment
    )
    if Path(relative).is_absolute() or not (REPO / relative).is_file():
        return [f"nasforge {shlex.join(argv)}: {experiment} is not a file of this repository"]
    return []


# --- the files -----------------------------------------------------------------------------


def test_clusters_has_the_expected_files():
    names = {p.name for p in CLUSTERS.iterdir()}
    assert {*LAUNCHERS, RAYJOB, "README.md"} <= names


@pytest.mark.parametrize("name", sorted(p.name for p in CLUSTERS.glob("*.yaml")))
def test_every_yaml_parses(name):
    assert load_all(name), f"{name} is empty"


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_file_is_a_nasforge_cluster(name):
    assert launcher_problems(load(name)) == []


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_file_is_valid_for_the_installed_ray(name):
    """Ray fills in its defaults and checks its own JSON schema; a key Ray does not know,
    or a default start command binding 0.0.0.0 that slipped in, fails here."""
    pytest.importorskip("jsonschema")
    util = pytest.importorskip("ray.autoscaler._private.util")
    prepared = util.prepare_config(load(name))
    util.validate_config(prepared)
    assert "0.0.0.0" not in yaml.safe_dump(prepared)


@pytest.mark.parametrize("name", ["aws.yaml", "gcp.yaml"])
def test_cloud_files_autoscale_cpu_and_gpu_workers_from_zero(name):
    config = load(name)
    workers = [
        spec
        for type_name, spec in config["available_node_types"].items()
        if type_name != config["head_node_type"]
    ]
    assert all(spec["min_workers"] == 0 for spec in workers)
    assert {"GPU" in spec["resources"] for spec in workers} == {True, False}


def test_rayjob_enables_token_auth_from_a_secret():
    assert rayjob_problems(load_all(RAYJOB)) == []


def test_rayjob_runs_a_nasforge_experiment():
    job = load_all(RAYJOB)[0]
    commands = list(nasforge_commands(job))
    assert len(commands) == 1 and commands[0][0] == "run", commands


@pytest.mark.parametrize("name", sorted(p.name for p in CLUSTERS.iterdir() if p.is_file()))
def test_no_file_holds_a_password_or_token(name):
    text = (CLUSTERS / name).read_text()
    docs = load_all(name) if name.endswith(".yaml") else None
    assert secret_problems(text, docs) == []


@pytest.mark.parametrize("name", [*LAUNCHERS, RAYJOB])
def test_nasforge_commands_exist_in_the_cli(name):
    commands = [argv for doc in load_all(name) for argv in nasforge_commands(doc)]
    assert commands, f"{name} runs no nasforge command"
    assert [problem for argv in commands for problem in cli_problems(argv)] == []


# --- the validators complain about broken copies --------------------------------------------


def _without(*path: str) -> Callable[[dict], None]:
    def mutate(config: dict) -> None:
        node = config
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return mutate


def _set(value: Any, *path: str) -> Callable[[dict], None]:
    def mutate(config: dict) -> None:
        node = config
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def _no_gpu(config: dict) -> None:
    for spec in config["available_node_types"].values():
        spec["resources"].pop("GPU", None)


BROKEN_LAUNCHERS = {
    "no cluster_name": _without("cluster_name"),
    "no provider.type": _without("provider", "type"),
    "no available_node_types": _without("available_node_types"),
    "unknown head_node_type": _set("nope", "head_node_type"),
    "no max_workers on a worker type": _without(
        "available_node_types", "cpu_worker", "max_workers"
    ),
    "no GPU worker type": _no_gpu,
    "nasforge not installed": _set(["pip install ray"], "setup_commands"),
    "not at the locked versions": _set(["uv pip install -e ~/nasforge"], "setup_commands"),
    "another Ray than the lock's": _set(
        ['uv pip install -e ~/nasforge "ray[default]==2.0.0" -c ~/nasforge/constraints.txt'],
        "setup_commands",
    ),
    "public dashboard": _set(
        ["ray start --head --dashboard-host=0.0.0.0"], "head_start_ray_commands"
    ),
    "dashboard host left to Ray": _set(["ray start --head"], "head_start_ray_commands"),
}


@pytest.mark.parametrize("mutate", BROKEN_LAUNCHERS.values(), ids=BROKEN_LAUNCHERS.keys())
def test_launcher_validator_rejects_a_broken_copy(mutate, tmp_path):
    config = load("aws.yaml")
    mutate(config)
    broken = tmp_path / "aws.yaml"
    broken.write_text(yaml.safe_dump(config))
    assert launcher_problems(load(broken))


def test_local_validator_rejects_missing_worker_ips():
    config = load("local.yaml")
    del config["provider"]["worker_ips"]
    assert launcher_problems(config)


def _head(job: dict) -> dict:
    return job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]


def _literal_token(job: dict) -> None:
    _head(job)["env"][1] = {"name": "RAY_AUTH_TOKEN", "value": "0123456789abcdef"}


def _auth_mode_off(job: dict) -> None:
    _head(job)["env"][0] = {"name": "RAY_AUTH_MODE", "value": "disabled"}


def _worker_without_token(job: dict) -> None:
    container = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]
    container["containers"][0]["env"] = [{"name": "RAY_AUTH_MODE", "value": "token"}]


def _literal_storage(job: dict) -> None:
    _head(job)["env"][2] = {"name": "NASFORGE_STORAGE", "value": "postgresql://db/nasforge"}


BROKEN_RAYJOBS = {
    "not a RayJob": _set("RayCluster", "kind"),
    "no entrypoint": _without("spec", "entrypoint"),
    "cluster kept": _set(False, "spec", "shutdownAfterJobFinishes"),
    "token inline": _literal_token,
    "auth mode off": _auth_mode_off,
    "worker without token": _worker_without_token,
    "submitter without token": _without("spec", "submitterPodTemplate"),
    "storage inline": _literal_storage,
}


@pytest.mark.parametrize("mutate", BROKEN_RAYJOBS.values(), ids=BROKEN_RAYJOBS.keys())
def test_rayjob_validator_rejects_a_broken_copy(mutate, tmp_path):
    job = copy.deepcopy(load_all(RAYJOB)[0])
    mutate(job)
    broken = tmp_path / RAYJOB
    broken.write_text(yaml.safe_dump(job))
    assert rayjob_problems(load_all(broken))


def test_rayjob_validator_accepts_kuberay_managed_auth_naming_a_secret():
    """KubeRay >= 1.5.1 injects RAY_AUTH_MODE/RAY_AUTH_TOKEN itself from authOptions."""
    job = copy.deepcopy(load_all(RAYJOB)[0])
    spec = job["spec"]
    for template in [
        spec["rayClusterSpec"]["headGroupSpec"]["template"],
        *(g["template"] for g in spec["rayClusterSpec"]["workerGroupSpecs"]),
    ]:
        for container in template["spec"]["containers"]:
            container["env"] = [e for e in container["env"] if e["name"] == "NASFORGE_STORAGE"]
    del spec["submitterPodTemplate"]
    assert rayjob_problems([job])
    spec["rayClusterSpec"]["authOptions"] = {"mode": "token", "secretName": "nasforge-ray-token"}
    assert rayjob_problems([job]) == []


@pytest.mark.parametrize(
    "text",
    [
        "NASFORGE_STORAGE=postgresql://nasforge:hunter22@db:5432/nasforge",
        "url: mysql+pymysql://root:s3cret!@10.0.0.5/study",
        'RAY_AUTH_TOKEN: "a1b2c3d4e5f6a7b8"',
        "export RAY_AUTH_TOKEN=a1b2c3d4e5f6a7b8",
        "PGPASSWORD=correcthorse",
        "--from-literal=auth_token=a1b2c3d4e5f6",
    ],
)
def test_secret_scanner_finds_literal_secrets(text):
    assert secret_problems(text)


@pytest.mark.parametrize(
    "text",
    [
        "NASFORGE_STORAGE=postgresql://nasforge@db:5432/nasforge",
        'url="postgresql://nasforge:${DB_PASSWORD}@postgres.db.svc:5432/nasforge"',
        "export RAY_AUTH_TOKEN=$(kubectl get secret nasforge-ray-token -o jsonpath=...)",
        '--from-literal=auth_token="$(openssl rand -hex 32)"',
        "PGPASSWORD=...",
        "secretKeyRef: {name: nasforge-ray-token, key: auth_token}",
    ],
)
def test_secret_scanner_lets_references_through(text):
    assert secret_problems(text) == []


def test_secret_scanner_rejects_a_secret_manifest_and_literal_env():
    docs = [
        {"kind": "Secret", "stringData": {"auth_token": "x"}},
        {"spec": {"env": [{"name": "RAY_AUTH_TOKEN", "value": "x"}]}},
    ]
    assert len(secret_problems("", docs)) == 2


@pytest.mark.parametrize(
    "argv, ok",
    [
        (["run", "examples/cnn_digits.yaml"], True),
        (["run", "/home/ray/nasforge/examples/gnn_nasbench_cora.yaml", "--run-dir", "/x"], True),
        (["plugins"], True),
        (["fly", "examples/cnn_digits.yaml"], False),
        (["run", "examples/missing.yaml"], False),
        (["run", "/etc/passwd"], False),
        (["run", "examples/cnn_digits.yaml", "--no-such-flag"], False),
    ],
)
def test_cli_check(argv, ok):
    assert (cli_problems(argv) == []) is ok


def test_command_finder_reads_shell_lines():
    config = {
        "setup_commands": [
            "cd ~/nasforge && FOO=1 nasforge validate examples/cnn_digits.yaml; ls",
            "~/.local/bin/uv pip install -e ~/nasforge",  # a path, not the program
            "nasforge plugins > /dev/null",
        ],
        "entrypoint": "~/venv/bin/nasforge run x.yaml --run-dir /shared/r",
        "comment": "nasforge run ignored.yaml",  # not a command key
    }
    assert list(nasforge_commands(config)) == [
        ["validate", "examples/cnn_digits.yaml"],
        ["plugins"],
        ["run", "x.yaml", "--run-dir", "/shared/r"],
    ]
