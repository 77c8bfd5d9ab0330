"""Built-in plugin: GraSP, gradient signal preservation at initialization (``grasp``)."""

from __future__ import annotations

import torch

from ..plugins.hookspecs import hookimpl
from .at_init import DataInitStrategy
from .context import PruneContext


def _add(totals: list[torch.Tensor], grads: tuple[torch.Tensor | None, ...]) -> None:
    for total, grad in zip(totals, grads, strict=True):
        if grad is not None:
            total += grad.detach()


class GraSP(DataInitStrategy):
    """Prune at initialization preserving the gradient flow: keep the top ``theta * Hg`` (Wang et al. 2020).

    ``g`` is the gradient of the run's ``loss`` at the initial weights ``theta``
    (summed over the first ``batches`` batches of ``data``) and ``Hg`` the
    Hessian-gradient product. The paper scores ``S = -theta * Hg`` and removes
    the weights with the largest ``S`` (those whose removal reduces the gradient
    flow the least, or increases it), as the official code does: the keep-score
    here is ``theta * Hg``, so the largest ``-theta * Hg`` go first. Unlike SNIP's
    and SynFlow's scores it is signed. Computed on a private copy of the model in
    eval mode; the run needs ``find_ticket(..., data=..., loss=...)``.

    Args:
        remaining (float): fraction of the weights kept, in (0, 1].
        batches (int): batches of ``data`` the loss is summed over (default 1).
        scope (str): ``"global"`` (default, as in the paper) or ``"local"``.
        min_remaining (int): surviving weights kept per tensor at least (default 1;
            0 lets a layer be emptied).
        on_floor (str): ``"clamp"`` (default) or ``"raise"``.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from torch_lottery.strategies.context import build_context
        >>> from torch_lottery.strategies.grasp import GraSP
        >>> torch.manual_seed(0)
        <torch._C.Generator object at ...>
        >>> net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
        >>> data = [(torch.randn(16, 6), torch.randint(0, 3, (16,)))]
        >>> pairs = [(net[0], "weight"), (net[2], "weight")]
        >>> context = build_context(net, ("0.weight", "2.weight"), pairs, data=data, loss=nn.functional.cross_entropy)
        >>> masks = GraSP(remaining=0.25).prune(context)
        >>> sum(int(m.sum()) for m in masks.values())  # 25% of 48 + 24 weights
        18
    """

    def all_scores(self, context: PruneContext) -> dict[str, torch.Tensor]:
        """Return the keep-score ``theta * Hg`` of every tensor of ``context.names``.

        Raises:
            ValueError: naming ``loss`` (or ``data``) if the run has none.
        """
        loss = self.loss_of(context)
        fm = context.functional_model()
        state, leaves = fm.leaves(context.names)
        g = [torch.zeros_like(leaf) for leaf in leaves]
        for inputs, targets in context.batches(self.batches):
            _add(g, torch.autograd.grad(loss(fm(state, inputs), targets), leaves, allow_unused=True))
        hg = [torch.zeros_like(leaf) for leaf in leaves]
        for inputs, targets in context.batches(self.batches):
            grads = torch.autograd.grad(loss(fm(state, inputs), targets), leaves, create_graph=True, allow_unused=True)
            terms = [(grad * fixed).sum() for grad, fixed in zip(grads, g, strict=True) if grad is not None]
            z = torch.stack(terms).sum() if terms else None  # g . grad, g held fixed: its gradient is Hg
            if z is not None and z.requires_grad:  # else the loss is linear in the weights: Hg = 0
                _add(hg, torch.autograd.grad(z, leaves, allow_unused=True))
        slot = {id(leaf): i for i, leaf in enumerate(leaves)}
        return {n: state[n].detach() * hg[slot[id(state[n])]] for n in context.names}


@hookimpl
def torch_lottery_register_strategies(register):
    """Register ``grasp``."""
    register("grasp", GraSP)
