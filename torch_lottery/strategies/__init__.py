"""Built-in ticket-finding strategies; each module is a plugin registered through the hooks.

Between rounds: ``imp`` (:class:`IterativeMagnitude`), ``one_shot``, ``random``; during the
dense run: ``early_bird``; at initialization (:class:`InitStrategy`): ``magnitude_init``,
``snip``, ``grasp``, ``synflow``; dynamic sparse training (:class:`DynamicSparse`: masks that
move while the ticket trains): ``sparse_momentum``, ``rigl``, ``set``; learned supermasks over frozen weights
(:class:`SupermaskStrategy`): ``edge_popup``, ``learned_supermask``; trained with targeted dropout, then
pruned post hoc: ``targeted_dropout``. The seam they share: :class:`Strategy`, :class:`PruneContext`,
:class:`StepContext`.
"""

from .at_init import InitStrategy
from .base import PoolStrategy, PruneContext, StepContext, Strategy
from .dynamic import DynamicSparse, erk_densities
from .early_bird import EarlyBird
from .edge_popup import EdgePopup
from .grasp import GraSP
from .imp import IterativeMagnitude
from .learned_supermask import LearnedSupermask
from .magnitude_init import MagnitudeInit
from .one_shot import OneShotMagnitude
from .random import RandomPruning
from .rigl import RigL
from .snip import SNIP
from .sparse_evolutionary import SET
from .sparse_momentum import SparseMomentum
from .supermask import SupermaskStrategy
from .synflow import SynFlow
from .targeted_dropout import TargetedDropout

__all__ = [
    "SET",
    "SNIP",
    "DynamicSparse",
    "EarlyBird",
    "EdgePopup",
    "GraSP",
    "InitStrategy",
    "IterativeMagnitude",
    "LearnedSupermask",
    "MagnitudeInit",
    "OneShotMagnitude",
    "PoolStrategy",
    "PruneContext",
    "RandomPruning",
    "RigL",
    "SparseMomentum",
    "StepContext",
    "Strategy",
    "SupermaskStrategy",
    "SynFlow",
    "TargetedDropout",
    "erk_densities",
]
