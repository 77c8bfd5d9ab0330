"""Run settings from a TOML file: ``torch-lottery run --config FILE.toml``.

The keys are the fields of :class:`~torch_lottery.experiments.runner.RunConfig`
(``rounds = 3``, ``controls = ["reinit", "permute"]``, ``strategy = "snip"``) and the
table ``[strategy_options]`` holds the strategy's options. This module reads the
file and refuses what is not settings (an unknown key, a malformed file); the
values are :meth:`RunConfig.check`'s business, as they are for the flags.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from .._validation import check_path, describe
from .runner import RunConfig

#: The keys a config file may hold: RunConfig's fields.
KEYS = tuple(field.name for field in dataclasses.fields(RunConfig))
#: The one key whose value is a table.
OPTIONS_TABLE = "strategy_options"
#: What to install where the standard library has no TOML reader (Python < 3.11).
TOMLI = "tomli>=2"


def _toml() -> Any:
    """Return the TOML reader: ``tomllib`` (Python 3.11+), else ``tomli``."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise ImportError(
                f"reading a TOML config file on Python < 3.11 needs tomli: pip install '{TOMLI}' "
                "(or pip install 'torch-lottery[experiments]')"
            ) from None
    return tomllib


def load_config(path: Any, name: str = "config") -> dict[str, Any]:
    """Read run settings from the TOML file ``path``: RunConfig's fields, options in ``[strategy_options]``.

    ``controls`` (an array of names) is returned as a tuple. Nothing is checked but
    the file's shape: pass the settings to ``RunConfig(**settings).check()``.

    Args:
        path (str or os.PathLike): the TOML file.
        name (str): the argument it came from, named where the path itself is wrong.

    Returns:
        dict: the settings, ``{field: value}``.

    Raises:
        TypeError: if ``path`` is not a path.
        ValueError: naming the file (and the key): it is missing, unreadable, not
            UTF-8 TOML, holds a key that is not a RunConfig field, or its
            ``strategy_options`` is not a table.
        ImportError: on Python < 3.11 without tomli.

    Examples:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "run.toml")
        >>> with open(path, "w") as handle:
        ...     _ = handle.write('rounds = 2\\ncontrols = ["reinit"]\\n[strategy_options]\\nrate = 0.5\\n')
        >>> load_config(path)
        {'rounds': 2, 'controls': ('reinit',), 'strategy_options': {'rate': 0.5}}
        >>> with open(path, "w") as handle:
        ...     _ = handle.write("round = 2\\n")
        >>> load_config(path)
        Traceback (most recent call last):
        ...
        ValueError: .../run.toml: unknown key 'round' (the keys are RunConfig's fields: dataset, model, rounds, ...)
    """
    given = check_path(path, name)
    if not os.path.isfile(given):
        what = "is a directory" if os.path.isdir(given) else "does not exist"
        raise ValueError(f"{name}={given!r} {what}: expected a TOML file of run settings")
    tomllib = _toml()
    try:
        with open(given, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as error:
        raise ValueError(f"{given}: cannot be read ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{given}: is not UTF-8 text ({error.reason} at byte {error.start})") from None
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{given}: is not valid TOML: {error}") from None
    for key in data:
        if key not in KEYS:
            raise ValueError(f"{given}: unknown key {key!r} (the keys are RunConfig's fields: {', '.join(KEYS)})")
    if OPTIONS_TABLE in data and not isinstance(data[OPTIONS_TABLE], dict):
        raise ValueError(
            f"{given}: {OPTIONS_TABLE} must be a table ([{OPTIONS_TABLE}] with KEY = VALUE lines), "
            f"got {describe(data[OPTIONS_TABLE])}"
        )
    if isinstance(data.get("controls"), list):
        data["controls"] = tuple(data["controls"])
    return data
