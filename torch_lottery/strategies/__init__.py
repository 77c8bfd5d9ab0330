"""Built-in ticket-finding strategies; each module is a plugin registered through the hooks."""

from .base import PoolStrategy, PruneContext, Strategy
from .imp import IterativeMagnitude
from .one_shot import OneShotMagnitude
from .random import RandomPruning

__all__ = ["IterativeMagnitude", "OneShotMagnitude", "PoolStrategy", "PruneContext", "RandomPruning", "Strategy"]
