"""Argument checks shared by the public API: one vocabulary, one message per rule.

Each helper raises :class:`TypeError` (wrong kind of value) or :class:`ValueError`
(right kind, wrong value) with a message that names the argument and the value,
and never touches a model or a file.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable
from typing import Any, cast

import torch
from torch import nn

from . import _layout


def describe(value: Any) -> str:
    """Return a short, printable description of ``value`` for error messages."""
    if isinstance(value, torch.Tensor):
        return f"Tensor(shape={tuple(value.shape)}, dtype={value.dtype})"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# -- numbers --------------------------------------------------------------------------
def check_number(
    value: Any,
    name: str,
    *,
    integer: bool = False,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> Any:
    """Check that ``value`` is a finite real number (an int if ``integer``) within the given bounds.

    ``bool`` is never a number here. Returns the value as ``int`` or ``float``.

    Raises:
        TypeError: if ``value`` is not a number of the right kind.
        ValueError: if it is not finite or out of bounds, naming ``name`` and the bounds.
    """
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{name} must be {'an int' if integer else 'a number'}, got {describe(value)}")
    number = int(cast(numbers.Integral, value)) if integer else float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name}={value} must be finite")
    below = low is not None and (number <= low if low_open else number < low)
    above = high is not None and (number >= high if high_open else number > high)
    if below or above:
        if low is not None and high is not None:
            bounds = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        elif low is not None:
            bounds = f"{'>' if low_open else '>='} {low:g}"
        else:
            bounds = f"{'<' if high_open else '<='} {high:g}"
        raise ValueError(f"{name}={value} must be {bounds}")
    return number


def check_nonneg_int(value: Any, name: str) -> int:
    """Check that ``value`` is an int >= 0 and return it."""
    return check_number(value, name, integer=True, low=0)


def check_fraction(value: Any, name: str, *, low_open: bool = False, high_open: bool = False) -> float:
    """Check that ``value`` is a float in [0, 1] (ends open as asked) and return it."""
    return check_number(value, name, low=0.0, high=1.0, low_open=low_open, high_open=high_open)


def check_amount(amount: Any, name: str = "amount") -> None:
    """Check that ``amount`` is a non-negative int (a count) or a float in [0, 1] (a fraction).

    Raises:
        TypeError: if ``amount`` is not a real number (``bool`` is refused).
        ValueError: if it is out of range or not finite.
    """
    if isinstance(amount, bool) or not isinstance(amount, numbers.Real):
        raise TypeError(f"{name} must be an int or a float, got {describe(amount)}")
    if isinstance(amount, numbers.Integral):
        if amount < 0:
            raise ValueError(f"{name}={amount} must be a non-negative int (a count) or a float in [0, 1]")
        return
    if not math.isfinite(float(amount)) or not 0.0 <= float(amount) <= 1.0:
        raise ValueError(f"{name}={amount} must be a float in [0, 1] (a fraction) or a non-negative int")


def count_to_prune(amount: numbers.Real, surviving: int, name: str = "amount") -> int:
    """Convert ``amount`` into a number of entries to prune among ``surviving`` ones.

    Follows stock ``torch.nn.utils.prune``: an int is a count, a float a fraction
    of the surviving entries rounded to the nearest int.

    Raises:
        ValueError: if an int ``amount`` is larger than ``surviving``.
    """
    if isinstance(amount, numbers.Integral):
        if int(amount) > surviving:
            raise ValueError(f"{name}={amount} is larger than the number of surviving entries ({surviving})")
        return int(amount)
    return int(round(float(amount) * surviving))


def check_multiplier(value: Any, key: str, amount: Any) -> float:
    """Check one rate multiplier ``m`` for ``key``: a finite number >= 0 with ``amount * m <= 1``.

    Multipliers scale a fraction, so an int ``amount`` (a count) is refused with them.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= float(value) < math.inf:
        raise ValueError(f"rate_multipliers[{key}]={describe(value)} must be a finite number >= 0")
    m = float(value)
    if m != 1.0 and isinstance(amount, numbers.Integral) and not isinstance(amount, bool):
        raise ValueError(f"rate_multipliers need a float amount (a fraction), got amount={amount}")
    if float(amount) * m > 1:
        raise ValueError(f"amount={amount} * rate_multipliers[{key}]={m} exceeds 1")
    return m


# -- choices and flags ------------------------------------------------------------------
def check_choice(value: Any, choices: Iterable[str], name: str) -> str:
    """Check that ``value`` is one of ``choices`` and return it."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}={describe(value)} is not one of {', '.join(choices)}")
    return value


def check_bool(value: Any, name: str) -> bool:
    """Check that ``value`` is a bool and return it."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {describe(value)}")
    return value


def check_names(value: Any, name: str, choices: Iterable[str] | None = None) -> tuple[str, ...]:
    """Check that ``value`` is an iterable of str names (not one str), each one of ``choices`` if given.

    Returns:
        tuple: the names, in order.

    Raises:
        TypeError: naming ``name``, if ``value`` is a str, not iterable, or holds something else.
        ValueError: naming the first name that is not one of ``choices``.
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a list of names, got {describe(value)}")
    names = tuple(value)
    bad = [item for item in names if not isinstance(item, str)]
    if bad:
        raise TypeError(f"{name} must hold only str names, got {describe(bad[0])}")
    if choices is not None:
        allowed = tuple(choices)
        for item in names:
            check_choice(item, allowed, name)
    return names


def check_callable(value: Any, name: str, call: str) -> Any:
    """Check that ``value`` is callable (as ``call`` shows, e.g. ``"fn(record)"``) and return it."""
    if not callable(value):
        raise TypeError(f"{name} must be callable as {call}, got {describe(value)}")
    return value


#: What a pool does when ``amount`` would push a tensor below its floor ``min_remaining``.
ON_FLOOR = ("clamp", "raise")


def check_on_floor(value: Any) -> str:
    """Check ``on_floor``: ``"clamp"`` (prune what the floors allow) or ``"raise"`` (refuse)."""
    return check_choice(value, ON_FLOOR, "on_floor")


def check_generator(generator: Any, seed: Any) -> torch.Generator | None:
    """Return a CPU generator from ``generator`` or ``seed`` (at most one may be given)."""
    if generator is not None and seed is not None:
        raise ValueError("pass either generator or seed, not both")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {describe(generator)}")
        return generator
    if seed is not None:
        return torch.Generator().manual_seed(check_number(seed, "seed", integer=True))
    return None


# -- modules, tensors and masks ---------------------------------------------------------
def check_module(value: Any, name: str = "model") -> nn.Module:
    """Check that ``value`` is an ``nn.Module`` and return it."""
    if not isinstance(value, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {describe(value)}")
    return value


def check_module_name(module: Any, name: Any) -> torch.Tensor:
    """Check that ``module.<name>`` is a prunable parameter and return its trainable tensor.

    A tensor that is already pruned (``<name>_orig`` and ``<name>_mask`` exist)
    is accepted; its original parameter is returned. Prunable means real
    floating point with values: complex, bool and integer tensors are refused,
    and so are tensors on the meta device.

    Raises:
        TypeError: if ``module`` is not an ``nn.Module``, ``name`` not a str, or
            the tensor is not real floating point.
        ValueError: if the module has no parameter of that name, or it is on the
            meta device (no values).
    """
    check_module(module, "module")
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {describe(name)}")
    try:
        param = _layout.original(module, name)
    except KeyError:
        listed = ", ".join(k for k, v in module._parameters.items() if v is not None) or "none"
        raise ValueError(
            f"name={name!r} is not a parameter of {type(module).__name__} (parameters: {listed})"
        ) from None
    where = f"{type(module).__name__}.{name}"
    if not param.is_floating_point():
        raise TypeError(
            f"{where} has dtype {param.dtype}: torch-lottery prunes real floating-point tensors "
            "(complex, bool and integer tensors are refused)"
        )
    if param.device.type == "meta":
        raise ValueError(
            f"{where} is on the meta device: it has no values to prune "
            "(materialize the model first, e.g. model.to_empty(device='cpu') and initialize it)"
        )
    return param


def check_pairs(parameters: Any, name: str = "parameters", *, allow_empty: bool = False) -> list[tuple[nn.Module, str]]:
    """Check an iterable of ``(module, name)`` pairs of prunable tensors, each listed once; return it as a list.

    Raises:
        TypeError: if ``parameters`` is not an iterable of pairs, or a tensor is not prunable.
        ValueError: if it is empty (unless ``allow_empty``), names a missing tensor, or lists one twice.
    """
    if isinstance(parameters, (str, bytes, nn.Module)) or not isinstance(parameters, Iterable):
        raise TypeError(f"{name} must be an iterable of (module, name) pairs, got {describe(parameters)}")
    pairs = []
    seen = set()
    for item in parameters:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], nn.Module)):
            raise TypeError(f"{name} must hold (module, name) pairs, got {describe(item)}")
        check_module_name(*item)
        key = (id(item[0]), item[1])
        if key in seen:
            raise ValueError(f"{name} lists {type(item[0]).__name__}.{item[1]} twice")
        seen.add(key)
        pairs.append(item)
    if not pairs and not allow_empty:
        raise ValueError(f"{name} is empty: nothing to prune")
    return pairs


def check_binary_mask(mask: Any, name: str) -> torch.Tensor:
    """Check that ``mask`` is a dense tensor with values that holds only 0 and 1 (or is bool); return it.

    Raises:
        TypeError: if ``mask`` is not a tensor.
        ValueError: naming ``name``, if it is sparse, on the meta device, or holds other values.
    """
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a Tensor, got {describe(mask)}")
    if mask.layout != torch.strided:
        raise ValueError(f"{name} has layout {mask.layout}; masks must be dense (strided) tensors")
    if mask.device.type == "meta":
        raise ValueError(f"{name} is on the meta device: it has no values")
    if mask.dtype != torch.bool and bool(((mask != 0) & (mask != 1)).any()):
        raise ValueError(f"{name} must hold only 0 and 1")
    return mask


def check_finite(t: torch.Tensor, name: str, mask: torch.Tensor | None = None) -> None:
    """Check that the entries of a floating tensor that will be used have no NaN or infinity.

    Only entries where ``mask`` is non-zero are checked (all of them without a
    mask): a pruned entry is never ranked. The tensor is read in chunks with a
    min/max reduction, so no tensor of its size is allocated unless a chunk
    holds a non-finite value.

    Raises:
        ValueError: naming ``name``, the kind of value (NaN or infinite), an
            example and its flat index; or if ``t`` is on the meta device (no values).
    """
    if not t.is_floating_point():
        return
    if t.device.type == "meta":
        raise ValueError(f"{name} is on the meta device: it has no values to rank")
    flat = t.detach().reshape(-1)
    keep = None if mask is None else mask.detach().reshape(-1)
    for start in range(0, flat.numel(), _CHUNK):
        chunk = flat[start : start + _CHUNK]
        low, high = torch.aminmax(chunk)  # NaN propagates into both
        if math.isfinite(float(low)) and math.isfinite(float(high)):
            continue
        bad = ~torch.isfinite(chunk)
        if keep is not None:
            bad &= keep[start : start + _CHUNK] != 0
        if bool(bad.any()):
            index = int(bad.nonzero()[0])
            value = float(chunk[index])
            kind = "NaN" if math.isnan(value) else "infinite"
            raise ValueError(
                f"{name} contains {kind} values (shape {tuple(t.shape)}; e.g. {value} at flat index "
                f"{start + index}); cannot rank entries"
            )


#: Entries read at once by :func:`check_finite`.
_CHUNK = 1 << 20


# -- paths ----------------------------------------------------------------------------
def check_path(path: Any, name: str = "path") -> str:
    """Check that ``path`` is a str or ``os.PathLike`` and return it as a str."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {describe(path)}")
    return os.fspath(path)


def check_writable_dir(path: Any, name: str, outputs: Iterable[str] = ()) -> str:
    """Check that ``path`` is, or can become, a writable directory; nothing is created.

    Also refuses a dangling symbolic link, and any of ``outputs`` (file names
    written into the directory later) that already exists there as a directory.

    Raises:
        TypeError: if ``path`` is not a path.
        ValueError: naming ``name`` and the problem (a file, inside a file, a
            dangling link, not writable, an output name taken by a directory).
    """
    given = check_path(path, name)
    full = os.path.abspath(given)
    if os.path.islink(full) and not os.path.exists(full):
        raise ValueError(f"{name}={given!r} is a dangling symbolic link (to {os.readlink(full)!r})")
    probe = full
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        if os.path.islink(parent) and not os.path.exists(parent):
            raise ValueError(f"{name}={given!r} is inside a dangling symbolic link ({parent!r})")
        probe = parent
    if not os.path.isdir(probe):
        where = "is a file" if probe == full else f"is inside a file ({probe!r})"
        raise ValueError(f"{name}={given!r} {where}, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"{name}={given!r} is not writable ({probe!r} refuses new files)")
    if probe == full:
        for output in outputs:
            target = os.path.join(full, output)
            if os.path.isdir(target):
                raise ValueError(f"{name}={given!r} holds a directory named {output!r}, where the run writes a file")
            if os.path.exists(target) and not os.access(target, os.W_OK):
                raise ValueError(f"{name}={given!r} holds {output!r}, which is not writable")
    return given


def check_writable_file(path: Any, name: str) -> str:
    """Check that ``path`` is a file that can be written or created (its folder too); nothing is created.

    Raises:
        TypeError: if ``path`` is not a path.
        ValueError: naming ``name``, if it is a directory, an existing file that
            is not writable, or its folder cannot be created or written.
    """
    given = check_path(path, name)
    full = os.path.abspath(given)
    if os.path.isdir(full):
        raise ValueError(f"{name}={given!r} is a directory; give a file name")
    if os.path.exists(full) and not os.access(full, os.W_OK):
        raise ValueError(f"{name}={given!r} is not writable")
    try:
        check_writable_dir(os.path.dirname(full), "its folder")
    except ValueError as error:
        raise ValueError(f"{name}={given!r} cannot be written: {error}") from None
    return given
