"""What a strategy sees: :class:`PruneContext`, built in one place for the driver and for tests.

The driver (:func:`torch_lottery.find_ticket`) and :func:`torch_lottery.testing.make_context`
both call :func:`build_context`, so a strategy unit-tested with a hand-made context sees
exactly what it sees in a run.

Guarantees, for every method of a strategy that receives a context:

* The model is the user's model, in the train/eval mode the user's ``train`` left it,
  with gradients enabled as usual. A strategy must not change it (parameters, buffers,
  masks, hooks, mode): the driver installs the masks it returns. To run the model with
  other weights, use :meth:`PruneContext.functional_model`, which works on a private
  copy; :meth:`PruneContext.gradients` and the copy leave the model bit-for-bit as it was.
* ``weights``, ``masks``, ``rewind`` and ``initial`` are detached tensors the strategy
  may read but not write (they may share memory with the model).
* ``generator`` is the strategy's own seeded CPU generator: draw all randomness from it
  and runs are reproducible and identical on every rank.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils import prune

from .. import _layout
from .._validation import check_number, describe

Batch = tuple[Any, Any]


def _to(value: Any, device: torch.device | None) -> Any:
    """Move a tensor (or a tuple/list/dict of them) to ``device``."""
    if device is None:
        return value
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (tuple, list)):
        return type(value)(_to(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    return value


def _as_args(inputs: Any) -> tuple:
    """The positional arguments of a forward call: a tuple/list of inputs is spread, anything else is one."""
    return tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)


class FunctionalModel:
    """A private, unpruned copy of the model, run with any values of its parameters and buffers.

    ``state`` holds every parameter and buffer of the copy by qualified name
    (``"0.weight"``, never ``_orig``), with the masks applied (pruned entries are
    0), detached. Call ``fm(state, inputs)`` to run the copy with the tensors of
    ``state`` (any subset overrides the copy's own; pass leaves that require grad
    to differentiate with ``torch.autograd.grad``). The copy is in eval mode
    unless built with ``train=True``; the user's model is never touched.
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype | None = None, train: bool = False) -> None:
        twin = copy.deepcopy(model)
        for _, module, name in _layout.pruned_tensors(twin):
            prune.remove(module, name)  # the masked values become plain parameters
        if dtype is not None:
            twin = twin.to(dtype)
        twin.train(train)
        self.module = twin
        # every name, tied ones too (they hold the same tensor object, as functional_call wants them)
        self.state: dict[str, torch.Tensor] = {
            **{k: v.detach() for k, v in twin.named_parameters(remove_duplicate=False)},
            **{k: v.detach() for k, v in twin.named_buffers(remove_duplicate=False)},
        }

    def leaves(
        self, names: Iterable[str], value: Callable[[str, torch.Tensor], torch.Tensor] | None = None
    ) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
        """Return ``state`` with the tensors of ``names`` as leaves that require grad, and the leaves.

        ``value(name, tensor)`` gives a leaf's value (default: a copy of the tensor).
        Tied names share one leaf: ``functional_call`` wants tied tensors to be one
        object, and their gradient is then one.
        """
        leaf_of: dict[int, torch.Tensor] = {}
        for name in names:
            tensor = self.state[name]
            if id(tensor) not in leaf_of:
                leaf = tensor.clone() if value is None else value(name, tensor)
                leaf_of[id(tensor)] = leaf.detach().requires_grad_(True)
        return {k: leaf_of.get(id(v), v) for k, v in self.state.items()}, list(leaf_of.values())

    def __call__(self, state: Mapping[str, torch.Tensor], inputs: Any) -> Any:
        """Run the copy on ``inputs`` (a tensor, or a tuple of positional inputs) with ``state``."""
        return functional_call(self.module, dict(state), _as_args(inputs), tie_weights=True, strict=False)


@dataclass(frozen=True)
class PruneContext:
    """What a strategy sees when asked for the next masks (read only).

    Attributes:
        model: the model (do not modify it; see the module's guarantees).
        names: qualified names of the prunable tensors, in order.
        weights: the current weights by name (detached; for pruning at
            initialization, the initial weights).
        masks: the current masks by name (bool tensors).
        rewind: the rewind-point values by name (the weights the survivors will
            be reset to), or None if the driver has none yet.
        round_index: the pruning round being computed (1 for the first).
        generator: the strategy's own CPU random generator (seeded by the driver).
        initial: every parameter and buffer of the model at initialization, by
            qualified name (``"1.running_mean"`` too), or None.
        data: the run's data, an iterable of ``(inputs, targets)`` batches
            (``find_ticket(data=...)``), or None.
        loss: ``loss(output, targets) -> scalar tensor`` (``find_ticket(loss=...)``), or None.
        device: where the model's tensors are.
        rounds: the number of pruning rounds the run asks for, or None.
        target_remaining: the fraction of weights the run stops at, or None.
        control: the run's control (Frankle et al. 2021), or None; a score-based
            strategy honours ``"invert"`` by pruning its highest scores instead.
    """

    model: nn.Module
    names: tuple[str, ...]
    weights: Mapping[str, torch.Tensor]
    masks: Mapping[str, torch.Tensor]
    rewind: Mapping[str, torch.Tensor] | None
    round_index: int
    generator: torch.Generator
    initial: Mapping[str, torch.Tensor] | None = None
    data: Iterable[Batch] | None = None
    loss: Callable[[Any, Any], torch.Tensor] | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    rounds: int | None = None
    target_remaining: float | None = None
    control: str | None = None

    # -- data -------------------------------------------------------------------
    def batches(self, count: int | None = None) -> Iterator[Batch]:
        """Yield the first ``count`` batches of ``data`` (all with None), moved to ``device``.

        Raises:
            ValueError: if the run has no ``data``.
        """
        if self.data is None:
            raise ValueError("this strategy needs data: pass find_ticket(..., data=<iterable of (inputs, targets)>)")
        if count is not None:
            check_number(count, "batches", integer=True, low=1)
        for inputs, targets in itertools.islice(iter(self.data), count):
            yield _to(inputs, self.device), _to(targets, self.device)

    @property
    def example_input(self) -> Any:
        """The inputs of the first batch of ``data`` (or None without data): a shape to run the model on."""
        if self.data is None:
            return None
        return next(self.batches(1))[0]

    # -- running the model with other values ---------------------------------------
    def functional_model(self, dtype: torch.dtype | None = None, train: bool = False) -> FunctionalModel:
        """Return a :class:`FunctionalModel` of the (masked) model: run it with any weights, differentiate."""
        return FunctionalModel(self.model, dtype=dtype, train=train)

    def gradients(self, batches: int | None = 1, train: bool = False) -> dict[str, torch.Tensor]:
        """Return the gradient of the loss w.r.t. each tensor of ``names``, at its current masked value.

        Dense: pruned entries get the gradient they would have if they were
        revived (RigL, SNIP). Summed over the first ``batches`` batches of
        ``data`` (all with None), on a private copy in eval mode (``train=True``
        for train mode); the model itself is left as it was.

        Raises:
            ValueError: without ``data`` or ``loss``.
        """
        if self.loss is None:
            raise ValueError("this strategy needs a loss: pass find_ticket(..., loss=<callable(output, targets)>)")
        fm = self.functional_model(train=train)
        state, leaves = fm.leaves(self.names)
        total = [torch.zeros_like(leaf) for leaf in leaves]
        for inputs, targets in self.batches(batches):
            value = self.loss(fm(state, inputs), targets)
            for acc, grad in zip(total, torch.autograd.grad(value, leaves, allow_unused=True), strict=True):
                if grad is not None:
                    acc += grad
        slot = {id(leaf): i for i, leaf in enumerate(leaves)}
        return {n: total[slot[id(state[n])]] for n in self.names}


def build_context(
    model: nn.Module,
    names: tuple[str, ...],
    pairs: list[tuple[nn.Module, str]],
    *,
    rewind: Mapping[str, torch.Tensor] | None = None,
    round_index: int = 1,
    generator: torch.Generator | None = None,
    initial: Mapping[str, torch.Tensor] | None = None,
    data: Iterable[Batch] | None = None,
    loss: Callable[[Any, Any], torch.Tensor] | None = None,
    rounds: int | None = None,
    target_remaining: float | None = None,
    control: str | None = None,
) -> PruneContext:
    """Build the :class:`PruneContext` of ``model``'s tensors ``pairs`` (named ``names``) as the driver does.

    Tied names share one weights object (so a strategy can rank a tied tensor once).
    """
    detached: dict[int, torch.Tensor] = {}
    weights, masks = {}, {}
    for name, (module, tensor_name) in zip(names, pairs, strict=True):
        tensor = _layout.original(module, tensor_name)
        weights[name] = detached.setdefault(id(tensor), tensor.detach())
        mask = _layout.mask_of(module, tensor_name)
        masks[name] = torch.ones_like(tensor, dtype=torch.bool) if mask is None else mask.to(torch.bool, copy=True)
    device = next((t.device for t in weights.values()), torch.device("cpu"))
    return PruneContext(
        model=model,
        names=tuple(names),
        weights=weights,
        masks=masks,
        rewind=rewind,
        round_index=round_index,
        generator=generator if generator is not None else torch.Generator().manual_seed(0),
        initial=initial,
        data=data,
        loss=loss,
        device=device,
        rounds=rounds,
        target_remaining=target_remaining,
        control=control,
    )


def check_data(data: Any, loss: Any) -> None:
    """Check ``find_ticket``'s ``data`` (an iterable of batches, re-iterable) and ``loss`` (a callable)."""
    if data is not None and (isinstance(data, (str, bytes, torch.Tensor)) or not isinstance(data, Iterable)):
        raise TypeError(f"data must be an iterable of (inputs, targets) batches, got {describe(data)}")
    if data is not None and iter(data) is data:
        raise TypeError("data must be re-iterable (a list, a DataLoader, ...): an iterator is used up after one pass")
    if loss is not None and not callable(loss):
        raise TypeError(f"loss must be callable as loss(output, targets), got {describe(loss)}")
