"""The ticket-finding driver (settings, phases, checkpoints, rank sync), tickets and their files."""

from .context import RoundContext, round_seed
from .find import find_ticket
from .instability import AutoRewind, Instability, instability_analysis
from .ticket import ApplyReport, Ticket

__all__ = [
    "ApplyReport",
    "AutoRewind",
    "Instability",
    "RoundContext",
    "Ticket",
    "find_ticket",
    "instability_analysis",
    "round_seed",
]
