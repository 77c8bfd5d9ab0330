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
