"""The nasforge conformance suite pointed at this plugin, plus the plugin's own contract.

Run from this folder with ``pytest``. The last test builds everything registered under
``template.`` through the installed plugin manager, as an experiment would; it is skipped
(saying why) until the package is installed, e.g. with ``pip install -e .``.
"""

from __future__ import annotations

import importlib.metadata
import re

import pytest
from nasforge import ArchError, EvalContext
from nasforge.testing import check_estimator, check_hardware, check_plugin_items, check_space

from nasforge_template.estimator import DigitsMLPAccuracy
from nasforge_template.hardware import MLPParams
from nasforge_template.space import MLPSpace

# Few epochs keep the suite fast; the conformance checks do not care how well archs train.
FAST = {"max_iter": 3}


@pytest.mark.parametrize(
    "options", [{}, {"max_depth": 1, "widths": [8]}, {"max_depth": 5, "widths": [4, 8]}]
)
def test_space_conforms(options):
    check_space(MLPSpace(**options))


def test_space_shape():
    space = MLPSpace()
    largest = {"depth": 3, "width": [64, 64, 64], "activation": "tanh", "solver": "adam"}
    smallest = {"depth": 1, "width": [16], "activation": "relu", "solver": "sgd", "momentum": 0.0}
    assert (space.largest(), space.smallest()) == (largest, smallest)
    # depth 1..3 of 3 widths each, 2 activations, sgd x 2 momenta + adam
    assert space.cardinality() == (3 + 9 + 27) * 2 * 3


ADAM = {"depth": 1, "width": [16], "activation": "relu", "solver": "adam"}


@pytest.mark.parametrize(
    ("arch", "key"),
    [
        ({**ADAM, "depth": 2}, "width"),  # one width per layer
        ({**ADAM, "width": [24]}, "width[0]"),  # not a width choice
        ({**ADAM, "momentum": 0.9}, "momentum"),  # only sgd has a momentum
        ({**ADAM, "solver": "sgd"}, "momentum"),  # ... and sgd needs one
        ({**ADAM, "depth": 4, "width": [16] * 4}, "depth"),  # deeper than max_depth
        ({**ADAM, "dropout": 0.1}, "dropout"),  # not a dimension
    ],
)
def test_space_names_the_bad_key(arch, key):
    with pytest.raises(ArchError, match=f"^{re.escape(key)}:"):
        MLPSpace().validate(arch)


def test_space_options_are_validated():
    with pytest.raises(ValueError, match="smallest first"):
        MLPSpace(widths=[64, 16])
    with pytest.raises(ValueError, match="max_dpeth"):
        MLPSpace(max_dpeth=2)


def test_estimator_conforms():
    space = MLPSpace()
    check_estimator(DigitsMLPAccuracy(space, **FAST), space, n=3)


def test_estimator_really_trains(tmp_path):
    space = MLPSpace()
    accuracy = {
        seed: DigitsMLPAccuracy(space, seed=seed).evaluate(
            space.largest(), EvalContext(run_dir=tmp_path)
        )["digits_acc"]
        for seed in (0, 1)
    }
    assert 0.85 < accuracy[0] <= 1.0, accuracy  # chance is 0.1
    assert accuracy[0] != accuracy[1]  # the seed picks the split and the initial weights


def test_estimator_options_are_validated():
    with pytest.raises(ValueError, match="max_iter"):
        DigitsMLPAccuracy(MLPSpace(), max_iter=0)


def test_hardware_conforms():
    space = MLPSpace()
    check_hardware(MLPParams(space), space)


def test_hardware_counts_weights_and_biases():
    arch = {"depth": 2, "width": [16, 32], "activation": "relu", "solver": "adam"}
    expected = (64 + 1) * 16 + (16 + 1) * 32 + (32 + 1) * 10
    assert MLPParams(MLPSpace()).measure(arch, None, None) == {"params": expected}


def test_installed_plugin_conforms():
    if not importlib.metadata.entry_points(group="nasforge", name="nasforge_template"):
        pytest.skip(
            "nasforge-plugin-template is not installed, so nasforge cannot discover it: "
            "run `pip install -e .` in the plugin's folder"
        )
    assert check_plugin_items("template.", n=10) == 3  # space, estimator, hardware
