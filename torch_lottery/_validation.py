"""Argument checks shared by the public API.

Each helper raises :class:`TypeError` or :class:`ValueError` with a message that
names the argument and the offending value, and never touches a model.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Iterable

import torch
from torch import nn


def describe(value: Any) -> str:
    """Return a short, printable description of ``value`` for error messages."""
    if isinstance(value, torch.Tensor):
        return f"Tensor(shape={tuple(value.shape)}, dtype={value.dtype})"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_amount(amount: Any, name: str = "amount") -> None:
    """Check that ``amount`` is a non-negative int or a float in [0, 1].

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
        if amount > surviving:
            raise ValueError(
                f"{name}={amount} is larger than the number of surviving entries ({surviving})"
            )
        return int(amount)
    return int(round(float(amount) * surviving))


def check_choice(value: Any, choices: Iterable[str], name: str) -> None:
    """Check that ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}={describe(value)} is not one of {', '.join(choices)}")


def check_bool(value: Any, name: str) -> None:
    """Check that ``value`` is a bool."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {describe(value)}")


def check_nonneg_int(value: Any, name: str) -> None:
    """Check that ``value`` is an int >= 0 (``bool`` is refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {describe(value)}")
    if value < 0:
        raise ValueError(f"{name}={value} must be >= 0")


def check_module_name(module: Any, name: Any) -> torch.Tensor:
    """Check that ``module.<name>`` is a prunable parameter and return its tensor.

    A tensor that is already pruned (``<name>_orig`` and ``<name>_mask`` exist)
    is accepted; its original parameter is returned.

    Raises:
        TypeError: if ``module`` is not an ``nn.Module`` or ``name`` not a str.
        ValueError: if the module has no parameter of that name, or it is on the
            meta device (no values).
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {describe(module)}")
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {describe(name)}")
    orig = module._parameters.get(name + "_orig")
    if orig is not None and name + "_mask" in module._buffers:
        param = orig
    else:
        param = module._parameters.get(name)
    if param is None:
        raise ValueError(
            f"name={name!r} is not a parameter of {type(module).__name__} "
            f"(parameters: {', '.join(k for k, v in module._parameters.items() if v is not None) or 'none'})"
        )
    if param.device.type == "meta":
        raise ValueError(f"{type(module).__name__}.{name} is on the meta device: it has no values to prune "
                         "(materialize the model first, e.g. model.to_empty(device='cpu') and initialize it)")
    return param


def check_generator(generator: Any, seed: Any) -> torch.Generator | None:
    """Return a CPU generator from ``generator`` or ``seed`` (at most one may be given)."""
    if generator is not None and seed is not None:
        raise ValueError("pass either generator or seed, not both")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {describe(generator)}")
        return generator
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise TypeError(f"seed must be an int, got {describe(seed)}")
        gen = torch.Generator()
        gen.manual_seed(int(seed))
        return gen
    return None


def check_finite(t: torch.Tensor, name: str, mask: torch.Tensor | None = None) -> None:
    """Check that the entries of a floating tensor that will be ranked have no NaN or infinity.

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
        chunk = flat[start:start + _CHUNK]
        low, high = torch.aminmax(chunk)  # NaN propagates into both
        if math.isfinite(float(low)) and math.isfinite(float(high)):
            continue
        bad = ~torch.isfinite(chunk)
        if keep is not None:
            bad &= keep[start:start + _CHUNK] != 0
        if bool(bad.any()):
            index = int(bad.nonzero()[0])
            value = float(chunk[index])
            kind = "NaN" if math.isnan(value) else "infinite"
            raise ValueError(f"{name} contains {kind} values (shape {tuple(t.shape)}; e.g. {value} at flat index "
                             f"{start + index}); cannot rank entries")


#: Entries read at once by :func:`check_finite`.
_CHUNK = 1 << 20
