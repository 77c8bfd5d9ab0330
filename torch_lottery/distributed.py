"""Identical pruning on every rank of a ``torch.distributed`` job (``DistributedDataParallel``).

:func:`torch_lottery.find_ticket` uses these helpers by itself whenever a process
group is initialized; call them yourself when you prune with the methods and
baselines directly (``lottery_magnitude``, ``random_permutation``,
``random_reinit``, stock ``prune``, ...) under DDP:

* :func:`broadcast_masks` copies the masks of one rank to every rank;
* :func:`broadcast_weights` copies the values (``<name>_orig`` of pruned
  tensors, every other parameter, optionally the buffers) of one rank;
* :func:`masks_agree` / :func:`assert_masks_agree` check that every rank holds
  bit-identical masks (and optionally weights), naming the first tensor that differs.

All of them are collectives: every rank of the group must call them, in the
same order, on models of the same architecture pruned at the same places.
Without an initialized process group (or with one process) they do nothing
(a single process agrees with itself).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import nn

from . import _layout
from ._validation import check_bool, check_number, check_pairs

__all__ = [
    "RankDisagreementError",
    "assert_masks_agree",
    "broadcast_masks",
    "broadcast_weights",
    "is_active",
    "masks_agree",
    "unwrap",
]

#: Tensors are sent in buckets of at most this many bytes (one collective per bucket).
BUCKET_BYTES = 64 * 2**20


class RankDisagreementError(RuntimeError):
    """The ranks of a process group hold different masks or weights, or failed differently.

    Raised on *every* rank, with the same message, so that no rank is left
    waiting in a collective.
    """


# --------------------------------------------------------------------------- basics
def is_active(group: Any = None) -> bool:
    """Return True if a ``torch.distributed`` process group with more than one rank is running.

    Args:
        group (ProcessGroup, optional): the group to look at (default: the world).

    Returns:
        bool: whether the helpers here (and :func:`~torch_lottery.find_ticket`) will communicate.

    Examples:
        >>> from torch_lottery.distributed import is_active
        >>> is_active()   # no process group in this process
        False
    """
    return bool(dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1)


def unwrap(model: Any) -> Any:
    """Return the module inside ``DistributedDataParallel`` (or ``DataParallel``) wrappers.

    Anything else is returned unchanged, so ``unwrap(model)`` is always the
    module whose tensor names (``"0.weight"``, not ``"module.0.weight"``) tickets
    and rewind points use.

    Args:
        model: a module, possibly wrapped (several times).

    Returns:
        the innermost ``.module`` of the wrappers, or ``model`` itself.

    Examples:
        >>> from torch import nn
        >>> from torch_lottery.distributed import unwrap
        >>> net = nn.Linear(2, 2)
        >>> unwrap(nn.DataParallel(net)) is net, unwrap(net) is net
        (True, True)
    """
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


def _object_kwargs() -> dict[str, Any]:
    # Object collectives unpickle with torch.load(weights_only=True) where this torch offers it.
    if "weights_only" in inspect.signature(dist.broadcast_object_list).parameters:
        return {"weights_only": True}
    return {}


def _check_src_type(src: Any) -> None:
    check_number(src, "src", integer=True)


def _check_group_src(src: Any, group: Any) -> int:
    """Check ``src`` (a global rank inside ``group``); return its rank within ``group``."""
    _check_src_type(src)
    world = dist.get_world_size()
    if not 0 <= int(src) < world:
        raise ValueError(f"src={src} is not a rank of the job (world size {world})")
    if group is None:
        return int(src)
    try:
        return dist.get_group_rank(group, int(src))
    except (RuntimeError, ValueError):
        raise ValueError(f"src={src} is not a member of group") from None


def _global_rank(group: Any, group_rank: int) -> int:
    return group_rank if group is None else dist.get_global_rank(group, group_rank)


def _comm_device(group: Any) -> torch.device:
    """The device collectives of ``group`` run on: the CPU for gloo and MPI, else the accelerator."""
    backend = str(dist.get_backend(group)).lower()
    if "gloo" in backend or "mpi" in backend:
        return torch.device("cpu")
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and accelerator.is_available():
        current = accelerator.current_accelerator()
        return torch.device(current.type, accelerator.current_device_index())
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# --------------------------------------------------------------------------- what to send
class _Entry:
    """One tensor to send or compare: a label for messages, the tensor, and what to refresh."""

    __slots__ = ("label", "tensor", "module", "name")

    def __init__(
        self, label: str, tensor: torch.Tensor | None, module: nn.Module | None = None, name: str | None = None
    ) -> None:
        self.label, self.tensor, self.module, self.name = label, tensor, module, name

    def layout(self) -> tuple:
        if self.tensor is None:
            return (self.label, "not pruned")
        return (self.label, tuple(self.tensor.shape), str(self.tensor.dtype))


def _split(target: Any) -> tuple[nn.Module | None, list[tuple[nn.Module, str]]]:
    """Split ``target`` into a model (unwrapped) or a checked list of ``(module, name)`` pairs."""
    target = unwrap(target)
    if isinstance(target, nn.Module):
        return target, []
    return None, check_pairs(target, "model_or_params", allow_empty=True)


def _pair_label(index: int, module: nn.Module, name: str) -> str:
    return f"model_or_params[{index}] ({type(module).__name__}.{name})"


def _mask_entries(target: Any) -> list[_Entry]:
    model, pairs = _split(target)
    if model is not None:
        return [_Entry(q, _layout.mask_of(m, n), m, n) for q, m, n in _layout.pruned_tensors(model)]
    return [_Entry(_pair_label(i, m, n), _layout.mask_of(m, n), m, n) for i, (m, n) in enumerate(pairs)]


def _weight_entries(target: Any, buffers: bool) -> list[_Entry]:
    model, pairs = _split(target)
    if model is None:
        return [_Entry(_pair_label(i, m, n), _layout.original(m, n), m, n) for i, (m, n) in enumerate(pairs)]
    out, seen = [], set()  # a tensor shared by several names (tied weights) is sent once
    named: list[tuple[str, torch.Tensor | None, nn.Module | None, str | None]] = [
        (q, _layout.original(m, n), m, n) for q, m, n in _layout.named_tensors(model)
    ]
    if buffers:
        named += [(q, m._buffers[n], None, None) for q, m, n in _layout.named_buffers(model)]
    for qualified, value, module, name in named:
        if id(value) not in seen:
            seen.add(id(value))
            out.append(_Entry(qualified, value, module, name))
    return out


# --------------------------------------------------------------------------- collectives
def _check_layout(entries: list[_Entry], what: str, group: Any, ref: int) -> None:
    """Check that every rank has the same tensors (names, shapes, dtypes); raise on all ranks if not."""
    layout = [e.layout() for e in entries]
    gathered: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(gathered, layout, group=group, **_object_kwargs())
    expected = gathered[ref]
    for rank, other in enumerate(gathered):
        if other == expected:
            continue
        who, base = _global_rank(group, rank), _global_rank(group, ref)
        for index in range(max(len(other), len(expected))):
            mine = other[index] if index < len(other) else "nothing"
            theirs = expected[index] if index < len(expected) else "nothing"
            if mine != theirs:
                raise RankDisagreementError(
                    f"the ranks hold different {what}: at position {index} rank {who} has {mine} "
                    f"where rank {base} has {theirs}; prune the same tensors on every rank first"
                )


def _byte_view(tensor: torch.Tensor) -> torch.Tensor:
    """The bytes of ``tensor`` as a flat uint8 tensor (a copy if it is not contiguous).

    WHY bytes: one broadcast then carries tensors of mixed dtypes (float masks,
    bool masks, int buffers) bit for bit.
    """
    return tensor.detach().reshape(-1).view(torch.uint8)


def _buckets(entries: list[_Entry]) -> Iterable[list[_Entry]]:
    bucket: list[_Entry] = []
    size = 0
    for entry in entries:
        if entry.tensor is None:
            continue
        nbytes = entry.tensor.numel() * entry.tensor.element_size()
        if bucket and size + nbytes > BUCKET_BYTES:
            yield bucket
            bucket, size = [], 0
        bucket.append(entry)
        size += nbytes
    if bucket:
        yield bucket


def _flat(bucket: list[_Entry], device: torch.device) -> tuple[torch.Tensor, list[int]]:
    pieces = [_byte_view(cast(torch.Tensor, e.tensor)).to(device) for e in bucket]  # _buckets skips None
    sizes = [p.numel() for p in pieces]
    return (torch.cat(pieces) if len(pieces) > 1 else pieces[0].clone()), sizes


def _broadcast_entries(entries: list[_Entry], what: str, src: int, group: Any, ref: int) -> None:
    """Overwrite every entry's tensor with rank ``src``'s bytes and refresh pruned tensors.

    ``ref`` is ``src``'s rank within ``group``. The ranks' layouts (names, shapes,
    dtypes) are checked first, so nothing is written unless every rank holds the
    same ``what``.
    """
    _check_layout(entries, what, group, ref)
    device = _comm_device(group)
    receiving = dist.get_rank() != src
    with torch.no_grad():
        for bucket in _buckets(entries):
            flat, sizes = _flat(bucket, device)
            dist.broadcast(flat, src=src, group=group)
            if not receiving:
                continue
            for entry, piece in zip(bucket, flat.split(sizes), strict=True):
                tensor = cast(torch.Tensor, entry.tensor).detach()  # _buckets skips None
                piece = piece.to(tensor.device)
                if tensor.is_contiguous():
                    tensor.view(-1).view(torch.uint8).copy_(piece)
                else:
                    staged = tensor.contiguous()
                    staged.view(-1).view(torch.uint8).copy_(piece)
                    tensor.copy_(staged)
    if receiving:
        for entry in entries:
            if entry.module is not None:
                _layout.refresh(entry.module, cast(str, entry.name))  # set together with module


def _differences(entries: list[_Entry], group: Any, ref: int) -> torch.Tensor:
    """Return a (ranks x entries) matrix: entries of each tensor that differ from rank ``ref``'s."""
    device = _comm_device(group)
    src = _global_rank(group, ref)
    counts = torch.zeros(dist.get_world_size(group), len(entries), dtype=torch.int64, device=device)
    index = {id(e): i for i, e in enumerate(entries)}
    with torch.no_grad():
        for bucket in _buckets(entries):
            mine, sizes = _flat(bucket, device)
            theirs = mine.clone()
            dist.broadcast(theirs, src=src, group=group)
            for entry, a, b in zip(bucket, mine.split(sizes), theirs.split(sizes), strict=True):
                width = cast(torch.Tensor, entry.tensor).element_size()  # _buckets skips None
                differ = (a.view(-1, width) != b.view(-1, width)).any(dim=1) if a.numel() else a.bool()
                counts[dist.get_rank(group), index[id(entry)]] = differ.sum()
    dist.all_reduce(counts, group=group)
    return counts.cpu()


def _disagreement(target: Any, weights: bool, group: Any) -> str | None:
    """Return a message naming the first tensor on which some rank differs from the group's rank 0."""
    checks = [("masks", "mask", _mask_entries(target))]
    if weights:
        checks.append(("weights", "values", _weight_entries(target, buffers=False)))
    for what, _noun, entries in checks:
        _check_layout(entries, what, group, 0)
    for _what, noun, entries in checks:
        counts = _differences(entries, group, 0)
        for column, entry in enumerate(entries):
            ranks = [(r, int(c)) for r, c in enumerate(counts[:, column].tolist()) if c]
            if ranks:
                # only entries with a tensor are compared, so only they can differ
                total, base = cast(torch.Tensor, entry.tensor).numel(), _global_rank(group, 0)
                detail = "; ".join(
                    f"rank {_global_rank(group, r)} differs from rank {base} in {c} of {total} entries"
                    for r, c in ranks
                )
                return f"the ranks disagree on the {noun} of {entry.label!r}: {detail}"
    return None


def _agreement(target: Any, weights: Any, group: Any) -> str | None:
    """Check the arguments (on every rank), then return what the ranks disagree on, or None."""
    check_bool(weights, "weights")
    _split(target)
    if not is_active(group):
        return None
    return _disagreement(target, weights, group)


# --------------------------------------------------------------------------- public helpers
def broadcast_masks(model_or_params: Any, src: int = 0, group: Any = None) -> Any:
    """Copy rank ``src``'s masks to every rank, in place, and return ``model_or_params``.

    Writes each ``<name>_mask`` buffer in place (so stock pruning, our methods
    and a DDP wrapper all keep working) and recomputes ``module.<name>``. Use it
    after any pruning step whose randomness or inputs may differ between ranks,
    e.g. :func:`~torch_lottery.random_permutation` without a seed.

    Args:
        model_or_params: a model (every pruned tensor of it; a
            ``DistributedDataParallel`` wrapper is looked through) or
            ``(module, name)`` pairs.
        src (int): the global rank whose masks win.
        group (ProcessGroup, optional): default: the world.

    Returns:
        ``model_or_params``, unchanged on rank ``src``.

    Raises:
        TypeError, ValueError: on bad arguments.
        RankDisagreementError: (on every rank) if the ranks have different
            pruned tensors (names, shapes or dtypes); nothing is written then.

    Examples:
        >>> from torch import nn
        >>> from torch_lottery import random_permutation, lottery_magnitude
        >>> from torch_lottery.distributed import broadcast_masks
        >>> net = nn.Sequential(nn.Linear(8, 8))
        >>> _ = lottery_magnitude(net[0], "weight", amount=0.5)
        >>> _ = random_permutation(net[0], "weight")     # global RNG: differs between ranks
        >>> broadcast_masks(net) is net                    # now rank 0's mask everywhere
        True
    """
    _check_src_type(src)
    entries = _mask_entries(model_or_params)
    if not is_active(group):
        return model_or_params
    _broadcast_entries(entries, "masks", int(src), group, _check_group_src(src, group))
    return model_or_params


def broadcast_weights(model_or_params: Any, src: int = 0, group: Any = None, *, buffers: bool = False) -> Any:
    """Copy rank ``src``'s tensor values to every rank, in place, and return ``model_or_params``.

    For a model: every parameter (the ``<name>_orig`` of pruned tensors; masks
    are left alone) and, with ``buffers=True``, every buffer except the masks
    (e.g. BatchNorm statistics). For ``(module, name)`` pairs: those tensors.
    Use it after :func:`~torch_lottery.random_reinit` or
    :func:`~torch_lottery.sign_preserving_reinit` without a shared seed, or
    after restoring a rewind point that only one rank holds.

    Args:
        model_or_params: a model (or its DDP wrapper) or ``(module, name)`` pairs.
        src (int): the global rank whose values win.
        group (ProcessGroup, optional): default: the world.
        buffers (bool): also the model's buffers (only with a model).

    Returns:
        ``model_or_params``, unchanged on rank ``src``.

    Raises:
        TypeError, ValueError: on bad arguments.
        RankDisagreementError: (on every rank) if the ranks' tensors differ in
            names, shapes or dtypes; nothing is written then.

    Examples:
        >>> from torch import nn
        >>> from torch_lottery import random_reinit
        >>> from torch_lottery.distributed import broadcast_weights
        >>> net = random_reinit(nn.Sequential(nn.Linear(4, 4)))   # no seed: differs between ranks
        >>> broadcast_weights(net) is net
        True
    """
    check_bool(buffers, "buffers")
    _check_src_type(src)
    if buffers and _split(model_or_params)[0] is None:
        raise ValueError("buffers=True needs a model; model_or_params holds (module, name) pairs")
    entries = _weight_entries(model_or_params, buffers)
    if not is_active(group):
        return model_or_params
    _broadcast_entries(entries, "weights", int(src), group, _check_group_src(src, group))
    return model_or_params


def masks_agree(model_or_params: Any, *, weights: bool = False, group: Any = None) -> bool:
    """Return True if every rank holds bit-identical masks (and, with ``weights``, parameters).

    A collective: every rank calls it and gets the same answer.

    Args:
        model_or_params: a model (or its DDP wrapper) or ``(module, name)`` pairs.
        weights (bool): compare the parameter values too (``<name>_orig`` of
            pruned tensors), bit for bit.
        group (ProcessGroup, optional): default: the world.

    Returns:
        bool: the same answer on every rank.

    Raises:
        TypeError: on bad arguments.
        RankDisagreementError: if the ranks do not even prune the same tensors.

    Examples:
        >>> from torch import nn
        >>> from torch_lottery.distributed import masks_agree
        >>> masks_agree(nn.Linear(2, 2), weights=True)   # one process agrees with itself
        True
    """
    return _agreement(model_or_params, weights, group) is None


def assert_masks_agree(model_or_params: Any, *, weights: bool = False, group: Any = None) -> None:
    """Raise :class:`RankDisagreementError` on every rank unless all ranks hold identical masks.

    The message names the first tensor that differs, the ranks that differ from
    rank 0 of the group and in how many entries. Arguments as for :func:`masks_agree`.

    Raises:
        TypeError: on bad arguments.
        RankDisagreementError: if some rank's masks (or, with ``weights``,
            parameter values) differ from rank 0's.

    Examples:
        >>> from torch import nn
        >>> from torch_lottery.distributed import assert_masks_agree
        >>> assert_masks_agree(nn.Linear(2, 2))   # without a process group: nothing to compare
    """
    message = _agreement(model_or_params, weights, group)
    if message is not None:
        raise RankDisagreementError(message)
