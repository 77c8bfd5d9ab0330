"""Helpers to list prunable tensors and to read masks and sparsity of a model."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from .._validation import check_bool, describe
from ._core import current_mask, is_pruned_tensor
from ._rewind import parameter_tensor

_WEIGHTED = (
    nn.Linear,
    nn.Bilinear,
    nn.modules.conv._ConvNd,
    nn.Embedding,
    nn.EmbeddingBag,
)


def _has_tensor(module: nn.Module, name: str) -> bool:
    return is_pruned_tensor(module, name) or module._parameters.get(name) is not None


def _names(module: nn.Module, include_bias: bool) -> list[str]:
    if isinstance(module, nn.RNNBase):
        names = [n for n in module._flat_weights_names if n.startswith("weight")]
        if include_bias:
            names += [n for n in module._flat_weights_names if n.startswith("bias")]
        return names
    if isinstance(module, nn.MultiheadAttention):
        names = ["in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"]
        if include_bias:
            names += ["in_proj_bias", "bias_k", "bias_v"]
        return names
    if isinstance(module, _WEIGHTED):
        return ["weight", "bias"] if include_bias else ["weight"]
    return []


def named_prunable_parameters(model: nn.Module, include_bias: bool = False) -> list[tuple[str, nn.Module, str]]:
    """Return ``(qualified_name, module, name)`` for every prunable tensor of ``model``.

    Prunable: the weights of ``nn.Linear``, ``nn.Bilinear``, ``nn.Conv1d/2d/3d``
    (and transposed), ``nn.Embedding(Bag)``, the ``weight_*`` matrices of
    ``nn.RNN/LSTM/GRU`` and ``nn.MultiheadAttention``'s input projection (its
    ``out_proj`` is an ``nn.Linear`` and listed as such). Already-pruned tensors
    are listed under their own name (``weight``, not ``weight_orig``). Biases are
    left out unless ``include_bias``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {describe(model)}")
    check_bool(include_bias, "include_bias")
    out = []
    for prefix, module in model.named_modules():
        for name in _names(module, include_bias):
            if _has_tensor(module, name):
                out.append((f"{prefix}.{name}" if prefix else name, module, name))
    return out


def prunable_parameters(model: nn.Module, include_bias: bool = False) -> list[tuple[nn.Module, str]]:
    """List the ``(module, name)`` pairs of ``model`` that are worth pruning.

    The list has the form stock ``prune.global_unstructured`` takes. See
    :func:`named_prunable_parameters` for which tensors are listed.

    Examples:
        >>> from torch import nn
        >>> from torch_lottery import prunable_parameters
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4, 2))
        >>> [(type(m).__name__, n) for m, n in prunable_parameters(net)]
        [('Conv2d', 'weight'), ('Linear', 'weight')]
    """
    return [(module, name) for _, module, name in named_prunable_parameters(model, include_bias)]


def get_mask(module: nn.Module, name: str) -> torch.Tensor:
    """Return the mask of ``module.<name>`` (all ones if it is not pruned)."""
    mask = current_mask(module, name)
    return mask if mask is not None else torch.ones_like(parameter_tensor(module, name))


def remaining(parameters: Iterable[tuple[nn.Module, str]]) -> tuple[int, int]:
    """Return ``(surviving, total)`` entries over ``parameters``."""
    alive = total = 0
    for module, name in parameters:
        mask = get_mask(module, name)
        alive += int(torch.count_nonzero(mask))
        total += mask.numel()
    return alive, total


def sparsity_report(model: nn.Module, include_bias: bool = False) -> dict[str, dict[str, float]]:
    """Return ``{qualified_name: {"remaining": n, "total": n, "fraction": f}}`` plus an ``"overall"`` row.

    Examples:
        >>> from torch import nn
        >>> from torch_lottery import lottery_magnitude, sparsity_report
        >>> net = nn.Sequential(nn.Linear(10, 10))
        >>> _ = lottery_magnitude(net[0], "weight", amount=0.3)
        >>> sparsity_report(net)["overall"]["fraction"]
        0.7
    """
    report: dict[str, dict[str, float]] = {}
    alive_all = total_all = 0
    for qualified, module, name in named_prunable_parameters(model, include_bias):
        alive, total = remaining([(module, name)])
        report[qualified] = {"remaining": alive, "total": total, "fraction": alive / total if total else 1.0}
        alive_all += alive
        total_all += total
    report["overall"] = {
        "remaining": alive_all,
        "total": total_all,
        "fraction": alive_all / total_all if total_all else 1.0,
    }
    return report


def held_bytes(model: nn.Module) -> int:
    """Return the bytes of the distinct tensor storages that ``model`` keeps alive.

    Counts every parameter and buffer (``<name>_orig``, ``<name>_mask``), every tensor
    attribute (the computed ``module.<name>``) and every tensor reachable from the
    forward pre-hooks (e.g. the per-round mask copies that stock
    ``global_unstructured`` leaves in ``CustomFromMask`` hooks). A storage shared by
    several tensors is counted once. Use it to check that iterative pruning keeps
    memory flat: with torch-lottery's methods (or after :func:`compact_hooks`) it is
    the same after 10 rounds as after 1.

    Args:
        model (nn.Module): any model, pruned or not.

    Returns:
        int: bytes held.

    Raises:
        TypeError: if ``model`` is not an ``nn.Module``.

    Examples:
        >>> from torch import nn
        >>> from torch_lottery import held_bytes, lottery_magnitude
        >>> net = nn.Linear(100, 10, bias=False)     # 1000 float32 weights: 4000 bytes
        >>> held_bytes(net)
        4000
        >>> _ = lottery_magnitude(net, "weight", amount=0.5)
        >>> held_bytes(net)                          # weight_orig, weight_mask, weight
        12000
        >>> _ = lottery_magnitude(net, "weight", amount=0.5)
        >>> held_bytes(net)                          # one mask per tensor, whatever the rounds
        12000
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {describe(model)}")
    storages: dict[tuple[str, int], int] = {}

    def add(t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        storages[(str(t.device), storage.data_ptr())] = storage.nbytes()

    def walk(obj: object, depth: int = 0) -> None:
        if isinstance(obj, torch.Tensor):
            add(obj)
        elif depth > 6 or isinstance(obj, (nn.Module, str, bytes, int, float, bool, type(None))):
            return
        elif isinstance(obj, dict):
            for value in obj.values():
                walk(value, depth + 1)
        elif isinstance(obj, (list, tuple, set, frozenset)):
            for value in obj:
                walk(value, depth + 1)
        elif hasattr(obj, "__dict__"):
            walk(vars(obj), depth + 1)

    for module in model.modules():
        for t in list(module._parameters.values()) + list(module._buffers.values()):
            if t is not None:
                add(t)
        for value in vars(module).values():
            if isinstance(value, torch.Tensor):
                add(value)
        for hook in module._forward_pre_hooks.values():
            walk(hook)
    return sum(storages.values())
