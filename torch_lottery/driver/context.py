"""What the driver hands to the user's ``train(model, context)``: the round's context, seeds, early stops."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any


def round_seed(seed: int, round_index: int, salt: int = 0) -> int:
    """Return the seed of round ``round_index`` of a run seeded with ``seed`` (``salt`` for another stream)."""
    return (seed * 1_000_003 + round_index * 7919 + salt) % (2**63)


def seed_everything(seed: int) -> None:
    """Seed torch's, Python's and (if installed) NumPy's global RNGs."""
    import torch

    torch.manual_seed(seed)
    random.seed(seed)
    try:  # numpy is optional
        import numpy
    except ImportError:
        return
    numpy.random.seed(seed % (2**32))


class StopRound(BaseException):  # noqa: N818 - a control-flow signal, like StopIteration
    """Raised by ``context.step()`` (or the optimizer) in a loop that kept training after a strategy stopped the round.

    A ``BaseException``, so that an ``except Exception`` in the user's loop does not
    swallow it; the driver catches it around ``train``.
    """


class RoundContext:
    """What the driver hands to your ``train(model, context)`` each round.

    Attributes:
        round_index (int): 0 for the dense run, then 1, 2, ...
        seed (int): a seed for this round (the driver already seeded torch's and
            Python's global RNGs with it); use it for your own generators.
        iteration (int): training iterations counted so far this round.
        rewind_iteration (int): the iteration of the dense run to rewind to.
        retrain (str): how this round starts: ``"rewind"`` (weights reset to the
            rewind point), ``"lr_rewind"`` (trained weights kept, the learning-rate
            schedule replayed from ``rewind_iteration``) or ``"finetune"``
            (everything kept). Round 0 is always ``"dense"``.
        should_stop (bool): True once the strategy ended the round early (e.g. an
            early-bird ticket was drawn): a loop that checks it after
            ``context.step()`` stops cleanly; one that does not is stopped at its
            next step.
        reads_weights (bool): True if the driver or the strategy reads or moves
            weights or masks between the steps of this training (the rewind point
            captured in round 0, a strategy's ``on_step``, masks moved during
            training). When False, the loop may train through
            :func:`torch_lottery.sparse_training`.

    Call :meth:`step` after every optimizer step, unless you passed
    ``optimizer=`` to :func:`find_ticket` (then the driver counts by itself).
    """

    def __init__(
        self,
        round_index: int,
        seed: int,
        rewind_iteration: int,
        on_iteration: Callable | None = None,
        counts_itself: bool = False,
        retrain: str = "rewind",
    ) -> None:
        self.round_index = round_index
        self.seed = seed
        self.rewind_iteration = rewind_iteration
        self.retrain = retrain
        self.iteration = 0
        self.should_stop = False
        self.stop_reason: str | None = None
        self._on_iteration = on_iteration
        self._counts_itself = counts_itself
        self.reads_weights = on_iteration is not None

    def step(self) -> None:
        """Count one training iteration (captures the rewind point at ``rewind_iteration``)."""
        if not self._counts_itself:
            self._advance()

    def _advance(self) -> None:
        if self.should_stop:  # the loop went on after the round was stopped
            raise StopRound(self.stop_reason)
        self.iteration += 1
        if self._on_iteration is not None:
            self._on_iteration(self.iteration)

    def _before_step(self, *args: Any) -> None:
        """Optimizer pre-hook (``optimizer=``): refuse the step after a stop, so the weights are those of the stop."""
        if self.should_stop:
            raise StopRound(self.stop_reason)

    def _stop(self, reason: str) -> None:
        self.should_stop = True
        self.stop_reason = reason
