"""The search-space algebra: dimensions, the archs they describe, and what a space does with them.

An arch is a plain JSON dict holding exactly the *active* keys of its space. Conditional
dimensions (``when=``) exist only when earlier values allow; a :class:`PerLayer` list is as
long as a fixed number or an earlier dimension's value. Choices run from smallest to largest
model, so ``smallest()``/``largest()`` take the first/last choice everywhere.

Counting (``cardinality``) and the Optuna round trip (``to_params`` -> ``suggest``) are checked
against brute force: every candidate dict that ``validate`` accepts.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import optuna
import pytest

from nasforge import ArchError, Categorical, IntRange, PerLayer, SearchSpace
from nasforge_gnn.nasbench_graph import OPS, OPS_PROTEINS
from nasforge_gnn.plugin import NasBenchGraphSpace

LINKS = [[0, 0], [0, 1]]


def block_space() -> SearchSpace:
    """depth 1..3 blocks, a kernel per block, a width that exists only at depth 3, a link pattern."""
    return SearchSpace(
        [
            IntRange("depth", 1, 3),
            PerLayer("kernel", [3, 5, 7], length="depth", max_length=3),
            Categorical("act", ["relu", "gelu"]),
            IntRange("width", 16, 64, step=16, when={"depth": [3]}),
            Categorical("link", LINKS),
        ]
    )


def branch_space() -> SearchSpace:
    """A conditional per-layer list: two branch ops exist only in 'branch' mode."""
    return SearchSpace(
        [
            Categorical("mode", ["plain", "branch"]),
            PerLayer("branch_ops", ["id", "conv"], length=2, when={"mode": ["branch"]}),
            IntRange("stages", 0, 2),
            PerLayer("stage_kernels", [3, 5], length="stages", max_length=2),
        ]
    )


ABSENT = object()


def candidates(space: SearchSpace):
    """Every dict over the space's keys with each allowed value, some disallowed ones (off the
    grid, out of range, too long) or the key absent: a superset of the space, built without
    the space's own counting."""
    per_key = []
    for dim in space.dimensions:
        if isinstance(dim, IntRange):
            off_grid = [dim.low + 1] if dim.step > 1 else []
            values = [*range(dim.low, dim.high + 1, dim.step), dim.low - 1, dim.high + 1, *off_grid]
        elif isinstance(dim, PerLayer):
            n = dim.max_length
            values = [
                list(p) for k in range(n + 1) for p in itertools.product(dim.choices, repeat=k)
            ]
            values.append([dim.choices[0]] * (n + 1))
        else:
            values = list(dim.choices)
        per_key.append([ABSENT, *values])
    for combo in itertools.product(*per_key):
        yield {d.name: v for d, v in zip(space.dimensions, combo, strict=True) if v is not ABSENT}


def brute_force(space: SearchSpace) -> list[dict]:
    return [arch for arch in candidates(space) if space.contains(arch)]


@pytest.fixture(scope="module")
def space():
    return block_space()


@pytest.fixture(scope="module")
def all_block_archs(space):
    return brute_force(space)


# -- dimensions ----------------------------------------------------------------------------


def test_categorical_holds_json_values_including_lists():
    link = Categorical("link", [(0, 0), [0, 1]])
    assert link.choices == [[0, 0], [0, 1]]
    assert link.index((0, 1)) == 1
    assert link.values({}) == [[0, 0], [0, 1]]


def test_int_range_is_a_grid_of_step():
    width = IntRange("width", 16, 64, step=16)
    assert width.values({}) == [16, 32, 48, 64]
    assert width.count({}) == 4


def test_per_layer_length_is_fixed_or_taken_from_an_earlier_dimension():
    fixed = PerLayer("ops", ["a", "b"], length=3)
    driven = PerLayer("kernel", [3, 5], length="depth", max_length=4)
    assert fixed.length_for({}) == 3 and fixed.count({}) == 8
    assert driven.length_for({"depth": 2}) == 2 and driven.count({"depth": 2}) == 4
    assert driven.depends_on() == {"depth"}
    assert driven.values({"depth": 2}) == [[3, 3], [3, 5], [5, 3], [5, 5]]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Categorical("act", []), "dimension 'act' has no choices"),
        (lambda: Categorical("act", ["relu", "relu"]), "dimension 'act' lists choice 'relu' twice"),
        (
            lambda: Categorical("link", [[0, 1], (0, 1)]),
            "dimension 'link' lists choice [0, 1] twice",
        ),
        (
            lambda: IntRange("width", 16, 60, step=16),
            "dimension 'width': need low <= high on a grid of step >= 1",
        ),
        (
            lambda: IntRange("width", 8, 4),
            "dimension 'width': need low <= high on a grid of step >= 1",
        ),
        (lambda: PerLayer("ops", ["a"], length=0), "dimension 'ops': length must be >= 1"),
        (
            lambda: PerLayer("kernel", [3], length="depth"),
            "dimension 'kernel': a length taken from 'depth' needs max_length",
        ),
        (
            lambda: SearchSpace([IntRange("depth", 1, 2), Categorical("depth", [1])]),
            "dimension 'depth' is declared twice",
        ),
        (
            lambda: SearchSpace(
                [PerLayer("kernel", [3], length="depth", max_length=2), IntRange("depth", 1, 2)]
            ),
            "dimension 'kernel' depends on ['depth'], which must be declared before it",
        ),
        (
            lambda: SearchSpace([Categorical("width", [8], when={"mode": ["wide"]})]),
            "dimension 'width' depends on ['mode'], which must be declared before it",
        ),
    ],
)
def test_malformed_spaces_are_rejected_when_declared(build, message):
    with pytest.raises(ValueError) as info:
        build()
    assert str(info.value) == message


# -- building archs ------------------------------------------------------------------------


def test_largest_and_smallest_take_the_last_and_first_choice(space):
    assert space.largest() == {
        "depth": 3,
        "kernel": [7, 7, 7],
        "act": "gelu",
        "width": 64,
        "link": [0, 1],
    }
    assert space.smallest() == {"depth": 1, "kernel": [3], "act": "relu", "link": [0, 0]}


def test_a_partial_arch_is_completed_with_largest_choices_and_one_value_per_layer(space):
    assert space.complete({}) == space.largest()
    assert space.complete({"depth": 2, "kernel": 5}) == {
        "depth": 2, "kernel": [5, 5], "act": "gelu", "link": [0, 1],
    }  # fmt: skip
    assert space.complete({"depth": 2, "kernel": [3, 7]})["kernel"] == [3, 7]
    with pytest.raises(ArchError, match=r"^width: does not exist in this arch"):
        space.complete({"depth": 2, "width": 32})  # width exists only at depth 3
    with pytest.raises(ArchError, match=r"^colour: is not a dimension"):
        space.complete({"colour": "red"})
    with pytest.raises(ArchError, match="kernel"):
        space.complete({"kernel": 4})  # not a choice: validated


def test_sampling_is_deterministic_under_a_seed(space):
    assert space.sample(7) == space.sample(7)
    assert space.sample(np.random.default_rng(7)) == space.sample(7)
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    assert [space.sample(rng_a) for _ in range(10)] == [space.sample(rng_b) for _ in range(10)]


def test_different_seeds_explore_the_space(space):
    assert len({space.key(space.sample(seed)) for seed in range(40)}) > 20


def test_samples_carry_only_active_keys(space):
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(300)]
    for arch in archs:
        assert space.validate(arch) == arch
        assert len(arch["kernel"]) == arch["depth"]
        assert ("width" in arch) == (arch["depth"] == 3)
    assert {a["depth"] for a in archs} == {1, 2, 3}
    assert {a["width"] for a in archs if "width" in a} == {16, 32, 48, 64}


def test_samples_are_plain_json(space):
    for seed in range(20):
        arch = space.sample(seed)
        assert json.loads(json.dumps(arch)) == arch
        assert all(type(k) is int for k in arch["kernel"])


# -- validate: the message names the bad key ------------------------------------------------

GOOD = {"depth": 2, "kernel": [3, 5], "act": "relu", "link": [0, 1]}


@pytest.mark.parametrize(
    ("arch", "message"),
    [
        ({**GOOD, "kernel": [3, 4]}, "kernel[1]: 4 is not one of [3, 5, 7]"),
        ({**GOOD, "kernel": [3, 5, 7]}, "kernel: expected 2 entries, got 3"),
        ({**GOOD, "kernel": 3}, "kernel: expected a list, got 3"),
        ({k: v for k, v in GOOD.items() if k != "act"}, "act: missing"),
        (
            {**GOOD, "speed": 1},
            "speed: not a dimension of this space (known: ['act', 'depth', 'kernel', 'link', 'width'])",
        ),
        ({**GOOD, "width": 32}, "width: only exists when depth in [3]"),
        ({**GOOD, "depth": 3, "kernel": [3, 5, 7]}, "width: missing"),
        (
            {**GOOD, "depth": 3, "kernel": [3, 5, 7], "width": 40},
            "width: 40 is outside 16..64 step 16",
        ),
        ({**GOOD, "depth": 4}, "depth: 4 is outside 1..3 step 1"),
        ({**GOOD, "depth": 2.0}, "depth: expected an integer, got 2.0"),
        ({**GOOD, "depth": True}, "depth: expected an integer, got True"),
        ({**GOOD, "act": "swish"}, "act: 'swish' is not one of ['relu', 'gelu']"),
        ({**GOOD, "link": [1, 1]}, "link: [1, 1] is not one of [[0, 0], [0, 1]]"),
        ("depth=2", "an arch must be a mapping of dimension names, got 'depth=2'"),
    ],
)
def test_validate_names_the_bad_key(space, arch, message):
    with pytest.raises(ArchError) as info:
        space.validate(arch)
    assert str(info.value) == message
    assert not space.contains(arch)


def test_arch_errors_are_value_errors(space):
    with pytest.raises(ValueError):
        space.validate({})


def test_validate_returns_plain_json_in_dimension_order(space):
    typed = {"link": (0, 1), "act": "relu", "kernel": (np.int64(3), 5), "depth": np.int64(2)}
    arch = space.validate(typed)
    assert arch == GOOD
    assert list(arch) == ["depth", "kernel", "act", "link"]
    assert json.dumps(arch) == '{"depth": 2, "kernel": [3, 5], "act": "relu", "link": [0, 1]}'


def test_nasbench_graph_validate_names_the_slot():
    space = NasBenchGraphSpace()
    with pytest.raises(ArchError) as info:
        space.validate({"link": [0, 0, 1, 2], "ops": ["gcn", "gat", "foo", "sage"]})
    assert str(info.value) == f"ops[2]: 'foo' is not one of {list(OPS)}"


# -- counting ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        # depth 1: 3 kernels x 2 acts x 2 links; depth 2: 9 x 2 x 2; depth 3: 27 x 2 x 4 widths x 2
        (block_space, 12 + 36 + 432),
        # plain: 1 + 2 + 4 stage-kernel lists; branch: the same x 4 branch-op lists
        (branch_space, 7 + 4 * 7),
        (
            lambda: SearchSpace(
                [IntRange("width", 8, 32, step=8), PerLayer("ops", ["a", "b", "c"], length=2)]
            ),
            4 * 9,
        ),
    ],
    ids=["length-driven-and-conditional", "conditional-per-layer", "independent"],
)
def test_cardinality_matches_brute_force_enumeration(build, expected):
    space = build()
    assert space.cardinality() == expected
    assert len(brute_force(space)) == expected


@pytest.mark.parametrize(("dataset", "ops"), [("cora", OPS), ("proteins", OPS_PROTEINS)])
def test_nasbench_graph_cardinality(dataset, ops):
    space = NasBenchGraphSpace(dataset)
    assert space.cardinality() == 9 * len(ops) ** 4
    assert space.log10_cardinality() == pytest.approx(np.log10(9 * len(ops) ** 4))


# -- encoding for predictors ---------------------------------------------------------------


def test_encode_has_the_declared_width(space):
    # depth 1 + kernel 3 slots x 3 choices + act 2 + width 1 + link 2
    assert space.encoded_width() == 1 + 9 + 2 + 1 + 2
    for seed in range(10):
        assert space.encode(space.sample(seed)).shape == (15,)


def test_encode_is_one_hot_for_choices_scaled_for_ranges_and_zero_for_absent_keys(space):
    smallest = space.encode(space.smallest())
    largest = space.encode(space.largest())
    # depth | kernel[0] kernel[1] kernel[2] | act | width | link
    assert smallest.tolist() == [0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0]
    assert largest.tolist() == [1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 1, 1, 0, 1]
    # width 32 lies a third of the way from 16 to 64
    middle = space.encode(
        {"depth": 3, "kernel": [5, 3, 7], "act": "relu", "width": 32, "link": [0, 0]}
    )
    assert middle.tolist() == pytest.approx([1, 0, 1, 0, 1, 0, 0, 0, 0, 1, 1, 0, 1 / 3, 1, 0])


def test_encode_tells_every_arch_apart(space, all_block_archs):
    vectors = {space.encode(arch).tobytes() for arch in all_block_archs}
    assert len(vectors) == len(all_block_archs) == space.cardinality()


def test_encode_validates_first(space):
    with pytest.raises(ArchError, match=r"^kernel\[0\]: 9 is not one of"):
        space.encode({**GOOD, "kernel": [9, 3]})


def test_a_null_choice_is_one_hot_like_any_other():
    space = SearchSpace([Categorical("norm", [None, "batch", "layer"])])
    assert space.encode({"norm": None}).tolist() == [1, 0, 0]


# -- Optuna: to_params and suggest ----------------------------------------------------------


def test_to_params_names_one_parameter_per_choice(space):
    assert space.to_params(space.largest()) == {
        "depth": 3,
        "kernel.0": 7,
        "kernel.1": 7,
        "kernel.2": 7,
        "act": "gelu",
        "width": 64,
        "link": "[0, 1]",  # list-valued choices travel through Optuna as JSON text
    }


def test_to_params_and_suggest_round_trip_every_arch(space, all_block_archs):
    for arch in all_block_archs:
        assert space.suggest(optuna.trial.FixedTrial(space.to_params(arch))) == arch


def test_to_params_rejects_archs_outside_the_space(space):
    with pytest.raises(ArchError, match=r"^width: only exists when depth in \[3\]$"):
        space.to_params({**GOOD, "width": 16})


def test_suggest_records_exactly_the_params_of_to_params(space):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = study.ask()
        arch = space.suggest(trial)
        assert space.contains(arch)
        assert trial.params == space.to_params(arch)
        study.tell(trial, 0.0)


def test_an_enqueued_arch_is_suggested_back(space):
    arch = {"depth": 3, "kernel": [5, 3, 7], "act": "gelu", "width": 48, "link": [0, 1]}
    study = optuna.create_study()
    study.enqueue_trial(space.to_params(arch))
    assert space.suggest(study.ask()) == arch


def test_nasbench_graph_round_trips_through_optuna():
    space = NasBenchGraphSpace("proteins")
    for seed in range(20):
        arch = space.sample(seed)
        assert space.suggest(optuna.trial.FixedTrial(space.to_params(arch))) == arch


# -- JSON and identity ---------------------------------------------------------------------


def test_archs_survive_json(space, all_block_archs):
    for arch in all_block_archs[::7]:
        assert space.validate(json.loads(json.dumps(arch))) == arch


def test_key_ignores_key_order_and_tuples(space):
    reordered = {"link": (0, 1), "act": "relu", "kernel": (3, 5), "depth": 2}
    assert space.key(reordered) == space.key(GOOD)
    assert space.key({**GOOD, "act": "gelu"}) != space.key(GOOD)


def test_key_is_distinct_for_distinct_archs_in_a_space_without_equivalences(space, all_block_archs):
    assert len({space.key(arch) for arch in all_block_archs}) == len(all_block_archs)


def test_nasbench_graph_keys_equivalent_archs_equally():
    space = NasBenchGraphSpace()
    # four computing nodes all reading the input: the order of their ops does not matter
    a = {"link": [0, 0, 0, 0], "ops": ["gcn", "gat", "gin", "sage"]}
    b = {"link": [0, 0, 0, 0], "ops": ["sage", "gin", "gat", "gcn"]}
    c = {"link": [0, 0, 0, 0], "ops": ["gcn", "gat", "gin", "gin"]}
    assert space.key(a) == space.key(b)
    assert space.key(a) != space.key(c)
    assert space.canonical(b) == {"link": [0, 0, 0, 0], "ops": ["gat", "gcn", "gin", "sage"]}
    assert space.bench_hash(a) == space.bench_hash(b)


def test_nasbench_graph_canonical_is_idempotent_and_inside_the_space():
    space = NasBenchGraphSpace()
    for seed in range(50):
        canon = space.canonical(space.sample(seed))
        assert space.canonical(canon) == canon
        assert space.contains(canon)


def test_a_choice_is_found_by_json_equality_keeping_booleans_apart_from_numbers():
    """``index`` (a dict look-up) agrees with the space's equality: True is not 1, 1 is
    1.0, a tuple equals the list, numpy scalars are plain numbers; a mapping choice works."""
    dim = Categorical("x", [1, True, "a", [1, 2], [True, 2], None])
    assert dim.index(True) == 1 and dim.index(1) == 0 and dim.index(1.0) == 0
    assert dim.index(np.int64(1)) == 0 and dim.index(np.bool_(True)) == 1
    assert dim.index((1, 2)) == 3 and dim.index([1.0, 2]) == 3 and dim.index([True, 2]) == 4
    assert dim.index(None) == 5 and dim.index("a") == 2
    for bad in (False, 2, "b", [1], [1, 2, 3], {"a": 1}, [[1], 2]):
        with pytest.raises(ArchError, match=r"x: .* is not one of"):
            dim.index(bad)
    nested = Categorical("cfg", [{"k": 3}, {"k": 5}])  # mappings: compared one by one
    assert nested.index({"k": 5}) == 1
    with pytest.raises(ArchError):
        nested.index({"k": 7})
