"""The ticket-finding driver (settings, phases, checkpoints, rank sync), tickets, their files and their overlap."""

from .context import RoundContext, round_seed
from .find import find_ticket
from .instability import AutoRewind, Instability, instability_analysis
from .overlap import LayerOverlap, MaskOverlap, mask_overlap
from .ticket import ApplyReport, Ticket

__all__ = [
    "ApplyReport",
    "AutoRewind",
    "Instability",
    "LayerOverlap",
    "MaskOverlap",
    "RoundContext",
    "Ticket",
    "find_ticket",
    "instability_analysis",
    "mask_overlap",
    "round_seed",
]
