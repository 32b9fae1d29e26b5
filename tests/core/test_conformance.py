"""The conformance suite (:mod:`nasforge.testing`) passes on sound components and catches broken ones.

A plugin author calls ``check_space``, ``check_estimator`` and ``check_hardware`` on their
components (or ``check_plugin_items(prefix)`` on everything they registered); each raises
``AssertionError`` naming what broke. Every broken component below differs from a sound
one by a single defect, and the sound one is checked too, so a failure is that defect's.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from nasforge import (
    Categorical,
    Estimator,
    Hardware,
    IntRange,
    Metric,
    PerLayer,
    SearchSpace,
)
from nasforge.testing import check_estimator, check_hardware, check_plugin_items, check_space
from nasforge_gnn.plugin import NasBenchGraphAccuracy, NasBenchGraphCost, NasBenchGraphSpace

# -- the NAS-Bench-Graph plugin -------------------------------------------------------------

DATASETS = ["cora", "proteins"]  # proteins was benchmarked on a reduced op list


def evaluable_archs(space: NasBenchGraphSpace, n: int = 10) -> list[dict]:
    """The smallest arch and seeded samples, leaving out the one network the benchmark never
    trained (every op 'skip')."""
    rng = np.random.default_rng(0)
    archs = [space.smallest(), *(space.sample(rng) for _ in range(n))]
    return [a for a in archs if set(a["ops"]) != {"skip"}]


@pytest.mark.parametrize("dataset", DATASETS)
def test_nasbench_graph_space_conforms(dataset):
    check_space(NasBenchGraphSpace(dataset))


def test_proteins_space_uses_the_reduced_op_list():
    space = NasBenchGraphSpace("proteins")
    assert space.ops == ("gcn", "sage", "arma", "fc", "skip")
    assert space.encoded_width() == 9 + 4 * 5


@pytest.mark.parametrize("dataset", DATASETS)
def test_nasbench_graph_estimator_conforms(dataset):
    space = NasBenchGraphSpace(dataset)
    check_estimator(NasBenchGraphAccuracy(space=space), space, archs=evaluable_archs(space))


@pytest.mark.parametrize("dataset", DATASETS)
def test_nasbench_graph_cost_model_conforms(dataset):
    space = NasBenchGraphSpace(dataset)
    check_hardware(NasBenchGraphCost(space=space), space, archs=evaluable_archs(space))


@pytest.mark.parametrize("dataset", DATASETS)
def test_nasbench_graph_estimator_conforms_on_the_default_archs(dataset):
    space = NasBenchGraphSpace(dataset)
    check_estimator(NasBenchGraphAccuracy(space=space), space)


@pytest.mark.parametrize("dataset", DATASETS)
def test_nasbench_graph_cost_model_conforms_on_the_default_archs(dataset):
    space = NasBenchGraphSpace(dataset)
    check_hardware(NasBenchGraphCost(space=space), space)


def test_every_gnn_plugin_item_conforms():
    assert check_plugin_items("gnn.") == 3  # space, estimator, cost model


def test_check_plugin_items_needs_a_registered_prefix():
    with pytest.raises(AssertionError, match=r"no space is registered under 'acme\.'"):
        check_plugin_items("acme.")


# -- a sound toy space, estimator and hardware model -----------------------------------------


class ToySpace(SearchSpace):
    """Small but with every kind of dimension: conditional, length-driven, list-valued."""

    def __init__(self):
        super().__init__(
            [
                IntRange("depth", 1, 3),
                PerLayer("kernel", [3, 5, 7], length="depth", max_length=3),
                Categorical("width", [16, 32], when={"depth": [3]}),
                Categorical("link", [[0, 0], [0, 1]]),
            ]
        )


class ToyEstimator(Estimator):
    def __init__(self, space, **options):
        super().__init__(space, **options)
        self.metrics = {
            "acc": Metric("acc", better="maximize"),
            "loss": Metric("loss", better="minimize"),
        }

    def evaluate(self, arch, context):
        acc = 0.5 + 0.1 * arch["depth"] + 0.01 * sum(arch["kernel"])
        return {"acc": acc, "loss": 1.0 - acc}


class ToyHardware(Hardware):
    def __init__(self, space, **options):
        super().__init__(space, **options)
        self.metrics = {"macs_m": Metric("macs_m", "M", "minimize")}

    def measure(self, arch, subnet, context):
        return {"macs_m": float(sum(k * k for k in arch["kernel"]) * arch.get("width", 8))}


def test_a_sound_toy_space_conforms():
    check_space(ToySpace())


def test_a_sound_toy_estimator_conforms():
    space = ToySpace()
    check_estimator(ToyEstimator(space=space), space)


def test_a_sound_toy_hardware_model_conforms():
    space = ToySpace()
    check_hardware(ToyHardware(space=space), space)


# -- broken spaces ---------------------------------------------------------------------------


class NondeterministicSpace(ToySpace):
    """Ignores the seed: each call draws the next arch of a fixed cycle."""

    def __init__(self):
        super().__init__()
        self._cycle = itertools.cycle([self.smallest(), self.largest()])

    def sample(self, rng=None):
        return dict(next(self._cycle))


class UnstableCanonicalSpace(ToySpace):
    """canonical() moves the link to the other pattern every time it is applied."""

    def canonical(self, arch):
        arch = self.validate(arch)
        flipped = [0, 1] if arch["link"] == [0, 0] else [0, 0]
        return {**arch, "link": flipped}


class LossySuggestSpace(ToySpace):
    """suggest() forgets the last kernel: the Optuna round trip breaks."""

    def suggest(self, trial):
        arch = super().suggest(trial)
        return {**arch, "kernel": [3] * len(arch["kernel"])}


class PermissiveSpace(ToySpace):
    """validate() accepts anything."""

    def validate(self, arch):
        return dict(arch)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        (NondeterministicSpace(), r"sample\(seed\) is not deterministic for a fixed seed"),
        (UnstableCanonicalSpace(), r"canonical\(\) is not idempotent on "),
        (LossySuggestSpace(), r"to_params/suggest do not round-trip "),
        (PermissiveSpace(), r"validate\(\) accepted an unknown key"),
    ],
    ids=[
        "nondeterministic-sample",
        "canonical-not-idempotent",
        "lossy-suggest",
        "permissive-validate",
    ],
)
def test_check_space_catches_a_broken_space(space, message):
    with pytest.raises(AssertionError, match=message):
        check_space(space)


def test_check_space_rejects_something_that_is_not_a_space():
    with pytest.raises(AssertionError, match="is not a SearchSpace"):
        check_space({"depth": [1, 2, 3]})


# -- broken estimators and hardware models ---------------------------------------------------


class MissingMetricEstimator(ToyEstimator):
    """Declares acc and loss, returns only acc."""

    def evaluate(self, arch, context):
        return {"acc": super().evaluate(arch, context)["acc"]}


class NaNEstimator(ToyEstimator):
    """Loss becomes NaN on the deepest archs."""

    def evaluate(self, arch, context):
        out = super().evaluate(arch, context)
        return {**out, "loss": math.nan} if arch["depth"] == 3 else out


class NonNumericEstimator(ToyEstimator):
    def evaluate(self, arch, context):
        return {**super().evaluate(arch, context), "acc": "high"}


class NoisyEstimator(ToyEstimator):
    """A new value on every call."""

    def __init__(self, space, **options):
        super().__init__(space, **options)
        self._calls = 0

    def evaluate(self, arch, context):
        self._calls += 1
        return {"acc": 0.5 + self._calls * 1e-3, "loss": 0.5}


class MislabelledEstimator(ToyEstimator):
    def __init__(self, space, **options):
        super().__init__(space, **options)
        self.metrics = {**self.metrics, "loss": Metric("val_loss", better="minimize")}


class SilentEstimator(ToyEstimator):
    """Declares no metrics at all."""

    def __init__(self, space, **options):
        super().__init__(space, **options)
        self.metrics = {}


@pytest.mark.parametrize(
    ("estimator", "message"),
    [
        (MissingMetricEstimator, r"did not return declared metrics \['loss'\] for "),
        (NaNEstimator, r"returned a non-finite or non-numeric loss=nan for "),
        (NonNumericEstimator, r"returned a non-finite or non-numeric acc='high' for "),
        (NoisyEstimator, r"NoisyEstimator is not deterministic on "),
        (MislabelledEstimator, r"metric key loss != val_loss"),
        (SilentEstimator, r"SilentEstimator declares no metrics"),
    ],
    ids=["missing-metric", "nan", "non-numeric", "nondeterministic", "mislabelled", "no-metrics"],
)
def test_check_estimator_catches_a_broken_estimator(estimator, message):
    space = ToySpace()
    with pytest.raises(AssertionError, match=message):
        check_estimator(estimator(space=space), space)


def test_a_noisy_estimator_passes_when_declared_nondeterministic():
    space = ToySpace()
    check_estimator(NoisyEstimator(space=space), space, deterministic=False)


class InfiniteLatency(ToyHardware):
    def measure(self, arch, subnet, context):
        return {"macs_m": math.inf}


def test_check_hardware_catches_a_non_finite_cost():
    space = ToySpace()
    with pytest.raises(AssertionError, match=r"non-finite or non-numeric macs_m=inf"):
        check_hardware(InfiniteLatency(space=space), space)


def test_check_hardware_passes_the_subnet_it_is_given():
    space = ToySpace()
    seen = []

    class NeedsSubnet(ToyHardware):
        def measure(self, arch, subnet, context):
            seen.append(subnet)
            return super().measure(arch, subnet, context)

    check_hardware(
        NeedsSubnet(space=space), space, subnet_for=lambda arch: ("subnet", arch["depth"])
    )
    assert seen and all(s[0] == "subnet" for s in seen)
