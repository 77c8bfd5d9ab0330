"""Strategy options written on the command line: ``KEY=VALUE``, the value read as JSON where it is JSON.

One owner for the parsing behind ``torch-lottery run --strategy-option`` and
``torch-lottery compare``: ``rate=0.5`` gives ``{"rate": 0.5}``, ``every=100`` an
int, ``regrow=true`` a bool, ``densities=[0.1,0.02]`` a list, ``criterion=magnitude``
(not JSON) the string. The strategy itself validates the options.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from .._validation import describe


def parse_option(text: Any, argument: str = "--strategy-option") -> tuple[str, Any]:
    """Split one ``KEY=VALUE`` into its key and value (JSON where it parses, the text otherwise).

    Args:
        text (str): the option as written, e.g. ``"rate=0.5"``.
        argument (str): the flag it came from, named in errors.

    Returns:
        tuple: ``(key, value)``.

    Raises:
        TypeError: if ``text`` is not a string.
        ValueError: if it has no ``=`` or its key is not a Python identifier.

    Examples:
        >>> parse_option("rate=0.5")
        ('rate', 0.5)
        >>> parse_option("criterion=magnitude")
        ('criterion', 'magnitude')
    """
    if not isinstance(text, str):
        raise TypeError(f"{argument} must be KEY=VALUE text, got {describe(text)}")
    key, equals, value = text.partition("=")
    key = key.strip()
    if not equals or not key.isidentifier():
        raise ValueError(f"{argument} {text!r}: write KEY=VALUE with KEY a name, e.g. rate=0.5")
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value
    if isinstance(parsed, float) and parsed != parsed or parsed in (float("inf"), float("-inf")):
        parsed = value  # NaN and Infinity stay text: a strategy refuses them by name
    return key, parsed


def parse_options(texts: Iterable[Any], argument: str = "--strategy-option") -> dict[str, Any]:
    """Parse several ``KEY=VALUE`` into one dict, refusing a key given twice.

    Args:
        texts (iterable of str): the options as written.
        argument (str): the flag they came from, named in errors.

    Returns:
        dict: the options in the order given.

    Raises:
        ValueError: on a malformed option or a repeated key, naming it.

    Examples:
        >>> parse_options(["density=0.1", "every=50"])
        {'density': 0.1, 'every': 50}
    """
    options: dict[str, Any] = {}
    for text in texts:
        key, value = parse_option(text, argument)
        if key in options:
            raise ValueError(f"{argument} {key!r} is given twice ({options[key]!r} and {value!r})")
        options[key] = value
    return options
