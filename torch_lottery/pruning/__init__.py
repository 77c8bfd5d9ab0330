"""Pruning methods for the lottery ticket hypothesis, built on ``torch.nn.utils.prune``.

Every method here is a stock ``BasePruningMethod`` subclass; each installs one
:class:`LotteryContainer` per pruned tensor, which keeps the model deep-copyable
at any time and its memory flat over rounds. Whatever the route (the methods'
``apply``, the functional twins, :func:`global_magnitude`, or stock
``prune.global_unstructured(params, pruning_method=LotteryMagnitude, ...)``), the
ranking uses the current weights (``<name>_orig`` on the surviving entries), also
right after an optimizer step with no forward since, and every pooled selection
goes through one planner (``_select.plan``): floors, rate multipliers, scopes and
devices mean the same everywhere.
"""

from ._select import CRITERIA
from .container import LotteryContainer, compact_hooks
from .fixed import FixedMask, fixed_mask
from .global_magnitude import GlobalMagnitude, global_magnitude
from .magnitude import LotteryMagnitude, SignPreservingSupermask, lottery_magnitude, sign_preserving_supermask
from .permutation import RandomPermutation, random_permutation
from .targeted_dropout import remove_targeted_dropout, targeted_dropout
from .utils import get_mask, held_bytes, named_prunable_parameters, prunable_parameters, remaining, sparsity_report

__all__ = [
    "CRITERIA",
    "FixedMask",
    "GlobalMagnitude",
    "LotteryContainer",
    "LotteryMagnitude",
    "RandomPermutation",
    "SignPreservingSupermask",
    "compact_hooks",
    "fixed_mask",
    "get_mask",
    "global_magnitude",
    "held_bytes",
    "lottery_magnitude",
    "named_prunable_parameters",
    "prunable_parameters",
    "random_permutation",
    "remaining",
    "remove_targeted_dropout",
    "sign_preserving_supermask",
    "sparsity_report",
    "targeted_dropout",
]
