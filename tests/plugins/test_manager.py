"""The plugin manager: built-ins, the strategy registry, its failure modes and entry-point discovery."""

from __future__ import annotations

import importlib
import sys
import uuid
from importlib import metadata

import pytest

import torch_lottery as tl
from torch_lottery import hookimpl
from torch_lottery.plugins import manager
from torch_lottery.plugins.manager import (
    DEFAULT_PLUGINS,
    DISABLE_AUTOLOAD_ENV,
    ENTRY_POINT_GROUP,
    PluginError,
    StrategyConflict,
    StrategyConflictError,
    StrategyError,
    get_plugin_manager,
    get_strategy,
    list_strategies,
    plugin_errors,
    reset_plugin_manager,
    strategy_conflicts,
    strategy_entries,
)
from torch_lottery.strategies import IterativeMagnitude, OneShotMagnitude, RandomPruning

BUILTINS = {"imp": IterativeMagnitude, "one_shot": OneShotMagnitude, "random": RandomPruning}


def _builtins_work():
    names = list_strategies()
    for name, cls in BUILTINS.items():
        assert name in names
        assert get_strategy(name) is cls
    assert get_strategy("imp")(rate=0.3).rate == 0.3


def _registering(plugin_name_hint, *pairs):
    """A plugin object whose register hook registers ``(name, strategy)`` pairs."""

    class Plugin:
        @hookimpl
        def torch_lottery_register_strategies(self, register):
            for name, strategy in pairs:
                register(name, strategy)

    Plugin.__name__ = plugin_name_hint
    return Plugin()


# -- built-ins ---------------------------------------------------------------------------------------
def test_default_plugins_are_the_builtin_modules_registered_by_name():
    assert (
        tuple(
            f"torch_lottery.strategies.{name}"
            for name in (
                "imp",
                "one_shot",
                "random",
                "early_bird",
                "magnitude_init",
                "snip",
                "grasp",
                "synflow",
                "sparse_momentum",
                "rigl",
                "sparse_evolutionary",
                "edge_popup",
                "learned_supermask",
                "targeted_dropout",
            )
        )
        == DEFAULT_PLUGINS
    )
    assert tl.plugins.DEFAULT_PLUGINS == DEFAULT_PLUGINS
    pm = get_plugin_manager()
    for name in DEFAULT_PLUGINS:
        assert pm.get_plugin(name) is importlib.import_module(name)
    assert ENTRY_POINT_GROUP == "torch_lottery"
    assert DISABLE_AUTOLOAD_ENV == "TORCH_LOTTERY_DISABLE_PLUGIN_AUTOLOAD"


def test_builtin_strategies_are_listed_and_provided_by_their_modules():
    builtin = {"imp", "one_shot", "random", "early_bird", "magnitude_init", "snip", "grasp", "synflow"}
    builtin |= {"sparse_momentum", "rigl", "set", "edge_popup", "learned_supermask", "targeted_dropout"}
    assert builtin <= set(list_strategies())
    assert list_strategies() == sorted(list_strategies())
    _builtins_work()
    entries = {e.name: e for e in strategy_entries()}
    assert entries["imp"].plugin == "torch_lottery.strategies.imp"
    assert entries["one_shot"].plugin == "torch_lottery.strategies.one_shot"
    assert entries["random"].plugin == "torch_lottery.strategies.random"
    for name in BUILTINS:  # provided by this distribution, at its installed version
        entry = entries[name]
        assert (entry.distribution, entry.version) == ("torch-lottery", metadata.version("torch-lottery"))
        assert entry.builtin and entry.registered_name == name
        assert entry.qualified_name == f"torch_lottery.strategies.{name}:{name}"
    assert plugin_errors() == [] and strategy_conflicts() == []


def test_get_plugin_manager_is_a_singleton_until_reset():
    first = get_plugin_manager()
    assert get_plugin_manager() is first
    reset_plugin_manager()
    second = get_plugin_manager()
    assert second is not first
    assert second.get_plugin("torch_lottery.strategies.imp") is not None


# -- lookups ---------------------------------------------------------------------------------------------
def test_unknown_strategy_raises_strategy_error_listing_the_registered_names():
    with pytest.raises(StrategyError) as info:
        get_strategy("no_such_strategy")
    message = str(info.value)
    assert "no_such_strategy" in message
    for name in BUILTINS:
        assert name in message
    assert isinstance(info.value, LookupError)
    assert tl.StrategyError is StrategyError


@pytest.mark.parametrize("name", [1, None, b"imp", IterativeMagnitude, ["imp"]])
def test_non_str_strategy_name_raises_type_error(name):
    with pytest.raises(TypeError, match="str"):
        get_strategy(name)


def test_unknown_strategy_name_through_the_driver_is_a_strategy_error():
    import torch

    with pytest.raises(StrategyError, match="nope"):
        tl.find_ticket(torch.nn.Linear(2, 2), lambda m, c: None, strategy="nope", rounds=1)


# -- conflicts and broken plugins -------------------------------------------------------------------
def _conflict_warnings(caught):
    return [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def test_duplicate_name_is_ambiguous_and_both_stay_reachable_qualified(register_plugin):
    register_plugin(_registering("A", ("dup", IterativeMagnitude), ("only_a", IterativeMagnitude)), name="plugin_a")
    register_plugin(_registering("B", ("dup", RandomPruning)), name="plugin_b")

    with pytest.warns(RuntimeWarning, match="'dup'.*'plugin_a'.*'plugin_b'"), pytest.raises(StrategyError) as info:
        get_strategy("dup")
    assert "'plugin_a:dup'" in str(info.value) and "'plugin_b:dup'" in str(info.value)
    assert get_strategy("plugin_a:dup") is IterativeMagnitude
    assert get_strategy("plugin_b:dup") is RandomPruning
    assert "dup" not in list_strategies()
    assert {"plugin_a:dup", "plugin_b:dup", "only_a"} <= set(list_strategies())
    entries = {e.name: e for e in strategy_entries()}
    assert "dup" not in entries
    assert [entries[n].plugin for n in ("plugin_a:dup", "plugin_b:dup")] == ["plugin_a", "plugin_b"]
    assert entries["plugin_a:dup"].registered_name == "dup"
    assert get_strategy("only_a") is IterativeMagnitude  # the rest of plugin_a still works
    _builtins_work()

    (conflict,) = strategy_conflicts()  # the conflict as data
    assert isinstance(conflict, StrategyConflict)
    assert conflict.name == "dup" and conflict.winner is None
    assert [(e.plugin, e.name, e.strategy) for e in conflict.entries] == [
        ("plugin_a", "plugin_a:dup", IterativeMagnitude),
        ("plugin_b", "plugin_b:dup", RandomPruning),
    ]
    assert conflict.shadowed == conflict.entries
    (error,) = plugin_errors()
    assert isinstance(error, StrategyConflictError) and isinstance(error, PluginError)
    assert error.conflict == conflict
    assert "plugin_a" in str(error) and "plugin_b" in str(error) and "dup" in str(error)

    # resolving the conflict makes the name available again (and the qualified name still works)
    get_plugin_manager().unregister(name="plugin_b")
    assert get_strategy("dup") is IterativeMagnitude
    assert get_strategy("plugin_a:dup") is IterativeMagnitude
    assert "dup" in list_strategies() and "plugin_a:dup" not in list_strategies()
    assert plugin_errors() == [] and strategy_conflicts() == []


class Loud(tl.Strategy):
    """A strategy whose prune always raises: using it by mistake cannot go unnoticed."""

    def prune(self, context):
        raise RuntimeError("the plugin's prune ran")


def test_plugin_registering_a_builtin_name_never_disables_the_builtin(register_plugin, tiny_model, train_fn):
    register_plugin(_registering("Shadow", ("imp", Loud), ("loud", Loud)), name="shadow")
    with pytest.warns(RuntimeWarning, match="plugin 'shadow' registers strategy 'imp'.*'shadow:imp'"):
        assert get_strategy("imp") is IterativeMagnitude
    _builtins_work()
    assert get_strategy("shadow:imp") is Loud
    assert get_strategy("loud") is Loud
    names = list_strategies()
    assert {"imp", "shadow:imp", "loud"} <= set(names) and names == sorted(names)
    assert "shadow:loud" not in names  # qualified names are listed only for the strategies that lost their name

    entries = {e.name: e for e in strategy_entries()}
    assert entries["imp"].plugin == "torch_lottery.strategies.imp" and entries["imp"].builtin
    shadowed = entries["shadow:imp"]
    assert (shadowed.plugin, shadowed.registered_name, shadowed.qualified_name) == ("shadow", "imp", "shadow:imp")
    assert (shadowed.distribution, shadowed.version, shadowed.builtin) == ("-", "-", False)

    (conflict,) = strategy_conflicts()
    assert conflict.name == "imp"
    assert conflict.winner == entries["imp"]
    assert [e.name for e in conflict.shadowed] == ["shadow:imp"]
    (error,) = plugin_errors()
    assert isinstance(error, StrategyConflictError) and error.conflict == conflict
    assert "'shadow'" in str(error) and "'imp'" in str(error)

    # the driver: "imp" runs the built-in, "shadow:imp" the plugin's strategy
    ticket = tl.find_ticket(tiny_model, train_fn, strategy="imp", rounds=1)
    assert ticket.config["strategy"] == "imp"
    with pytest.raises(PluginError, match="the plugin's prune ran") as info:
        tl.find_ticket(tiny_model, train_fn, strategy="shadow:imp", rounds=1)
    assert "'shadow:imp'" in str(info.value)


def test_several_plugins_registering_a_builtin_name_are_all_shadowed(register_plugin):
    register_plugin(_registering("S1", ("random", IterativeMagnitude)), name="s1")
    register_plugin(_registering("S2", ("random", OneShotMagnitude)), name="s2")
    with pytest.warns(RuntimeWarning, match="plugins 's1', 's2' register strategy 'random'"):
        assert get_strategy("random") is RandomPruning
    assert get_strategy("s1:random") is IterativeMagnitude
    assert get_strategy("s2:random") is OneShotMagnitude
    (conflict,) = strategy_conflicts()
    assert conflict.winner.plugin == "torch_lottery.strategies.random"
    assert [e.name for e in conflict.entries] == ["random", "s1:random", "s2:random"]
    assert len(plugin_errors()) == 1


def test_a_conflict_warns_once_per_plugin_manager(register_plugin):
    import warnings

    plugin = _registering("Shadow", ("imp", RandomPruning))
    register_plugin(plugin, name="shadow")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            get_strategy("imp")
            list_strategies()
            plugin_errors()
    (message,) = _conflict_warnings(caught)
    assert "'shadow'" in message and "'imp'" in message
    assert len(plugin_errors()) == 1  # still reported every time, only warned about once

    reset_plugin_manager()  # a new manager warns again
    get_plugin_manager().register(plugin, name="shadow")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        get_strategy("imp")
        get_strategy("imp")
    assert len(_conflict_warnings(caught)) == 1
    get_plugin_manager().unregister(plugin)


def test_every_strategy_is_reachable_by_its_qualified_name(register_plugin):
    register_plugin(_registering("Fine", ("fine", OneShotMagnitude)), name="fine_plugin")
    for name, cls in BUILTINS.items():
        assert get_strategy(f"torch_lottery.strategies.{name}:{name}") is cls
    assert get_strategy("fine_plugin:fine") is OneShotMagnitude
    entry = {e.name: e for e in strategy_entries()}["fine"]
    assert entry.qualified_name == "fine_plugin:fine"
    assert "fine_plugin:fine" not in list_strategies()  # reachable, not listed: its plain name works
    for wrong in ("fine_plugin:imp", "torch_lottery.strategies.imp:random", "nope:fine", ":fine", "fine_plugin:"):
        with pytest.raises(StrategyError, match="unknown strategy"):
            get_strategy(wrong)
    assert plugin_errors() == []


def test_unknown_name_lists_the_qualified_names_of_shadowed_strategies(register_plugin):
    register_plugin(_registering("Shadow", ("imp", RandomPruning)), name="shadow")
    with pytest.warns(RuntimeWarning), pytest.raises(StrategyError) as info:
        get_strategy("missing")
    assert "shadow:imp" in str(info.value) and "one_shot" in str(info.value)


def test_a_plugin_registering_a_name_twice_is_reported(register_plugin):
    register_plugin(_registering("Twice", ("twice", IterativeMagnitude), ("twice", RandomPruning)), name="twice_plugin")
    (error,) = plugin_errors()
    assert "twice_plugin" in str(error) and "'twice' twice" in str(error)
    assert not isinstance(error, StrategyConflictError)
    assert "twice" not in list_strategies()
    with pytest.raises(StrategyError, match="twice_plugin"):
        get_strategy("twice_plugin:twice")
    _builtins_work()


def test_plugin_whose_register_hook_raises_is_reported_and_others_work(register_plugin):
    class Broken:
        @hookimpl
        def torch_lottery_register_strategies(self, register):
            raise RuntimeError("cannot register today")

    register_plugin(Broken(), name="broken_plugin")
    register_plugin(_registering("Fine", ("fine", IterativeMagnitude)), name="fine_plugin")

    errors = plugin_errors()
    assert len(errors) == 1
    assert isinstance(errors[0], PluginError) and isinstance(errors[0], RuntimeError)
    assert "broken_plugin" in str(errors[0]) and "cannot register today" in str(errors[0])
    assert get_strategy("fine") is IterativeMagnitude
    _builtins_work()
    with pytest.raises(StrategyError, match="broken_plugin"):
        get_strategy("missing")


@pytest.mark.parametrize(
    "name, strategy, mentions",
    [
        ("not_callable", 42, "not_callable"),
        ("none_strategy", None, "none_strategy"),
        (3, IterativeMagnitude, "name"),
        (None, IterativeMagnitude, "name"),
        ("", IterativeMagnitude, "name"),
        ("mine:imp", IterativeMagnitude, "':'"),  # the separator of qualified names
    ],
)
def test_plugin_registering_bad_name_or_strategy_is_reported(register_plugin, name, strategy, mentions):
    register_plugin(_registering("Bad", (name, strategy)), name="bad_plugin")
    errors = [str(e) for e in plugin_errors()]
    assert len(errors) == 1
    assert "bad_plugin" in errors[0] and mentions in errors[0]
    if isinstance(name, str) and name:
        assert name not in list_strategies()
    _builtins_work()
    with pytest.raises(StrategyError, match="bad_plugin"):
        get_strategy("missing")


def test_register_hook_accepting_no_arguments_is_not_an_error(register_plugin):
    """The hookspecs promise that an implementation may accept any subset of a hook's arguments."""

    class RegistersNothing:
        @hookimpl
        def torch_lottery_register_strategies(self):
            pass

    register_plugin(RegistersNothing(), name="registers_nothing")
    assert plugin_errors() == []
    _builtins_work()


# -- entry points --------------------------------------------------------------------------------------
@pytest.fixture
def plugin_module(tmp_path, monkeypatch):
    """``plugin_module(source)`` writes a uniquely named module on sys.path and returns its name."""
    monkeypatch.syspath_prepend(str(tmp_path))
    created = []

    def make(source):
        name = f"fake_tl_plugin_{uuid.uuid4().hex[:12]}"
        (tmp_path / f"{name}.py").write_text(source)
        importlib.invalidate_caches()
        created.append(name)
        return name

    yield make
    for name in created:
        sys.modules.pop(name, None)


@pytest.fixture
def fake_entry_points(monkeypatch):
    """``fake_entry_points(*(name, value))`` makes the manager see these entry points (and only them)."""
    calls = []

    def install(*pairs):
        eps = [metadata.EntryPoint(name=n, value=v, group=ENTRY_POINT_GROUP) for n, v in pairs]

        def entry_points(**params):
            calls.append(params)
            return [ep for ep in eps if ep.group == params.get("group")]

        monkeypatch.setattr(manager.metadata, "entry_points", entry_points)
        reset_plugin_manager()
        return calls

    return install


GOOD_PLUGIN = """
from torch_lottery import hookimpl
from torch_lottery.strategies import IterativeMagnitude

class FromEntryPoint(IterativeMagnitude):
    pass

@hookimpl
def torch_lottery_register_strategies(register):
    register("from_entry_point", FromEntryPoint)
"""


def test_entry_point_plugin_is_discovered_and_registered(plugin_module, fake_entry_points, monkeypatch):
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    module_name = plugin_module(GOOD_PLUGIN)
    calls = fake_entry_points(("my_ep", module_name))

    pm = get_plugin_manager()
    assert calls == [{"group": "torch_lottery"}]
    assert pm.get_plugin("my_ep") is sys.modules[module_name]
    assert "from_entry_point" in list_strategies()
    assert get_strategy("from_entry_point") is sys.modules[module_name].FromEntryPoint
    entry = {e.name: e for e in strategy_entries()}["from_entry_point"]
    assert entry.plugin == "my_ep"
    assert plugin_errors() == []
    _builtins_work()


def test_entry_point_plugin_entries_name_their_distribution_and_version(plugin_module, tmp_path, monkeypatch):
    """A real installed distribution (a .dist-info folder on sys.path): found by importlib.metadata, not faked."""
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    module_name = plugin_module(GOOD_PLUGIN)
    dist_info = tmp_path / "fake_tl_dist-2.5.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-tl-dist\nVersion: 2.5.1\n")
    (dist_info / "entry_points.txt").write_text(f"[torch_lottery]\nreal_ep = {module_name}\n")
    importlib.invalidate_caches()
    reset_plugin_manager()

    entry = {e.name: e for e in strategy_entries()}["from_entry_point"]
    assert (entry.plugin, entry.distribution, entry.version, entry.builtin) == (
        "real_ep",
        "fake-tl-dist",
        "2.5.1",
        False,
    )
    assert get_strategy("real_ep:from_entry_point") is entry.strategy


def test_a_plugin_registered_at_runtime_has_no_distribution(register_plugin):
    plugin = register_plugin(_registering("Runtime", ("runtime", RandomPruning)), name="runtime_plugin")
    entry = {e.name: e for e in strategy_entries()}["runtime"]
    assert (entry.plugin, entry.distribution, entry.version, entry.builtin) == ("runtime_plugin", "-", "-", False)
    # a plugin registered under a built-in's module name is not the built-in
    get_plugin_manager().unregister(name="torch_lottery.strategies.random")
    get_plugin_manager().unregister(plugin)
    register_plugin(_registering("Fake", ("random", IterativeMagnitude)), name="torch_lottery.strategies.random")
    entry = {e.name: e for e in strategy_entries()}["random"]
    assert entry.strategy is IterativeMagnitude
    assert (entry.distribution, entry.builtin) == ("-", False)


def test_entry_point_with_an_attribute_reference(plugin_module, fake_entry_points, monkeypatch):
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    module_name = plugin_module("""
from torch_lottery import hookimpl
from torch_lottery.strategies import RandomPruning

class _Plugin:
    @hookimpl
    def torch_lottery_register_strategies(self, register):
        register("attr_strategy", RandomPruning)

plugin = _Plugin()
""")
    fake_entry_points(("attr_ep", f"{module_name}:plugin"))
    assert get_plugin_manager().get_plugin("attr_ep") is sys.modules[module_name].plugin
    assert get_strategy("attr_strategy") is RandomPruning


@pytest.mark.parametrize("kind", ["raises_import_error", "missing_module", "invalid_hookimpl"])
def test_broken_entry_point_warns_is_reported_and_builtins_work(kind, plugin_module, fake_entry_points, monkeypatch):
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    if kind == "raises_import_error":
        value = plugin_module("raise ImportError('needs a library that is not installed')\n")
    elif kind == "missing_module":
        value = f"no_such_module_{uuid.uuid4().hex[:12]}"
    else:  # a hook implementation with an argument the hookspec does not have
        value = plugin_module("""
from torch_lottery import hookimpl

@hookimpl
def torch_lottery_register_strategies(register, misspelled):
    pass
""")
    good = plugin_module(GOOD_PLUGIN)
    fake_entry_points(("broken_ep", value), ("good_ep", good))

    with pytest.warns(RuntimeWarning, match="broken_ep"):
        get_plugin_manager()
    errors = plugin_errors()
    assert len(errors) == 1
    assert isinstance(errors[0], PluginError)
    assert "broken_ep" in str(errors[0]) and value in str(errors[0])
    assert get_plugin_manager().get_plugin("broken_ep") is None
    with pytest.raises(StrategyError) as info:
        get_strategy("not_registered_anywhere")
    assert "broken_ep" in str(info.value)
    _builtins_work()
    assert get_strategy("from_entry_point").__name__ == "FromEntryPoint"  # the later entry point still loads


@pytest.mark.parametrize("value", ["1", "yes"])
def test_disable_autoload_env_skips_entry_points_but_not_builtins(value, plugin_module, fake_entry_points, monkeypatch):
    module_name = plugin_module(GOOD_PLUGIN)
    calls = fake_entry_points(("my_ep", module_name))
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, value)

    pm = get_plugin_manager()
    assert calls == []
    assert pm.get_plugin("my_ep") is None
    assert module_name not in sys.modules
    assert "from_entry_point" not in list_strategies()
    _builtins_work()

    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV)
    reset_plugin_manager()
    assert "from_entry_point" in list_strategies()


def test_empty_disable_autoload_env_still_loads_entry_points(plugin_module, fake_entry_points, monkeypatch):
    fake_entry_points(("my_ep", plugin_module(GOOD_PLUGIN)))
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "")
    assert "from_entry_point" in list_strategies()


def test_blocked_or_already_registered_entry_point_names_are_skipped(plugin_module, fake_entry_points, monkeypatch):
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    module_name = plugin_module(GOOD_PLUGIN)
    # an entry point named like a built-in does not replace it
    fake_entry_points(("torch_lottery.strategies.imp", module_name))
    pm = get_plugin_manager()
    assert pm.get_plugin("torch_lottery.strategies.imp") is importlib.import_module("torch_lottery.strategies.imp")
    assert "from_entry_point" not in list_strategies()
    assert plugin_errors() == []


def test_reset_clears_recorded_load_errors(fake_entry_points, monkeypatch):
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    fake_entry_points(("gone_ep", f"no_such_module_{uuid.uuid4().hex[:12]}"))
    with pytest.warns(RuntimeWarning):
        assert len(plugin_errors()) == 1
    monkeypatch.setattr(manager.metadata, "entry_points", lambda **params: [])
    reset_plugin_manager()
    assert plugin_errors() == []
