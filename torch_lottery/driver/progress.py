"""``find_ticket(progress=True)``: a progress bar over the rounds and the training steps of a run.

:class:`RunProgress` is an observer plugin (the round hooks move the rounds bar and
show the surviving weights) with a :meth:`~RunProgress.step` the driver calls after
every counted training step. The bars come from
:func:`torch_lottery.experiments.progress.bar` (``tqdm.auto``: a widget in a
notebook, text on stderr elsewhere).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

from ..experiments.progress import bar, has_tqdm
from ..plugins.hookspecs import hookimpl

#: What ``progress=True`` warns when tqdm is not installed (once per call site, as warnings go).
MISSING_TQDM = "find_ticket(progress=True) needs tqdm (pip install tqdm); running without a progress bar"


class RunProgress:
    """Two bars: the rounds of the run (with the surviving weights) and the steps of the current round.

    The steps bar's total is the length of the round before (unknown in round 0).

    Args:
        rounds (int, optional): the run's pruning rounds (the rounds bar counts them and the dense round).
        **kwargs: passed on to both tqdm bars (e.g. ``file=``).

    Examples:
        >>> import io
        >>> out = io.StringIO()
        >>> progress = RunProgress(rounds=1, file=out)
        >>> progress.torch_lottery_round_start(round_index=0, remaining=1.0)
        >>> progress.step(1)
        >>> progress.torch_lottery_round_end()
        >>> progress.close()
        >>> "ticket" in out.getvalue() and "remaining 100.0%" in out.getvalue()
        True
    """

    def __init__(self, rounds: int | None = None, **kwargs: Any) -> None:
        total = rounds + 1 if rounds is not None else None
        self.rounds = bar(True, total=total, desc="ticket", unit="round", **kwargs)
        self.steps = bar(True, total=None, desc="round 0", unit="step", leave=False, **kwargs)
        self._length: int | None = None  # the steps of the round before

    @hookimpl
    def torch_lottery_round_start(self, round_index: int, remaining: float) -> None:
        """Start the steps bar of round ``round_index``; show the surviving weights."""
        self.steps.set_description_str(f"round {round_index}", refresh=False)
        self.steps.reset(total=self._length)
        self.rounds.set_postfix_str(f"remaining {remaining:.1%}")

    @hookimpl
    def torch_lottery_after_prune(self, remaining: float) -> None:
        """Show the surviving weights after the new masks."""
        self.rounds.set_postfix_str(f"remaining {remaining:.1%}")

    def step(self, iteration: int) -> None:
        """Count one training step of the current round."""
        self.steps.update()

    @hookimpl
    def torch_lottery_round_end(self) -> None:
        """Count a finished round."""
        self._length = self.steps.n or None
        self.rounds.update()

    def close(self) -> None:
        """Close both bars (the rounds bar ends full when the run stopped before its last round)."""
        self.steps.close()
        if self.rounds.total is not None and 0 < self.rounds.n != self.rounds.total:
            self.rounds.total = self.rounds.n
            self.rounds.refresh()
        self.rounds.close()


@contextlib.contextmanager
def progress_bar(enabled: bool, rounds: int | None) -> Iterator[RunProgress | None]:
    """Yield a :class:`RunProgress` if ``enabled`` and tqdm is installed (warn if it is not), else None.

    Examples:
        >>> with progress_bar(False, rounds=2) as progress:
        ...     print(progress)
        None
    """
    if not enabled:
        yield None
        return
    if not has_tqdm():
        warnings.warn(MISSING_TQDM, RuntimeWarning, stacklevel=4)  # at the caller of find_ticket
        yield None
        return
    progress = RunProgress(rounds)
    try:
        yield progress
    finally:
        progress.close()
