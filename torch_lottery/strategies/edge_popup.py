"""Built-in plugin: edge-popup (``edge_popup``, Ramanujan et al. 2020).

Ramanujan, Wortsman, Kembhavi, Farhadi & Rastegari, "What's Hidden in a Randomly
Weighted Neural Network?" (CVPR 2020): a randomly initialized network holds
subnetworks that perform well with the weights never trained. Edge-popup finds
one by giving every weight a score ``s``, keeping in each layer the ``k`` weights
with the largest ``|s|`` in the forward pass, and training the scores with a
straight-through estimator while the weights stay at their initial values (their
reference code, allenai/hidden-networks, ranks ``|s|``). They report, e.g., a
subnetwork of a random Wide ResNet-50 that matches a trained ResNet-34 on
ImageNet, and ImageNet ResNet-50 at 30% of the weights: 61.7% top-1 with Kaiming
normal weights, 68.6% with signed Kaiming constants.
"""

from __future__ import annotations

from typing import Any

import torch

from .._validation import check_fraction
from ..plugins.hookspecs import hookimpl
from .base import keep_top
from .supermask import SupermaskStrategy, kaiming_uniform_scores, straight_through


class EdgePopup(SupermaskStrategy):
    """Find a supermask of the frozen initial weights by training scores with edge-popup (Ramanujan et al. 2020).

    Each pruned tensor gets scores ``s`` (its shape), drawn as the paper's code
    draws them (Kaiming uniform, :func:`~torch_lottery.strategies.supermask.kaiming_uniform_scores`)
    from the run's seeded generator. The forward pass uses ``module.<name> =
    <name>_orig * m`` with ``m`` keeping exactly ``k = max(1, round(remaining *
    numel))`` entries of the tensor, those with the largest ``|s|``
    (:func:`~torch_lottery.strategies.base.keep_top`, ties as the planner breaks
    them). The backward pass goes straight through the top-k to ``|s|``, so for
    an effective weight ``w * m`` with loss gradient ``g``::

        d loss / d s = g * w * sign(s)

    (the paper writes it ``g * w``, ranking ``s`` itself; its code ranks ``|s|``,
    hence the sign). The user's optimizer trains the scores, the weights stay as
    they were (see :mod:`torch_lottery.strategies.supermask` for what is frozen
    and how the optimizer gets the scores); the ticket is the top-k of the
    trained scores, exactly ``k`` entries per tensor.

    Args:
        remaining (float): fraction of each tensor's entries the mask keeps, in
            (0, 1] (default 0.5, the paper's k = 50%).
        every (int): optimizer steps between two writes of the current masks into
            ``<name>_mask`` (default 10; the final masks are exact whatever it is).
        freeze (str): ``"all"`` (every parameter of the model, the default, as the
            paper) or ``"pruned"`` (the pruned tensors only).

    Raises:
        TypeError, ValueError: naming the option and its value.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> import torch_lottery as tl
        >>> torch.manual_seed(0)
        <torch._C.Generator object at ...>
        >>> x = torch.randn(64, 4)
        >>> y = (x[:, 0] > 0).long()
        >>> model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 2))
        >>> initial = model[0].weight.detach().clone()
        >>> def train(model, context):
        ...     optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
        ...     for _ in range(30):
        ...         optimizer.zero_grad()
        ...         nn.functional.cross_entropy(model(x), y).backward()
        ...         optimizer.step()
        ...         context.step()
        >>> ticket = tl.find_ticket(model, train, strategy="edge_popup", strategy_options={"remaining": 0.5})
        >>> torch.equal(model[0].weight_orig, initial), int(ticket.masks["0.weight"].sum())
        (True, 64)
    """

    def __init__(self, remaining: float = 0.5, every: int = 10, freeze: str = "all") -> None:
        super().__init__(every=every, freeze=freeze)
        self.remaining = check_fraction(remaining, "remaining", low_open=True)

    def count(self, numel: int) -> int:
        """Return how many entries a tensor of ``numel`` entries keeps: ``max(1, round(remaining * numel))``."""
        return max(1, round(self.remaining * numel)) if numel else 0

    def initial_scores(self, weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Return Kaiming-uniform scores for ``weight`` (the paper's code's init)."""
        return kaiming_uniform_scores(weight, generator)

    def starting_mask(
        self, scores: torch.Tensor, eligible: torch.Tensor | None, generator: torch.Generator
    ) -> torch.Tensor:
        """Return the top-k of the initial scores.

        Raises:
            ValueError: if fewer entries than ``k`` were alive when the run started.
        """
        k = self.count(scores.numel())
        alive = scores.numel() if eligible is None else int(eligible.sum())
        if k > alive:
            raise ValueError(
                f"remaining={self.remaining} keeps {k} of the {scores.numel()} entries of a tensor, but only "
                f"{alive} were alive when the run started (edge_popup chooses among those)"
            )
        return self.current_mask(scores, eligible)

    def current_mask(self, scores: torch.Tensor, eligible: torch.Tensor | None) -> torch.Tensor:
        """Return the ``k`` entries with the largest ``|scores|`` (among ``eligible``)."""
        return keep_top(scores.abs(), self.count(scores.numel()), eligible)

    def training_mask(self, scores: torch.Tensor, eligible: torch.Tensor | None, training: bool) -> torch.Tensor:
        """Return the top-k mask, its gradient passed straight through to ``|scores|``."""
        soft = scores.abs()
        hard = self.current_mask(scores, eligible).to(scores.dtype)
        return straight_through(hard, soft if eligible is None else soft * eligible)

    def final_mask(self, scores: torch.Tensor, eligible: torch.Tensor | None) -> torch.Tensor:
        """Return the top-k of the trained scores: exactly ``k`` entries."""
        return self.current_mask(scores, eligible)

    def options(self) -> dict[str, Any]:
        return {"remaining": self.remaining, **super().options()}


@hookimpl
def torch_lottery_register_strategies(register):
    """Register ``edge_popup``."""
    register("edge_popup", EdgePopup)
