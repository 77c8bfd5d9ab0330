"""The ticket-finding driver, tickets and their files."""

from .find import RoundContext, find_ticket
from .ticket import ApplyReport, Ticket

__all__ = ["ApplyReport", "RoundContext", "Ticket", "find_ticket"]
