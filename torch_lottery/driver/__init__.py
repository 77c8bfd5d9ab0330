"""The ticket-finding driver (settings, phases, checkpoints, rank sync), tickets and their files."""

from .context import RoundContext, round_seed
from .find import find_ticket
from .ticket import ApplyReport, Ticket

__all__ = ["ApplyReport", "RoundContext", "Ticket", "find_ticket", "round_seed"]
