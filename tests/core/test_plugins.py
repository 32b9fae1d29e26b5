"""The plugin manager's contract.

Plugins come from the ``nasforge`` entry-point group — the built-in ones exactly like a
third party's — and register factories by name through register-callback hooks. The
registry remembers, for every name, its kind, factory, plugin and distribution. Anything a
plugin gets wrong (a name taken twice, an exception in a hook, a hook the specs do not
know, an argument a spec does not offer) fails loudly with one line naming the plugin.

Third-party plugins are simulated by adding fake entry points next to the real ones.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import subprocess
import sys
from types import SimpleNamespace

import pytest

import nasforge.plugins
from nasforge import PluginError, SearchSpace, hookimpl
from nasforge.cli import build_parser, main
from nasforge.plugins import build_registry
from nasforge_gnn.plugin import NasBenchGraphAccuracy, NasBenchGraphCost, NasBenchGraphSpace
from nasforge_search.optuna_samplers import NSGA2Strategy

VERSION = importlib.metadata.version("nasforge")
_real_entry_points = nasforge.plugins._entry_points


def entry_point(name: str, plugin: object, dist: str | None = "acme-nas", version: str = "1.2.0"):
    """A stand-in for an ``importlib.metadata.EntryPoint`` of group ``nasforge``."""

    def load():
        if isinstance(plugin, BaseException):
            raise plugin
        return plugin

    return SimpleNamespace(
        name=name, load=load, dist=SimpleNamespace(name=dist, version=version) if dist else None
    )


def builtin_entry_points():
    """The entry points of the nasforge distribution itself (not of other installed plugins)."""
    return [ep for ep in _real_entry_points() if ep.dist is not None and ep.dist.name == "nasforge"]


@pytest.fixture(autouse=True)
def only_builtin_plugins(monkeypatch):
    """Keep these tests independent of whatever else is installed in the environment."""
    monkeypatch.setattr(nasforge.plugins, "_entry_points", builtin_entry_points)


@pytest.fixture
def installed(monkeypatch):
    """Install fake entry points next to the built-in ones: ``installed(ep, ...)``."""

    def install(*eps):
        monkeypatch.setattr(
            nasforge.plugins, "_entry_points", lambda: [*builtin_entry_points(), *eps]
        )

    return install


class TinySpace(SearchSpace):
    """A space with nothing in it."""

    def __init__(self):
        super().__init__([])


class SpacePlugin:
    def __init__(self, name="acme.tiny"):
        self.name = name

    @hookimpl
    def register_spaces(self, register):
        register(self.name, TinySpace)


class StrategyPlugin:
    @hookimpl
    def register_strategies(self, register):
        register("nsga2", NSGA2Strategy)


class RaisingPlugin:
    @hookimpl
    def register_spaces(self, register):
        raise RuntimeError("table file missing")


class UnknownHookPlugin:
    @hookimpl
    def register_optimizers(self, register):
        """Not a nasforge hook (a typo of register_strategies, say)."""


class ExtraArgumentPlugin:
    @hookimpl
    def register_spaces(self, register, config):
        """``config`` is not an argument of the register_spaces spec."""


# -- what the registry holds ---------------------------------------------------------------


def test_the_registry_lists_the_built_in_strategies():
    reg = build_registry()
    assert reg.names("strategy") == ["ehvi", "gp", "linas", "nsga2", "nsga3", "random", "tpe"]
    for name in reg.names("strategy"):
        item = reg.get("strategy", name)
        assert (item.kind, item.plugin, item.distribution, item.version) == (
            "strategy",
            "nasforge_search",
            "nasforge",
            VERSION,
        )
    assert reg.get("strategy", "nsga2").factory is NSGA2Strategy


def test_the_registry_lists_the_gnn_plugin_items():
    reg = build_registry()
    expected = {
        "space": NasBenchGraphSpace,
        "estimator": NasBenchGraphAccuracy,
        "hardware": NasBenchGraphCost,
    }
    for kind, factory in expected.items():
        assert "gnn.nasbench_graph" in reg.names(kind)
        item = reg.get(kind, "gnn.nasbench_graph")
        assert item.factory is factory
        assert item.origin == f"nasforge_gnn (nasforge {VERSION})"
    assert [n for n in reg.names("trainer") if n.startswith("gnn.")] == []


@pytest.mark.smoke
def test_first_party_plugins_register_what_they_document():
    by_plugin: dict[str, set[tuple[str, str]]] = {}
    for item in build_registry():
        by_plugin.setdefault(item.plugin, set()).add((item.kind, item.name))
    assert by_plugin["nasforge_cnn"] == {
        ("space", "cnn.mobilenetv3"), ("space", "cnn.resnet"),
        ("task", "cnn.digits"), ("task", "cnn.mnist1d"), ("task", "cnn.image_folder"),
        ("task", "cnn.npz"), ("trainer", "cnn.sandwich"), ("trainer", "cnn.progressive"),
        ("estimator", "cnn.accuracy"),
    }  # fmt: skip
    assert by_plugin["nasforge_hw"] == {
        ("hardware", "hw.macs"), ("hardware", "hw.latency"), ("hardware", "hw.memory"),
        ("hardware", "hw.latency_lut"), ("command", "lut"),
    }  # fmt: skip


def test_building_the_registry_does_not_import_torch():
    """Heavy plugins register lazily: listing plugins or a table-backed search never pays
    torch's import."""
    code = (
        "import sys; from nasforge.plugins import build_registry; r = build_registry(); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_lazy_factory_resolves_on_use_and_names_a_broken_target():
    from nasforge.plugins import lazy

    item = build_registry().get("trainer", "cnn.sandwich")
    assert item.summary == "sandwich rule + inplace distillation"
    assert item.options_model.__name__ == "SandwichOptions"
    with pytest.raises(PluginError, match=r"^cannot import nasforge_cnn.nope:X: ModuleNotFound"):
        lazy("nasforge_cnn.nope:X")()


def test_items_carry_their_options_model_and_summary():
    item = build_registry().get("space", "gnn.nasbench_graph")
    assert item.options_model is NasBenchGraphSpace.Options
    assert item.summary == "NAS-Bench-Graph macro space: 9 link patterns x 4 computing nodes' ops."


def test_iteration_goes_by_kind_then_name():
    kinds = [(i.kind, i.name) for i in build_registry()]
    order = [
        "space", "task", "trainer", "estimator", "hardware", "strategy", "predictor", "command"
    ]  # fmt: skip
    assert kinds == sorted(kinds, key=lambda kn: (order.index(kn[0]), kn[1]))
    assert [n for k, n in kinds if k == "strategy"] == [
        "ehvi",
        "gp",
        "linas",
        "nsga2",
        "nsga3",
        "random",
        "tpe",
    ]


def test_an_unknown_name_lists_what_is_available():
    reg = build_registry()
    with pytest.raises(KeyError) as info:
        reg.get("strategy", "cmaes")
    assert (
        info.value.args[0]
        == "unknown strategy 'cmaes' (available: ehvi, gp, linas, nsga2, nsga3, random, tpe)"
    )
    with pytest.raises(KeyError) as info:
        reg.get("trainer", "sandwich")
    assert info.value.args[0] == (
        "unknown trainer 'sandwich' (available: cnn.progressive, cnn.sandwich, llm.lora_sandwich, llm.qfa, tdnn.progressive)"
    )


def test_a_third_party_entry_point_is_loaded_like_a_built_in(installed):
    installed(entry_point("acme", SpacePlugin()))
    item = build_registry().get("space", "acme.tiny")
    assert (item.plugin, item.distribution, item.version) == ("acme", "acme-nas", "1.2.0")
    assert item.origin == "acme (acme-nas 1.2.0)"


def test_extra_plugins_are_registered_without_a_distribution():
    reg = build_registry(extra_plugins=[("local", SpacePlugin("local.tiny"))], entry_points=False)
    item = reg.get("space", "local.tiny")
    assert (item.plugin, item.distribution, item.origin) == ("local", None, "local")
    assert reg.names("strategy") == []


# -- what plugins get wrong ----------------------------------------------------------------


def test_a_name_registered_twice_names_both_plugins(installed):
    installed(
        entry_point("acme_one", SpacePlugin(), dist="acme-one", version="1.0"),
        entry_point("acme_two", SpacePlugin(), dist="acme-two", version="2.0"),
    )
    with pytest.raises(PluginError) as info:
        build_registry()
    assert str(info.value) == (
        "space 'acme.tiny' is registered twice: by acme_one (acme-one 1.0) and by acme_two (acme-two 2.0)"
    )


def test_a_third_party_cannot_take_a_built_in_name(installed):
    installed(entry_point("acme", StrategyPlugin()))
    with pytest.raises(PluginError) as info:
        build_registry()
    assert str(info.value) == (
        f"strategy 'nsga2' is registered twice: by nasforge_search (nasforge {VERSION}) "
        "and by acme (acme-nas 1.2.0)"
    )


def test_two_plugins_with_one_entry_point_name_are_rejected(installed):
    installed(
        entry_point("acme", SpacePlugin("acme.one"), dist="acme-one", version="1.0"),
        entry_point("acme", SpacePlugin("acme.two"), dist="acme-two", version="2.0"),
    )
    with pytest.raises(PluginError) as info:
        build_registry()
    assert (
        str(info.value)
        == "two plugins are named 'acme': acme (acme-one 1.0) and acme (acme-two 2.0)"
    )


def test_a_plugin_that_fails_to_import_is_named(installed):
    installed(entry_point("acme", ModuleNotFoundError("No module named 'acme_nas'")))
    with pytest.raises(PluginError) as info:
        build_registry()
    assert str(info.value) == (
        "plugin 'acme (acme-nas 1.2.0)' failed to import: ModuleNotFoundError: No module named 'acme_nas'"
    )


def test_a_plugin_raising_in_a_register_hook_is_named(installed):
    installed(entry_point("acme", RaisingPlugin()))
    with pytest.raises(PluginError) as info:
        build_registry()
    assert str(info.value) == (
        "plugin 'acme (acme-nas 1.2.0)' raised in register_spaces: RuntimeError: table file missing"
    )
    assert isinstance(info.value.__cause__, RuntimeError)


@pytest.mark.parametrize(
    ("name", "factory", "message"),
    [
        ("", TinySpace, "plugin 'acme' registered a space without a name"),
        (
            "acme.tiny",
            "TinySpace",
            "plugin 'acme' registered space 'acme.tiny' with a non-callable",
        ),
    ],
)
def test_a_registration_needs_a_name_and_a_callable(name, factory, message):
    class Plugin:
        @hookimpl
        def register_spaces(self, register):
            register(name, factory)

    with pytest.raises(PluginError) as info:
        build_registry(extra_plugins=[("acme", Plugin())], entry_points=False)
    assert str(info.value) == message


def test_an_unknown_hook_is_rejected_naming_the_hook(installed):
    installed(entry_point("acme", UnknownHookPlugin()))
    with pytest.raises(PluginError, match="implements an unknown hook") as info:
        build_registry()
    assert "'register_optimizers'" in str(info.value)


def test_an_unknown_hook_names_the_plugin_by_its_name_and_distribution(installed):
    installed(entry_point("acme", UnknownHookPlugin()))
    with pytest.raises(PluginError) as info:
        build_registry()
    message = str(info.value)
    assert message.startswith("plugin 'acme (acme-nas 1.2.0)' implements an unknown hook")
    assert "register_optimizers" in message
    assert " object at 0x" not in message


def test_a_hook_argument_the_spec_lacks_is_rejected(installed):
    installed(entry_point("acme", ExtraArgumentPlugin()))
    with pytest.raises(PluginError) as info:
        build_registry()
    message = str(info.value)
    assert message.startswith("plugin 'acme (acme-nas 1.2.0)' is invalid: ")
    assert "register_spaces" in message
    assert "'config'" in message


def test_a_hook_argument_the_spec_lacks_is_reported_on_one_line(installed):
    installed(entry_point("acme", ExtraArgumentPlugin()))
    with pytest.raises(PluginError) as info:
        build_registry()
    assert "\n" not in str(info.value)


# -- lifecycle hooks -----------------------------------------------------------------------


class Recorder:
    def __init__(self, calls: list):
        self.calls = calls

    @hookimpl
    def experiment_start(self, experiment, run_dir):
        self.calls.append(("start", experiment, run_dir))

    @hookimpl
    def trial_complete(self, trial):
        """Takes only the argument it needs."""
        self.calls.append(("trial", trial))


class Failing:
    @hookimpl
    def trial_complete(self, experiment, trial):
        raise RuntimeError("disk full")


def test_notify_calls_every_implementation_with_the_arguments_it_names():
    a, b = [], []
    reg = build_registry([("rec_a", Recorder(a)), ("rec_b", Recorder(b))], entry_points=False)
    reg.notify("experiment_start", raise_errors=True, experiment="exp", run_dir="runs/x")
    reg.notify("trial_complete", raise_errors=True, experiment="exp", trial=7)
    assert a == b == [("start", "exp", "runs/x"), ("trial", 7)]


@pytest.mark.parametrize("failing_first", [True, False], ids=["failing-first", "failing-last"])
def test_notify_survives_a_raising_plugin_when_asked(caplog, failing_first):
    calls = []
    plugins = [("failing", Failing()), ("rec", Recorder(calls))]
    reg = build_registry(plugins if failing_first else plugins[::-1], entry_points=False)
    with caplog.at_level(logging.WARNING, logger="nasforge.plugins"):
        reg.notify("trial_complete", raise_errors=False, experiment="exp", trial=3)
    assert calls == [("trial", 3)]
    [record] = caplog.records
    assert record.getMessage().startswith("plugin 'failing' raised in trial_complete: ")
    assert record.getMessage().endswith("disk full")


def test_notify_raises_naming_the_plugin_when_errors_matter():
    reg = build_registry([("failing", Failing())], entry_points=False)
    with pytest.raises(PluginError) as info:
        reg.notify("trial_complete", raise_errors=True, experiment="exp", trial=3)
    assert str(info.value).startswith("plugin 'failing' raised in trial_complete: ")
    assert isinstance(info.value.__cause__, RuntimeError)


def test_notify_errors_read_like_register_hook_errors(installed):
    installed(entry_point("acme", Failing()))
    with pytest.raises(PluginError) as info:
        build_registry().notify("trial_complete", raise_errors=True, experiment="exp", trial=3)
    assert str(info.value) == (
        "plugin 'acme (acme-nas 1.2.0)' raised in trial_complete: RuntimeError: disk full"
    )


# -- `nasforge plugins` ---------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch):
    """Run ``nasforge plugins`` against a fresh registry that also holds a local plugin."""
    monkeypatch.setenv("RAY_DEDUP_LOGS", "0")
    reg = build_registry(extra_plugins=[("local", SpacePlugin("local.tiny"))])
    monkeypatch.setattr(nasforge.plugins, "_default", reg)
    return main


@pytest.mark.smoke
def test_plugins_prints_a_table_of_kind_name_plugin_distribution(cli, capsys):
    assert cli(["plugins"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert rows[0] == ["KIND", "NAME", "PLUGIN", "DISTRIBUTION", "SUMMARY"]
    by_name = {(row[0], row[1]): row for row in rows[1:]}
    # distribution and version print as one column, "nasforge 0.1.0"; then the summary
    assert by_name["strategy", "nsga2"][2:6] == [
        "nasforge_search",
        "nasforge",
        VERSION,
        "NSGA-II",
    ]
    assert by_name["space", "gnn.nasbench_graph"][2:5] == ["nasforge_gnn", "nasforge", VERSION]
    assert by_name["space", "local.tiny"][2:5] == ["local", "-", "A"]
    assert len(rows) == 1 + len(list(build_registry())) + 1  # + the local plugin


def test_plugins_table_columns_line_up(cli, capsys):
    cli(["plugins"])
    lines = capsys.readouterr().out.splitlines()
    header = lines[0]
    for column in ("NAME", "PLUGIN", "DISTRIBUTION", "SUMMARY"):
        start = header.index(column)
        assert all(line[start - 2 : start] == "  " and line[start] != " " for line in lines[1:])


@pytest.mark.smoke
def test_plugins_json_lists_every_item_with_its_origin(cli, capsys):
    assert cli(["plugins", "--json"]) == 0
    items = json.loads(capsys.readouterr().out)
    by_name = {(i["kind"], i["name"]): i for i in items}
    assert len(items) == len(by_name) == len(list(build_registry())) + 1
    assert by_name[("hardware", "gnn.nasbench_graph")] == {
        "kind": "hardware",
        "name": "gnn.nasbench_graph",
        "plugin": "nasforge_gnn",
        "distribution": "nasforge",
        "version": VERSION,
        "summary": "Inference latency and parameter count measured by NAS-Bench-Graph.",
    }
    assert by_name[("space", "local.tiny")]["distribution"] is None
    assert by_name[("space", "local.tiny")]["version"] is None


# -- commands plugins add ------------------------------------------------------------------


@pytest.fixture
def monkey_default(monkeypatch):
    """Set the process's registry (``None``: built afresh, from the entry points, on use)."""

    def use(reg):
        monkeypatch.setattr(nasforge.plugins, "_default", reg)

    return use


class CommandPlugin:
    """Adds ``nasforge hello NAME [--shout]``."""

    def __init__(self, name="hello"):
        self.name = name

    @hookimpl
    def register_commands(self, register):
        def arguments(parser):
            parser.add_argument("who")
            parser.add_argument("--shout", action="store_true")

        def run(args):
            """Greet someone."""
            text = f"hello {args.who}"
            print(text.upper() if args.shout else text)
            return 0 if args.who != "nobody" else 3

        register(self.name, run, arguments=arguments, help="say hello")


def test_a_plugin_adds_a_command_with_its_arguments(installed, capsys, monkey_default):
    installed(entry_point("acme", CommandPlugin()))
    monkey_default(None)
    assert main(["hello", "world", "--shout"]) == 0
    assert capsys.readouterr().out == "HELLO WORLD\n"
    assert main(["hello", "nobody"]) == 3
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "say hello" in capsys.readouterr().out


def test_nasforge_lut_is_a_command_of_the_hw_plugin_not_of_the_core():
    item = build_registry().get("command", "lut")
    assert item.plugin == "nasforge_hw" and "look-up table" in item.extras["help"]
    core = build_parser(plugin_commands=False)
    assert "lut" not in core._subparsers._group_actions[0].choices


def test_a_plugin_command_cannot_take_a_core_commands_name(installed, capsys, monkey_default):
    installed(entry_point("acme", CommandPlugin("search")))
    monkey_default(None)
    assert main(["hello-unknown"]) == 2
    assert (
        "plugin acme (acme-nas 1.2.0) registers command 'search', which nasforge already has"
        in (capsys.readouterr().err)
    )


def test_core_commands_do_not_load_plugins(installed, capsys, monkey_default):
    installed(entry_point("acme", ImportError("No module named 'acme_deps'")))
    monkey_default(None)
    assert main(["env", "--json"]) == 0  # a broken plugin does not break diagnosing it
    capsys.readouterr()
    assert main(["plugins"]) == 2
    assert "plugin 'acme (acme-nas 1.2.0)' failed to import" in capsys.readouterr().err


# -- plugins whose extra is not installed ---------------------------------------------------


class NeedsExtra:
    """A plugin whose dependencies come with its distribution's ``vision`` extra."""

    requires_extra = "vision"

    @hookimpl
    def register_spaces(self, register):
        register("acme.vision", TinySpace)


def extra_entry_point(requires):
    ep = entry_point("acme", NeedsExtra())
    ep.dist.requires = requires
    return ep


def test_a_plugin_without_its_extra_is_listed_as_unavailable_with_the_fix(
    installed, capsys, monkey_default
):
    installed(
        extra_entry_point(
            ['no-such-package>=1; extra == "vision"', 'numpy>=1; extra == "vision"', "pyyaml"]
        )
    )
    reg = build_registry()
    assert "acme.vision" not in reg.names("space")
    [missing] = reg.unavailable
    assert missing.hint == "needs no-such-package>=1: pip install 'acme-nas[vision]'"
    with pytest.raises(KeyError, match=r"plugin acme is unavailable, it needs no-such-package"):
        reg.get("space", "acme.vision")
    monkey_default(reg)
    assert main(["plugins"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "unavailable" in line)
    assert row.split()[:3] == ["unavailable", "-", "acme"]
    assert "pip install 'acme-nas[vision]'" in row


def test_a_plugin_with_its_extra_installed_loads(installed):
    installed(extra_entry_point(['numpy>=1; extra == "vision"', 'numpy<1; extra == "other"']))
    reg = build_registry()
    assert "acme.vision" in reg.names("space") and not reg.unavailable


def test_an_extra_at_a_version_it_does_not_accept_counts_as_missing(installed):
    installed(extra_entry_point(['numpy<1; extra == "vision"']))
    assert [u.missing for u in build_registry().unavailable] == [("numpy<1",)]


def test_the_first_party_plugins_declare_their_extras():
    from importlib.metadata import distribution

    import nasforge_cnn.plugin
    import nasforge_gnn.plugin

    assert nasforge_cnn.plugin.requires_extra == "cnn"
    assert nasforge_gnn.plugin.requires_extra == "gnn"
    extras = distribution("nasforge").metadata.get_all("Provides-Extra")
    assert {"cnn", "gnn", "onnx", "all", "dev"} <= set(extras)


def test_a_factory_that_builds_the_wrong_type_names_its_plugin():
    from nasforge.experiment import parse_experiment
    from nasforge.plan import resolve

    class WrongEstimator:
        @hookimpl
        def register_estimators(self, register):
            register("local.not_an_estimator", lambda space, **options: {"acc": 1.0})

    reg = build_registry(extra_plugins=[("local", WrongEstimator())])
    experiment = parse_experiment(
        {"name": "x", "space": {"name": "gnn.nasbench_graph"},
         "estimators": [{"name": "local.not_an_estimator"}],
         "objectives": [{"metric": "acc", "direction": "maximize"}],
         "search": {"n_trials": 1}}
    )  # fmt: skip
    with pytest.raises(PluginError, match=r"^estimator 'local.not_an_estimator' from plugin "
                       r"local built a dict, expected Estimator$"):  # fmt: skip
        resolve(experiment, reg)
