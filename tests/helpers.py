"""Helpers shared by the test modules (importable as ``helpers``: ``pythonpath = ["tests"]`` in pyproject)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune

from torch_lottery.strategies import PruneContext


# -- models ----------------------------------------------------------------------------
class Holder(nn.Module):
    """A module with a single parameter ``weight`` of any shape."""

    def __init__(self, t: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(t.detach().clone())


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    """A reproducible standard-normal tensor."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def small_net(seed: int = 0, width: int = 4) -> nn.Sequential:
    """A 5-width-3 MLP with biases, seeded."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, width), nn.ReLU(), nn.Linear(width, 3))


def orig_of(module: nn.Module, name: str = "weight") -> torch.Tensor:
    """The trainable tensor of ``module.<name>`` (``<name>_orig`` once pruned)."""
    return module._parameters[name + "_orig"] if name + "_orig" in module._parameters else module._parameters[name]


def train_steps(
    model: nn.Module,
    x: torch.Tensor,
    steps: int = 3,
    lr: float = 0.5,
    seed: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
) -> torch.optim.Optimizer:
    """Real training: ``steps`` SGD steps on a random regression target, ending on ``optimizer.step()``.

    No forward runs after the last step, so the computed ``module.<name>`` of a
    pruned tensor is what stock prune would have left stale.
    """
    optimizer = optimizer or torch.optim.SGD(model.parameters(), lr=lr)
    with torch.no_grad():
        shape = model(x).shape
    target = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), target).backward()
        optimizer.step()
    return optimizer


# -- comparing states ----------------------------------------------------------------------
def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Exact equality (shape, dtype, values) that treats NaN == NaN."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    both_nan = torch.isnan(a) & torch.isnan(b) if a.is_floating_point() else torch.zeros_like(a, dtype=torch.bool)
    return bool(((a == b) | both_nan).all())


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of ``model.state_dict()``."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_state_equal(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    """``model``'s state dict has the same keys, in order, and bit-identical values."""
    after = model.state_dict()
    assert list(after) == list(before)
    for key, value in before.items():
        assert same(after[key], value), key


def snapshot(model: nn.Module) -> dict:
    """Everything a failed call must leave as it was: state, names, hooks (by identity) and computed weights."""
    hooks = []
    computed = {}
    for mod_name, mod in model.named_modules():
        for key, hook in mod._forward_pre_hooks.items():
            methods = tuple(hook) if isinstance(hook, prune.PruningContainer) else None
            hooks.append((mod_name, key, type(hook), id(hook), methods))
        for attr, value in vars(mod).items():
            if isinstance(value, torch.Tensor) and not attr.startswith("_"):
                computed[(mod_name, attr)] = value.detach().clone()
    return {
        "state": state_of(model),
        "params": [n for n, _ in model.named_parameters()],
        "buffers": [n for n, _ in model.named_buffers()],
        "hooks": hooks,
        "computed": computed,
        "training": [m.training for m in model.modules()],
    }


def assert_unchanged(model: nn.Module, before: dict) -> None:
    """``model`` is exactly as :func:`snapshot` saw it."""
    after = snapshot(model)
    assert after["params"] == before["params"]
    assert after["buffers"] == before["buffers"]
    assert list(after["state"]) == list(before["state"])
    for key, value in before["state"].items():
        assert same(after["state"][key], value), f"state_dict[{key!r}] changed"
    assert after["hooks"] == before["hooks"]
    assert list(after["computed"]) == list(before["computed"])
    for key, value in before["computed"].items():
        assert same(after["computed"][key], value), f"computed tensor {key} changed"
    assert after["training"] == before["training"]


# -- strategies --------------------------------------------------------------------------
def build_context(weights, masks=None, rewind=None, round_index=1, seed=0) -> PruneContext:
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

    def as_dict(values):
        return values if values is None or isinstance(values, dict) else dict(zip(names, values, strict=True))

    masks = as_dict(masks) or {n: torch.ones_like(w, dtype=torch.bool) for n, w in zip(names, weights, strict=True)}
    return PruneContext(
        model=model,
        names=names,
        weights={n: w.detach().clone() for n, w in zip(names, weights, strict=True)},
        masks={n: m.clone() for n, m in masks.items()},
        rewind=as_dict(rewind),
        round_index=round_index,
        generator=torch.Generator().manual_seed(seed),
    )


def next_context(context: PruneContext, masks, round_index=None, seed=0) -> PruneContext:
    """The context of the next round: same weights and rewind point, the given masks."""
    return build_context(
        [context.weights[n] for n in context.names],
        masks=masks,
        rewind=context.rewind,
        round_index=context.round_index + 1 if round_index is None else round_index,
        seed=seed,
    )


def check_masks(context: PruneContext, new) -> dict[str, int]:
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


def random_weights(*shapes, seed=0, scales=None) -> list[torch.Tensor]:
    """Reproducible random weight matrices of the given shapes (each times its scale)."""
    generator = torch.Generator().manual_seed(seed)
    scales = scales or [1.0] * len(shapes)
    return [torch.randn(*shape, generator=generator) * s for shape, s in zip(shapes, scales, strict=True)]
