"""Built-in plugin: magnitude pruning at initialization (``magnitude_init``), the data-free baseline."""

from __future__ import annotations

import torch

from ..plugins.hookspecs import hookimpl
from .at_init import InitStrategy
from .context import PruneContext


class MagnitudeInit(InitStrategy):
    """Prune at initialization by the magnitude of the initial weights: keep the top ``|w|``.

    The baseline of the pruning-at-initialization papers (SNIP, GraSP, SynFlow):
    no data and no training, one selection. In one global pool it empties whole
    layers at high compression (layer collapse), which ``synflow`` avoids.

    Args:
        remaining (float): fraction of the weights kept, in (0, 1].
        scope (str): ``"global"`` (default) or ``"local"``.
        min_remaining (int): surviving weights kept per tensor at least (default 1;
            0 lets a layer be emptied).
        on_floor (str): ``"clamp"`` (default) or ``"raise"``.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from torch_lottery.strategies.context import build_context
        >>> from torch_lottery.strategies.magnitude_init import MagnitudeInit
        >>> net = nn.Linear(4, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = net.weight.copy_(torch.tensor([[0.1, -0.4, 0.3, -0.2]]))
        >>> context = build_context(net, ("weight",), [(net, "weight")])
        >>> MagnitudeInit(remaining=0.5).prune(context)["weight"].tolist()
        [[False, True, True, False]]
    """

    def scores(self, context: PruneContext, name: str) -> torch.Tensor:
        """Return ``|w|`` of the initial weights of tensor ``name``."""
        return context.weights[name].abs()


@hookimpl
def torch_lottery_register_strategies(register):
    """Register ``magnitude_init``."""
    register("magnitude_init", MagnitudeInit)
