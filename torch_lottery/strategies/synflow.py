"""Built-in plugin: SynFlow, iterative synaptic flow pruning at initialization, data-free (``synflow``)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .._validation import check_number, describe
from ..plugins.hookspecs import hookimpl
from .at_init import InitStrategy
from .base import check_known_names, fraction_to_keep
from .context import PruneContext


def check_input_shape(value: Any) -> tuple[int, ...] | None:
    """Check ``input_shape``: None, or a tuple (or list) of ints >= 1, without the batch dimension."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"input_shape must be a tuple of ints (without the batch dimension), got {describe(value)}")
    return tuple(check_number(n, f"input_shape[{i}]", integer=True, low=1) for i, n in enumerate(value))


class _Flow:
    """The float64 copy of the model that SynFlow differentiates: every parameter and buffer made ``|.|``."""

    def __init__(self, context: PruneContext, shape: tuple[int, ...]) -> None:
        self.fm = context.functional_model(dtype=torch.float64)  # eval mode, masks applied, a private copy
        absolute: dict[int, torch.Tensor] = {}  # tied tensors stay one object
        for tensor in self.fm.state.values():
            if id(tensor) not in absolute:
                absolute[id(tensor)] = tensor.abs() if tensor.is_floating_point() else tensor
        self.fm.state = {k: absolute[id(v)] for k, v in self.fm.state.items()}  # the |.| copy's own state
        self.names = context.names
        self.ones = torch.ones((1, *shape), dtype=torch.float64, device=context.device)

    def scores(self, masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Return ``|theta * dR/dtheta|`` of every tensor of ``names``, the weights ``|theta| * mask``."""
        state, leaves = self.fm.leaves(self.names, lambda name, tensor: tensor * masks[name].to(tensor.dtype))
        output = self.fm(state, self.ones)
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"synflow sums the model's output, which must be a Tensor, got {describe(output)}")
        grads = torch.autograd.grad(output.sum(), leaves, allow_unused=True)
        score = {
            id(leaf): torch.zeros_like(leaf) if grad is None else (leaf * grad).abs().detach()
            for leaf, grad in zip(leaves, grads, strict=True)
        }
        return {n: score[id(state[n])] for n in self.names}


class SynFlow(InitStrategy):
    """Prune at initialization without data by iterative synaptic flow: keep the top ``|theta * dR/dtheta|``.

    Tanaka et al. 2020. ``R`` is the sum of the output of the network with every
    parameter and buffer replaced by its absolute value, run on an all-ones input
    (float64, eval mode, on a private copy). The scores are recomputed
    ``iterations`` times on an exponential schedule: after iteration ``k`` of
    ``n``, ``remaining ** (k / n)`` of the weights survive, the masks applied
    between iterations. Iterating is what avoids layer collapse (a layer emptied
    while others keep weights) at extreme sparsity.

    Args:
        remaining (float): fraction of the weights kept, in (0, 1].
        iterations (int): scoring and pruning iterations (default 100, as in the
            paper; 1 is one-shot SynFlow).
        input_shape (tuple of int, optional): the shape of one input, without the
            batch dimension, e.g. ``(3, 32, 32)``; default: that of the first
            batch of ``find_ticket(..., data=...)``. One of them is needed.
        scope (str): ``"global"`` (default, as in the paper) or ``"local"``.
        min_remaining (int): surviving weights kept per tensor at least (default 1;
            0 lets a layer be emptied).
        on_floor (str): ``"clamp"`` (default) or ``"raise"``.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from torch_lottery.strategies.context import build_context
        >>> from torch_lottery.strategies.synflow import SynFlow
        >>> torch.manual_seed(0)
        <torch._C.Generator object at ...>
        >>> net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> context = build_context(net, ("0.weight", "2.weight"), [(net[0], "weight"), (net[2], "weight")])
        >>> masks = SynFlow(remaining=0.25, iterations=10, input_shape=(6,)).prune(context)
        >>> sum(int(m.sum()) for m in masks.values())  # 25% of 48 + 24 weights
        18
    """

    def __init__(
        self,
        remaining: float = 0.1,
        iterations: int = 100,
        input_shape: Sequence[int] | None = None,
        scope: str = "global",
        min_remaining: int = 1,
        on_floor: str = "clamp",
    ) -> None:
        super().__init__(remaining=remaining, scope=scope, min_remaining=min_remaining, on_floor=on_floor)
        self.iterations = check_number(iterations, "iterations", integer=True, low=1)
        self.input_shape = check_input_shape(input_shape)

    def validate(self, names: tuple[str, ...], model: nn.Module | None = None, data: Any = None) -> None:
        """Check before the run (the driver passes ``model`` and ``data``) that an input shape is known."""
        super().validate(names, model=model, data=data)
        if model is not None and data is None and self.input_shape is None:
            raise ValueError(self._no_shape())

    def _no_shape(self) -> str:
        return (
            "synflow runs the model on an all-ones input: pass input_shape=<shape of one input, without the "
            "batch dimension> or find_ticket(..., data=...) (the shape of its first batch is used)"
        )

    def _input_shape(self, context: PruneContext) -> tuple[int, ...]:
        """Return the shape of one input: ``input_shape``, or the first batch's of ``data`` less its first dimension.

        Raises:
            ValueError: naming ``input_shape`` and ``data`` if there is neither (or the inputs are not one tensor).
        """
        if self.input_shape is not None:
            return self.input_shape
        example = context.example_input
        if example is None:
            raise ValueError(self._no_shape())
        if not isinstance(example, torch.Tensor) or example.dim() < 1:
            raise ValueError(
                f"synflow needs input_shape: the inputs of the first batch of data are {describe(example)}, "
                "not one batched tensor"
            )
        return tuple(example.shape[1:])

    def all_scores(self, context: PruneContext) -> dict[str, torch.Tensor]:
        """Return the SynFlow scores of every tensor at the context's masks (one iteration)."""
        return _Flow(context, self._input_shape(context)).scores(context.masks)

    def prune(self, context: PruneContext) -> dict[str, torch.Tensor]:
        """Return the masks after ``iterations`` rounds of scoring and pruning on the exponential schedule."""
        check_known_names(self.rate_multipliers, context.names)
        flow = _Flow(context, self._input_shape(context))
        masks = dict(context.masks)
        for k in range(1, self.iterations + 1):
            step = dataclasses.replace(context, masks=masks)
            kept = self.remaining ** (k / self.iterations)
            masks = self.select(
                step,
                flow.scores(masks),
                fraction=functools.partial(fraction_to_keep, step, remaining=kept),
            )
        return masks

    def options(self) -> dict[str, Any]:
        shape = None if self.input_shape is None else list(self.input_shape)  # a list: JSON round-trips it
        return {**super().options(), "iterations": self.iterations, "input_shape": shape}


@hookimpl
def torch_lottery_register_strategies(register):
    """Register ``synflow``."""
    register("synflow", SynFlow)
