"""The plugin manager: built-in plugins, entry-point plugins and the strategy registry.

Strategy names: every registered strategy is reachable by its *qualified* name
``"<plugin name>:<strategy name>"`` (``"torch_lottery.strategies.imp:imp"``,
``"my_plugin:imp"``). The plain name resolves when one plugin registers it, or when
a built-in does (a module of :data:`DEFAULT_PLUGINS`): a third-party plugin that
registers a built-in's name never replaces the built-in, it is *shadowed* (reported
once per plugin manager with a ``RuntimeWarning``, and in :func:`plugin_errors`) and
stays reachable qualified. A plain name that several third-party plugins register is
*ambiguous*: looking it up raises :class:`StrategyError` naming the qualified names.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import warnings
from dataclasses import dataclass, replace
from importlib import metadata
from typing import Any

import pluggy

from .._validation import describe
from .._version import __version__
from . import hookspecs

#: The built-in plugins, registered exactly like entry-point plugins (by name).
DEFAULT_PLUGINS = (
    "torch_lottery.strategies.imp",
    "torch_lottery.strategies.one_shot",
    "torch_lottery.strategies.random",
    "torch_lottery.strategies.early_bird",
    "torch_lottery.strategies.magnitude_init",
    "torch_lottery.strategies.snip",
    "torch_lottery.strategies.grasp",
    "torch_lottery.strategies.synflow",
    "torch_lottery.strategies.sparse_momentum",
    "torch_lottery.strategies.rigl",
    "torch_lottery.strategies.sparse_evolutionary",
    "torch_lottery.strategies.edge_popup",
    "torch_lottery.strategies.learned_supermask",
    "torch_lottery.strategies.targeted_dropout",
)

#: Entry-point group third-party plugins declare (``[project.entry-points.torch_lottery]``).
ENTRY_POINT_GROUP = hookspecs.PROJECT

#: Set to a non-empty value to skip entry-point plugins (built-ins still load), like pytest's
#: ``PYTEST_DISABLE_PLUGIN_AUTOLOAD``.
DISABLE_AUTOLOAD_ENV = "TORCH_LOTTERY_DISABLE_PLUGIN_AUTOLOAD"

#: Separates the plugin name from the strategy name in a qualified name (so it may not appear in a strategy name).
QUALIFIER = ":"

#: What :class:`StrategyEntry` says of a plugin registered at runtime, outside any distribution.
NO_DISTRIBUTION = "-"

#: The distribution of the built-ins.
DISTRIBUTION = "torch-lottery"


class PluginError(RuntimeError):
    """A plugin failed to load or to register its strategies."""


class StrategyError(LookupError):
    """A strategy name is unknown or ambiguous."""


@dataclass(frozen=True)
class StrategyEntry:
    """A registered strategy: the name to look it up by, the object, and the plugin that provides it.

    Attributes:
        name: what :func:`get_strategy` takes and :func:`list_strategies` lists:
            the registered name, or the qualified name when the registered name
            is a built-in's or ambiguous.
        strategy: the registered strategy (a class or factory).
        plugin: the name of the plugin (as the plugin manager knows it).
        registered_name: the name the plugin registered (default ``name``).
        distribution: the installed distribution that provides the plugin
            (``"torch-lottery"`` for the built-ins), or ``"-"`` for a plugin
            registered at runtime.
        version: that distribution's version, or ``"-"``.
        builtin: True for the strategies of :data:`DEFAULT_PLUGINS`.
    """

    name: str
    strategy: Any
    plugin: str
    registered_name: str = ""
    distribution: str = NO_DISTRIBUTION
    version: str = NO_DISTRIBUTION
    builtin: bool = False

    def __post_init__(self) -> None:
        if not self.registered_name:
            object.__setattr__(self, "registered_name", self.name)

    @property
    def qualified_name(self) -> str:
        """``"<plugin>:<registered name>"``: always reachable through :func:`get_strategy`."""
        return f"{self.plugin}{QUALIFIER}{self.registered_name}"


@dataclass(frozen=True)
class StrategyConflict:
    """A strategy name registered by several plugins.

    Attributes:
        name: the registered (plain) name.
        entries: every registration of it, the winner first, then by plugin name.
        winner: the built-in that keeps the plain name, or None: the name is
            ambiguous and only the qualified names resolve.
    """

    name: str
    entries: tuple[StrategyEntry, ...]
    winner: StrategyEntry | None

    @property
    def shadowed(self) -> tuple[StrategyEntry, ...]:
        """The registrations that lost the plain name (reachable by their qualified names)."""
        return tuple(e for e in self.entries if e is not self.winner)

    def message(self) -> str:
        """Describe the conflict and the names that reach each strategy."""
        if self.winner is None:
            plugins = ", ".join(repr(e.plugin) for e in self.entries)
            qualified = " or ".join(repr(e.qualified_name) for e in self.entries)
            return (
                f"strategy {self.name!r} is registered by several plugins ({plugins}): the name is ambiguous; "
                f"use {qualified}"
            )
        losers = self.shadowed
        who = "plugin" if len(losers) == 1 else "plugins"
        whose = "the plugin's strategy is" if len(losers) == 1 else "the plugins' strategies are"
        return (
            f"{who} {', '.join(repr(e.plugin) for e in losers)} register{'s' if len(losers) == 1 else ''} "
            f"strategy {self.name!r}, the name of a built-in (plugin {self.winner.plugin!r}): {self.name!r} stays "
            f"the built-in; {whose} {', '.join(repr(e.qualified_name) for e in losers)}"
        )


class StrategyConflictError(PluginError):
    """The :func:`plugin_errors` entry of a :class:`StrategyConflict` (its ``conflict`` attribute)."""

    def __init__(self, conflict: StrategyConflict) -> None:
        super().__init__(conflict.message())
        self.conflict = conflict


@dataclass(frozen=True)
class _Registry:
    """One reading of the register hook: what every name resolves to, and what went wrong."""

    plain: dict[str, StrategyEntry]  # the plain names that resolve
    qualified: dict[str, StrategyEntry]  # every registration, by qualified name
    conflicts: tuple[StrategyConflict, ...]
    failures: tuple[PluginError, ...]  # register hooks that raised

    def listed(self) -> list[StrategyEntry]:
        """The plain names that resolve, and the qualified names of the others, sorted by name."""
        lost = [e for c in self.conflicts for e in c.shadowed]
        return sorted([*self.plain.values(), *lost], key=lambda e: e.name)

    def errors(self) -> list[PluginError]:
        return [*self.failures, *(StrategyConflictError(c) for c in self.conflicts)]


_manager: pluggy.PluginManager | None = None
_load_errors: list[PluginError] = []
_sources: dict[str, tuple[Any, str, str]] = {}  # entry-point plugin name -> (plugin, distribution, version)
_warned: set[tuple[str, tuple[str, ...]]] = set()  # conflicts already warned about by this manager


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
            continue
        dist = getattr(entry_point, "dist", None)
        if dist is not None:
            _sources[entry_point.name] = (plugin, dist.name, dist.version)


def _record(error: PluginError) -> None:
    _load_errors.append(error)
    warnings.warn(str(error), RuntimeWarning, stacklevel=3)


@functools.cache
def _own_distribution() -> tuple[str, str]:
    try:
        return DISTRIBUTION, metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return DISTRIBUTION, __version__


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
    _sources.clear()
    _warned.clear()
    _own_distribution.cache_clear()


def plugin_errors() -> list[PluginError]:
    """Return the errors of plugins that failed to load or to register strategies, then the name conflicts.

    A conflict is a :class:`StrategyConflictError`; its ``conflict`` attribute is the
    :class:`StrategyConflict` (the same as :func:`strategy_conflicts` gives).
    """
    get_plugin_manager()
    return list(_load_errors) + _registry().errors()


def strategy_conflicts() -> list[StrategyConflict]:
    """Return the strategy names registered by several plugins, sorted by name.

    Examples:
        >>> import warnings
        >>> from torch_lottery import hookimpl
        >>> from torch_lottery.plugins import get_plugin_manager, strategy_conflicts
        >>> class Shadow:
        ...     @hookimpl
        ...     def torch_lottery_register_strategies(self, register):
        ...         register("imp", lambda **options: None)
        >>> _ = get_plugin_manager().register(Shadow(), name="shadow")
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore", RuntimeWarning)
        ...     [(c.name, c.winner.plugin, [e.name for e in c.shadowed]) for c in strategy_conflicts()]
        [('imp', 'torch_lottery.strategies.imp', ['shadow:imp'])]
        >>> _ = get_plugin_manager().unregister(name="shadow")
    """
    return list(_registry().conflicts)


def _registrar(plugin: str, mine: dict[str, StrategyEntry], **source: Any) -> Any:
    """The ``register`` callback handed to ``plugin``'s hook: checks each registration, collects it in ``mine``."""

    def register(name: str, strategy: Any) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"plugin {plugin!r}: strategy name must be a non-empty str, got {describe(name)}")
        if QUALIFIER in name:
            raise ValueError(
                f"plugin {plugin!r}: strategy name {name!r} may not contain {QUALIFIER!r} "
                "(it separates the plugin from the strategy in qualified names)"
            )
        if not callable(strategy):
            raise TypeError(f"plugin {plugin!r}: strategy {name!r} must be callable, got {describe(strategy)}")
        if name in mine:
            raise ValueError(f"plugin {plugin!r} registers strategy {name!r} twice")
        mine[name] = StrategyEntry(name, strategy, plugin, name, **source)

    return register


def _source(plugin_name: str, plugin: Any) -> dict[str, Any]:
    """The distribution fields of the entries of ``plugin``."""
    if plugin_name in DEFAULT_PLUGINS and plugin is sys.modules.get(plugin_name):
        distribution, version = _own_distribution()
        return {"distribution": distribution, "version": version, "builtin": True}
    known = _sources.get(plugin_name)
    if known is not None and known[0] is plugin:
        return {"distribution": known[1], "version": known[2]}
    return {}


def _registry() -> _Registry:
    pm = get_plugin_manager()
    found: dict[str, list[StrategyEntry]] = {}
    failures: list[PluginError] = []
    for impl in pm.hook.torch_lottery_register_strategies.get_hookimpls():
        plugin = impl.plugin_name
        mine: dict[str, StrategyEntry] = {}  # kept only if the whole hook succeeds
        register = _registrar(plugin, mine, **_source(plugin, impl.plugin))
        try:
            impl.function(**{arg: register for arg in impl.argnames if arg == "register"})
        except Exception as error:
            names = f" (none of its strategies {', '.join(repr(n) for n in mine)} is registered)" if mine else ""
            failures.append(
                PluginError(
                    f"plugin {plugin!r} failed to register its strategies: {type(error).__name__}: {error}{names}"
                )
            )
            continue
        for entry in mine.values():
            found.setdefault(entry.name, []).append(entry)
    plain: dict[str, StrategyEntry] = {}
    qualified: dict[str, StrategyEntry] = {}
    conflicts = []
    for name in sorted(found):
        entries = found[name]
        qualified.update((e.qualified_name, e) for e in entries)
        if len(entries) == 1:
            plain[name] = entries[0]
            continue
        builtins = [e for e in entries if e.builtin]
        winner = builtins[0] if len(builtins) == 1 else None  # the built-in keeps its name; otherwise ambiguous
        if winner is not None:
            plain[name] = winner
        ranked = sorted(entries, key=lambda e: (e is not winner, e.plugin))
        renamed = tuple(e if e is winner else replace(e, name=e.qualified_name) for e in ranked)
        conflicts.append(StrategyConflict(name, renamed, winner))
    for conflict in conflicts:
        key = (conflict.name, tuple(e.plugin for e in conflict.entries))
        if key not in _warned:  # once per plugin manager
            _warned.add(key)
            warnings.warn(conflict.message(), RuntimeWarning, stacklevel=3)
    return _Registry(plain, qualified, tuple(conflicts), tuple(failures))


def list_strategies() -> list[str]:
    """Return the names :func:`get_strategy` takes, sorted.

    The plain name of every strategy that resolves, and the qualified name
    (``"<plugin>:<name>"``) of every strategy whose name is a built-in's or
    ambiguous (see :func:`strategy_conflicts`). Every strategy is reachable by its
    qualified name too, listed or not.

    Examples:
        >>> from torch_lottery import list_strategies
        >>> [name for name in list_strategies() if name in ("imp", "one_shot", "random")]
        ['imp', 'one_shot', 'random']
    """
    return [e.name for e in _registry().listed()]


def strategy_entries() -> list[StrategyEntry]:
    """Return every registered strategy with the plugin and distribution that provide it, sorted by name.

    One entry per name of :func:`list_strategies` (``entry.name``), so a shadowed
    or ambiguous strategy appears under its qualified name.

    Examples:
        >>> from torch_lottery.plugins import strategy_entries
        >>> imp = {e.name: e for e in strategy_entries()}["imp"]
        >>> imp.plugin, imp.qualified_name, imp.distribution, imp.builtin
        ('torch_lottery.strategies.imp', 'torch_lottery.strategies.imp:imp', 'torch-lottery', True)
    """
    return _registry().listed()


def get_strategy(name: str) -> Any:
    """Return the strategy registered under ``name``, a plain or a qualified (``"<plugin>:<name>"``) name.

    Raises:
        TypeError: if ``name`` is not a str.
        StrategyError: if no plugin registers ``name`` (the message lists the
            known names and the plugins that failed to load), or several
            third-party plugins do (the message names their qualified names).

    Examples:
        >>> from torch_lottery import get_strategy
        >>> get_strategy("imp").__name__
        'IterativeMagnitude'
        >>> get_strategy("torch_lottery.strategies.imp:imp") is get_strategy("imp")
        True
    """
    if not isinstance(name, str):
        raise TypeError(f"strategy name must be a str, got {describe(name)}")
    registry = _registry()
    entry = registry.plain.get(name) or registry.qualified.get(name)
    if entry is not None:
        return entry.strategy
    for conflict in registry.conflicts:
        if conflict.name == name:  # ambiguous: a built-in winner would have resolved above
            raise StrategyError(conflict.message())
    known = [e.name for e in registry.listed()]
    message = f"unknown strategy {name!r}; registered: {', '.join(known) or 'none'}"
    broken = list(_load_errors) + list(registry.failures)
    if broken:
        message += "; plugins with errors: " + "; ".join(str(e) for e in broken)
    raise StrategyError(message)
