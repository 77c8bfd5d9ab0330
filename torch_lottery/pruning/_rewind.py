"""How pruning methods read rewind points (without importing :mod:`torch_lottery.rewinding`).

A rewind point is either a plain tensor (for one tensor pruned with ``apply``) or
any object with ``tensor_for(module, name)`` and ``pairs()``, such as
:class:`torch_lottery.RewindPoint`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .._validation import describe
from ._core import current_mask, is_pruned_tensor, refresh


def check_rewind_point(rewind_point: Any, name: str = "rewind_point") -> None:
    """Check that ``rewind_point`` is None, a Tensor or a rewind-point object."""
    if rewind_point is None or isinstance(rewind_point, torch.Tensor):
        return
    if not (hasattr(rewind_point, "tensor_for") and hasattr(rewind_point, "pairs")):
        raise TypeError(
            f"{name} must be a torch_lottery.RewindPoint or a Tensor, got {describe(rewind_point)}"
        )


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


def signed_constant(rewind: torch.Tensor) -> torch.Tensor:
    """Return ``sign(rewind) * std(rewind)``: Zhou et al.'s signed-constant weights."""
    std = rewind.float().std() if rewind.numel() > 1 else rewind.float().abs().mean()
    return (torch.sign(rewind) * std.to(rewind.dtype)).to(rewind.dtype)


def parameter_tensor(module: nn.Module, name: str) -> torch.Tensor:
    """Return the trainable tensor behind ``module.<name>`` (``<name>_orig`` when pruned)."""
    if is_pruned_tensor(module, name):
        return module._parameters[name + "_orig"]
    return module._parameters[name]


def pooled(rewind_point: Any, t: torch.Tensor) -> tuple[list, torch.Tensor]:
    """Align a rewind point with a flattened pool of tensors, as stock ``global_unstructured`` builds it.

    ``t`` is what the method is asked to rank: the concatenation of the tensors of
    ``rewind_point.pairs()`` (all entries, or only the surviving ones when a
    ``PruningContainer`` sliced them). The current weights of those tensors must
    equal ``t`` (what stock ``global_unstructured`` ranks), so a rewind point over
    other tensors, or in another order, is refused before anything is written.
    (With ``importance_scores`` the pool cannot be checked: use
    :func:`torch_lottery.global_magnitude` for scores and rewinding together.)
    Returns the pairs and the rewind values aligned with ``t``.
    """
    if isinstance(rewind_point, torch.Tensor):
        raise TypeError(
            "a Tensor rewind_point only works with apply() on one tensor; for a pool of tensors "
            "pass a torch_lottery.RewindPoint (e.g. RewindPoint.capture(model).select(parameters))"
        )
    pairs = rewind_point.pairs()
    initial, masks, current = [], [], []
    for module, name in pairs:
        like = parameter_tensor(module, name)
        initial.append(rewind_tensor(rewind_point, module, name, like).reshape(-1))
        mask = current_mask(module, name)
        masks.append((mask if mask is not None else torch.ones_like(like)).reshape(-1))
        current.append(getattr(module, name).detach().reshape(-1))
    initial_flat = torch.cat(initial) if initial else t.new_empty(0)
    mask_flat = torch.cat(masks) if masks else t.new_empty(0)
    if initial_flat.numel() == t.numel():
        aligned = initial_flat
        current_flat = torch.cat(current)
    else:
        keep = mask_flat == 1
        aligned = initial_flat[keep]
        current_flat = torch.cat(current)[keep]
    if aligned.numel() != t.numel() or not torch.equal(current_flat.to(t.dtype), t.reshape(-1)):
        raise ValueError(
            f"rewind_point covers {len(pairs)} tensors ({initial_flat.numel()} entries) that do not match "
            f"the {t.numel()} entries being pruned; pass rewind_point=rewind_point.select(parameters) "
            "with the same list of (module, name) pairs, in the same order, as given to the pruning call "
            "(with importance_scores, use torch_lottery.global_magnitude instead)"
        )
    return pairs, aligned.view_as(t)


def write_rewind(pairs: list, rewind_point: Any, transform=None) -> None:
    """Write the rewind values of ``pairs`` into their ``_orig`` tensors (never the masks)."""
    with torch.no_grad():
        for module, name in pairs:
            target = parameter_tensor(module, name)
            values = rewind_tensor(rewind_point, module, name, target)
            target.copy_(transform(values) if transform is not None else values)
            refresh(module, name)
