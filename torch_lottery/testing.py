"""Unit-test a strategy without the driver: the context it sees in a run, and the driver's checks of its masks.

:func:`make_context` builds the :class:`~torch_lottery.PruneContext` of a model as
:func:`~torch_lottery.find_ticket` would at a given round (the same tensors, the same
builder, the same random generator for a seed); :func:`check_prune` calls a
strategy's ``prune`` on it and applies the checks the driver applies to the masks it
returns. Neither changes the model::

    from torch_lottery.testing import check_prune, make_context

    def test_my_strategy_prunes_half():
        masks = check_prune(MyStrategy(rate=0.5), make_context(model))
        assert all(m.float().mean() == 0.5 for m in masks.values())
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from ._validation import check_binary_mask, check_choice, check_fraction, check_nonneg_int, check_number, describe
from .distributed import unwrap
from .driver.context import round_seed
from .driver.run import _check_masks
from .driver.settings import CONTROLS, _parameters
from .strategies.context import Batch, PruneContext, build_context, check_data

__all__ = ["check_prune", "make_context"]


def make_context(
    model: nn.Module,
    *,
    parameters: Iterable | None = None,
    masks: Mapping[str, torch.Tensor] | None = None,
    data: Iterable[Batch] | None = None,
    loss: Callable[[Any, Any], torch.Tensor] | None = None,
    rewind: Mapping[str, torch.Tensor] | None = None,
    round_index: int = 1,
    seed: int = 0,
    rounds: int | None = None,
    target_remaining: float | None = None,
    control: str | None = None,
    initial: Mapping[str, torch.Tensor] | None = None,
) -> PruneContext:
    """Return the :class:`~torch_lottery.PruneContext` a strategy would see for ``model`` in a run.

    The tensors are resolved as ``find_ticket`` resolves them (``parameters``:
    qualified names or ``(module, name)`` pairs; default every prunable weight,
    :func:`~torch_lottery.named_prunable_parameters`), the context is built by
    the driver's own builder, and its generator is the one ``find_ticket(...,
    seed=seed)`` hands the strategy in round ``round_index``. The model is not
    changed: ``masks`` (``{name: bool or 0/1 tensor}``, any subset of the names)
    are the context's masks, the others are the model's current masks (all True
    for an unpruned tensor). ``masks`` changes ``context.masks`` only:
    ``functional_model()`` and ``gradients()`` run the model with its own masks
    (prune the model itself to test those under other masks).

    Args:
        model (nn.Module): the model (or its ``DistributedDataParallel`` wrapper).
        parameters (optional): the tensors to prune, as for ``find_ticket``.
        masks (dict, optional): the current masks to pretend, by qualified name.
        data (optional): ``find_ticket``'s ``data``.
        loss (optional): ``find_ticket``'s ``loss``.
        rewind (dict, optional): the rewind-point values by name (a
            :class:`~torch_lottery.RewindPoint` or a dict); names that are not
            pruned are left out, as in the driver.
        round_index (int): the round being computed (>= 1).
        seed (int): the run's seed.
        rounds (optional): the run's, as for ``find_ticket``.
        target_remaining (optional): the run's, as for ``find_ticket``.
        control (optional): the run's, as for ``find_ticket``.
        initial (dict, optional): every parameter and buffer at initialization, by name.

    Raises:
        TypeError, ValueError: naming the argument that does not fit.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from torch_lottery.testing import make_context
        >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))
        >>> context = make_context(net, masks={"2.weight": torch.tensor([[True, False, True]])})
        >>> context.names, context.round_index
        (('0.weight', '2.weight'), 1)
        >>> context.masks["2.weight"].tolist(), bool(context.masks["0.weight"].all())
        ([[True, False, True]], True)
        >>> hasattr(net[2], "weight_mask")  # the model is left as it was
        False
    """
    model = unwrap(model)
    names, pairs = _parameters(model, parameters)
    check_data(data, loss)
    round_index = check_number(round_index, "round_index", integer=True, low=1)
    seed = check_number(seed, "seed", integer=True)
    if rounds is not None:
        check_nonneg_int(rounds, "rounds")
    if target_remaining is not None:
        target_remaining = check_fraction(target_remaining, "target_remaining", high_open=True)
    if control is not None:
        check_choice(control, CONTROLS, "control")
    for value, label in ((rewind, "rewind"), (initial, "initial")):
        if value is not None and not isinstance(value, Mapping):
            raise TypeError(f"{label} must be a dict of qualified name to tensor, got {describe(value)}")
    context = build_context(
        model,
        names,
        pairs,
        rewind=None if rewind is None else {n: rewind[n] for n in names if n in rewind},
        round_index=round_index,
        generator=torch.Generator().manual_seed(round_seed(seed, round_index, 1)),
        initial=initial,
        data=data,
        loss=loss,
        rounds=rounds,
        target_remaining=target_remaining,
        control=control,
    )
    if masks is None:
        return context
    if not isinstance(masks, Mapping):
        raise TypeError(f"masks must be a dict of qualified name to mask, got {describe(masks)}")
    unknown = [n for n in masks if n not in context.masks]
    if unknown:
        raise ValueError(f"masks names {unknown}, which are not among the tensors to prune {list(names)}")
    own = dict(context.masks)
    for name, mask in masks.items():
        check_binary_mask(mask, f"masks[{name!r}]")
        if mask.shape != own[name].shape:
            raise ValueError(f"masks[{name!r}] has shape {tuple(mask.shape)}; the tensor has {tuple(own[name].shape)}")
        own[name] = mask.detach().to(device=own[name].device, dtype=torch.bool, copy=True)
    return replace(context, masks=own)


def check_prune(strategy: Any, context: PruneContext) -> dict[str, torch.Tensor]:
    """Call ``strategy.prune(context)``, check its masks as the driver does, and return them (bool).

    The driver's checks: a dict with a mask for every name of ``context``, each a
    tensor of the tensor's shape holding only 0 and 1 (or bool), masks that only
    shrink unless the strategy sets ``may_grow = True``, and one mask for the
    names of a tied tensor. Besides, the strategy must have left the model
    (parameters, buffers, masks, train/eval mode) and ``context.masks`` as they
    were, as the context's guarantees ask.

    Raises:
        TypeError, ValueError: naming the strategy and what is wrong.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from torch_lottery import Strategy
        >>> from torch_lottery.strategies import IterativeMagnitude
        >>> from torch_lottery.testing import check_prune, make_context
        >>> net = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2))
        >>> masks = check_prune(IterativeMagnitude(rate=0.5), make_context(net))
        >>> {name: int(mask.sum()) for name, mask in masks.items()}
        {'0.weight': 10, '2.weight': 5}
        >>> class KeepAll(Strategy):
        ...     def prune(self, context):
        ...         return {name: torch.ones_like(mask) for name, mask in context.masks.items()}
        >>> check_prune(KeepAll(), make_context(net, masks=masks))
        Traceback (most recent call last):
        ...
        ValueError: strategy 'KeepAll' revived pruned entries of '0.weight'; masks may only shrink ...
    """
    if not callable(getattr(strategy, "prune", None)):
        raise TypeError(f"strategy must be an object with prune(context), got {describe(strategy)}")
    if not isinstance(context, PruneContext):
        raise TypeError(f"context must be a PruneContext (see make_context), got {describe(context)}")
    name = str(getattr(strategy, "name", type(strategy).__name__))
    model_before = _state(context.model)
    masks_before = {n: m.clone() for n, m in context.masks.items()}
    proposed = strategy.prune(context)
    _unchanged(name, "the model's", model_before, _state(context.model))
    _unchanged(name, "context.masks", masks_before, dict(context.masks))
    first: dict[int, str] = {}  # the names of a tied tensor share one weights object (build_context)
    tied = {}
    for n in context.names:
        if first.setdefault(id(context.weights[n]), n) != n:
            tied[n] = first[id(context.weights[n])]
    may_grow = bool(getattr(strategy, "may_grow", False))
    return _check_masks(proposed, context.names, context.masks, name, may_grow, tied)


def _state(model: nn.Module) -> dict[str, Any]:
    """Copies of every parameter and buffer (masks included) of ``model``, and the train/eval mode of each module."""
    state: dict[str, Any] = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
    state.update({f"{name or '<model>'} (train/eval mode)": m.training for name, m in model.named_modules()})
    return state


def _unchanged(strategy_name: str, what: str, before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
    changed = sorted(set(before) ^ set(after))
    changed += [
        k
        for k in before
        if k in after
        and not (torch.equal(before[k], after[k]) if isinstance(before[k], torch.Tensor) else before[k] == after[k])
    ]
    if changed:
        raise ValueError(
            f"strategy {strategy_name!r} changed {what} {changed[:5]} in prune; a strategy must leave the model "
            "and the context as they are (the driver installs the masks it returns)"
        )
