"""A test plugin registering ``imp`` (a built-in's name) and ``shadow_only``: it prunes one entry per tensor."""

from __future__ import annotations

import torch

from torch_lottery import PruneContext, Strategy, hookimpl

#: Every ``prune`` call of the plugin's strategies, as (class name, round index): proof that they ran.
CALLS: list[tuple[str, int]] = []


class ShadowIMP(Strategy):
    """Prune the first surviving entry of every tensor, each round (never what the built-in imp does)."""

    def prune(self, context: PruneContext) -> dict[str, torch.Tensor]:
        CALLS.append((type(self).__name__, context.round_index))
        masks = {}
        for name in context.names:
            mask = context.masks[name].clone().reshape(-1)
            alive = mask.nonzero()
            if len(alive):
                mask[alive[0]] = False
            masks[name] = mask.reshape(context.masks[name].shape)
        return masks


class ShadowOnly(ShadowIMP):
    """The same policy under a name no other plugin registers."""


@hookimpl
def torch_lottery_register_strategies(register):
    """Register ``imp`` (shadowed by the built-in) and ``shadow_only``."""
    register("imp", ShadowIMP)
    register("shadow_only", ShadowOnly)
