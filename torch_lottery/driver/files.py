"""File names and layouts of the driver, defined in one place."""

from __future__ import annotations

import os
import re
from typing import Any

import torch

from .._files import load_state
from ..pruning._rewind import parameter_tensor
from ..rewinding.point import RewindPoint

#: One file per finished round in a checkpoint directory.
ROUND_FILE = "round-{index:04d}.pt"
ROUND_PATTERN = re.compile(r"^round-(\d{4})\.pt$")
#: The ticket of a finished run, beside the round files.
TICKET_FILE = "ticket.pt"

#: ``format`` fields of the files (loading refuses any other).
TICKET_FORMAT = "torch_lottery.ticket"
CHECKPOINT_FORMAT = "torch_lottery.checkpoint"
#: Layout versions this release writes (2: files carry a SHA-256 digest of their content) ...
TICKET_VERSION = 2
CHECKPOINT_VERSION = 2
#: ... and reads (version 1 files, written before digests, are read without one).
TICKET_READS = (1, 2)
CHECKPOINT_READS = (1, 2)


def round_path(directory: str | os.PathLike, index: int) -> str:
    """Return the path of round ``index``'s checkpoint in ``directory``."""
    return os.path.join(os.fspath(directory), ROUND_FILE.format(index=index))


def finished_rounds(directory: str | os.PathLike) -> list[int]:
    """Return the indices of the round files in ``directory``, sorted."""
    if not os.path.isdir(directory):
        return []
    found = (ROUND_PATTERN.match(name) for name in os.listdir(directory))
    return sorted(int(match.group(1)) for match in found if match)


# -- reading a checkpoint back -------------------------------------------------------
_KEYS = ("round", "config", "masks", "model", "rewind", "rewind_extra", "optimizer", "scheduler", "history")


def load_checkpoint(path: str, finished: list[int]) -> dict[str, Any]:
    """Read and check the checkpoint of the last finished round (digest, version, layout).

    A damaged last round file stops the run with a ``ValueError`` naming the file,
    what is wrong with it and what to do: it is never skipped (which would
    silently redo finished work over it) nor used. Round files are written
    atomically, so such damage comes from outside (disk, copy, manual edit).
    """
    try:
        state = load_state(path, "checkpoint", CHECKPOINT_FORMAT)
        if type(state.get("version")) is not int or state["version"] not in CHECKPOINT_READS:
            raise ValueError(f"path={path!r} has checkpoint version {state.get('version')!r}; this release "
                             f"reads {', '.join(map(str, CHECKPOINT_READS))}")
        missing = [k for k in _KEYS if k not in state]
        if missing:
            raise ValueError(f"path={path!r} is a damaged checkpoint: it lacks {', '.join(missing)}")
        index = int(ROUND_PATTERN.match(os.path.basename(path)).group(1))
        if state["round"] != index:
            raise ValueError(f"path={path!r} is a damaged checkpoint: it holds round {state['round']!r}, "
                             f"its name says {index}")
        history = state["history"]
        if not (isinstance(history, list) and len(history) == index + 1 and all(isinstance(r, dict) for r in history)):
            raise ValueError(f"path={path!r} is a damaged checkpoint: its history is not {index + 1} round records")
        if not isinstance(state["config"], dict) or not isinstance(state["model"], dict):
            raise ValueError(f"path={path!r} is a damaged checkpoint: config or model is not a dict")
    except ValueError as error:
        raise ValueError(f"{error}. {_remedy(path, finished)}") from None
    return state


def _remedy(path: str, finished: list[int]) -> str:
    folder, name = os.path.split(path)
    stop = ("The run stops instead of skipping or using it (round files are written atomically, "
            "so the damage happened after writing)")
    earlier = [i for i in finished if round_path(folder, i) != path]
    if not earlier:
        return f"{stop}; move {name} out of {folder!r} to start the run over."
    previous = round_path(folder, earlier[-1])
    try:
        load_state(previous, "checkpoint", CHECKPOINT_FORMAT)
    except (ValueError, OSError):
        return f"{stop}; the round before it, {os.path.basename(previous)}, is damaged too."
    return (f"{stop}; {os.path.basename(previous)} is intact: move {name} out of {folder!r} to resume "
            f"from round {earlier[-1]} (the later rounds are then trained again).")


def check_checkpoint_fits(state: dict[str, Any], path: str, model, names, pairs, optimizer, scheduler) -> None:
    """Check that a checkpoint fits the model, tensors and optimizer of this run, changing nothing.

    Every name and shape (masks, model state, rewind point, buffers) and the
    optimizer's parameter groups are compared before the driver loads anything,
    so a checkpoint of another architecture (same names, other widths) is
    refused with the model left exactly as it was.

    Raises:
        ValueError: naming ``path`` and the first tensors that do not fit.
    """
    where = f"checkpoint {path!r}"
    shapes = {n: tuple(parameter_tensor(m, t).shape) for n, (m, t) in zip(names, pairs)}
    masks = state["masks"]
    if state["round"] == 0:
        if masks is not None:
            raise ValueError(f"{where} is damaged: round 0 has masks")
    else:
        if not isinstance(masks, dict) or sorted(masks) != sorted(names):
            raise ValueError(f"{where} does not hold a mask for each pruned tensor {list(names)}")
        for name in names:
            mask = masks[name]
            if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != shapes[name]:
                raise ValueError(f"{where} has a mask for {name!r} of {_shape(mask)}, but the model's tensor has "
                                 f"shape {shapes[name]}: the checkpoint is from another architecture")
            if mask.dtype != torch.bool and bool(((mask != 0) & (mask != 1)).any()):
                raise ValueError(f"{where} is damaged: the mask of {name!r} holds values other than 0 and 1")
    own = model.state_dict(keep_vars=True)
    expected: dict[str, tuple] = {}
    masked = set(names) if masks is not None else set()
    for key, value in own.items():
        if key in masked:  # not pruned yet: the mask turns it into <key>_orig and <key>_mask
            expected[key + "_orig"] = expected[key + "_mask"] = tuple(value.shape)
        else:
            expected[key] = tuple(value.shape)
    saved = state["model"]
    problems = [f"missing {k!r}" for k in expected if k not in saved]
    problems += [f"unexpected {k!r}" for k in saved if k not in expected]
    problems += [f"{k!r} is {_shape(saved[k])} there and {expected[k]} here" for k in expected
                 if k in saved and (not isinstance(saved[k], torch.Tensor) or tuple(saved[k].shape) != expected[k])]
    if problems:
        shown = "; ".join(problems[:4]) + (f"; and {len(problems) - 4} more" if len(problems) > 4 else "")
        raise ValueError(f"{where} does not fit the model ({shown}): the checkpoint is from another architecture")
    try:
        RewindPoint.from_state_dict(state["rewind"], source=where).check_model(model)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where} has a rewind point that does not fit the model: {error}") from None
    extra = state["rewind_extra"]
    if extra is not None:
        buffers = {k: tuple(v.shape) for k, v in model.named_buffers() if not k.endswith("_mask")}
        saved_buffers = extra.get("buffers") if isinstance(extra, dict) else None
        if not isinstance(saved_buffers, dict) or any(
                k not in buffers or not isinstance(v, torch.Tensor) or tuple(v.shape) != buffers[k]
                for k, v in saved_buffers.items()):
            raise ValueError(f"{where} has rewound buffers that do not fit the model's {sorted(buffers)}")
    for label, saved_state, current in (("optimizer", state["optimizer"], optimizer),
                                        ("scheduler", state["scheduler"], scheduler)):
        if (saved_state is None) != (current is None):
            raise ValueError(f"{where} was written by a run {'with' if saved_state is not None else 'without'} "
                             f"{label}=; pass the same {label} settings to resume (or use another directory)")
    groups = [state["optimizer"]] + ([extra.get("optimizer")] if isinstance(extra, dict) else [])
    if optimizer is not None:
        sizes = [len(g["params"]) for g in optimizer.param_groups]
        for saved_optimizer in groups:
            found = None
            if isinstance(saved_optimizer, dict) and isinstance(saved_optimizer.get("param_groups"), list):
                found = [len(g.get("params", ())) if isinstance(g, dict) else None
                         for g in saved_optimizer["param_groups"]]
            if found != sizes:
                raise ValueError(f"{where} has optimizer state for parameter groups of sizes {found}, but "
                                 f"optimizer has groups of sizes {sizes}: another model or optimizer")


def _shape(value: Any) -> str:
    return f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else f"a {type(value).__name__}"
