"""Built-in ticket-finding strategies; each module is a plugin registered through the hooks.

Between rounds: ``imp`` (:class:`IterativeMagnitude`), ``one_shot``, ``random``; during the
dense run: ``early_bird``; at initialization (:class:`InitStrategy`): ``magnitude_init``,
``snip``, ``grasp``, ``synflow``. The seam they share: :class:`Strategy`, :class:`PruneContext`,
:class:`StepContext`.
"""

from .at_init import InitStrategy
from .base import PoolStrategy, PruneContext, StepContext, Strategy
from .early_bird import EarlyBird
from .grasp import GraSP
from .imp import IterativeMagnitude
from .magnitude_init import MagnitudeInit
from .one_shot import OneShotMagnitude
from .random import RandomPruning
from .snip import SNIP
from .synflow import SynFlow

__all__ = [
    "SNIP",
    "EarlyBird",
    "GraSP",
    "InitStrategy",
    "IterativeMagnitude",
    "MagnitudeInit",
    "OneShotMagnitude",
    "PoolStrategy",
    "PruneContext",
    "RandomPruning",
    "StepContext",
    "Strategy",
    "SynFlow",
]
