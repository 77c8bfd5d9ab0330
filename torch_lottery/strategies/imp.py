"""Built-in plugin: iterative magnitude pruning (``imp``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..plugins.hookspecs import hookimpl
from .base import MagnitudeScores, PoolStrategy, PruneContext, check_rate


class IterativeMagnitude(MagnitudeScores, PoolStrategy):
    """Iterative magnitude pruning (Frankle & Carbin 2019): prune ``rate`` of the survivors per round.

    Args:
        rate (float): fraction of the surviving weights pruned per round (0.2 in the LTH paper).
        scope (str): ``"local"`` (per tensor: LeNet, Conv-2/4/6) or ``"global"``
            (one pool: VGG-19, ResNet-18).
        rate_multipliers (dict, optional): ``{qualified name: m}``: that tensor is
            pruned on its own at ``rate * m`` (the LTH paper prunes LeNet's output
            layer at half rate: ``{"fc3.weight": 0.5}``).
        min_remaining (int): surviving weights kept per tensor at least (default 1).
        criterion (str): mask criterion (default ``large_final``; see
            :data:`torch_lottery.pruning.CRITERIA`).
        rewind_iteration (int): rewind to the weights at this iteration of the
            dense run (0 = initialization; k > 0 = late resetting).
        on_floor (str): ``"clamp"`` (default: a round prunes what the floors
            allow) or ``"raise"`` (stop the run when the rate would break a floor).

    Examples:
        >>> from torch_lottery import get_strategy
        >>> get_strategy("imp")(rate=0.2, scope="global", rewind_iteration=500)
        IterativeMagnitude(rewind_iteration=500, scope='global', ..., rate=0.2, criterion='large_final')
    """

    def __init__(
        self,
        rate: float = 0.2,
        scope: str = "local",
        rate_multipliers: Mapping[str, float] | None = None,
        min_remaining: int = 1,
        criterion: str = "large_final",
        rewind_iteration: int = 0,
        on_floor: str = "clamp",
    ) -> None:
        self.rate = check_rate(rate, "rate")
        super().__init__(
            scope=scope,
            rate_multipliers=rate_multipliers,
            min_remaining=min_remaining,
            rewind_iteration=rewind_iteration,
            rate=self.rate,
            on_floor=on_floor,
        )
        self._init_criterion(criterion)

    def fraction(self, context: PruneContext, names: list[str]) -> float:
        return self.rate

    def options(self) -> dict[str, Any]:
        return {**super().options(), "rate": self.rate, "criterion": self.criterion}


@hookimpl
def torch_lottery_register_strategies(register):
    """Register ``imp``."""
    register("imp", IterativeMagnitude)
