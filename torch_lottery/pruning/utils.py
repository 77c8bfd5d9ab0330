"""Helpers to list prunable tensors, to read masks and sparsity, and to name the tensors of a pool."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .. import _layout
from .._validation import check_bool, check_module, check_pairs, describe

_WEIGHTED = (
    nn.Linear,
    nn.Bilinear,
    nn.modules.conv._ConvNd,
    nn.Embedding,
    nn.EmbeddingBag,
)


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
    left out unless ``include_bias``; so are tensors with no entries. A weight
    tied between modules (e.g. an embedding and the output layer) is listed at
    each of its names: pruning it through torch-lottery gives every name the same
    mask.

    Examples:
        >>> from torch import nn
        >>> from torch_lottery import named_prunable_parameters
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> [name for name, _, _ in named_prunable_parameters(net)]
        ['0.weight', '2.weight']
    """
    check_module(model)
    check_bool(include_bias, "include_bias")
    out = []
    for prefix, module in model.named_modules():
        for name in _names(module, include_bias):
            if _layout.has_tensor(module, name) and _layout.original(module, name).numel() > 0:
                out.append((_layout.join(prefix, name), module, name))
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
    """Return the mask of ``module.<name>`` (all ones if it is not pruned).

    Examples:
        >>> from torch import nn
        >>> from torch_lottery import get_mask, lottery_magnitude
        >>> layer = lottery_magnitude(nn.Linear(2, 2), "weight", amount=1)
        >>> int(get_mask(layer, "weight").sum())
        3
    """
    mask = _layout.mask_of(module, name)
    return mask if mask is not None else torch.ones_like(_layout.original(module, name))


def remaining(parameters: Iterable[tuple[nn.Module, str]]) -> tuple[int, int]:
    """Return ``(surviving, total)`` entries over ``parameters``.

    Examples:
        >>> from torch import nn
        >>> from torch_lottery import lottery_magnitude, remaining
        >>> layer = lottery_magnitude(nn.Linear(2, 2), "weight", amount=1)
        >>> remaining([(layer, "weight"), (layer, "bias")])
        (5, 6)
    """
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


# -- the tensors of a pool, and the keys that name them ---------------------------------
@dataclass
class Targets:
    """The tensors of one pruning call, with the names their options may be keyed by.

    ``parameters`` is a model (every prunable tensor of it) or ``(module, name)``
    pairs. Options such as ``rate_multipliers`` may then be keyed the same way
    everywhere: by qualified name (``"fc3.weight"``, as :func:`find_ticket` and
    the strategies take them), by ``(module, name)``, or by module (all of its
    tensors). Qualified names need a model: the one given as ``parameters``, or
    the one a rewind point is bound to.
    """

    pairs: list[tuple[nn.Module, str]]
    names: list[str] | None  # qualified names, when a model is known

    @classmethod
    def of(cls, parameters: Any, model: nn.Module | None = None) -> Targets:
        """Check ``parameters`` and name its tensors (from ``parameters`` itself if it is a model, else ``model``)."""
        if isinstance(parameters, nn.Module):
            named = named_prunable_parameters(parameters)
            if not named:
                raise ValueError(f"parameters={type(parameters).__name__} has no prunable tensors")
            return cls([(m, n) for _, m, n in named], [q for q, _, _ in named])
        pairs = check_pairs(parameters)
        names = None
        if model is not None:
            prefixes = _layout.module_prefixes(model)
            if all(id(m) in prefixes for m, _ in pairs):
                names = [_layout.join(prefixes[id(m)], n) for m, n in pairs]
        return cls(pairs, names)

    def label(self, index: int) -> str:
        """Return a name of tensor ``index`` for messages."""
        if self.names is not None:
            return self.names[index]
        module, name = self.pairs[index]
        return f"{type(module).__name__}.{name}"

    def indices(self, key: Any, argument: str) -> list[int]:
        """Return the indices of the tensors ``key`` names (a qualified name, a pair or a module)."""
        if isinstance(key, str):
            if self.names is None:
                raise ValueError(
                    f"{argument} names {key!r}, a qualified name, but parameters are (module, name) pairs: "
                    "pass the model itself as parameters (or a rewind_point bound to it), or key by (module, name)"
                )
            found = [i for i, n in enumerate(self.names) if n == key]
        elif isinstance(key, tuple) and len(key) == 2:
            found = [i for i, (m, n) in enumerate(self.pairs) if m is key[0] and n == key[1]]
        elif isinstance(key, nn.Module):
            found = [i for i, (m, _) in enumerate(self.pairs) if m is key]
        else:
            raise TypeError(
                f"{argument} keys must be qualified names, (module, name) pairs or modules, got {describe(key)}"
            )
        if not found:
            raise ValueError(f"{argument} names {describe(key)}, which is not in parameters")
        return found

    def table(self, values: Any, argument: str) -> dict[int, Any]:
        """Map a ``{key: value}`` option onto tensor indices (a later key wins over an earlier one)."""
        if values is None:
            return {}
        if not isinstance(values, Mapping):
            raise TypeError(f"{argument} must be a dict, got {describe(values)}")
        out: dict[int, Any] = {}
        for key, value in values.items():
            for i in self.indices(key, argument):
                out[i] = value
        return out

    def members(self, keys: Any, argument: str) -> set[int]:
        """Return the indices of the tensors an iterable of keys names."""
        if isinstance(keys, (str, bytes, nn.Module)) or not isinstance(keys, Iterable):
            raise TypeError(
                f"{argument} must be an iterable of qualified names, (module, name) pairs or modules, "
                f"got {describe(keys)}"
            )
        return {i for key in keys for i in self.indices(key, argument)}


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
        >>> from torch_lottery.pruning import held_bytes
        >>> from torch_lottery import lottery_magnitude
        >>> net = nn.Linear(100, 10, bias=False)     # 1000 float32 weights: 4000 bytes
        >>> held_bytes(net)
        4000
        >>> _ = lottery_magnitude(net, "weight", amount=0.5)
        >>> held_bytes(net)                          # weight_orig, weight_mask (bool: 1 byte an entry), weight
        9000
        >>> _ = lottery_magnitude(net, "weight", amount=0.5)
        >>> held_bytes(net)                          # one mask per tensor, whatever the rounds
        9000
    """
    check_module(model)
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
        for factor in _layout.kept_factors(module):  # a bool mask's float factor kept for training forwards
            add(factor)
        for hook in module._forward_pre_hooks.values():
            walk(hook)
    return sum(storages.values())
