"""Built-in plugin: RigL, the Rigged Lottery (``rigl``, Evci et al. 2020).

Evci, Gale, Menick, Castro and Elsen, "Rigging the Lottery: Making All Tickets
Winners" (ICML 2020): a sparse network trained from a random sparse start, whose
connections move every ``every`` steps (drop the smallest-magnitude survivors,
grow where the dense gradient is largest), matches or beats the accuracy of dense-
to-sparse pruning at the cost of training the sparse network only (ResNet-50 on
ImageNet, 80% sparse with ERK: 75.1% top-1 against 76.8% dense, 1x training).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from ..plugins.hookspecs import hookimpl
from .base import StepContext
from .dynamic import DynamicSparse


class RigL(DynamicSparse):
    """Drop the smallest ``|w|`` survivors, regrow the largest ``|dL/dw|`` elsewhere (Evci et al. 2020).

    Every ``every`` optimizer steps each tensor drops ``floor(f(t) * survivors)``
    of its smallest-magnitude survivors and regrows the same number of entries
    where the magnitude of the dense gradient is largest among the entries not
    kept (per-tensor counts stay fixed). The gradient is the one of
    :meth:`~torch_lottery.strategies.StepContext.gradients`: the run's ``loss`` on the first
    batch of ``data``, at the current masked weights, pruned entries included,
    on a private copy of the model. Regrown weights start at zero with a fresh
    optimizer state. The run needs ``find_ticket(..., optimizer=..., data=...,
    loss=...)``.

    Args:
        total_steps (int): required: the step at which the drop fraction reaches
            zero (the paper's ``T_end``).
        density (float): fraction of the weights kept throughout (default 0.1).
        every (int): steps between updates (default 100, the paper's ``Delta T``).
        drop_fraction (float): the initial drop fraction, cosine-decayed (default
            0.3, the paper's ``alpha``).
        distribution (str): ``"erk"`` (default) or ``"uniform"``.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from torch_lottery.testing import check_prune, make_context
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> rigl = RigL(total_steps=1000, density=0.25)
        >>> masks = check_prune(rigl, make_context(net))  # the random ERK start
        >>> sum(int(m.sum()) for m in masks.values())  # 25% of 32 + 16 weights
        12
        >>> rigl.options()["drop_fraction"], rigl.needs_data, rigl.needs_loss
        (0.3, True, True)
    """

    needs_data: ClassVar[bool] = True
    needs_loss: ClassVar[bool] = True
    default_drop_fraction: ClassVar[float] = 0.3

    def grow_scores(self, context: StepContext, names: list[str]) -> dict[str, torch.Tensor]:
        """Return ``|dL/dw|``, the dense gradient's magnitude, of each tensor of ``names``."""
        gradients = context.gradients()
        return {n: gradients[n].abs() for n in names}


@hookimpl
def torch_lottery_register_strategies(register):
    """Register ``rigl``."""
    register("rigl", RigL)
