"""torch-lottery: find, compare, save and reuse lottery tickets with stock ``torch.nn.utils.prune``."""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from ._version import __version__
from .driver import AutoRewind, Ticket, find_ticket, instability_analysis, mask_overlap
from .plugins import PluginError, StrategyError, get_strategy, hookimpl, list_strategies
from .pruning import (
    FixedMask,
    GlobalMagnitude,
    LotteryMagnitude,
    RandomPermutation,
    SignPreservingSupermask,
    compact_hooks,
    fixed_mask,
    get_mask,
    global_magnitude,
    lottery_magnitude,
    named_prunable_parameters,
    prunable_parameters,
    random_permutation,
    remaining,
    remove_targeted_dropout,
    sign_preserving_supermask,
    sparsity_report,
    targeted_dropout,
)
from .rewinding import RewindPoint, random_reinit, sign_preserving_reinit, signed_constant
from .strategies import PruneContext, Strategy
from .training import SparseTraining, sparse_training

__all__ = [
    "AutoRewind",
    "FixedMask",
    "GlobalMagnitude",
    "LotteryMagnitude",
    "PluginError",
    "PruneContext",
    "RandomPermutation",
    "RewindPoint",
    "SignPreservingSupermask",
    "SparseTraining",
    "Strategy",
    "StrategyError",
    "Ticket",
    "__version__",
    "compact_hooks",
    "find_ticket",
    "fixed_mask",
    "get_mask",
    "get_strategy",
    "global_magnitude",
    "instability_analysis",
    "hookimpl",
    "list_strategies",
    "lottery_magnitude",
    "mask_overlap",
    "named_prunable_parameters",
    "prunable_parameters",
    "random_permutation",
    "random_reinit",
    "remaining",
    "remove_targeted_dropout",
    "sign_preserving_reinit",
    "sign_preserving_supermask",
    "signed_constant",
    "sparse_training",
    "sparsity_report",
    "targeted_dropout",
]

#: Subpackages and modules reached as attributes (``tl.export.export``, ``tl.loggers.CSVLogger``), imported when used.
_SUBMODULES = (
    "distributed",
    "experiments",
    "export",
    "loggers",
    "plugins",
    "pruning",
    "rewinding",
    "strategies",
    "driver",
    "training",
)

#: Names that lived at the root before 0.1.0 and now live in a subpackage: they still work, with a
#: DeprecationWarning, for this release only.
_MOVED = {
    "CRITERIA": "torch_lottery.pruning",
    "LotteryContainer": "torch_lottery.pruning",
    "held_bytes": "torch_lottery.pruning",
    "default_init": "torch_lottery.rewinding",
    "ApplyReport": "torch_lottery.driver",
    "RoundContext": "torch_lottery.driver",
    "IterativeMagnitude": "torch_lottery.strategies",
    "OneShotMagnitude": "torch_lottery.strategies",
    "RandomPruning": "torch_lottery.strategies",
    "DEFAULT_PLUGINS": "torch_lottery.plugins",
    "get_plugin_manager": "torch_lottery.plugins",
    "hookspec": "torch_lottery.plugins",
    "plugin_errors": "torch_lottery.plugins",
    "strategy_entries": "torch_lottery.plugins",
}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _MOVED:
        home = _MOVED[name]
        warnings.warn(
            f"torch_lottery.{name} moved to {home}.{name}; the root alias goes away after 0.1",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(home), name)
    if name == "MaskedTensor":
        warnings.warn(
            "torch_lottery.MaskedTensor is private now (it clashed with torch.masked.MaskedTensor); "
            "the computed weight is a plain torch.Tensor subclass you need not name",
            DeprecationWarning,
            stacklevel=2,
        )
        from ._layout import _PrunedWeight

        return _PrunedWeight
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(__all__) | set(_SUBMODULES))
