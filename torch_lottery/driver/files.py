"""File names and layouts of the driver, defined in one place."""

from __future__ import annotations

import os
import re

#: One file per finished round in a checkpoint directory.
ROUND_FILE = "round-{index:04d}.pt"
ROUND_PATTERN = re.compile(r"^round-(\d{4})\.pt$")
#: The ticket of a finished run, beside the round files.
TICKET_FILE = "ticket.pt"

#: ``format`` fields of the files (loading refuses any other).
TICKET_FORMAT = "torch_lottery.ticket"
CHECKPOINT_FORMAT = "torch_lottery.checkpoint"
#: Layout versions this release writes and reads.
TICKET_VERSION = 1
CHECKPOINT_VERSION = 1


def round_path(directory: str | os.PathLike, index: int) -> str:
    """Return the path of round ``index``'s checkpoint in ``directory``."""
    return os.path.join(os.fspath(directory), ROUND_FILE.format(index=index))


def finished_rounds(directory: str | os.PathLike) -> list[int]:
    """Return the indices of the round files in ``directory``, sorted."""
    if not os.path.isdir(directory):
        return []
    found = (ROUND_PATTERN.match(name) for name in os.listdir(directory))
    return sorted(int(match.group(1)) for match in found if match)
