"""The ``torch-lottery`` console script's entry point, outside the ``torch_lottery`` package.

Importing anything from ``torch_lottery`` first runs its ``__init__``, which
imports torch (seconds); a Ctrl-C there would reach the console script as a raw
traceback. This module imports only the standard library, so :func:`main` is
already running, and catching ``KeyboardInterrupt``, when torch starts to load.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence

#: The one line of a command interrupted before ``torch_lottery.cli`` could say more.
INTERRUPTED_LINE = "torch-lottery: interrupted"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``torch-lottery`` with ``argv``: :func:`torch_lottery.cli.main`, with Ctrl-C caught during its imports too.

    Ctrl-C at any moment ends with one line on stderr and status 130.

    Args:
        argv: the arguments (default ``sys.argv[1:]``).

    Returns:
        int: the exit status.

    Examples:
        >>> main(["strategies"])  # doctest: +ELLIPSIS
        name ...
        0
    """
    try:
        from torch_lottery.cli import main as cli_main

        return cli_main(argv)
    except KeyboardInterrupt:  # while torch_lottery was importing (cli_main catches its own)
        print(INTERRUPTED_LINE, file=sys.stderr)
        return 130


def console_script() -> int:
    """Run :func:`main` as the ``torch-lottery`` program: once it returns, a late Ctrl-C cannot interrupt the exit.

    The console script's entry point (``[project.scripts] torch-lottery = "torch_lottery_cli:console_script"``);
    it reads ``sys.argv`` and leaves SIGINT ignored, so call :func:`main` from Python instead.

    Returns:
        int: the exit status.

    Examples:
        >>> import signal, sys
        >>> argv, handler = sys.argv, signal.getsignal(signal.SIGINT)
        >>> sys.argv = ["torch-lottery", "strategies"]
        >>> console_script()  # doctest: +ELLIPSIS
        name ...
        0
        >>> signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        True
        >>> sys.argv, _ = argv, signal.signal(signal.SIGINT, handler)
    """
    status = main()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only the interpreter's exit is left
    return status
