"""The strategy interface: a small pure policy from (model, current masks, options) to new masks."""

from __future__ import annotations

import abc
import dataclasses
import numbers
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from .. import _layout
from .._validation import check_choice, check_nonneg_int, check_number, check_on_floor, describe
from ..pruning._select import CRITERIA, NEEDS_INITIAL, SCOPES, _Pool, _Source, criterion_scores, plan
from ..pruning.utils import get_mask
from .context import PruneContext, build_context


class Strategy(abc.ABC):
    """A ticket-finding strategy: given the trained model and its masks, return the next masks.

    Subclasses validate their options in ``__init__`` (raising ``TypeError`` or
    ``ValueError`` naming the option), implement :meth:`prune`, and list their
    options in :meth:`options` so a ticket file can record them. The driver
    (:func:`torch_lottery.find_ticket`) owns training, rewinding and saving; a
    strategy never modifies the model.

    Class attributes:
        when: when the driver asks for masks: ``"between_rounds"`` (default:
            train the dense model, then prune between rounds), ``"at_init"``
            (pruning at initialization: no dense round; round 1 prunes the
            initial weights and trains the ticket) or ``"during_training"``
            (no dense round either: round 1 starts from :meth:`prune`'s masks and
            the driver calls ``update(context)`` every ``every`` optimizer steps
            while the ticket trains; the masks may move, see below).
        needs_data: True if :meth:`prune` reads ``context.data`` (the driver
            refuses a run without ``data=`` before anything trains).
        needs_loss: True if it computes gradients of ``context.loss`` (the driver
            refuses a run without ``loss=`` before anything trains).
        may_grow: True if :meth:`prune` may revive pruned entries (the driver
            checks that masks only shrink otherwise).
        max_rounds: the number of rounds the strategy is meant for (e.g. 1 for
            one-shot pruning), or None.

    A strategy may also define ``on_step(context)``: the driver then calls it after
    every counted optimizer step of a training round with a :class:`StepContext`;
    ``context.stop()`` ends the round early (early-bird tickets).

    A ``"during_training"`` strategy sets ``every`` (steps between updates) and
    defines ``update(context) -> masks or None`` (masks of the same total density:
    the driver checks it, zeroes regrown weights and their optimizer state, and
    installs the masks in place); optionally ``begin(context)`` (before the round
    trains; it may install what the strategy trains, e.g. scores) and
    ``end(context) -> masks or None`` (after it; it removes what ``begin``
    installed). ``needs_optimizer = True`` makes the driver refuse a run without
    ``optimizer=`` (the state of regrown weights must be reset). Two class
    attributes relax the update's rules: ``keep_density = False`` lets the total
    density change (a learned supermask), ``regrow_at_zero = False`` keeps the
    weights and optimizer state of revived entries (a supermask over frozen weights).

    Args:
        rewind_iteration (int): the training iteration of the first (dense) run
            whose weights the survivors are reset to: 0 is the initialization
            (Frankle & Carbin 2019), k > 0 is late resetting (Frankle et al. 2019).
    """

    when: ClassVar[str] = "between_rounds"
    needs_data: ClassVar[bool] = False
    needs_loss: ClassVar[bool] = False
    needs_optimizer: ClassVar[bool] = False
    keep_density: ClassVar[bool] = True
    regrow_at_zero: ClassVar[bool] = True
    may_grow: ClassVar[bool] = False
    max_rounds: ClassVar[int | None] = None

    def __init__(self, rewind_iteration: int = 0) -> None:
        check_nonneg_int(rewind_iteration, "rewind_iteration")
        self.rewind_iteration = int(rewind_iteration)

    @abc.abstractmethod
    def prune(self, context: PruneContext) -> dict[str, torch.Tensor]:
        """Return the new mask of every tensor in ``context.names`` (bool, same shapes)."""

    def validate(self, names: tuple[str, ...], model: nn.Module | None = None, data: Any = None) -> None:  # noqa: B027
        """Check the options against the run (before any training): the tensors' names, the model, the data.

        The driver calls it before anything trains, with ``model`` and ``data``
        (a subclass may also define ``validate(self, names)`` alone: the driver
        then passes only the names). Raise ``ValueError`` naming the option if
        they do not fit.
        """

    def options(self) -> dict[str, Any]:
        """Return the options this strategy was built with (JSON-serializable)."""
        return {"rewind_iteration": self.rewind_iteration}

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({options})"


#: When a strategy prunes (its ``when`` attribute).
WHEN = ("between_rounds", "at_init", "during_training")


class StepContext:
    """What ``Strategy.on_step`` sees after an optimizer step of a training round.

    Attributes:
        model: the model being trained (a strategy changes it only in ``begin``/``end``).
        names: qualified names of the prunable tensors.
        round_index: the round being trained (0 is the dense run).
        iteration: optimizer steps counted so far in this round.
        rounds, target_remaining: the run's target, as in :class:`PruneContext`.
        optimizer: the run's optimizer (``find_ticket(optimizer=...)``), or None.
        data, loss: the run's data and loss, or None.
    """

    def __init__(
        self,
        model: nn.Module,
        names: tuple[str, ...],
        pairs: list,
        round_index: int,
        iteration: int,
        rounds: int | None,
        target_remaining: float | None,
        stop: Callable[[str], None],
        optimizer: torch.optim.Optimizer | None = None,
        data: Any = None,
        loss: Any = None,
    ) -> None:
        self.model, self.names, self._pairs = model, names, pairs
        self.round_index, self.iteration = round_index, iteration
        self.rounds, self.target_remaining = rounds, target_remaining
        self.optimizer, self.data, self.loss = optimizer, data, loss
        self._stop = stop
        self._cursor = 0  # where the next gradients() call starts in a list of batches

    def weights(self) -> dict[str, torch.Tensor]:
        """Return the current weights by name (detached; ``<name>_orig`` of pruned tensors)."""
        return {n: _layout.original(m, t).detach() for n, (m, t) in zip(self.names, self._pairs, strict=True)}

    def masks(self) -> dict[str, torch.Tensor]:
        """Return the current masks by name (bool)."""
        return {n: get_mask(m, t).to(torch.bool, copy=True) for n, (m, t) in zip(self.names, self._pairs, strict=True)}

    def pairs(self) -> list[tuple[nn.Module, str]]:
        """Return the ``(module, name)`` pair of every name, in order."""
        return list(self._pairs)

    def optimizer_state(self, name: str) -> dict[str, Any]:
        """Return the optimizer's state of tensor ``name`` (e.g. ``momentum_buffer``, ``exp_avg``), or ``{}``."""
        if self.optimizer is None:
            return {}
        module, tensor_name = self._pairs[self.names.index(name)]
        return dict(self.optimizer.state.get(_layout.original(module, tensor_name), {}))

    def gradients(self, batches: int | None = 1) -> dict[str, torch.Tensor]:
        """Return dense gradients of the loss w.r.t. the masked weights now (see :meth:`PruneContext.gradients`).

        Successive calls walk through ``data``: when it is a list or tuple of
        batches, each call starts where the last one stopped (wrapping around), so
        the updates of a run see different batches; any other iterable (e.g. a
        shuffling ``DataLoader``) is iterated afresh each call. ``batches=None``
        takes every batch.
        """
        context = self.prune_context()
        data = self.data
        if batches is not None and isinstance(data, (list, tuple)) and len(data) > 0:
            start = self._cursor % len(data)
            context = dataclasses.replace(context, data=list(data[start:]) + list(data[:start]))
            self._cursor += int(batches)
        return context.gradients(batches)

    def prune_context(self) -> PruneContext:
        """Return the :class:`PruneContext` of now (what ``prune`` would see if the round ended here)."""
        return build_context(
            self.model,
            self.names,
            self._pairs,
            round_index=self.round_index,
            data=self.data,
            loss=self.loss,
            rounds=self.rounds,
            target_remaining=self.target_remaining,
        )

    def stop(self, reason: str) -> None:
        """End this training round after the current step; ``reason`` goes to the round's record."""
        self._stop(reason)


def _distinct(context: PruneContext) -> dict[str, None]:
    """The first name of every distinct tensor of the context, in order (tied names share one weights object)."""
    seen: dict[int, str] = {}
    for n in context.names:
        seen.setdefault(id(context.weights[n]), n)
    return dict.fromkeys(seen.values())


def _first_names(context: PruneContext, distinct: Mapping[str, None]) -> dict[str, str]:
    """Map every name to the first name of its tensor."""
    first = {id(context.weights[n]): n for n in distinct}
    return {n: first[id(context.weights[n])] for n in context.names}


def keep_top(scores: torch.Tensor, k: int, eligible: torch.Tensor | None = None) -> torch.Tensor:
    """Return a bool mask of ``scores``' shape keeping the ``k`` highest scores among the ``eligible`` entries.

    The one top-k routine of the training-time strategies (drop, regrow, edge-popup's
    top-k): exact ``k``, and ties broken as the planner breaks them (among equal
    scores the lower flat index is dropped first). NaN scores are refused.

    Args:
        scores (Tensor): the keep-scores (higher is kept).
        k (int): how many entries to keep, ``0 <= k <=`` the number of eligible entries.
        eligible (Tensor, optional): a bool tensor of ``scores``' shape; only its
            True entries may be kept (default: all).

    Returns:
        Tensor: bool, ``scores``' shape, exactly ``k`` True entries.

    Raises:
        ValueError: if ``k`` is out of range, shapes differ or a score is NaN.

    Examples:
        >>> import torch
        >>> keep_top(torch.tensor([0.5, 2.0, 1.0, 2.0]), 2).tolist()
        [False, True, False, True]
        >>> keep_top(torch.tensor([3.0, 2.0, 1.0]), 1, eligible=torch.tensor([False, True, True])).tolist()
        [False, True, False]
    """
    flat = scores.detach().reshape(-1)
    if eligible is not None and eligible.shape != scores.shape:
        raise ValueError(f"eligible has shape {tuple(eligible.shape)}, scores {tuple(scores.shape)}")
    candidates = (
        torch.arange(flat.numel(), device=flat.device)
        if eligible is None
        else eligible.reshape(-1).bool().nonzero().flatten()
    )
    check_number(k, "k", integer=True, low=0, high=int(candidates.numel()))
    if bool(torch.isnan(flat[candidates]).any()):
        raise ValueError("scores hold NaN: there is nothing to rank them by")
    out = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    if k:
        order = torch.sort(flat[candidates], stable=True).indices  # ascending; ties keep index order
        out[candidates[order[order.numel() - int(k) :]]] = True
    return out.view(scores.shape)


def fraction_to_keep(context: PruneContext, names: list[str], remaining: float) -> float:
    """Return the fraction of the survivors of ``names`` to prune so that ``remaining`` of all their entries is left."""
    alive = sum(int(context.masks[n].count_nonzero()) for n in names)
    total = sum(context.masks[n].numel() for n in names)
    return 0.0 if alive == 0 else max(0.0, min(1.0, 1.0 - remaining * total / alive))


def check_rate(value: Any, name: str) -> float:
    """Check a per-round pruning rate: a float in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float, got {describe(value)}")
    return check_number(value, name, low=0.0, high=1.0, high_open=True)


def check_multipliers(value: Any, rate: float) -> dict[str, float]:
    """Check ``{qualified name: multiplier}``; multiplier * rate must stay in [0, 1]."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"rate_multipliers must be a dict of name to float, got {describe(value)}")
    out = {}
    for key, m in value.items():
        if not isinstance(key, str):
            raise TypeError(f"rate_multipliers keys must be qualified names (str), got {describe(key)}")
        if isinstance(m, bool) or not isinstance(m, numbers.Real) or not 0 <= float(m) < float("inf"):
            raise ValueError(f"rate_multipliers[{key!r}]={describe(m)} must be a finite number >= 0")
        if rate * float(m) > 1:
            raise ValueError(f"rate_multipliers[{key!r}]={m} times the rate {rate} exceeds 1")
        out[key] = float(m)
    return out


def check_known_names(multipliers: Mapping[str, float], names: tuple[str, ...]) -> None:
    """Check that every multiplier names a tensor being pruned."""
    unknown = sorted(set(multipliers) - set(names))
    if unknown:
        raise ValueError(f"rate_multipliers names {unknown}, which are not among the pruned tensors {list(names)}")


class PoolStrategy(Strategy):
    """Shared machinery: score every tensor, then prune locally or in one global pool.

    The same planner as :func:`torch_lottery.global_magnitude` and the pruning
    methods: tensors with a rate multiplier ``m != 1`` are always pruned on their
    own at ``rate * m`` (``m = 0`` leaves them alone); the others are pruned per
    tensor (``scope="local"``) or in one pool with one threshold
    (``scope="global"``). Every tensor keeps at least ``min_remaining`` surviving
    entries; when a round's rate would break that floor, ``on_floor="clamp"``
    (default) prunes what the floors allow (a round may then prune nothing, which
    ends the run) and ``"raise"`` stops the run with a ``ValueError``. A weight
    tied between several names is ranked once and every name gets its mask.
    """

    def __init__(
        self,
        scope: str = "local",
        rate_multipliers: Mapping[str, float] | None = None,
        min_remaining: int = 1,
        rewind_iteration: int = 0,
        rate: float = 0.2,
        on_floor: str = "clamp",
    ) -> None:
        super().__init__(rewind_iteration=rewind_iteration)
        check_choice(scope, SCOPES, "scope")
        check_nonneg_int(min_remaining, "min_remaining")
        self.scope = scope
        self.min_remaining = int(min_remaining)
        self.on_floor = check_on_floor(on_floor)
        self.rate_multipliers = check_multipliers(rate_multipliers, rate)

    def validate(self, names: tuple[str, ...], model: nn.Module | None = None, data: Any = None) -> None:
        """Check that every rate multiplier names a tensor being pruned."""
        check_known_names(self.rate_multipliers, names)

    def scores(self, context: PruneContext, name: str) -> torch.Tensor:
        """Return the keep-scores of tensor ``name`` (higher is kept); or override :meth:`all_scores`."""
        if type(self).all_scores is PoolStrategy.all_scores:
            raise NotImplementedError(f"{type(self).__name__} defines neither scores(context, name) nor all_scores()")
        return self.all_scores(context)[name]

    def all_scores(self, context: PruneContext) -> dict[str, torch.Tensor]:
        """Return the keep-scores of every tensor of ``context.names`` (override to score all in one pass)."""
        return {n: self.scores(context, n) for n in _distinct(context)}

    def fraction(self, context: PruneContext, names: list[str]) -> float:
        """Return the fraction of the surviving entries of ``names`` to prune this round."""
        raise NotImplementedError

    def prune(self, context: PruneContext) -> dict[str, torch.Tensor]:
        """Return the next masks: ``fraction`` of the survivors pruned by :meth:`all_scores`, locally or globally."""
        check_known_names(self.rate_multipliers, context.names)
        return self.select(context, self.all_scores(context))

    def select(
        self,
        context: PruneContext,
        scores: Mapping[str, torch.Tensor],
        fraction: Callable[[list[str]], float] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Keep the highest ``scores`` of each group as the options say: the one planner of torch-lottery.

        ``fraction(names)`` replaces :meth:`fraction` (e.g. an iterative strategy's
        own schedule). The ``"invert"`` control prunes the highest scores instead.
        """
        first = _distinct(context)  # tied names share one weights object: one tensor, ranked once
        unique = list(first)
        invert = context.control == "invert"  # the score-inversion control: prune the best-scored first
        pool = _Pool([_Source(-scores[n] if invert else scores[n], eligible=context.masks[n].bool()) for n in unique])
        share = fraction if fraction is not None else (lambda names: self.fraction(context, names))
        plans = plan(
            pool,
            None,
            labels=[f"weights[{n!r}]" for n in unique],
            multipliers=[self.rate_multipliers.get(n, 1.0) for n in unique],
            scope=self.scope,
            min_remaining=self.min_remaining,
            on_floor=self.on_floor,
            fraction=lambda ids: share([unique[i] for i in ids]),
        )
        keep = {
            n: pool.write(
                j, plans[j], torch.empty(context.masks[n].shape, dtype=torch.bool, device=context.masks[n].device)
            )
            for j, n in enumerate(unique)
        }
        pool.release()
        return {n: keep[first_of].clone() for n, first_of in _first_names(context, first).items()}

    def options(self) -> dict[str, Any]:
        return {
            **super().options(),
            "scope": self.scope,
            "rate_multipliers": dict(self.rate_multipliers),
            "min_remaining": self.min_remaining,
            "on_floor": self.on_floor,
        }


class MagnitudeScores:
    """Mixin: scores by a criterion of Zhou et al. (default ``large_final``)."""

    criterion: str

    def _init_criterion(self, criterion: str) -> None:
        check_choice(criterion, CRITERIA, "criterion")
        self.criterion = criterion

    def scores(self, context: PruneContext, name: str) -> torch.Tensor:
        initial = None
        if self.criterion in NEEDS_INITIAL:
            if context.rewind is None or name not in context.rewind:
                raise ValueError(f"criterion={self.criterion!r} needs the rewind point of {name!r}")
            initial = context.rewind[name]
        return criterion_scores(self.criterion, context.weights[name], initial)
