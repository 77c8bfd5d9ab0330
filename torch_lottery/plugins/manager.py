"""The plugin manager: built-in plugins, entry-point plugins and the strategy registry."""

from __future__ import annotations

import importlib
import os
import warnings
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy

from .._validation import describe
from . import hookspecs

#: The built-in plugins, registered exactly like entry-point plugins (by name).
DEFAULT_PLUGINS = (
    "torch_lottery.strategies.imp",
    "torch_lottery.strategies.one_shot",
    "torch_lottery.strategies.random",
)

#: Entry-point group third-party plugins declare (``[project.entry-points.torch_lottery]``).
ENTRY_POINT_GROUP = hookspecs.PROJECT

#: Set to a non-empty value to skip entry-point plugins (built-ins still load), like pytest's
#: ``PYTEST_DISABLE_PLUGIN_AUTOLOAD``.
DISABLE_AUTOLOAD_ENV = "TORCH_LOTTERY_DISABLE_PLUGIN_AUTOLOAD"


class PluginError(RuntimeError):
    """A plugin failed to load or to register its strategies."""


class StrategyError(LookupError):
    """A strategy name is unknown or ambiguous."""


@dataclass(frozen=True)
class StrategyEntry:
    """A registered strategy: its name, the object, and the plugin that provides it."""

    name: str
    strategy: Any
    plugin: str


_manager: pluggy.PluginManager | None = None
_load_errors: list[PluginError] = []


def _load_plugins(pm: pluggy.PluginManager) -> None:
    for module_name in DEFAULT_PLUGINS:
        try:
            pm.register(importlib.import_module(module_name), name=module_name)
        except Exception as error:  # a broken built-in must not take the others down
            _record(PluginError(f"plugin {module_name!r} failed to load: {type(error).__name__}: {error}"))
    if os.environ.get(DISABLE_AUTOLOAD_ENV):
        return
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if pm.get_plugin(entry_point.name) is not None or pm.is_blocked(entry_point.name):
            continue
        try:
            plugin = entry_point.load()
            pm.register(plugin, name=entry_point.name)
        except Exception as error:
            _record(
                PluginError(
                    f"plugin {entry_point.name!r} ({entry_point.value}) failed to load: {type(error).__name__}: {error}"
                )
            )


def _record(error: PluginError) -> None:
    _load_errors.append(error)
    warnings.warn(str(error), RuntimeWarning, stacklevel=3)


def get_plugin_manager() -> pluggy.PluginManager:
    """Return the process-wide plugin manager, creating it (and loading plugins) on first use.

    Register an observer plugin (e.g. a logger) with ``get_plugin_manager().register(obj)``;
    :func:`torch_lottery.find_ticket` also takes ``plugins=[...]`` for one run.

    Examples:
        >>> from torch_lottery.plugins import get_plugin_manager
        >>> get_plugin_manager().project_name
        'torch_lottery'
    """
    global _manager
    if _manager is None:
        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        _load_plugins(pm)
        _manager = pm
    return _manager


def reset_plugin_manager() -> None:
    """Forget the plugin manager; the next use loads the plugins again (for tests and notebooks)."""
    global _manager
    _manager = None
    _load_errors.clear()


def plugin_errors() -> list[PluginError]:
    """Return the errors of plugins that failed to load or to register strategies."""
    get_plugin_manager()
    return list(_load_errors) + list(_registry()[1])


def _registry() -> tuple[dict[str, StrategyEntry], list[PluginError]]:
    pm = get_plugin_manager()
    found: dict[str, list[StrategyEntry]] = {}
    errors: list[PluginError] = []
    for impl in pm.hook.torch_lottery_register_strategies.get_hookimpls():
        plugin = impl.plugin_name
        mine: list[StrategyEntry] = []  # kept only if the whole hook succeeds

        def register(name: str, strategy: Any, _plugin: str = plugin, _mine: list = mine) -> None:
            if not isinstance(name, str) or not name:
                raise TypeError(f"plugin {_plugin!r}: strategy name must be a non-empty str, got {describe(name)}")
            if not callable(strategy):
                raise TypeError(f"plugin {_plugin!r}: strategy {name!r} must be callable, got {describe(strategy)}")
            _mine.append(StrategyEntry(name, strategy, _plugin))

        try:
            impl.function(**{arg: register for arg in impl.argnames if arg == "register"})
        except Exception as error:
            names = f" (none of its strategies {', '.join(repr(e.name) for e in mine)} is registered)" if mine else ""
            errors.append(
                PluginError(
                    f"plugin {plugin!r} failed to register its strategies: {type(error).__name__}: {error}{names}"
                )
            )
            continue
        for entry in mine:
            found.setdefault(entry.name, []).append(entry)
    registry = {}
    for name, entries in found.items():
        if len(entries) > 1:
            plugins = ", ".join(repr(e.plugin) for e in entries)
            errors.append(PluginError(f"strategy {name!r} is registered by several plugins ({plugins})"))
        else:
            registry[name] = entries[0]
    return registry, errors


def _duplicates(errors: list[PluginError], name: str) -> PluginError | None:
    for error in errors:
        if f"strategy {name!r} is registered by several plugins" in str(error):
            return error
    return None


def list_strategies() -> list[str]:
    """Return the names of the registered strategies, sorted.

    A name registered by two plugins is left out (see :func:`plugin_errors`).

    Examples:
        >>> from torch_lottery import list_strategies
        >>> [name for name in list_strategies() if name in ("imp", "one_shot", "random")]
        ['imp', 'one_shot', 'random']
    """
    return sorted(_registry()[0])


def strategy_entries() -> list[StrategyEntry]:
    """Return every registered strategy with the plugin that provides it, sorted by name."""
    registry = _registry()[0]
    return [registry[name] for name in sorted(registry)]


def get_strategy(name: str) -> Any:
    """Return the strategy registered under ``name``.

    Raises:
        TypeError: if ``name`` is not a str.
        StrategyError: if no plugin registers ``name`` (the message lists the
            known names and the plugins that failed to load), or several do.

    Examples:
        >>> from torch_lottery import get_strategy
        >>> get_strategy("imp").__name__
        'IterativeMagnitude'
    """
    if not isinstance(name, str):
        raise TypeError(f"strategy name must be a str, got {describe(name)}")
    registry, errors = _registry()
    if name in registry:
        return registry[name].strategy
    duplicate = _duplicates(errors, name)
    if duplicate is not None:
        raise StrategyError(str(duplicate))
    message = f"unknown strategy {name!r}; registered: {', '.join(sorted(registry)) or 'none'}"
    broken = list(_load_errors) + errors
    if broken:
        message += "; plugins with errors: " + "; ".join(str(e) for e in broken)
    raise StrategyError(message)
