"""Built-in plugin: Sparse Evolutionary Training (``set``, Mocanu et al. 2018).

Mocanu, Mocanu, Stone, Nguyen, Gibescu and Liotta, "Scalable training of artificial
neural networks with adaptive sparse connectivity inspired by network science"
(Nature Communications 2018): start from a sparse Erdős-Rényi topology and, after
each epoch, remove the fraction ``zeta`` of the weights closest to zero and add as
many new random connections. The sparse networks reach the accuracy of their
dense counterparts (and sometimes beat it) with quadratically fewer parameters.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from ..plugins.hookspecs import hookimpl
from .base import StepContext
from .dynamic import DynamicSparse


class SET(DynamicSparse):
    """Drop the smallest ``|w|`` survivors, regrow uniformly at random elsewhere (Mocanu et al. 2018).

    Every ``every`` optimizer steps each tensor drops ``floor(f(t) * survivors)``
    of its smallest-magnitude survivors and regrows the same number among the
    entries not kept, uniformly at random (per-tensor counts stay fixed). The
    random draws come from a generator seeded by the run (through
    ``PruneContext.generator``), so a run is reproducible from its seed.
    Regrown weights start at zero with a fresh optimizer state. The run needs
    ``find_ticket(..., optimizer=...)``.

    Args:
        total_steps (int): required: the step at which the drop fraction reaches zero.
        density (float): fraction of the weights kept throughout (default 0.1).
        every (int): steps between updates (default 100; the paper updates once an epoch).
        drop_fraction (float): the initial drop fraction, cosine-decayed (default
            0.3, the paper's ``zeta``).
        distribution (str): ``"erk"`` (default) or ``"uniform"``.

    Examples:
        >>> from torch import nn
        >>> from torch_lottery.testing import check_prune, make_context
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> masks = check_prune(SET(total_steps=500, density=0.5, distribution="uniform"), make_context(net))
        >>> [int(m.sum()) for m in masks.values()]
        [16, 8]
    """

    default_drop_fraction: ClassVar[float] = 0.3

    def grow_scores(self, context: StepContext, names: list[str]) -> dict[str, torch.Tensor]:
        """Return uniform random scores for each tensor of ``names`` (from the run's seeded generator)."""
        generator = self._run_generator()
        masks = context.masks()
        return {
            n: torch.rand(masks[n].shape, generator=generator, dtype=torch.float64).to(masks[n].device) for n in names
        }


@hookimpl
def torch_lottery_register_strategies(register):
    """Register ``set``."""
    register("set", SET)
