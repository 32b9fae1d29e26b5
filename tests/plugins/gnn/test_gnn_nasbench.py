"""The NAS-Bench-Graph plugin against the benchmark itself: hashing, tables, look-ups.

- **Canonicalisation.** Every arch of the space (9 link patterns x 4 ops) hashes exactly as
  the benchmark's own ``nas_bench_graph.Arch(link, ops).valid_hash()``; every arch but the
  all-skip one has a row in the table; the space's ``key`` groups archs exactly as the hash
  does, so equivalent archs are evaluated once.
- **Tables.** The 9 bundled tables load through the restricted unpickler as plain
  ``int -> {metric: float}`` dicts with the sizes and best accuracies the benchmark reports.
- **Tampered files.** Anything that is not a plain table (code to run, other globals, the
  wrong shape, a damaged or missing file) is refused with a :class:`BenchFileError` naming
  the file; a user's own plain ``.bench`` file is read through the ``bench_file`` option.
- **Look-ups.** The estimator and the cost model return the table row of the arch's
  canonical hash, in the units their metrics declare.
"""

from __future__ import annotations

import itertools
import os
import pickle
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from nas_bench_graph import Arch

from nasforge import ArchError, ConfigError, EvalContext
from nasforge.experiment import parse_experiment
from nasforge.plan import resolve
from nasforge_gnn import nasbench_graph as nbg
from nasforge_gnn.nasbench_graph import BenchFileError
from nasforge_gnn.plugin import NasBenchGraphAccuracy, NasBenchGraphCost, NasBenchGraphSpace

#: archs per table, as published with the benchmark
TABLE_SIZE = {"cora": 26_206, "proteins": 2_021}
#: best test accuracy per dataset, as published with the benchmark (REFERENCES.md)
BEST_TEST_ACC = {"cora": 0.8313, "citeseer": 0.7157, "pubmed": 0.7860}
METRIC_FIELDS = {"valid_perf", "perf", "latency", "para"}


def arch(link, ops) -> dict:
    return {"link": list(link), "ops": list(ops)}


def is_all_skip(ops) -> bool:
    return set(ops) == {"skip"}


# -- canonicalisation ------------------------------------------------------------------


class Enumeration:
    """Every arch of one dataset's space with our hash and the benchmark's."""

    def __init__(self, dataset: str):
        self.dataset = dataset
        self.space = NasBenchGraphSpace(dataset)
        self.table = nbg.load_table(dataset)
        self.archs: list[tuple[tuple[int, ...], tuple[str, ...]]] = [
            (link, ops) for link in nbg.LINKS for ops in itertools.product(self.space.ops, repeat=4)
        ]
        self.ours = [self.space.bench_hash(arch(link, ops)) for link, ops in self.archs]
        self.theirs = [Arch(list(link), list(ops)).valid_hash() for link, ops in self.archs]
        self.classes: dict[int, list[int]] = defaultdict(list)  # hash -> indices into archs
        for i, h in enumerate(self.theirs):
            self.classes[h].append(i)


@pytest.fixture(scope="module", params=["cora", "proteins"])
def enumeration(request) -> Enumeration:
    return Enumeration(request.param)


def test_the_space_enumerates_9_links_times_every_op_tuple(enumeration):
    n_ops = len(enumeration.space.ops)
    assert len(enumeration.archs) == 9 * n_ops**4 == enumeration.space.cardinality()
    assert len(set(enumeration.archs)) == len(enumeration.archs)


def test_bench_hash_is_the_benchmarks_valid_hash_for_every_arch(enumeration):
    wrong = [
        (enumeration.archs[i], ours, theirs)
        for i, (ours, theirs) in enumerate(zip(enumeration.ours, enumeration.theirs, strict=True))
        if ours != theirs
    ]
    assert not wrong, f"{len(wrong)} archs hash differently from the benchmark, e.g. {wrong[:3]}"


def test_every_arch_but_all_skip_has_a_table_row(enumeration):
    missing = [
        enumeration.archs[i]
        for i, h in enumerate(enumeration.ours)
        if h not in enumeration.table and not is_all_skip(enumeration.archs[i][1])
    ]
    assert not missing, f"{len(missing)} archs have no table row, e.g. {missing[:3]}"
    all_skip = {
        h
        for (_, ops), h in zip(enumeration.archs, enumeration.ours, strict=True)
        if is_all_skip(ops)
    }
    assert len(all_skip) == 1, "the 9 all-skip archs are one network (the identity)"
    assert all_skip.isdisjoint(enumeration.table)


def test_distinct_hashes_are_the_table_plus_the_all_skip_arch(enumeration):
    assert len(enumeration.table) == TABLE_SIZE[enumeration.dataset]
    assert len(set(enumeration.ours)) == TABLE_SIZE[enumeration.dataset] + 1
    assert set(enumeration.table) <= set(enumeration.ours), "every table row is reachable"


def test_key_is_equal_exactly_when_the_hash_is(enumeration):
    space, archs = enumeration.space, enumeration.archs
    rng = random.Random(0)
    key = lambda i: space.key(arch(*archs[i]))  # noqa: E731
    # same class: two random members of 300 random classes that have several
    shared = [members for members in enumeration.classes.values() if len(members) > 1]
    for members in rng.sample(shared, 300):
        i, j = rng.sample(members, 2)
        assert key(i) == key(j), (archs[i], archs[j])
    # different classes: 300 random pairs whose hashes differ
    checked = 0
    while checked < 300:
        i, j = rng.randrange(len(archs)), rng.randrange(len(archs))
        if enumeration.theirs[i] != enumeration.theirs[j]:
            assert key(i) != key(j), (archs[i], archs[j])
            checked += 1


EQUIVALENT = [
    # four parallel nodes on the input: any order of ops is the same network
    (arch([0, 0, 0, 0], ["gat", "gcn", "gin", "cheb"]), arch([0, 0, 0, 0], ["cheb", "gin", "gcn", "gat"])),
    # nodes 2 and 3 are interchangeable leaves on the input
    (arch([0, 0, 0, 1], ["gcn", "gat", "sage", "fc"]), arch([0, 0, 0, 1], ["gcn", "sage", "gat", "fc"])),
    # nodes 2, 3, 4 all read node 1
    (arch([0, 1, 1, 1], ["gcn", "gat", "sage", "fc"]), arch([0, 1, 1, 1], ["gcn", "fc", "sage", "gat"])),
    # two parallel chains of two: swapping the chains
    (arch([0, 0, 1, 2], ["gcn", "gat", "sage", "fc"]), arch([0, 0, 1, 2], ["gat", "gcn", "fc", "sage"])),
    # a skip anywhere in a chain is the same 3-op chain
    (arch([0, 1, 2, 3], ["skip", "gcn", "gat", "sage"]), arch([0, 1, 2, 3], ["gcn", "gat", "sage", "skip"])),
    (arch([0, 1, 2, 3], ["gcn", "skip", "gat", "sage"]), arch([0, 1, 2, 3], ["gcn", "gat", "sage", "skip"])),
]  # fmt: skip
DIFFERENT = [
    # a chain run backwards is another network
    (arch([0, 1, 2, 3], ["gcn", "gat", "sage", "fc"]), arch([0, 1, 2, 3], ["fc", "sage", "gat", "gcn"])),
    # same ops, different wiring
    (arch([0, 0, 0, 0], ["gcn", "gat", "sage", "fc"]), arch([0, 0, 0, 1], ["gcn", "gat", "sage", "fc"])),
    # which node feeds node 4 matters
    (arch([0, 0, 0, 1], ["gcn", "gat", "sage", "fc"]), arch([0, 0, 0, 1], ["gat", "gcn", "sage", "fc"])),
]  # fmt: skip


@pytest.mark.parametrize(
    ("a", "b"),
    EQUIVALENT,
    ids=["parallel", "siblings", "fan-out", "two-chains", "skip-first", "skip-mid"],
)
def test_known_equivalent_archs_share_key_hash_and_canonical_form(a, b):
    space = NasBenchGraphSpace("cora")
    assert Arch(a["link"], a["ops"]).valid_hash() == Arch(b["link"], b["ops"]).valid_hash()
    assert space.bench_hash(a) == space.bench_hash(b)
    assert space.key(a) == space.key(b)
    assert space.canonical(a) == space.canonical(b)


@pytest.mark.parametrize(("a", "b"), DIFFERENT, ids=["reversed-chain", "rewired", "other-feeder"])
def test_known_different_archs_differ_in_key_and_hash(a, b):
    space = NasBenchGraphSpace("cora")
    assert Arch(a["link"], a["ops"]).valid_hash() != Arch(b["link"], b["ops"]).valid_hash()
    assert space.bench_hash(a) != space.bench_hash(b)
    assert space.key(a) != space.key(b)


@pytest.mark.parametrize("dataset", ["cora", "proteins"])
def test_the_canonical_form_is_an_arch_of_the_space_with_the_same_hash(dataset):
    space = NasBenchGraphSpace(dataset)
    rng = np.random.default_rng(1)
    for _ in range(500):
        a = space.sample(rng)
        canon = space.canonical(a)
        assert space.validate(canon) == canon
        assert space.canonical(canon) == canon, "canonicalising twice changes nothing"
        assert space.bench_hash(canon) == space.bench_hash(a)


# -- the bundled tables ----------------------------------------------------------------


@pytest.mark.parametrize("dataset", nbg.DATASETS)
def test_every_bundled_table_loads_as_plain_numbers(dataset):
    table = nbg.load_table(dataset)
    assert type(table) is dict
    assert len(table) == TABLE_SIZE.get(dataset, 26_206)
    for key, row in table.items():
        assert type(key) is int
        assert set(row) == METRIC_FIELDS
        assert all(type(v) is float for v in row.values()), (key, row)
    valid = [row["valid_perf"] for row in table.values()]
    test = [row["perf"] for row in table.values()]
    assert min(valid) > 0 and max(valid) <= 1
    assert min(test) > 0 and max(test) <= 1
    assert min(row["latency"] for row in table.values()) > 0  # seconds
    assert min(row["para"] for row in table.values()) > 0  # millions


@pytest.mark.parametrize(("dataset", "best"), sorted(BEST_TEST_ACC.items()))
def test_best_test_accuracy_is_the_published_one(dataset, best):
    table = nbg.load_table(dataset)
    assert round(max(row["perf"] for row in table.values()), 4) == best


# -- tampered and user-made .bench files -----------------------------------------------

ROW = {"valid_perf": 0.5, "perf": 0.4, "latency": 0.0123, "para": 0.1}


class RunsShell:
    """Unpickling this runs a shell command (what a tampered table would do)."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class CallsNumpyLoad:
    """Unpickling this calls ``numpy.load`` (a numpy global that is not a number)."""

    def __reduce__(self):
        return (np.load, ("/nonexistent.npy",))


def write(path: Path, obj, protocol: int | None = None) -> str:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return str(path)


def refused(path: str, match: str) -> BenchFileError:
    with pytest.raises(BenchFileError) as info:
        nbg.load_table("cora", path)
    message = str(info.value)
    assert path in message, "the error names the file"
    assert "\n" not in message, "the error is one line"
    assert match in message, message
    return info.value


def test_a_table_that_runs_code_is_refused_and_the_code_never_runs(tmp_path):
    marker = tmp_path / "MARKER"
    payload = {7: {**ROW, "latency": RunsShell(f"echo pwned > {marker}")}}
    path = write(tmp_path / "evil.bench", payload)
    refused(path, "system")
    assert not marker.exists(), "the payload ran while loading the table"
    pickle.loads(Path(path).read_bytes())  # the payload is live: plain pickle runs it
    assert marker.exists()


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        ({7: {**ROW, "para": CallsNumpyLoad()}}, "numpy.load"),
        ({7: {**ROW, "para": np.arange(3.0)}}, "_reconstruct"),  # an array, not a scalar
        ({7: {**ROW, "para": np.str_("x")}}, "not allowed"),  # a numpy scalar, not a number
        ([ROW], "expected a dict"),
        ({"7": ROW}, "entry '7'"),
        ({7: [0.5, 0.4, 0.0123, 0.1]}, "entry 7"),
        ({7: {k: v for k, v in ROW.items() if k != "latency"}}, "lacks ['latency']"),
    ],
    ids=["numpy-load", "numpy-array", "numpy-str", "top-level-list", "str-key", "row-list", "no-latency"],
)  # fmt: skip
def test_a_table_that_is_not_plain_numbers_is_refused(tmp_path, obj, match):
    refused(write(tmp_path / "bad.bench", obj), match)


@pytest.mark.parametrize("value", ["fast", None], ids=["str", "none"])
def test_a_row_value_that_is_not_a_number_is_refused_naming_the_file(tmp_path, value):
    refused(write(tmp_path / "bad.bench", {7: {**ROW, "latency": value}}), "latency")


def test_a_damaged_or_missing_file_is_refused(tmp_path):
    whole = pickle.dumps({7: ROW, 8: ROW})
    truncated = tmp_path / "truncated.bench"
    truncated.write_bytes(whole[: len(whole) // 2])
    refused(str(truncated), "not a plain NAS-Bench-Graph table")
    garbage = tmp_path / "garbage.bench"
    garbage.write_bytes(b"this is not a pickle at all")
    refused(str(garbage), "not a plain NAS-Bench-Graph table")
    empty = tmp_path / "empty.bench"
    empty.write_bytes(b"")
    refused(str(empty), "not a plain NAS-Bench-Graph table")
    refused(str(tmp_path / "missing.bench"), "cannot read bench table")


USER_ARCH = arch([0, 1, 2, 3], ["gcn", "gat", "sage", "fc"])
USER_OTHER = arch([0, 0, 0, 0], ["gcn", "gat", "sage", "fc"])


def user_table(space: NasBenchGraphSpace, scalar=np.float64) -> dict:
    """A user's own measurements of two archs, as numpy scalars (as numpy code produces)."""
    return {
        space.bench_hash(USER_ARCH): {
            "valid_perf": scalar(0.25), "perf": scalar(0.125), "latency": scalar(0.5), "para": scalar(3.0),
        },
        space.bench_hash(USER_OTHER): {
            "valid_perf": scalar(0.75), "perf": scalar(0.625), "latency": scalar(0.25), "para": scalar(1.5),
        },
    }  # fmt: skip


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_a_users_own_bench_file_is_read_through_the_bench_file_option(tmp_path, protocol):
    space = NasBenchGraphSpace("cora")
    path = write(tmp_path / "mine.bench", user_table(space), protocol)
    accuracy = NasBenchGraphAccuracy(space, bench_file=path)
    cost = NasBenchGraphCost(space, bench_file=path)
    quality = accuracy.evaluate(USER_ARCH, EvalContext(run_dir=tmp_path))
    measured = cost.measure(USER_OTHER, None, EvalContext(run_dir=tmp_path))
    assert quality == {"valid_acc": 0.25, "test_acc": 0.125}
    assert measured == {"latency_ms": 250.0, "params_m": 1.5}
    assert all(type(v) is float for v in (*quality.values(), *measured.values()))
    # not the bundled table's numbers
    bundled = nbg.load_table("cora")[space.bench_hash(USER_ARCH)]
    assert bundled["valid_perf"] != 0.25
    # an arch the user did not measure has no entry
    with pytest.raises(ArchError, match="no entry"):
        accuracy.evaluate(arch([0, 0, 0, 1], ["gcn", "gat", "sage", "fc"]), EvalContext(tmp_path))


def test_float32_scalars_in_a_users_table_are_read_as_floats(tmp_path):
    space = NasBenchGraphSpace("cora")
    path = write(tmp_path / "mine.bench", user_table(space, np.float32))
    measured = NasBenchGraphCost(space, bench_file=path).measure(
        USER_ARCH, None, EvalContext(run_dir=tmp_path)
    )
    assert measured == {"latency_ms": 500.0, "params_m": 3.0}


def test_a_users_table_written_with_pickle_protocol_2_is_read(tmp_path):
    space = NasBenchGraphSpace("cora")
    path = write(tmp_path / "mine.bench", user_table(space), protocol=2)
    quality = NasBenchGraphAccuracy(space, bench_file=path).evaluate(
        USER_ARCH, EvalContext(tmp_path)
    )
    assert quality == {"valid_acc": 0.25, "test_acc": 0.125}


def test_a_users_table_keyed_by_numpy_integers_is_read(tmp_path):
    space = NasBenchGraphSpace("cora")
    table = {np.int64(k): row for k, row in user_table(space).items()}
    path = write(tmp_path / "mine.bench", table)
    quality = NasBenchGraphAccuracy(space, bench_file=path).evaluate(
        USER_ARCH, EvalContext(tmp_path)
    )
    assert quality == {"valid_acc": 0.25, "test_acc": 0.125}


def test_setup_accepts_a_users_table_that_covers_only_some_archs(tmp_path):
    space = NasBenchGraphSpace("cora")
    path = write(tmp_path / "mine.bench", user_table(space))
    accuracy = NasBenchGraphAccuracy(space, bench_file=path)
    context = EvalContext(run_dir=tmp_path)
    accuracy.setup(context)
    assert accuracy.evaluate(USER_ARCH, context) == {"valid_acc": 0.25, "test_acc": 0.125}


# -- the estimator and the cost model --------------------------------------------------


@pytest.mark.parametrize("dataset", ["cora", "pubmed", "proteins"])
def test_metrics_are_the_table_row_of_the_canonical_hash(dataset, tmp_path):
    space = NasBenchGraphSpace(dataset)
    table = nbg.load_table(dataset)
    accuracy, cost = NasBenchGraphAccuracy(space), NasBenchGraphCost(space)
    assert set(accuracy.metrics) == {"valid_acc", "test_acc"}
    assert set(cost.metrics) == {"latency_ms", "params_m"}
    assert cost.metrics["latency_ms"].unit == "ms"
    context = EvalContext(run_dir=tmp_path)
    accuracy.setup(context)
    rng = np.random.default_rng(2)
    for _ in range(50):
        a = space.sample(rng)
        if is_all_skip(a["ops"]):
            continue
        row = table[Arch(a["link"], a["ops"]).valid_hash()]
        quality = accuracy.evaluate(a, context)
        measured = cost.measure(a, None, context)
        assert quality == {"valid_acc": row["valid_perf"], "test_acc": row["perf"]}
        assert measured == {"latency_ms": row["latency"] * 1000.0, "params_m": row["para"]}
        # an equivalent arch reads the same row
        assert accuracy.evaluate(space.canonical(a), context) == quality


@pytest.mark.parametrize("dataset", ["cora", "proteins"])
def test_the_all_skip_arch_has_no_entry(dataset, tmp_path):
    space = NasBenchGraphSpace(dataset)
    all_skip = arch([0, 1, 2, 3], ["skip"] * 4)
    with pytest.raises(ArchError, match=f"no entry in the NAS-Bench-Graph {dataset} table"):
        NasBenchGraphAccuracy(space).evaluate(all_skip, EvalContext(run_dir=tmp_path))
    with pytest.raises(ArchError, match="no entry"):
        NasBenchGraphCost(space).measure(all_skip, None, EvalContext(run_dir=tmp_path))


@pytest.mark.parametrize("component", [NasBenchGraphAccuracy, NasBenchGraphCost])
def test_a_dataset_other_than_the_spaces_is_refused(component):
    space = NasBenchGraphSpace("cora")
    with pytest.raises(ValueError, match="'citeseer' differs from the space's dataset 'cora'"):
        component(space, dataset="citeseer")
    assert component(space, dataset="cora").options["dataset"] == "cora"
    assert component(space).options["dataset"] == "cora", "defaults to the space's dataset"


def test_a_dataset_mismatch_in_an_experiment_names_the_yaml_path():
    experiment = parse_experiment(
        {
            "name": "mismatch",
            "space": {"name": "gnn.nasbench_graph", "options": {"dataset": "cora"}},
            "estimators": [{"name": "gnn.nasbench_graph"}],
            "hardware": [{"name": "gnn.nasbench_graph", "options": {"dataset": "pubmed"}}],
            "objectives": [{"metric": "valid_acc"}, {"metric": "latency_ms"}],
            "search": {"n_trials": 1},
        }
    )
    with pytest.raises(ConfigError, match=r"^hardware\[0\]\.options: .*'pubmed' differs"):
        resolve(experiment)


def test_the_proteins_space_offers_only_its_reduced_ops(tmp_path):
    space = NasBenchGraphSpace("proteins")
    assert space.ops == ("gcn", "sage", "arma", "fc", "skip")
    rng = np.random.default_rng(3)
    seen = {op for _ in range(200) for op in space.sample(rng)["ops"]}
    assert seen == set(space.ops)
    for i in range(4):
        ops = ["gcn"] * 4
        ops[i] = "gat"
        with pytest.raises(ArchError, match=rf"^ops\[{i}\]: 'gat' is not one of"):
            space.validate(arch([0, 1, 2, 3], ops))
    # the same arch is fine on cora, whose table has it
    assert NasBenchGraphSpace("cora").contains(arch([0, 1, 2, 3], ["gat", "gcn", "gcn", "gcn"]))
