"""An example torch-lottery plugin: iterative pruning of whole neurons (rows) by L2 norm.

Installed with pip, it is found through its entry point (group ``torch_lottery``)
and its strategy is available by name::

    import torch_lottery as tl
    tl.find_ticket(model, train, strategy="neuron_imp", strategy_options={"rate": 0.2}, rounds=5)
"""

from __future__ import annotations

import numbers

import torch

from torch_lottery import PruneContext, Strategy, hookimpl


class NeuronIMP(Strategy):
    """Prune ``rate`` of the surviving output neurons (rows) of every tensor per round, by L2 norm.

    Args:
        rate (float): fraction of the surviving rows pruned per round, in [0, 1).
        min_rows (int): rows kept per tensor at least.
        rewind_iteration (int): see :class:`torch_lottery.Strategy`.
    """

    def __init__(self, rate: float = 0.2, min_rows: int = 1, rewind_iteration: int = 0) -> None:
        super().__init__(rewind_iteration=rewind_iteration)
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
            raise TypeError(f"rate must be a float, got {rate!r}")
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"rate={rate} must be in [0, 1)")
        if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 1:
            raise ValueError(f"min_rows={min_rows!r} must be an int >= 1")
        self.rate = float(rate)
        self.min_rows = min_rows

    def prune(self, context: PruneContext) -> dict[str, torch.Tensor]:
        masks = {}
        for name in context.names:
            mask = context.masks[name].bool()
            rows = mask.reshape(mask.shape[0], -1)
            alive = rows.any(dim=1)
            norms = (context.weights[name] * mask).reshape(mask.shape[0], -1).norm(dim=1)
            norms[~alive] = float("inf")  # already gone: never chosen again
            count = min(round(self.rate * int(alive.sum())), max(int(alive.sum()) - self.min_rows, 0))
            drop = torch.topk(norms, count, largest=False).indices if count else norms.new_empty(0, dtype=torch.long)
            keep_rows = alive.clone()
            keep_rows[drop] = False
            masks[name] = mask & keep_rows.view(-1, *([1] * (mask.dim() - 1)))
        return masks

    def options(self) -> dict:
        return {**super().options(), "rate": self.rate, "min_rows": self.min_rows}


@hookimpl
def torch_lottery_register_strategies(register):
    """Register ``neuron_imp``."""
    register("neuron_imp", NeuronIMP)
