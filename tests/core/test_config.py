"""The experiment file's contract: what validates, and the one line a user reads when not.

``load_plan(path)`` reads YAML, checks its shape and types (:class:`Experiment`), binds every
name to an installed plugin, validates each plugin's ``options`` against the plugin's own
``Options`` model and checks that the pieces fit. Anything wrong raises :class:`ConfigError`
whose text is exactly ``<file>: <yaml.path>: <message>`` on a single line; ``nasforge
validate`` prints it as ``error: ...`` and exits with status 2.

Each malformed experiment below is the valid example (``examples/gnn_nasbench_cora.yaml``)
with one field changed, or a small YAML text, next to the exact message it must produce.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from pydantic import BaseModel, ConfigDict

from nasforge import (
    Categorical,
    ConfigError,
    Estimator,
    Hardware,
    IntRange,
    Metric,
    Objective,
    PluginError,
    SearchSpace,
    Strategy,
    hookimpl,
)
from nasforge.cli import main
from nasforge.experiment import Constraint, Experiment, load_experiment
from nasforge.plan import load_plan, resolve
from nasforge.plugins import build_registry

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gnn_nasbench_cora.yaml"
STRATEGIES = "ehvi, gp, linas, nsga2, nsga3, random, tpe"
GNN_METRICS = "latency_ms, params_m, test_acc, valid_acc"
EXPERIMENT_FIELDS = ", ".join(sorted(Experiment.model_fields))
DELETE = object()


def example() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text())


def edited(*edits: tuple[str, Any]) -> dict[str, Any]:
    """The valid example with each ``(yaml.path, value)`` set (``DELETE`` removes the field)."""
    data = example()
    for path, value in edits:
        parts = [
            int(p[1:-1]) if p.startswith("[") else p for p in re.findall(r"\[\d+\]|[^.\[]+", path)
        ]
        parent = data
        for part in parts[:-1]:
            parent = parent[part]
        if value is DELETE:
            del parent[parts[-1]]
        else:
            parent[parts[-1]] = copy.deepcopy(value)
    return data


def write(tmp_path: Path, source: str | dict[str, Any]) -> Path:
    path = tmp_path / "experiment.yaml"
    path.write_text(source if isinstance(source, str) else yaml.safe_dump(source, sort_keys=False))
    return path


def config_error(path: Path, **kwargs: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_plan(path, **kwargs)
    return info.value


# -- a third-party plugin providing components that do not fit the example ----------------


class TinySpace(SearchSpace):
    """A two-dimension space that only the toy estimators understand."""

    def __init__(self) -> None:
        super().__init__([Categorical("act", ["relu", "gelu"]), IntRange("width", 8, 32, step=8)])


class _OneMetric(Estimator):
    metric = Metric("tiny_score", better="maximize")

    def __init__(self, space, **options):
        super().__init__(space, **options)
        self.metrics = {self.metric.name: self.metric}

    def evaluate(self, arch, context):
        return dict.fromkeys(self.metrics, 0.0)


class TinyOnlyAccuracy(_OneMetric):
    """Understands TinySpace archs only."""

    space_types = (TinySpace,)


class SupernetAccuracy(_OneMetric):
    """Reads trained supernet weights."""

    metric = Metric("supernet_acc", better="maximize")
    requires_supernet = True


class PickyEstimator(_OneMetric):
    """Rejects odd widths in its constructor, after its Options model accepted the type."""

    metric = Metric("picky_score", better="maximize")

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        width: int = 4

    def __init__(self, space, width: int = 4):
        if width % 2:
            raise ValueError(f"width must be even, got {width}")
        super().__init__(space, width=width)


class CrashingEstimator(_OneMetric):
    """A plugin bug: its constructor fails for a reason that is not the user's options."""

    def __init__(self, space, **options):
        raise RuntimeError("cannot open model zoo")


class EnergyModel(Hardware):
    """A metric with no natural direction: the objective must say which way is better."""

    def __init__(self, space, **options):
        super().__init__(space, **options)
        self.metrics = {"energy_mj": Metric("energy_mj", "mJ")}

    def measure(self, arch, subnet, context):
        return {"energy_mj": 1.0}


class ValidAccTable(Hardware):
    """Claims a metric the gnn estimator already produces."""

    def __init__(self, space, **options):
        super().__init__(space, **options)
        self.metrics = {"valid_acc": Metric("valid_acc", better="maximize")}

    def measure(self, arch, subnet, context):
        return {"valid_acc": 0.5}


class HillClimb(Strategy):
    """A single-objective strategy."""

    multi_objective = False

    def sampler(self, space, objectives, seed):
        return optuna.samplers.RandomSampler(seed=seed)


class ToyPlugin:
    @hookimpl
    def register_spaces(self, register):
        register("toy.tiny", TinySpace)
        register("toy.not_a_space", dict)

    @hookimpl
    def register_estimators(self, register):
        register("toy.tiny_accuracy", TinyOnlyAccuracy)
        register("toy.supernet_accuracy", SupernetAccuracy)
        register("toy.picky", PickyEstimator)
        register("toy.crashing", CrashingEstimator)

    @hookimpl
    def register_hardware(self, register):
        register("toy.energy", EnergyModel)
        register("toy.valid_acc_table", ValidAccTable)

    @hookimpl
    def register_strategies(self, register):
        register("toy.hill_climb", HillClimb)


@pytest.fixture(scope="module")
def toy_registry():
    """The installed plugins plus the toy plugin, registered under the name 'toy'."""
    return build_registry(extra_plugins=[("toy", ToyPlugin())])


# -- the valid example ---------------------------------------------------------------------


def test_the_example_resolves_to_a_plan():
    plan = load_plan(EXAMPLE)
    assert plan.experiment.name == "gnn_nasbench_cora"
    assert plan.space.cardinality() == 9 * 9**4
    assert plan.objectives == [
        Objective("valid_acc", "maximize"),
        Objective("latency_ms", "minimize"),
    ]
    assert sorted(plan.metrics) == GNN_METRICS.split(", ")
    assert plan.metrics["latency_ms"].label == "latency_ms [ms]"
    assert plan.producers == {
        "valid_acc": "estimators[0] ('gnn.nasbench_graph')",
        "test_acc": "estimators[0] ('gnn.nasbench_graph')",
        "latency_ms": "hardware[0] ('gnn.nasbench_graph')",
        "params_m": "hardware[0] ('gnn.nasbench_graph')",
    }
    assert plan.constraints == []
    assert plan.experiment.search.options == {"population_size": 50}
    assert plan.experiment.resolved_run_dir == Path("runs") / "gnn_nasbench_cora"


def test_the_run_directory_is_run_dir_else_under_nasforge_run_root_else_runs(monkeypatch):
    monkeypatch.delenv("NASFORGE_RUN_ROOT", raising=False)
    experiment = load_plan(EXAMPLE).experiment
    assert experiment.resolved_run_dir == Path("runs") / "gnn_nasbench_cora"
    monkeypatch.setenv("NASFORGE_RUN_ROOT", "/shared/runs")  # a cluster's shared folder
    assert experiment.resolved_run_dir == Path("/shared/runs/gnn_nasbench_cora")
    pinned = experiment.model_copy(update={"run_dir": "/data/cora"})
    assert pinned.resolved_run_dir == Path("/data/cora")  # the experiment's own choice wins


def test_defaults_of_optional_search_fields(tmp_path):
    data = edited(("search", {"n_trials": 5}))
    search = load_experiment(write(tmp_path, data)).search
    assert search.strategy == "nsga2"
    assert (search.seed, search.concurrency, search.max_retries) == (0, 1, 2)
    assert search.batch_size is None  # adaptive
    assert (search.resources_per_trial.cpu, search.resources_per_trial.gpu) == (1.0, 0.0)
    assert search.storage is None and search.max_failed_trials is None


def test_an_objective_without_direction_takes_the_metrics_natural_one(tmp_path):
    data = edited(("objectives", [{"metric": "params_m"}, {"metric": "test_acc"}]))
    plan = load_plan(write(tmp_path, data))
    assert plan.objectives == [Objective("params_m", "minimize"), Objective("test_acc", "maximize")]


def test_an_explicit_direction_overrides_the_natural_one(tmp_path):
    data = edited(("objectives", [{"metric": "params_m", "direction": "maximize"}]))
    assert load_plan(write(tmp_path, data)).objectives == [Objective("params_m", "maximize")]


@pytest.mark.parametrize(
    "storage",
    ["sqlite:///study.db", "postgresql+psycopg2://nas@db:5432/studies", "journal:study.log"],
)
def test_storage_accepts_rdb_urls_and_journal_files(tmp_path, storage):
    data = edited(("search.storage", storage))
    assert load_experiment(write(tmp_path, data)).search.storage == storage


def test_constraints_are_parsed_onto_the_plan(tmp_path):
    data = edited(("constraints", ["latency_ms < 5", "valid_acc>=0.8", "params_m <= 1e-1"]))
    plan = load_plan(write(tmp_path, data))
    assert plan.constraints == [
        Constraint("latency_ms", "<", 5.0),
        Constraint("valid_acc", ">=", 0.8),
        Constraint("params_m", "<=", 0.1),
    ]


# -- malformed experiments: one exact line each -------------------------------------------

MALFORMED = [
    # the file itself
    pytest.param(
        "name: demo\nspace:\n  name: gnn.nasbench_graph\n   options: {}\n",
        "invalid YAML at line 4, column 11: mapping values are not allowed here",
        id="yaml-bad-indent",
    ),
    pytest.param(
        "name: demo\nspace:\n\tname: gnn.nasbench_graph\n",
        "invalid YAML at line 3, column 1: found character '\\t' that cannot start any token",
        id="yaml-tab",
    ),
    pytest.param(
        "- name: demo\n- n_trials: 3\n",
        "expected a mapping of experiment fields, got list",
        id="top-level-list",
    ),
    pytest.param(
        "gnn_nasbench_cora\n",
        "expected a mapping of experiment fields, got str",
        id="top-level-scalar",
    ),
    # shape: required, unknown and mistyped fields
    pytest.param(
        edited(("search.n_trials", DELETE)),
        "search.n_trials: required field is missing",
        id="missing-n_trials",
    ),
    pytest.param(
        edited(("estimators", DELETE)),
        "estimators: required field is missing",
        id="missing-estimators",
    ),
    pytest.param(
        edited(("objective", [{"metric": "valid_acc"}])),
        f"objective: unknown field (expected one of: {EXPERIMENT_FIELDS})",
        id="unknown-top-level-field",
    ),
    pytest.param(
        edited(("search.trials", 300)),
        "search.trials: unknown field (expected one of: batch_size, concurrency, initial_archs, "
        "max_failed_trials, max_retries, n_trials, options, resources_per_trial, seed, storage, strategy, study_name)",
        id="unknown-search-field",
    ),
    pytest.param(
        edited(("objectives[1].goal", "minimize")),
        "objectives[1].goal: unknown field (expected one of: direction, metric)",
        id="unknown-field-in-list-item",
    ),
    pytest.param(
        edited(("search.resources_per_trial.tpu", 1)),
        "search.resources_per_trial.tpu: unknown field (expected one of: cpu, gpu)",
        id="unknown-nested-field",
    ),
    pytest.param(
        edited(("search.n_trials", "many")),
        "search.n_trials: expected an integer, got 'many'",
        id="n_trials-not-a-number",
    ),
    pytest.param(
        edited(("search.n_trials", 2.5)),
        "search.n_trials: expected an integer, got 2.5",
        id="n_trials-fractional",
    ),
    pytest.param(
        edited(("estimators", "gnn.nasbench_graph")),
        "estimators: expected a list, got 'gnn.nasbench_graph'",
        id="estimators-not-a-list",
    ),
    pytest.param(
        edited(("objectives", ["valid_acc"])),
        "objectives[0]: expected a mapping, got 'valid_acc'",
        id="objective-not-a-mapping",
    ),
    pytest.param(edited(("name", 42)), "name: expected a string, got 42", id="name-not-a-string"),
    pytest.param(
        edited(("space.options", ["cora"])),
        "space.options: expected a mapping, got ['cora']",
        id="options-not-a-mapping",
    ),
    # values out of range
    pytest.param(
        edited(("search.n_trials", 0)), "search.n_trials: must be >= 1, got 0", id="n_trials-0"
    ),
    pytest.param(
        edited(("search.concurrency", 0)),
        "search.concurrency: must be >= 1, got 0",
        id="concurrency-0",
    ),
    pytest.param(
        edited(("search.resources_per_trial.cpu", 0)),
        "search.resources_per_trial.cpu: must be > 0.0, got 0",
        id="cpu-0",
    ),
    pytest.param(
        edited(("search.max_retries", -1)),
        "search.max_retries: must be >= 0, got -1",
        id="retries-negative",
    ),
    pytest.param(
        edited(("objectives[0].direction", "max")),
        "objectives[0].direction: expected 'maximize' or 'minimize', got 'max'",
        id="direction-literal",
    ),
    pytest.param(
        edited(("name", "my experiment")),
        "name: expected letters, digits, '_', '.' or '-', got 'my experiment'",
        id="name-pattern",
    ),
    pytest.param(
        edited(("search.storage", "study.db")),
        "search.storage: expected an RDB URL (sqlite:///PATH, postgresql://HOST/DB, mysql://…) "
        "or journal:PATH, got 'study.db'",
        id="storage-url",
    ),
    pytest.param(
        edited(("search.storage", "postgresql://nas:s3cret@db:5432/studies")),
        "search.storage: a password does not belong in an experiment file: leave it out of "
        "the URL and give it through the environment (NASFORGE_STORAGE, or PGPASSWORD for "
        "PostgreSQL)",
        id="storage-password",
    ),
    pytest.param(
        edited(("estimators", [])),
        "estimators: expected at least 1 entry, got none",
        id="estimators-empty",
    ),
    pytest.param(
        edited(("objectives", [])),
        "objectives: expected at least 1 entry, got none",
        id="objectives-empty",
    ),
    # names that no installed plugin registered
    pytest.param(
        edited(("search.strategy", "nsga4")),
        f"search.strategy: unknown strategy 'nsga4' (available: {STRATEGIES})",
        id="unknown-strategy",
    ),
    pytest.param(
        edited(("space.name", "gnn.nasbench")),
        "space.name: unknown space 'gnn.nasbench' (available: cnn.mobilenetv3, cnn.resnet, gnn.nasbench_graph, llm.llama, tdnn.ecapa)",
        id="unknown-space",
    ),
    pytest.param(
        edited(("estimators[0].name", "gnn.accuracy")),
        "estimators[0].name: unknown estimator 'gnn.accuracy' (available: cnn.accuracy, gnn.nasbench_graph, llm.multiple_choice, llm.perplexity, tdnn.eer)",
        id="unknown-estimator",
    ),
    pytest.param(
        edited(("hardware[0].name", "hw.jetson")),
        "hardware[0].name: unknown hardware 'hw.jetson' (available: gnn.nasbench_graph, hw.latency, hw.latency_lut, hw.macs, hw.memory, llm.memory, llm.throughput)",
        id="unknown-hardware",
    ),
    pytest.param(
        edited(("train", {"trainer": "sandwich"})),
        "train.trainer: unknown trainer 'sandwich' (available: cnn.progressive, cnn.sandwich, llm.lora_sandwich, llm.qfa, tdnn.progressive)",
        id="unknown-trainer",
    ),
    # plugin options, validated against each plugin's own Options model
    pytest.param(
        edited(("space.options.dataset", "imagenet")),
        "space.options.dataset: expected 'cora', 'citeseer', 'pubmed', 'cs', 'physics', 'photo', "
        "'computers', 'arxiv' or 'proteins', got 'imagenet'",
        id="space-option-value",
    ),
    pytest.param(
        edited(("space.options", {"datset": "cora"})),
        "space.options.datset: unknown field (expected one of: dataset)",
        id="space-option-unknown",
    ),
    pytest.param(
        edited(("search.options.population_size", 1)),
        "search.options.population_size: must be >= 2, got 1",
        id="strategy-option-range",
    ),
    pytest.param(
        edited(("search.options", {"pop_size": 10})),
        "search.options.pop_size: unknown field (expected one of: crossover_prob, mutation_prob, "
        "population_size, swapping_prob)",
        id="strategy-option-unknown",
    ),
    pytest.param(
        edited(("search.strategy", "tpe"), ("search.options", {"multivariate": "maybe"})),
        "search.options.multivariate: expected true or false, got 'maybe'",
        id="strategy-option-type",
    ),
    pytest.param(
        edited(("estimators[0].options", {"dataset": "citeseer"})),
        "estimators[0].options: estimator 'gnn.nasbench_graph' rejected its options: "
        "dataset 'citeseer' differs from the space's dataset 'cora'",
        id="estimator-option-conflict",
    ),
    # the pieces must fit together
    pytest.param(
        edited(("objectives[0].metric", "accuracy")),
        f"objectives[0].metric: no estimator or hardware model produces 'accuracy' (available: {GNN_METRICS})",
        id="objective-metric-not-produced",
    ),
    pytest.param(
        edited(("objectives[1]", {"metric": "valid_acc", "direction": "minimize"})),
        "objectives[1].metric: 'valid_acc' is listed twice",
        id="objective-twice",
    ),
    pytest.param(
        edited(("estimators", [{"name": "gnn.nasbench_graph"}, {"name": "gnn.nasbench_graph"}])),
        "estimators[1].name: metric 'valid_acc' is produced twice: by estimators[0] "
        "('gnn.nasbench_graph') and by estimators[1] ('gnn.nasbench_graph')",
        id="metric-produced-twice",
    ),
    # constraints
    pytest.param(
        edited(("constraints", ["latency_ms = 5"])),
        "constraints[0]: expected 'METRIC <= NUMBER' or 'METRIC >= NUMBER', got 'latency_ms = 5'",
        id="constraint-syntax",
    ),
    pytest.param(
        edited(("constraints", ["latency_ms <= 5", "params_m <= small"])),
        "constraints[1]: expected a number after '<=', got 'small'",
        id="constraint-bound-not-a-number",
    ),
    pytest.param(
        edited(("constraints", ["latency_ms <= inf"])),
        "constraints[0]: expected a finite bound, got 'inf'",
        id="constraint-bound-infinite",
    ),
    pytest.param(
        edited(("constraints", ["energy_mj <= 5"])),
        f"constraints[0]: no estimator or hardware model produces 'energy_mj' (available: {GNN_METRICS})",
        id="constraint-metric-not-produced",
    ),
]


@pytest.mark.parametrize(("source", "expected"), MALFORMED)
def test_malformed_experiment_fails_with_one_exact_line(tmp_path, source, expected):
    path = write(tmp_path, source)
    error = config_error(path)
    assert str(error) == f"{path}: {expected}"
    assert "\n" not in str(error)
    assert error.file == str(path)


def test_the_yaml_path_is_available_apart_from_the_message(tmp_path):
    error = config_error(write(tmp_path, edited(("objectives[0].direction", "max"))))
    assert error.path == "objectives[0].direction"
    assert error.message == "expected 'maximize' or 'minimize', got 'max'"


def test_an_unreadable_file_is_named(tmp_path):
    path = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError) as info:
        load_plan(path)
    assert str(info.value) == f"{path}: cannot read experiment file: No such file or directory"


def test_an_empty_file_says_so(tmp_path):
    path = write(tmp_path, "# nothing yet\n")
    assert (
        str(config_error(path))
        == f"{path}: the file is empty: expected a mapping of experiment fields"
    )


def test_a_boolean_is_not_a_trial_count(tmp_path):
    path = write(tmp_path, edited(("search.n_trials", True)))
    assert str(config_error(path)) == f"{path}: search.n_trials: expected an integer, got True"


def test_a_key_given_twice_is_rejected(tmp_path):
    text = EXAMPLE.read_text() + "search: {strategy: random, n_trials: 5}\n"
    path = write(tmp_path, text)
    line = text.count("\n")
    assert str(config_error(path)) == (
        f"{path}: invalid YAML at line {line}, column 1: duplicate key 'search'"
    )


# -- components that exist but do not fit (a third-party plugin) --------------------------

PLUGIN_FIT = [
    pytest.param(
        edited(("search.strategy", "nsga4")),
        "search.strategy: unknown strategy 'nsga4' (available: ehvi, gp, linas, nsga2, nsga3, random, toy.hill_climb, tpe)",
        id="third-party-names-are-listed",
    ),
    pytest.param(
        edited(("estimators", [{"name": "gnn.nasbench_graph"}, {"name": "toy.tiny_accuracy"}])),
        "estimators[1].name: estimator 'toy.tiny_accuracy' does not support space NasBenchGraphSpace "
        "(it supports: TinySpace)",
        id="estimator-incompatible-with-space",
    ),
    pytest.param(
        edited(("estimators", [{"name": "gnn.nasbench_graph"}, {"name": "toy.supernet_accuracy"}])),
        "estimators[1].name: estimator 'toy.supernet_accuracy' needs a trained supernet: "
        "add a 'train' section",
        id="needs-supernet-without-train",
    ),
    pytest.param(
        edited(
            (
                "estimators",
                [{"name": "gnn.nasbench_graph"}, {"name": "toy.picky", "options": {"width": 3}}],
            )
        ),
        "estimators[1].options: estimator 'toy.picky' rejected its options: width must be even, got 3",
        id="factory-rejects-options",
    ),
    pytest.param(
        edited(
            (
                "estimators",
                [{"name": "gnn.nasbench_graph"}, {"name": "toy.picky", "options": {"depth": 3}}],
            )
        ),
        "estimators[1].options.depth: unknown field (expected one of: width)",
        id="third-party-options-model",
    ),
    pytest.param(
        edited(("hardware", [{"name": "gnn.nasbench_graph"}, {"name": "toy.valid_acc_table"}])),
        "hardware[1].name: metric 'valid_acc' is produced twice: by estimators[0] "
        "('gnn.nasbench_graph') and by hardware[1] ('toy.valid_acc_table')",
        id="metric-produced-by-estimator-and-hardware",
    ),
    pytest.param(
        edited(
            ("hardware", [{"name": "gnn.nasbench_graph"}, {"name": "toy.energy"}]),
            ("objectives", [{"metric": "valid_acc"}, {"metric": "energy_mj"}]),
        ),
        "objectives[1].direction: metric 'energy_mj' has no natural direction: set maximize or minimize",
        id="objective-without-any-direction",
    ),
    pytest.param(
        edited(("search.strategy", "toy.hill_climb"), ("search.options", {})),
        "search.strategy: strategy 'toy.hill_climb' handles one objective, but 2 are given",
        id="single-objective-strategy",
    ),
]


@pytest.mark.parametrize(("source", "expected"), PLUGIN_FIT)
def test_components_that_do_not_fit_fail_with_one_exact_line(
    tmp_path, toy_registry, source, expected
):
    path = write(tmp_path, source)
    error = config_error(path, reg=toy_registry)
    assert str(error) == f"{path}: {expected}"
    assert "\n" not in str(error)


def test_a_fitting_third_party_component_resolves(tmp_path, toy_registry):
    data = edited(
        ("hardware", [{"name": "gnn.nasbench_graph"}, {"name": "toy.energy"}]),
        ("objectives", [{"metric": "valid_acc"}, {"metric": "energy_mj", "direction": "minimize"}]),
    )
    plan = resolve(load_experiment(write(tmp_path, data)), reg=toy_registry)
    assert plan.objectives[1] == Objective("energy_mj", "minimize")
    assert plan.producers["energy_mj"] == "hardware[1] ('toy.energy')"


def test_a_plugin_crashing_while_built_is_a_plugin_error_naming_it(tmp_path, toy_registry):
    data = edited(("estimators", [{"name": "gnn.nasbench_graph"}, {"name": "toy.crashing"}]))
    with pytest.raises(PluginError) as info:
        load_plan(write(tmp_path, data), reg=toy_registry)
    assert str(info.value) == (
        "estimator 'toy.crashing' from plugin toy raised while being built: "
        "RuntimeError: cannot open model zoo"
    )
    assert isinstance(info.value.__cause__, RuntimeError)


def test_a_space_factory_returning_something_else_names_the_plugin(tmp_path, toy_registry):
    data = edited(("space", {"name": "toy.not_a_space"}))
    with pytest.raises(
        PluginError, match=r"space 'toy\.not_a_space' from plugin toy .*SearchSpace"
    ):
        load_plan(write(tmp_path, data), reg=toy_registry)


# -- the CLI: `nasforge validate` ----------------------------------------------------------


@pytest.fixture
def cli_env(monkeypatch):
    """`main()` sets RAY_DEDUP_LOGS with setdefault; restore the environment afterwards."""
    monkeypatch.setenv("RAY_DEDUP_LOGS", "0")


def test_validate_prints_a_summary_and_exits_0(capsys, cli_env):
    assert main(["validate", str(EXAMPLE)]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == f"{EXAMPLE}: ok"
    assert "  space      gnn.nasbench_graph (59,049 archs)" in lines
    assert "  objectives maximize valid_acc, minimize latency_ms" in lines
    assert "  search     nsga2, 300 trials, 2 concurrent, batches of 10" in lines
    assert f"  run dir    {Path('runs') / 'gnn_nasbench_cora'}" in lines
    assert err == ""


def test_validate_lists_constraints(tmp_path, capsys, cli_env):
    path = write(tmp_path, edited(("constraints", ["latency_ms <= 2.5", "valid_acc > 0.8"])))
    assert main(["validate", str(path)]) == 0
    assert (
        "  constraints latency_ms <= 2.5, valid_acc > 0.8" in capsys.readouterr().out.splitlines()
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            edited(("search.strategy", "nsga4")),
            f"search.strategy: unknown strategy 'nsga4' (available: {STRATEGIES})",
        ),
        (
            "name: demo\nspace:\n\tname: x\n",
            "invalid YAML at line 3, column 1: found character '\\t' that cannot start any token",
        ),
    ],
    ids=["unknown-strategy", "invalid-yaml"],
)
def test_validate_prints_one_error_line_and_exits_2(tmp_path, capsys, cli_env, source, expected):
    path = write(tmp_path, source)
    assert main(["validate", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"error: {path}: {expected}\n"


# -- constraints ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("latency_ms <= 5", Constraint("latency_ms", "<=", 5.0)),
        ("latency_ms<5", Constraint("latency_ms", "<", 5.0)),
        ("  valid_acc >= 0.75 ", Constraint("valid_acc", ">=", 0.75)),
        ("hw.params_m > -1e-3", Constraint("hw.params_m", ">", -0.001)),
    ],
)
def test_constraint_parsing(text, parsed):
    assert Constraint.parse(text) == parsed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "latency_ms == 5",
            "expected 'METRIC <= NUMBER' or 'METRIC >= NUMBER', got 'latency_ms == 5'",
        ),
        (
            "5 >= latency_ms",
            "expected 'METRIC <= NUMBER' or 'METRIC >= NUMBER', got '5 >= latency_ms'",
        ),
        (
            "latency_ms <= 5 ms",
            "expected 'METRIC <= NUMBER' or 'METRIC >= NUMBER', got 'latency_ms <= 5 ms'",
        ),
        ("latency_ms <= 5ms", "expected a number after '<=', got '5ms'"),
        ("latency_ms >= nan", "expected a finite bound, got 'nan'"),
    ],
)
def test_constraint_syntax_errors(text, message):
    with pytest.raises(ValueError) as info:
        Constraint.parse(text)
    assert str(info.value) == message


def test_constraint_prints_as_written():
    assert str(Constraint.parse("latency_ms<=2.50")) == "latency_ms <= 2.5"


@pytest.mark.parametrize(
    ("text", "value", "feasible"),
    [
        ("latency_ms <= 5", 4.0, True),
        ("latency_ms <= 5", 5.0, True),
        ("latency_ms <= 5", 6.5, False),
        ("latency_ms < 5", 4.0, True),
        ("latency_ms < 5", 6.5, False),
        pytest.param("latency_ms < 5", 5.0, False, id="latency_ms < 5-5.0-strict"),
        ("valid_acc >= 0.75", 0.8, True),
        ("valid_acc >= 0.75", 0.75, True),
        ("valid_acc >= 0.75", 0.5, False),
        ("valid_acc > 0.75", 0.8, True),
        ("valid_acc > 0.75", 0.5, False),
        pytest.param(
            "valid_acc > 0.75",
            0.75,
            False,
            id="valid_acc > 0.75-0.75-strict",
        ),
    ],
)
def test_violation_is_at_most_zero_exactly_when_feasible(text, value, feasible):
    assert (Constraint.parse(text).violation(value) <= 0) is feasible


@pytest.mark.parametrize(
    ("text", "value", "violation"),
    [
        ("latency_ms <= 5", 7.0, 2.0),
        ("latency_ms <= 5", 4.0, -1.0),
        ("latency_ms < 5", 7.0, 2.0),
        ("valid_acc >= 0.5", 0.25, 0.25),
        ("valid_acc >= 0.5", 0.75, -0.25),
        ("valid_acc > 0.5", 0.25, 0.25),
    ],
)
def test_violation_is_the_distance_on_the_wrong_side(text, value, violation):
    assert Constraint.parse(text).violation(value) == pytest.approx(violation)


# -- secrets, duplicates and reserved names --------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://nas:s3cret@db:5432/studies",
        "postgresql://nas@db/studies?password=s3cret",
        "mysql+pymysql://nas@db/studies?sslpassword=s3cret",
    ],
)
def test_a_password_in_the_storage_url_is_refused_without_echoing_it(tmp_path, url):
    message = str(config_error(write(tmp_path, edited(("search.storage", url)))))
    assert "search.storage: a password does not belong in an experiment file" in message
    assert "s3cret" not in message


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://nas:s3cret@db:5432/s", "postgresql://nas:***@db:5432/s"),
        (
            "postgresql://nas@db/s?sslmode=require&password=s3cret",
            "postgresql://nas@db/s?sslmode=require&password=***",
        ),
        ("sqlite:////runs/x/study.db", "sqlite:////runs/x/study.db"),
    ],
)
def test_printed_storage_urls_hide_passwords(url, masked):
    from nasforge.engine.storage import mask_url

    assert mask_url(url) == masked


def test_a_constraint_listed_twice_is_refused(tmp_path):
    data = edited(("constraints", ["latency_ms <= 5", "latency_ms<=5.0"]))
    assert str(config_error(write(tmp_path, data))).endswith(
        "constraints[1]: 'latency_ms <= 5' is listed twice"
    )


def test_close_bounds_keep_distinct_names():
    assert str(Constraint.parse("params_m <= 0.1234567")) != str(
        Constraint.parse("params_m <= 0.1234568")
    )


def test_a_yaml_key_that_is_not_a_plain_value_is_one_line(tmp_path):
    path = write(tmp_path, "name: x\n? [a, b]\n: 1\n")
    message = str(config_error(path))
    assert message.startswith(f"{path}: invalid YAML at line 2") and "\n" not in message
    assert "a key must be a plain value, got list" in message


class _ReservedMetric(Estimator):
    """Produces a metric named like an engine attribute."""

    def __init__(self, space, **options):
        super().__init__(space, **options)
        self.metrics = {"error": Metric("error", better="minimize")}

    def evaluate(self, arch, context):
        return {"error": 0.0}


class _ReservedPlugin:
    @hookimpl
    def register_estimators(self, register):
        register("toy.reserved", _ReservedMetric)


def test_a_metric_named_like_an_engine_attribute_is_refused_at_validation(tmp_path):
    reg = build_registry([("reserved", _ReservedPlugin())])
    data = edited(("estimators", [{"name": "gnn.nasbench_graph"}, {"name": "toy.reserved"}]))
    with pytest.raises(PluginError, match="produces a metric named 'error', which is reserved"):
        load_plan(write(tmp_path, data), reg=reg)


def test_an_installed_plugin_module_may_also_be_listed_under_plugins(tmp_path):
    data = edited(("plugins", ["nasforge_gnn.plugin"]))
    plan = load_plan(write(tmp_path, data))
    assert plan.space.dataset == "cora"
