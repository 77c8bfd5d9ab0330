"""Our methods inside stock ``prune.global_unstructured``: which tensors the pool holds.

Stock ``global_unstructured(parameters, pruning_method, importance_scores=None,
**kwargs)`` builds ``pruning_method(**kwargs)``, concatenates
``getattr(module, name)`` of every pair into one vector and asks the method for
the mask of that vector's surviving entries; then it installs each slice with
``custom_from_mask``. Two things cannot be done right from that vector alone:

* ``getattr(module, name)`` of a pruned tensor is the product computed at the
  last *forward*, so after an optimizer step with no forward since (the usual
  order: train, then prune) it is stale;
* ``custom_from_mask`` on a fresh tensor installs a bare ``CustomFromMask`` hook,
  whose computed weight cannot be deep-copied (pytorch issue 37322).

So a torch-lottery method asked for a mask by ``global_unstructured`` looks up the
call's own arguments (``parameters`` and ``importance_scores``, part of its public
signature) on the stack, ranks the current weights (``<name>_orig`` on the
surviving entries) of those tensors, and gives each tensor a
:class:`~torch_lottery.pruning.LotteryContainer` before stock installs the masks.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from torch import nn
from torch.nn.utils import prune

_GLOBAL_UNSTRUCTURED = prune.global_unstructured.__code__


@dataclass(frozen=True)
class StockPool:
    """The arguments of the running ``prune.global_unstructured`` call."""

    pairs: list[tuple[nn.Module, str]]
    importance_scores: dict


def stock_pool(depth: int = 2) -> StockPool | None:
    """Return the arguments of the ``prune.global_unstructured`` call we run inside, or None.

    Looked up by the identity of stock's code object (not by name), so only a
    real stock call matches; ``None`` when a method is used any other way.
    """
    frame: Any = sys._getframe(depth)
    while frame is not None:
        if frame.f_code is _GLOBAL_UNSTRUCTURED:
            local = frame.f_locals
            parameters = local.get("parameters")
            scores = local.get("importance_scores") or {}
            if not isinstance(parameters, (list, tuple)):
                parameters = list(parameters)  # stock iterates it three times: it is a collection
            return StockPool([tuple(p) for p in parameters], scores if isinstance(scores, dict) else {})
        frame = frame.f_back
    return None
