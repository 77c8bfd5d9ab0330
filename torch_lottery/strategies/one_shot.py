"""Built-in plugin: one-shot magnitude pruning (``one_shot``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._validation import check_fraction
from ..plugins.hookspecs import hookimpl
from .base import MagnitudeScores, PoolStrategy, PruneContext, fraction_to_keep


class OneShotMagnitude(MagnitudeScores, PoolStrategy):
    """Prune to the target in one round, then rewind (the one-shot baseline of the LTH paper).

    Args:
        remaining (float): fraction of the weights to keep, in (0, 1], per tensor
            (``scope="local"``) or over the pool (``scope="global"``).
        scope: as for ``imp``.
        rate_multipliers: as for ``imp``; a multiplier scales the fraction *pruned* of
            that tensor.
        min_remaining: as for ``imp``.
        criterion: as for ``imp``.
        rewind_iteration: as for ``imp``.
        on_floor: as for ``imp``.

    Examples:
        >>> from torch_lottery import get_strategy
        >>> get_strategy("one_shot")(remaining=0.1).max_rounds
        1
    """

    max_rounds = 1

    def __init__(
        self,
        remaining: float = 0.2,
        scope: str = "local",
        rate_multipliers: Mapping[str, float] | None = None,
        min_remaining: int = 1,
        criterion: str = "large_final",
        rewind_iteration: int = 0,
        on_floor: str = "clamp",
    ) -> None:
        self.remaining = check_fraction(remaining, "remaining", low_open=True)
        super().__init__(
            scope=scope,
            rate_multipliers=rate_multipliers,
            min_remaining=min_remaining,
            rewind_iteration=rewind_iteration,
            rate=1.0 - self.remaining,
            on_floor=on_floor,
        )
        self._init_criterion(criterion)

    def fraction(self, context: PruneContext, names: list[str]) -> float:
        """Return the fraction of the survivors to prune so that ``remaining`` of the total is left."""
        return fraction_to_keep(context, names, self.remaining)

    def options(self) -> dict[str, Any]:
        return {**super().options(), "remaining": self.remaining, "criterion": self.criterion}


@hookimpl
def torch_lottery_register_strategies(register):
    """Register ``one_shot``."""
    register("one_shot", OneShotMagnitude)
