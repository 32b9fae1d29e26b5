"""The plugin conformance suite: point it at your space, estimator or hardware model.

Each ``check_*`` function runs the contract's checks and raises ``AssertionError`` with a
message naming what broke, so it reads well inside any test runner::

    from nasforge.testing import check_space, check_estimator

    def test_my_space():
        check_space(MySpace())

    def test_my_estimator():
        space = MySpace()
        check_estimator(MyEstimator(space=space), space)

``check_plugin_items(prefix)`` builds everything an installed plugin registered under
``prefix`` through the plugin manager — the way an experiment would — and checks each.
"""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from .errors import ArchError
from .sdk import Component, Estimator, EvalContext, Hardware
from .space import SearchSpace


def _archs(space: SearchSpace, n: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [space.largest(), space.smallest(), *(space.sample(rng) for _ in range(n))]


def check_space(space: SearchSpace, *, n: int = 50, seed: int = 0) -> None:
    """Sampling stays inside the space, archs are JSON, encode/validate/suggest round-trip,
    canonical forms are stable, sampling is deterministic under a seed."""
    assert isinstance(space, SearchSpace), f"{space!r} is not a SearchSpace"
    card = space.cardinality()
    assert isinstance(card, int) and card >= 1, (
        f"cardinality() must be a positive int, got {card!r}"
    )
    width = space.encoded_width()
    a = [space.sample(seed) for _ in range(3)]
    assert a[0] == a[1] == a[2], "sample(seed) is not deterministic for a fixed seed"
    assert _archs(space, n, seed) == _archs(space, n, seed), "sampling is not deterministic"

    for arch in _archs(space, n, seed):
        assert isinstance(arch, dict), f"an arch must be a dict, got {type(arch).__name__}"
        text = json.dumps(arch)
        assert json.loads(text) == arch, f"arch does not survive JSON: {arch}"
        try:
            assert space.validate(json.loads(text)) == arch, f"validate changed {arch}"
        except ArchError as exc:
            raise AssertionError(f"a sampled arch fails validate(): {arch}: {exc}") from None
        vec = space.encode(arch)
        assert vec.shape == (width,), f"encode() width {vec.shape} != encoded_width() {width}"
        assert np.all(np.isfinite(vec)), f"encode() is not finite for {arch}"
        assert np.array_equal(vec, space.encode(json.loads(text))), "encode() not stable"
        fixed = optuna.trial.FixedTrial(space.to_params(arch))
        assert space.suggest(fixed) == arch, f"to_params/suggest do not round-trip {arch}"
        canon = space.canonical(arch)
        assert space.canonical(canon) == canon, f"canonical() is not idempotent on {arch}"
        assert space.key(arch) == space.key(canon), f"key() differs from its canonical for {arch}"
        assert space.contains(canon), f"canonical() left the space: {canon}"

    arch = space.sample(seed)
    for bad, why in (
        ({**arch, "__nasforge_unknown__": 1}, "an unknown key"),
        ({k: v for k, v in arch.items() if k != next(iter(arch))}, "a missing key"),
        ("not a dict", "a non-mapping"),
    ):
        try:
            space.validate(bad)
        except ArchError as exc:
            assert str(exc), "ArchError without a message"
        else:
            raise AssertionError(f"validate() accepted {why}: {bad!r}")

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(min(n, 20)):
        trial = study.ask()
        suggested = space.suggest(trial)
        assert space.contains(suggested), (
            f"suggest() produced an arch outside the space: {suggested}"
        )
        study.tell(trial, 0.0)


def _check_metrics(component: Component, produced: Any, arch: Mapping[str, Any]) -> None:
    name = type(component).__name__
    assert component.metrics, f"{name} declares no metrics"
    assert isinstance(produced, dict), f"{name} returned {type(produced).__name__}, not a dict"
    missing = set(component.metrics) - set(produced)
    assert not missing, f"{name} did not return declared metrics {sorted(missing)} for {arch}"
    for key, value in produced.items():
        assert isinstance(value, int | float) and math.isfinite(value), (
            f"{name} returned a non-finite or non-numeric {key}={value!r} for {arch}"
        )
    for metric_name, metric in component.metrics.items():
        assert metric.name == metric_name, f"{name}: metric key {metric_name} != {metric.name}"


def _check_component(
    component: Component,
    produce: Callable[[dict[str, Any], EvalContext], Any],
    archs: Iterable[Mapping[str, Any]],
    run_dir: Path | None,
    deterministic: bool,
    context: EvalContext | None = None,
) -> None:
    """``setup`` once, then every arch's metrics: declared, finite, repeatable if asked."""
    with contextlib.ExitStack() as stack:
        if context is None:
            if run_dir is None:
                folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="nasforge-"))
                run_dir = Path(folder)
            context = EvalContext(run_dir=Path(run_dir))
        component.setup(context)
        for arch in archs:
            first = produce(dict(arch), context)
            _check_metrics(component, first, arch)
            if deterministic:
                again = produce(dict(arch), context)
                assert first == again, f"{type(component).__name__} is not deterministic on {arch}"


def check_estimator(
    estimator: Estimator,
    space: SearchSpace,
    *,
    n: int = 5,
    seed: int = 0,
    deterministic: bool = True,
    archs: Iterable[Mapping[str, Any]] | None = None,
    run_dir: Path | None = None,
    context: EvalContext | None = None,
) -> None:
    """``setup`` then ``evaluate`` returns every declared metric, finite, for valid archs
    (and the same values twice when ``deterministic``). Pass ``context`` (with its
    ``supernet`` and ``task``) for an estimator that needs them."""
    assert isinstance(estimator, Estimator), f"{estimator!r} is not an Estimator"
    archs = _archs(space, n, seed) if archs is None else archs
    _check_component(estimator, estimator.evaluate, archs, run_dir, deterministic, context)


def check_hardware(
    hardware: Hardware,
    space: SearchSpace,
    *,
    n: int = 5,
    seed: int = 0,
    subnet_for: Callable[[dict[str, Any]], Any] | None = None,
    archs: Iterable[Mapping[str, Any]] | None = None,
    run_dir: Path | None = None,
) -> None:
    """``setup`` then ``measure`` returns every declared metric, finite, for valid archs.
    ``subnet_for(arch)`` builds the subnet for spaces with a supernet."""
    assert isinstance(hardware, Hardware), f"{hardware!r} is not a Hardware model"

    def measure(arch: dict[str, Any], context: EvalContext) -> Any:
        return hardware.measure(arch, subnet_for(arch) if subnet_for else None, context)

    archs = _archs(space, n, seed) if archs is None else archs
    _check_component(hardware, measure, archs, run_dir, deterministic=False)


def check_plugin_items(
    prefix: str,
    options: Mapping[str, Any] | None = None,
    component_options: Mapping[str, Mapping[str, Any]] | None = None,
    **kwargs: Any,
) -> int:
    """Build and check every space, estimator and hardware model registered under
    ``prefix`` (e.g. ``"gnn."``) through the installed plugins; returns how many.

    ``options`` are the space options and ``component_options`` maps an estimator's or
    hardware model's registered name to its options. Each component is built on the space
    registered under its own name, else on the first space of the prefix it supports.
    """
    from .plugins import registry

    reg = registry()
    spaces = {n: reg.get("space", n).factory(**(options or {})) for n in reg.names("space")
              if n.startswith(prefix)}  # fmt: skip
    assert spaces, f"no space is registered under {prefix!r}"
    for space in spaces.values():
        check_space(space, **kwargs)
    count = len(spaces)
    for kind, check in (("estimator", check_estimator), ("hardware", check_hardware)):
        for name in reg.names(kind):
            if not name.startswith(prefix):
                continue
            factory = reg.get(kind, name).factory
            types = getattr(factory, "space_types", ()) or (SearchSpace,)
            space = spaces.get(name) or next(
                (s for s in spaces.values() if isinstance(s, types)), None
            )
            assert space is not None, (
                f"{kind} '{name}' supports none of the spaces under {prefix!r}"
            )
            check(factory(space=space, **(component_options or {}).get(name, {})), space)
            count += 1
    return count


def check_supernet(
    space: SearchSpace,
    supernet: Any,
    *,
    n: int = 5,
    seed: int = 0,
    atol: float = 1e-5,
    batch: int = 2,
    input_shape: Callable[[dict[str, Any]], tuple[int, ...]] | None = None,
) -> None:
    """The supernet contract on the largest, smallest and ``n`` sampled archs (eval mode):
    ``set_active`` + forward equals ``extract(arch)`` forward to ``atol``; outputs have the
    space's ``num_classes`` (when it declares one); the extracted subnet holds no elastic
    op; extracting leaves the active subnet as it was; a bad arch raises ``ArchError``;
    the ``state_dict`` is plain tensors that survive ``torch.save`` and
    ``torch.load(weights_only=True)``.

    Inputs are random with the space's ``input_shape(arch)`` (pass ``input_shape`` for a
    space without one), or the space's own ``example_input(arch, batch, generator)`` when it
    has one (token ids for a language model). The supernet's mode and active arch are
    restored afterwards.
    """
    import io

    import torch

    from .nn import ElasticModule
    from .sdk import Supernet

    name = type(supernet).__name__
    assert isinstance(supernet, torch.nn.Module), f"{name} is not a torch.nn.Module"
    assert isinstance(supernet, Supernet), f"{name} is not a nasforge.Supernet"
    shape_of = input_shape or getattr(space, "input_shape", None)
    assert shape_of is not None, f"{type(space).__name__} has no input_shape(arch); pass one"
    example_input = None if input_shape else getattr(space, "example_input", None)
    num_classes = getattr(space, "num_classes", None)
    was_training = supernet.training
    previous = getattr(supernet, "active_arch", None)
    generator = torch.Generator().manual_seed(seed)
    device = next(supernet.parameters()).device
    supernet.eval()
    try:
        archs = _archs(space, n, seed)
        for arch in archs:
            if example_input is not None:
                x = example_input(arch, batch, generator).to(device)
            else:
                x = torch.randn(batch, *shape_of(arch), generator=generator).to(device)
            supernet.set_active(arch)
            with torch.no_grad():
                expected = supernet(x)
                subnet = supernet.extract(arch)
                assert isinstance(subnet, torch.nn.Module), f"extract() returned {subnet!r}"
                subnet.eval()
                got = subnet(x)
                again = supernet(x)
                other = supernet.extract(archs[0] if arch != archs[0] else archs[1])
                after_other = supernet(x)
            elastic = [
                f"{path or '<root>'} ({type(m).__name__})"
                for path, m in subnet.named_modules()
                if isinstance(m, ElasticModule | Supernet)
            ]
            assert not elastic, f"extract({arch}) holds elastic modules: {elastic[:3]}"
            del other
            assert expected.shape == got.shape, (
                f"output shapes differ for {arch}: supernet {tuple(expected.shape)}, "
                f"extracted {tuple(got.shape)}"
            )
            if num_classes is not None:
                assert expected.shape[-1] == num_classes, (
                    f"{name} outputs {expected.shape[-1]} classes, the space has {num_classes}"
                )
            diff = (expected - got).abs().max().item()
            assert diff <= atol, f"extract({arch}) differs from the supernet by {diff:.3g} > {atol}"
            assert torch.equal(expected, again), f"{name} is not deterministic in eval mode"
            assert torch.equal(expected, after_other), (
                f"extracting another arch changed the active subnet of {name} (arch {arch})"
            )

        arch = archs[0]
        first = next(iter(arch))
        for bad, why in (
            ({**arch, "__nasforge_unknown__": 1}, "an unknown key"),
            ({**arch, first: "__not_a_choice__"}, f"a bad value for {first}"),
        ):
            try:
                supernet.set_active(bad)
            except ArchError:
                pass
            else:
                raise AssertionError(f"{name}.set_active accepted {why}")

        state = supernet.state_dict()
        kinds = {type(v).__name__ for v in state.values() if not isinstance(v, torch.Tensor)}
        assert not kinds, f"{name}.state_dict() holds non-tensors: {sorted(kinds)}"
        buffer = io.BytesIO()
        torch.save(state, buffer)
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=True)
        assert loaded.keys() == state.keys(), "state_dict keys changed through torch.save/load"
        for key, value in state.items():
            assert torch.equal(loaded[key], value), f"state_dict[{key!r}] changed on reload"
        supernet.load_state_dict(loaded)
    finally:
        if previous:
            supernet.set_active(previous)
        supernet.train(was_training)
