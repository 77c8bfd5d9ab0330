"""The driver's checkpoint directory: file names, the lock, and round files written and read back.

A checkpoint directory holds one file per finished round (``round-0000.pt``, ...),
the ticket of a finished run (``ticket.pt``) and, while a run uses it, a lock
(``.torch-lottery.lock``). Every check of a round file runs before the driver
changes anything: its digest and layout (:func:`load_checkpoint`), and that it
fits the model, tensors and optimizer of the run (:func:`check_checkpoint_fits`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import time
from collections.abc import Iterator, Sequence
from typing import Any, cast

import torch
from torch import nn

from .. import _layout
from .._files import load_state, save_state
from .._validation import check_binary_mask, check_writable_dir
from ..rewinding.point import RewindPoint

#: One file per finished round in a checkpoint directory.
ROUND_FILE = "round-{index:04d}.pt"
ROUND_PATTERN = re.compile(r"^round-(\d{4})\.pt$")
#: The ticket of a finished run, beside the round files.
TICKET_FILE = "ticket.pt"
#: Held by the run that uses the directory (an OS lock, released when its process ends).
LOCK_FILE = ".torch-lottery.lock"

#: ``format`` fields of the files (loading refuses any other).
TICKET_FORMAT = "torch_lottery.ticket"
CHECKPOINT_FORMAT = "torch_lottery.checkpoint"
#: Layout versions this release writes and reads (files carry a SHA-256 digest of their content).
TICKET_VERSION = 2
CHECKPOINT_VERSION = 2


def round_path(directory: str | os.PathLike, index: int) -> str:
    """Return the path of round ``index``'s checkpoint in ``directory``."""
    return os.path.join(os.fspath(directory), ROUND_FILE.format(index=index))


def ticket_path(directory: str | os.PathLike) -> str:
    """Return the path of the ticket file in ``directory``."""
    return os.path.join(os.fspath(directory), TICKET_FILE)


def finished_rounds(directory: str | os.PathLike) -> list[int]:
    """Return the indices of the round files in ``directory``, sorted."""
    if not os.path.isdir(directory):
        return []
    found = (ROUND_PATTERN.match(name) for name in os.listdir(directory))
    return sorted(int(match.group(1)) for match in found if match)


def check_directory(path: Any) -> str:
    """Check ``checkpoint_dir`` before anything runs: writable, and no output name taken by a directory.

    Raises:
        TypeError: if ``path`` is not a path.
        ValueError: naming ``checkpoint_dir`` and the problem.
    """
    given = check_writable_dir(path, "checkpoint_dir", outputs=(TICKET_FILE, LOCK_FILE))
    for index in finished_rounds(given):
        name = ROUND_FILE.format(index=index)
        if not os.path.isfile(os.path.join(given, name)):
            raise ValueError(f"checkpoint_dir={given!r} holds {name!r}, which is not a file")
    return given


# -- the lock ------------------------------------------------------------------------
try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def _holder(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            info = json.load(handle)
        return f"pid {info['pid']} on {info['host']}, since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that did not say who it is"


@contextlib.contextmanager
def locked(directory: str, argument: str = "checkpoint_dir") -> Iterator[None]:
    """Hold the lock of ``directory`` for the duration of a run; refuse if another live run holds it.

    The lock is an OS file lock (``flock``), so a lock left by a killed run is
    released with its process and the next run takes it over. The lock file is
    removed when the run ends.

    Args:
        directory: an existing folder.
        argument: how the refusal names the folder (``checkpoint_dir``, or ``--out`` for the CLI).

    Raises:
        ValueError: naming ``argument``, the directory and the holder (pid, host, start time).
    """
    path = os.path.join(directory, LOCK_FILE)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _acquire(fd, path, directory, argument)
        except BaseException:
            os.close(fd)
            raise
        try:  # the file may have been removed (and recreated) by the run that held it before us
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)  # releases the lock


def _acquire(fd: int, path: str, directory: str, argument: str) -> None:
    busy = (
        f"{argument}={directory!r} is in use by another run ({{holder}}); wait for it to finish "
        "or use another directory"
    )
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(busy.format(holder=_holder(path))) from None
        return
    # pragma: no cover - without flock: the holder's pid, if it no longer runs, is a stale lock
    holder = _holder(path)
    if os.fstat(fd).st_size:
        match = re.match(r"pid (\d+)", holder)
        if match is None or _running(int(match.group(1))):
            raise ValueError(busy.format(holder=holder))


def _running(pid: int) -> bool:  # pragma: no cover - only without flock
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


# -- writing ---------------------------------------------------------------------------
def write_round(directory: str | os.PathLike, index: int, contents: dict[str, Any]) -> None:
    """Write round ``index``'s checkpoint (atomically, with a digest).

    ``contents`` holds the keys of :data:`KEYS` (and may hold ``initial``, the
    model's state at initialization, which files of earlier runs lack).
    """
    state = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "round": index, **contents}
    save_state(state, round_path(directory, index))


# -- reading a checkpoint back -------------------------------------------------------
#: What a round file holds besides its format, version and digest.
KEYS = ("round", "config", "masks", "model", "rewind", "rewind_extra", "optimizer", "scheduler", "history")
#: What every record of a run's history holds, with its type.
RECORD_FIELDS: dict[str, type | tuple[type, ...]] = {
    "round": int,
    "remaining": (int, float),
    "remaining_weights": int,
    "total_weights": int,
    "per_tensor": dict,
    "metrics": dict,
    "seconds": (int, float),
}


def check_history(history: Any, count: int | None = None) -> str | None:
    """Return what is wrong with a run's history (a list of round records), or None."""
    if not isinstance(history, list) or (count is not None and len(history) != count):
        return f"its history is not {count} round records" if count is not None else "its history is not a list"
    for index, record in enumerate(history):
        if not isinstance(record, dict):
            return f"history record {index} is not a dict"
        for field, kind in RECORD_FIELDS.items():
            value = record.get(field)
            if isinstance(value, bool) or not isinstance(value, kind):
                return f"history record {index} has no valid {field!r} (found {value!r})"
        if record["round"] != index:
            return f"history record {index} says round {record['round']}"
    return None


def load_checkpoint(path: str, finished: Sequence[int]) -> dict[str, Any]:
    """Read and check the checkpoint of the last finished round (digest, version, layout, history).

    A damaged last round file stops the run with a ``ValueError`` naming the file,
    what is wrong with it and what to do: it is never skipped (which would
    silently redo finished work over it) nor used. Round files are written
    atomically, so such damage comes from outside (disk, copy, manual edit).
    """
    try:
        state = load_state(path, "checkpoint", CHECKPOINT_FORMAT, (CHECKPOINT_VERSION,))
        missing = [k for k in KEYS if k not in state]
        if missing:
            raise ValueError(f"path={path!r} is a damaged checkpoint: it lacks {', '.join(missing)}")
        match = ROUND_PATTERN.match(os.path.basename(path))
        index = int(match.group(1)) if match else -1
        if state["round"] != index:
            raise ValueError(
                f"path={path!r} is a damaged checkpoint: it holds round {state['round']!r}, its name says {index}"
            )
        problem = check_history(state["history"], index + 1)
        if problem is not None:
            raise ValueError(f"path={path!r} is a damaged checkpoint: {problem}")
        if not isinstance(state["config"], dict) or not isinstance(state["model"], dict):
            raise ValueError(f"path={path!r} is a damaged checkpoint: config or model is not a dict")
    except ValueError as error:
        raise ValueError(f"{error}. {_remedy(path, finished)}") from None
    return state


def _remedy(path: str, finished: Sequence[int]) -> str:
    folder, name = os.path.split(path)
    stop = (
        "The run stops instead of skipping or using it (round files are written atomically, "
        "so the damage happened after writing)"
    )
    earlier = [i for i in finished if round_path(folder, i) != path]
    if not earlier:
        return f"{stop}; move {name} out of {folder!r} to start the run over."
    previous = round_path(folder, earlier[-1])
    try:
        load_state(previous, "checkpoint", CHECKPOINT_FORMAT, (CHECKPOINT_VERSION,))
    except (ValueError, OSError):
        return f"{stop}; the round before it, {os.path.basename(previous)}, is damaged too."
    return (
        f"{stop}; {os.path.basename(previous)} is intact: move {name} out of {folder!r} to resume "
        f"from round {earlier[-1]} (the later rounds are then trained again)."
    )


def check_checkpoint_fits(
    state: dict[str, Any],
    path: str,
    model: nn.Module,
    names: Sequence[str],
    pairs: Sequence[tuple[nn.Module, str]],
    optimizer: Any,
    scheduler: Any,
) -> None:
    """Check that a checkpoint fits the model, tensors and optimizer of this run, changing nothing.

    Every name, shape and dtype (masks, model state, rewind point, buffers) and
    the optimizer's parameter groups are compared before the driver loads
    anything, and the masks inside the model state must be the recorded masks,
    so a checkpoint of another architecture, or an edited one, is refused with
    the model left exactly as it was.

    Raises:
        ValueError: naming ``path`` and the first tensors that do not fit.
    """
    where = f"checkpoint {path!r}"
    masks = _check_masks(state, where, names, pairs)
    own = model.state_dict(keep_vars=True)
    masked = set(names) if masks is not None else set()
    mask_keys = {_layout.mask_name(n) for n in masked}
    expected: dict[str, tuple[tuple, torch.dtype | None]] = {}  # key -> (shape, dtype; None: any 0/1 mask)
    for key, value in own.items():
        shape = tuple(value.shape)
        if key in masked:  # not pruned yet: the mask turns it into <key>_orig and <key>_mask
            expected[_layout.orig_name(key)], expected[_layout.mask_name(key)] = (shape, value.dtype), (shape, None)
        else:
            expected[key] = (shape, None if key in mask_keys else value.dtype)
    saved = state["model"]
    problems = [f"missing {k!r}" for k in expected if k not in saved]
    problems += [f"unexpected {k!r}" for k in saved if k not in expected]
    for key, (shape, dtype) in expected.items():
        value = saved.get(key)
        if key not in saved:
            continue
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
            problems.append(f"{key!r} is {_shape(value)} there and {shape} here")
        elif dtype is not None and value.dtype != dtype:
            problems.append(f"{key!r} has dtype {value.dtype} there and {dtype} here")
    if problems:
        shown = "; ".join(problems[:4]) + (f"; and {len(problems) - 4} more" if len(problems) > 4 else "")
        raise ValueError(
            f"{where} does not fit the model ({shown}): the checkpoint is from another architecture or was edited"
        )
    if masks is not None:
        for name in names:
            mask_key = _layout.mask_name(name)
            try:
                check_binary_mask(saved[mask_key], f"{where}: the model state's {mask_key!r}")
            except (TypeError, ValueError) as error:
                raise ValueError(f"{error}; the checkpoint is damaged") from None
            if not torch.equal(saved[mask_key].bool(), masks[name].bool()):
                raise ValueError(
                    f"{where} is damaged: the model state's {mask_key!r} differs from the recorded mask of {name!r}"
                )
    try:
        RewindPoint.from_state_dict(state["rewind"], source=where).check_model(model)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where} has a rewind point that does not fit the model: {error}") from None
    _check_extra(state, where, model, optimizer, scheduler)


def _check_masks(
    state: dict[str, Any], where: str, names: Sequence[str], pairs: Sequence[tuple[nn.Module, str]]
) -> dict[str, torch.Tensor] | None:
    masks = state["masks"]
    if state["round"] == 0:
        if masks is not None:
            raise ValueError(f"{where} is damaged: round 0 has masks")
        return None
    if not isinstance(masks, dict) or sorted(masks) != sorted(names):
        raise ValueError(f"{where} does not hold a mask for each pruned tensor {list(names)}")
    for name, (module, tensor_name) in zip(names, pairs, strict=True):
        shape = tuple(_layout.original(module, tensor_name).shape)
        mask = masks[name]
        if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != shape:
            raise ValueError(
                f"{where} has a mask for {name!r} of {_shape(mask)}, but the model's tensor has "
                f"shape {shape}: the checkpoint is from another architecture"
            )
        try:
            check_binary_mask(mask, f"{where}: the mask of {name!r}")
        except ValueError as error:
            raise ValueError(f"{error}; the checkpoint is damaged") from None
    return masks


def _check_extra(state: dict[str, Any], where: str, model: nn.Module, optimizer: Any, scheduler: Any) -> None:
    extra = state["rewind_extra"]
    if extra is not None:
        buffers = {q: tuple(cast(torch.Tensor, m._buffers[n]).shape) for q, m, n in _layout.named_buffers(model)}
        saved_buffers = extra.get("buffers") if isinstance(extra, dict) else None
        if not isinstance(saved_buffers, dict) or any(
            k not in buffers or not isinstance(v, torch.Tensor) or tuple(v.shape) != buffers[k]
            for k, v in saved_buffers.items()
        ):
            raise ValueError(f"{where} has rewound buffers that do not fit the model's {sorted(buffers)}")
    for label, saved_state, current in (
        ("optimizer", state["optimizer"], optimizer),
        ("scheduler", state["scheduler"], scheduler),
    ):
        if (saved_state is None) != (current is None):
            raise ValueError(
                f"{where} was written by a run {'with' if saved_state is not None else 'without'} "
                f"{label}=; pass the same {label} settings to resume (or use another directory)"
            )
    groups = [state["optimizer"]] + ([extra.get("optimizer")] if isinstance(extra, dict) else [])
    if optimizer is not None:
        sizes = [len(g["params"]) for g in optimizer.param_groups]
        for saved_optimizer in groups:
            found = None
            if isinstance(saved_optimizer, dict) and isinstance(saved_optimizer.get("param_groups"), list):
                found = [
                    len(g.get("params", ())) if isinstance(g, dict) else None for g in saved_optimizer["param_groups"]
                ]
            if found != sizes:
                raise ValueError(
                    f"{where} has optimizer state for parameter groups of sizes {found}, but "
                    f"optimizer has groups of sizes {sizes}: another model or optimizer"
                )


def _shape(value: Any) -> str:
    return f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else f"a {type(value).__name__}"
