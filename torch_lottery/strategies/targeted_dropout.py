"""Built-in plugin: targeted dropout, then post hoc pruning (``targeted_dropout``, Gomez et al. 2019).

Gomez et al. ("Learning Sparse Networks Using Targeted Dropout", 2019) train with
targeted dropout (:func:`torch_lottery.targeted_dropout`): at every forward, the
smallest weights of each unit (or the smallest units) are dropped at random, so the
network learns not to rely on them; after training, pruning exactly that targeted
fraction costs little accuracy, without retraining. This strategy is that recipe
inside :func:`~torch_lottery.find_ticket`: one training run of the user's loop with
targeted dropout on every pruned tensor, then the targeted fraction is pruned, and
the round's record evaluates the pruned model.
"""

from __future__ import annotations

import sys
from typing import Any, ClassVar

import torch
from torch import nn

from .. import _layout
from .._validation import check_choice, check_finite, check_fraction
from ..plugins.hookspecs import hookimpl
from ..pruning.targeted_dropout import (
    KINDS,
    check_targetable,
    has_targeted_dropout,
    remove_targeted_dropout,
    targeted_dropout,
    targeted_set,
)
from .base import StepContext, Strategy
from .context import PruneContext


class TargetedDropout(Strategy):
    """Train with targeted dropout, then prune the targeted fraction (Gomez et al. 2019).

    The run has no dense round and one training round: round 1 starts from the
    current masks (all ones for an unpruned model), the user's loop trains with
    :func:`~torch_lottery.targeted_dropout` on every tensor being pruned, and
    once training ends (also when it raised) the dropout is removed and the
    final masks prune what the dropout targeted, computed from the trained
    weights: in each unit the ``targ_rate`` fraction of its surviving weights of
    smallest ``|w|`` (``kind="weight"``), or the ``targ_rate`` fraction of units of
    smallest L2 norm, whole (``kind="unit"``), with the counts of
    :func:`~torch_lottery.pruning.targeted_dropout.targeted_set`. The weights are
    not reset: round 1's record evaluates the trained model pruned post hoc,
    without retraining, as the paper does. Nothing moves during training, so
    ``update`` returns None (and ``every`` is so large that it is never called).

    Args:
        drop_rate (float): probability of dropping a targeted weight (or unit) at
            each forward, in [0, 1] (default 0.5, the paper's main setting).
        targ_rate (float): fraction of each unit's weights (or of the units) that
            is targeted and finally pruned, in [0, 1] (default 0.5).
        kind (str): ``"weight"`` (default) or ``"unit"``.

    Examples:
        >>> from torch_lottery import get_strategy
        >>> strategy = get_strategy("targeted_dropout")(targ_rate=0.75, kind="unit")
        >>> strategy.options()
        {'drop_rate': 0.5, 'targ_rate': 0.75, 'kind': 'unit'}
    """

    when: ClassVar[str] = "during_training"
    max_rounds: ClassVar[int | None] = 1
    #: Optimizer steps between two ``update`` calls: none ever comes (nothing moves while training).
    every: ClassVar[int] = sys.maxsize

    def __init__(self, drop_rate: float = 0.5, targ_rate: float = 0.5, kind: str = "weight") -> None:
        super().__init__()
        self.drop_rate = check_fraction(drop_rate, "drop_rate")
        self.targ_rate = check_fraction(targ_rate, "targ_rate")
        self.kind = check_choice(kind, KINDS, "kind")
        self._installed: list[tuple[nn.Module, str]] = []

    def validate(self, names: tuple[str, ...], model: nn.Module | None = None, data: Any = None) -> None:
        """Check, before anything trains, that targeted dropout can be installed on every tensor."""
        if model is None:
            return
        for name in names:
            found = _layout.resolve(model, name)
            if found is None:
                continue  # the driver names missing tensors itself
            try:
                check_targetable(*found)
            except ValueError as error:
                raise ValueError(f"strategy 'targeted_dropout' cannot train {name!r}: {error}") from None

    def prune(self, context: PruneContext) -> dict[str, torch.Tensor]:
        """Return the current masks: training starts from them (all ones for an unpruned model)."""
        return {name: mask.clone() for name, mask in context.masks.items()}

    def begin(self, context: StepContext) -> None:
        """Install targeted dropout on every tensor being pruned (all of them, or none if one is refused)."""
        installed: list[tuple[nn.Module, str]] = []
        try:
            for module, name in context.pairs():
                targeted_dropout(module, name, self.drop_rate, self.targ_rate, self.kind)
                installed.append((module, name))
        except BaseException:
            for module, name in installed:
                remove_targeted_dropout(module, name)
            raise
        self._installed = installed

    def update(self, context: StepContext) -> None:
        """Return None: the masks do not move while the model trains with targeted dropout."""

    def end(self, context: StepContext) -> dict[str, torch.Tensor]:
        """Remove the dropout; return the masks that prune the targeted fraction of the trained weights."""
        for module, name in self._installed:
            if has_targeted_dropout(module, name):
                remove_targeted_dropout(module, name)
        self._installed = []
        weights, masks = context.weights(), context.masks()
        final = {}
        for name in context.names:
            check_finite(
                weights[name], f"the weights of {name!r} after training with targeted dropout (diverged?)", masks[name]
            )
            final[name] = masks[name] & ~targeted_set(weights[name], self.targ_rate, self.kind, masks[name])
        return final

    def options(self) -> dict[str, Any]:
        return {"drop_rate": self.drop_rate, "targ_rate": self.targ_rate, "kind": self.kind}


@hookimpl
def torch_lottery_register_strategies(register):
    """Register ``targeted_dropout``."""
    register("targeted_dropout", TargetedDropout)
