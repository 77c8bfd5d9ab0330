"""The shared base of the pruning-at-initialization strategies: score the initial weights once, keep the top.

Each strategy of the family (``magnitude_init``, ``snip``, ``grasp``, ``synflow``) is
a plugin module of its own that subclasses :class:`InitStrategy` and defines
``scores``; the base owns the options (``remaining``, ``scope``,
``min_remaining``, ``on_floor``) and the selection (the planner every pooled
selection of torch-lottery goes through).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from .._validation import check_fraction, check_number
from .base import PoolStrategy, fraction_to_keep
from .context import PruneContext


class InitStrategy(PoolStrategy):
    """Prune at initialization to ``remaining`` of the weights, by a score of the initial network.

    The driver skips the dense round: round 1 prunes the initial weights and
    trains the ticket, so ``find_ticket(..., rounds=1)`` trains exactly once.

    Args:
        remaining (float): fraction of the weights kept, in (0, 1], over the pool
            (``scope="global"``, the default, as the papers prune) or per tensor
            (``scope="local"``).
        scope (str): ``"global"`` or ``"local"``.
        min_remaining (int): surviving weights kept per tensor at least: a floor
            against layer collapse (default 1; 0 lets a layer be emptied).
        on_floor (str): ``"clamp"`` (default) or ``"raise"``, as everywhere.
    """

    when: ClassVar[str] = "at_init"
    max_rounds: ClassVar[int | None] = 1

    def __init__(
        self, remaining: float = 0.1, scope: str = "global", min_remaining: int = 1, on_floor: str = "clamp"
    ) -> None:
        self.remaining = check_fraction(remaining, "remaining", low_open=True)
        super().__init__(scope=scope, min_remaining=min_remaining, rate=1.0 - self.remaining, on_floor=on_floor)

    def fraction(self, context: PruneContext, names: list[str]) -> float:
        """Return the fraction of the survivors of ``names`` to prune so that ``remaining`` of them is left."""
        return fraction_to_keep(context, names, self.remaining)

    def options(self) -> dict[str, Any]:
        options = super().options()
        del options["rewind_iteration"], options["rate_multipliers"]  # at initialization: both mean nothing
        return {**options, "remaining": self.remaining}


class DataInitStrategy(InitStrategy):
    """An :class:`InitStrategy` that scores with the run's data and loss (``snip``, ``grasp``).

    Args:
        remaining, scope, min_remaining, on_floor: as for :class:`InitStrategy`.
        batches (int): batches of ``data`` the scores are summed over (default 1).
    """

    needs_data: ClassVar[bool] = True
    needs_loss: ClassVar[bool] = True

    def __init__(
        self,
        remaining: float = 0.1,
        batches: int = 1,
        scope: str = "global",
        min_remaining: int = 1,
        on_floor: str = "clamp",
    ) -> None:
        super().__init__(remaining=remaining, scope=scope, min_remaining=min_remaining, on_floor=on_floor)
        self.batches = check_number(batches, "batches", integer=True, low=1)

    def loss_of(self, context: PruneContext) -> Callable[[Any, Any], Any]:
        """Return the run's loss, or raise naming ``loss`` (for a context built without one)."""
        if context.loss is None:
            raise ValueError(
                f"{type(self).__name__} scores with the run's loss: pass "
                "find_ticket(..., loss=<callable(output, targets)>)"
            )
        return context.loss

    def options(self) -> dict[str, Any]:
        return {**super().options(), "batches": self.batches}
