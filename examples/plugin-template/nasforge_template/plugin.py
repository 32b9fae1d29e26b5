"""The ``nasforge_template`` plugin: the hooks nasforge calls, and nothing else.

This module is what the ``nasforge`` entry point in ``pyproject.toml`` names. nasforge
imports it and calls each ``@hookimpl`` with a typed ``register(name, factory)`` callback
(the whole plugin surface is ``docs/plugins.md`` in the nasforge repository).
Names are ``<prefix>.<thing>`` and must be unique across every installed plugin.

Registered names:

- space ``template.mlp`` — MLP classifiers (:class:`~nasforge_template.space.MLPSpace`);
- estimator ``template.digits_mlp`` — ``digits_acc``, validation accuracy after training;
- hardware ``template.params`` — ``params``, the exact parameter count.
"""

from __future__ import annotations

from nasforge import RegisterEstimator, RegisterHardware, RegisterSpace, hookimpl

from .estimator import DigitsMLPAccuracy
from .hardware import MLPParams
from .space import MLPSpace


@hookimpl
def register_spaces(register: RegisterSpace) -> None:
    register("template.mlp", MLPSpace)


@hookimpl
def register_estimators(register: RegisterEstimator) -> None:
    register("template.digits_mlp", DigitsMLPAccuracy)


@hookimpl
def register_hardware(register: RegisterHardware) -> None:
    register("template.params", MLPParams)
