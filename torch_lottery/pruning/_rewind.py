"""How pruning methods read rewind points (without importing :mod:`torch_lottery.rewinding`).

A rewind point is either a plain tensor (for one tensor pruned with ``apply``) or
any object of the :class:`RewindSource` protocol, such as
:class:`torch_lottery.RewindPoint`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from .._validation import describe


@runtime_checkable
class RewindSource(Protocol):
    """What pruning methods need of a rewind point: the values of a tensor, and its name for messages."""

    def tensor_for(self, module: nn.Module, name: str) -> torch.Tensor: ...

    def key_for(self, module: nn.Module, name: str) -> str: ...


def check_rewind_point(rewind_point: Any, name: str = "rewind_point") -> None:
    """Check that ``rewind_point`` is None, a Tensor or a rewind-point object."""
    if rewind_point is None or isinstance(rewind_point, (torch.Tensor, RewindSource)):
        return
    raise TypeError(f"{name} must be a torch_lottery.RewindPoint or a Tensor, got {describe(rewind_point)}")


def rewind_tensor(rewind_point: Any, module: nn.Module, name: str, like: torch.Tensor) -> torch.Tensor:
    """Return the rewind values of ``module.<name>``, checked against ``like``'s shape."""
    if isinstance(rewind_point, torch.Tensor):
        values = rewind_point
        where = "rewind_point"
    else:
        values = rewind_point.tensor_for(module, name)
        where = f"rewind_point[{rewind_point.key_for(module, name)!r}]"
    if values.shape != like.shape:
        raise ValueError(
            f"{where} has shape {tuple(values.shape)} but {type(module).__name__}.{name} "
            f"has shape {tuple(like.shape)}: the rewind point is from another model"
        )
    return values.detach().to(device=like.device, dtype=like.dtype)


def signed_constant_values(rewind: torch.Tensor) -> torch.Tensor:
    """Return ``sign(rewind) * std(rewind)``: Zhou et al.'s signed-constant weights."""
    std = rewind.float().std() if rewind.numel() > 1 else rewind.float().abs().mean()
    return (torch.sign(rewind) * std.to(rewind.dtype)).to(rewind.dtype)
