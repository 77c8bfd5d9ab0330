"""torch-lottery: find, compare, save and reuse lottery tickets with stock ``torch.nn.utils.prune``."""

from .pruning import (
    CRITERIA,
    GlobalMagnitude,
    LotteryContainer,
    LotteryMagnitude,
    MaskedTensor,
    RandomPermutation,
    SignPreservingSupermask,
    compact_hooks,
    get_mask,
    global_magnitude,
    lottery_magnitude,
    named_prunable_parameters,
    prunable_parameters,
    random_permutation,
    remaining,
    sign_preserving_supermask,
    sparsity_report,
)
from .rewinding import RewindPoint, default_init, random_reinit, sign_preserving_reinit, signed_constant

__version__ = "0.1.0"

__all__ = [
    "CRITERIA",
    "GlobalMagnitude",
    "LotteryContainer",
    "LotteryMagnitude",
    "MaskedTensor",
    "RandomPermutation",
    "RewindPoint",
    "SignPreservingSupermask",
    "__version__",
    "compact_hooks",
    "default_init",
    "get_mask",
    "global_magnitude",
    "lottery_magnitude",
    "named_prunable_parameters",
    "prunable_parameters",
    "random_permutation",
    "random_reinit",
    "remaining",
    "sign_preserving_reinit",
    "sign_preserving_supermask",
    "signed_constant",
    "sparsity_report",
]
