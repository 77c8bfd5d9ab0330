"""Built-in plugin: SNIP, single-shot pruning by connection sensitivity at initialization (``snip``)."""

from __future__ import annotations

import torch

from ..plugins.hookspecs import hookimpl
from .at_init import DataInitStrategy
from .context import PruneContext


class SNIP(DataInitStrategy):
    """Prune at initialization by connection sensitivity: keep the top ``|w * dL/dw|`` (Lee et al. 2019).

    The gradient ``dL/dw`` of the run's ``loss`` is taken at the initial weights,
    summed over the first ``batches`` batches of ``data``, on a private copy of
    the model in eval mode (:meth:`PruneContext.gradients`); one gradient pass
    scores every tensor. The run needs ``find_ticket(..., data=..., loss=...)``.

    Args:
        remaining (float): fraction of the weights kept, in (0, 1].
        batches (int): batches of ``data`` the gradient is summed over (default 1).
        scope (str): ``"global"`` (default, as in the paper) or ``"local"``.
        min_remaining (int): surviving weights kept per tensor at least (default 1;
            0 lets a layer be emptied).
        on_floor (str): ``"clamp"`` (default) or ``"raise"``.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from torch_lottery.strategies.context import build_context
        >>> from torch_lottery.strategies.snip import SNIP
        >>> torch.manual_seed(0)
        <torch._C.Generator object at ...>
        >>> net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> data = [(torch.randn(16, 6), torch.randint(0, 3, (16,)))]
        >>> pairs = [(net[0], "weight"), (net[2], "weight")]
        >>> context = build_context(net, ("0.weight", "2.weight"), pairs, data=data, loss=nn.functional.cross_entropy)
        >>> masks = SNIP(remaining=0.25).prune(context)
        >>> sum(int(m.sum()) for m in masks.values())  # 25% of 48 + 24 weights
        18
    """

    def all_scores(self, context: PruneContext) -> dict[str, torch.Tensor]:
        """Return ``|w * dL/dw|`` of every tensor of ``context.names`` (one gradient pass).

        Raises:
            ValueError: naming ``loss`` (or ``data``) if the run has none.
        """
        self.loss_of(context)
        gradients = context.gradients(batches=self.batches)
        return {n: (context.weights[n] * gradients[n]).abs() for n in context.names}


@hookimpl
def torch_lottery_register_strategies(register):
    """Register ``snip``."""
    register("snip", SNIP)
