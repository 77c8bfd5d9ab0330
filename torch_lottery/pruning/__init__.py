"""Pruning methods for the lottery ticket hypothesis, built on ``torch.nn.utils.prune``."""

from ._core import LotteryContainer, MaskedTensor, compact_hooks
from ._select import CRITERIA
from .fixed import FixedMask, fixed_mask
from .global_magnitude import GlobalMagnitude, global_magnitude
from .magnitude import LotteryMagnitude, SignPreservingSupermask, lottery_magnitude, sign_preserving_supermask
from .permutation import RandomPermutation, random_permutation
from .utils import get_mask, held_bytes, named_prunable_parameters, prunable_parameters, remaining, sparsity_report

__all__ = [
    "CRITERIA",
    "FixedMask",
    "GlobalMagnitude",
    "LotteryContainer",
    "LotteryMagnitude",
    "MaskedTensor",
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
    "sign_preserving_supermask",
    "sparsity_report",
]
