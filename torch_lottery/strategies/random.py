"""Built-in plugin: random pruning (``random``), the baseline of the same per-round sparsity."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..plugins.hookspecs import hookimpl
from .base import PoolStrategy, PruneContext, check_rate


class RandomPruning(PoolStrategy):
    """Prune ``rate`` of the survivors per round at random: the random-pruning control.

    Same options and per-round sparsity as ``imp`` (without a criterion); the
    randomness comes from the driver's seeded generator, so runs are reproducible.

    Examples:
        >>> from torch_lottery import get_strategy
        >>> get_strategy("random")(rate=0.2).rate
        0.2
    """

    def __init__(
        self,
        rate: float = 0.2,
        scope: str = "local",
        rate_multipliers: Mapping[str, float] | None = None,
        min_remaining: int = 1,
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

    def scores(self, context: PruneContext, name: str) -> torch.Tensor:
        shape = context.masks[name].shape
        return torch.rand(shape, generator=context.generator).to(context.masks[name].device)

    def fraction(self, context: PruneContext, names: list[str]) -> float:
        return self.rate

    def options(self) -> dict[str, Any]:
        return {**super().options(), "rate": self.rate}


@hookimpl
def torch_lottery_register_strategies(register):
    """Register ``random``."""
    register("random", RandomPruning)
