"""Shared helpers of the strategy tests: PruneContexts over a tiny model built from given weights."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn

from torch_lottery import PruneContext


def build_context(weights, masks=None, rewind=None, round_index=1, seed=0):
    """A PruneContext over an ``nn.Sequential`` of bias-free Linear layers holding ``weights``.

    ``weights`` is a list of 2-D tensors; the names are ``"0.weight"``, ``"1.weight"``, ...
    ``masks`` (default: all True) and ``rewind`` are lists aligned with ``weights`` or dicts.
    """
    layers = []
    for w in weights:
        layer = nn.Linear(w.shape[1], w.shape[0], bias=False)
        with torch.no_grad():
            layer.weight.copy_(w)
        layers.append(layer)
    model = nn.Sequential(*layers)
    names = tuple(f"{i}.weight" for i in range(len(weights)))
    as_dict = lambda values: values if values is None or isinstance(values, dict) else dict(zip(names, values))
    masks = as_dict(masks) or {n: torch.ones_like(w, dtype=torch.bool) for n, w in zip(names, weights)}
    return PruneContext(
        model=model,
        names=names,
        weights={n: w.detach().clone() for n, w in zip(names, weights)},
        masks={n: m.clone() for n, m in masks.items()},
        rewind=as_dict(rewind),
        round_index=round_index,
        generator=torch.Generator().manual_seed(seed),
    )


def next_context(context, masks, round_index=None, seed=0):
    """The context of the next round: same weights and rewind point, the given masks."""
    return build_context([context.weights[n] for n in context.names], masks=masks, rewind=context.rewind,
                         round_index=context.round_index + 1 if round_index is None else round_index,
                         seed=seed)


def check_masks(context, new):
    """The invariants every non-growing strategy keeps; returns the number pruned now per tensor."""
    assert set(new) == set(context.names)
    pruned = {}
    for name in context.names:
        old = context.masks[name].bool()
        mask = new[name]
        assert isinstance(mask, torch.Tensor)
        assert mask.dtype == torch.bool, (name, mask.dtype)
        assert mask.shape == old.shape
        assert not (mask & ~old).any(), f"{name}: pruned entries were revived"
        pruned[name] = int(old.sum()) - int(mask.sum())
    return pruned


def random_weights(*shapes, seed=0, scales=None):
    generator = torch.Generator().manual_seed(seed)
    scales = scales or [1.0] * len(shapes)
    return [torch.randn(*shape, generator=generator) * s for shape, s in zip(shapes, scales)]


@pytest.fixture
def tools():
    """The helpers above (test modules cannot import conftest under --import-mode=importlib)."""
    return types.SimpleNamespace(build_context=build_context, next_context=next_context,
                                 check_masks=check_masks, random_weights=random_weights)
