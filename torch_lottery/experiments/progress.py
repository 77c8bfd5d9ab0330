"""Optional progress bars (tqdm when installed and wanted, silence otherwise)."""

from __future__ import annotations

import sys
from typing import Any


class _Silent:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def has_tqdm() -> bool:
    """Return True if tqdm can be imported (``tqdm.auto``: a widget in a notebook, text elsewhere)."""
    try:
        import tqdm.auto  # noqa: F401
    except ImportError:
        return False
    return True


def bar(enabled: bool, **kwargs: Any):
    """Return a tqdm bar writing to stderr, or a silent stand-in (tqdm missing or disabled)."""
    if not (enabled and has_tqdm()):
        return _Silent()
    from tqdm.auto import tqdm

    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(**kwargs)
