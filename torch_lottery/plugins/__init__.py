"""Plugin system (pluggy): hook specifications, markers and the strategy registry."""

from .hookspecs import PROJECT, hookimpl, hookspec
from .manager import (
    DEFAULT_PLUGINS,
    DISABLE_AUTOLOAD_ENV,
    ENTRY_POINT_GROUP,
    PluginError,
    StrategyConflict,
    StrategyConflictError,
    StrategyEntry,
    StrategyError,
    get_plugin_manager,
    get_strategy,
    list_strategies,
    plugin_errors,
    reset_plugin_manager,
    strategy_conflicts,
    strategy_entries,
)

__all__ = [
    "DEFAULT_PLUGINS",
    "DISABLE_AUTOLOAD_ENV",
    "ENTRY_POINT_GROUP",
    "PROJECT",
    "PluginError",
    "StrategyConflict",
    "StrategyConflictError",
    "StrategyEntry",
    "StrategyError",
    "get_plugin_manager",
    "get_strategy",
    "hookimpl",
    "hookspec",
    "list_strategies",
    "plugin_errors",
    "reset_plugin_manager",
    "strategy_conflicts",
    "strategy_entries",
]
