"""Identical ranks under ``torch.distributed``: what :func:`~torch_lottery.find_ticket` broadcasts and agrees on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import torch
import torch.distributed as dist
from torch import nn

from ..distributed import (
    RankDisagreementError,
    _broadcast_entries,
    _Entry,
    _global_rank,
    _object_kwargs,
    broadcast_weights,
    is_active,
)

T = TypeVar("T")


class RunSync:
    """What :func:`~torch_lottery.find_ticket` does to keep the ranks of a job identical.

    Inactive (every method a pass-through) without a process group of more than
    one rank. Active, rank 0 of ``group`` decides: its masks, rewind point,
    rewound weights and history records are broadcast, and only it writes files;
    every write and every resume is followed by an agreement on success, so a
    failure on one rank is raised on all of them instead of leaving them waiting.
    """

    def __init__(self, group: Any = None, enabled: bool = True) -> None:
        self.active = bool(enabled) and is_active(group)
        self.group = group
        self.rank = dist.get_rank(group) if self.active else 0
        self.src = _global_rank(group, 0) if self.active else 0
        self.writer = self.rank == 0

    def masks(self, masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Return rank 0's masks (bool tensors, same names) on every rank."""
        if not self.active:
            return masks
        out = {name: mask.detach().bool().contiguous().clone() for name, mask in masks.items()}
        entries = [_Entry(name, mask) for name, mask in out.items()]
        _broadcast_entries(entries, "masks", self.src, self.group, 0)
        return out

    def point(self, point: Any) -> None:
        """Overwrite a rewind point's tensors with rank 0's, in place."""
        if not self.active:
            return
        entries = [_Entry(name, tensor) for name, tensor in point.items()]
        _broadcast_entries(entries, "rewind points", self.src, self.group, 0)

    def model(self, model: nn.Module) -> None:
        """Overwrite every parameter and buffer (masks excepted) with rank 0's."""
        if self.active:
            broadcast_weights(model, src=self.src, group=self.group, buffers=True)

    def value(self, obj: T) -> T:
        """Return rank 0's ``obj`` (plain data: numbers, strings, lists, dicts, tensors)."""
        if not self.active:
            return obj
        box = [obj if self.writer else None]
        dist.broadcast_object_list(box, src=self.src, group=self.group, **_object_kwargs())
        return cast(T, box[0])  # rank 0's obj

    def together(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` (no collectives inside) on every rank; if it fails anywhere, raise everywhere."""
        if not self.active:
            return fn()
        error: BaseException | None = None
        result = None
        try:
            result = fn()
        except Exception as caught:  # agreed on below, then re-raised
            error = caught
        status = None if error is None else f"{type(error).__name__}: {error}"
        gathered: list[Any] = [None] * dist.get_world_size(self.group)
        dist.all_gather_object(gathered, status, group=self.group, **_object_kwargs())
        if error is not None:
            raise error
        failed = [(_global_rank(self.group, r), s) for r, s in enumerate(gathered) if s is not None]
        if failed:
            rank, message = failed[0]
            raise RankDisagreementError(f"rank {rank} failed ({message}); stopping every rank")
        return result  # type: ignore[return-value]

    def write(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on rank 0 only; every rank returns once it has finished (or raises if it failed)."""
        self.together(lambda: fn() if self.writer else None)
