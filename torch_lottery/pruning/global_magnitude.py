"""Global magnitude pruning: one threshold over many tensors, with per-tensor rates and floors."""

from __future__ import annotations

import numbers
from typing import Any, Iterable

import torch
from torch import nn

from .._validation import check_finite, check_module_name, check_nonneg_int, count_to_prune, describe
from ._core import LotteryMethod, attach, check_scores, current_mask
from ._rewind import parameter_tensor, rewind_tensor, write_rewind
from ._select import NEEDS_INITIAL, _Pool, _Source, criterion_scores, pool_of
from .magnitude import _check_rankable, check_magnitude_options


def plan_pool(pool: _Pool, amount, min_remaining: int, name: str = "amount", clamp: bool = False) -> list:
    """Plan one global threshold over ``pool``, keeping ``min_remaining`` surviving entries per tensor.

    Returns one plan per tensor of the pool (see :meth:`_Pool.bottom`); nothing is written.

    Raises:
        ValueError: if ``amount`` cannot be pruned without breaking a floor (unless ``clamp``).
    """
    surviving = pool.surviving
    total = sum(surviving)
    k_total = count_to_prune(amount, total, name)
    floors = [min(min_remaining, s) for s in surviving]
    prunable = total - sum(floors)
    if k_total > prunable and clamp:
        k_total = prunable
    if k_total > prunable:
        raise ValueError(
            f"{name}={amount} would prune {k_total} of {total} surviving entries, but "
            f"min_remaining={min_remaining} per tensor leaves only {prunable} prunable"
        )
    # One threshold over the pool; tensors pushed below their floor are held at it
    # and the others absorb the rest.
    plans: list = [None] * len(surviving)
    fixed: set[int] = set()
    k_left = k_total
    while True:
        free = [i for i in range(len(surviving)) if i not in fixed]
        if not free:
            break
        planned = pool.bottom(free, k_left)
        violators = [i for i in free if planned[i][1] < floors[i]]
        if not violators:
            for i in free:
                plans[i] = planned[i][0]
            break
        for i in violators:
            plans[i] = pool.bottom([i], surviving[i] - floors[i])[i][0]
            k_left -= surviving[i] - floors[i]
            fixed.add(i)
    return plans


def pool_keep(scores: list[torch.Tensor], eligible: list[torch.Tensor], amount, min_remaining: int,
              name: str = "amount", clamp: bool = False) -> list[torch.Tensor]:
    """Select one global threshold over several tensors, keeping ``min_remaining`` entries in each.

    Args:
        scores: per-tensor keep-scores (higher is kept first).
        eligible: per-tensor bool tensors, True where the entry still survives
            (``None``: every entry survives).
        amount: int count or float fraction of all surviving entries to prune.
        min_remaining: floor of surviving entries per tensor (capped at what survives).
        clamp: prune only what the floors allow instead of raising (strategies use it).

    Returns:
        Per-tensor bool keep-masks (False where pruned now or before).

    Raises:
        ValueError: if ``amount`` cannot be pruned without breaking a floor.
    """
    pool = pool_of(list(scores), list(eligible))
    plans = plan_pool(pool, amount, min_remaining, name, clamp)
    out = []
    for i, (s, e) in enumerate(zip(scores, eligible)):
        shape = s.shape if e is None else e.shape
        out.append(pool.write(i, plans[i], torch.empty(shape, dtype=torch.bool, device=s.device)))
    pool.release()
    return out


class GlobalMagnitude(LotteryMethod):
    """Prune by magnitude with one threshold over a pool of tensors.

    What stock ``prune.global_unstructured`` cannot express: per-tensor rate
    multipliers (the LTH paper prunes the output layer at half rate), a floor of
    ``min_remaining`` surviving entries per tensor so that no layer is pruned
    away (layer collapse), excluded tensors, the rewind-point criteria of
    :class:`LotteryMagnitude`, and rewinding in the same step. Use the functional
    :func:`global_magnitude` for a pool; ``GlobalMagnitude.apply(module, name, ...)``
    pools a single tensor. Each pruned tensor records a ``GlobalMagnitude`` hook
    (not an anonymous ``CustomFromMask``).

    ``amount`` counts the surviving entries of the pool, so rounds compound as
    with :class:`LotteryMagnitude`.

    Args:
        amount (int or float): entries of the pool to prune (count or fraction
            of the surviving ones).
        criterion (str): mask criterion, as for :class:`LotteryMagnitude`.
        rewind_point (RewindPoint or Tensor, optional): weights to rewind to.
        rewind (bool): write the rewind point into the tensors (default True).
        min_remaining (int): surviving entries kept per tensor at least (default 1).

    Raises:
        TypeError, ValueError: on bad arguments, naming the argument and value.

    Examples:
        >>> from torch import nn
        >>> from torch_lottery import GlobalMagnitude
        >>> layer = nn.Linear(4, 4)
        >>> _ = GlobalMagnitude.apply(layer, "weight", amount=15, min_remaining=2)
        Traceback (most recent call last):
        ...
        ValueError: amount=15 would prune 15 of 16 surviving entries, but min_remaining=2 per tensor leaves only 14 prunable
        >>> _ = GlobalMagnitude.apply(layer, "weight", amount=14, min_remaining=2)
        >>> int(layer.weight_mask.sum())
        2
    """

    PRUNING_TYPE = "global"

    def __init__(self, amount, criterion="large_final", rewind_point=None, rewind=True,
                 min_remaining=1, _mask=None) -> None:
        check_magnitude_options(amount, criterion, rewind_point, rewind)
        check_nonneg_int(min_remaining, "min_remaining")
        self.amount = amount
        self.criterion = criterion
        self.rewind_point = rewind_point
        self.rewind = rewind
        self.min_remaining = min_remaining
        self._mask = _mask
        self._initial: torch.Tensor | None = None

    def _prepare(self, module, name, orig):
        if self._mask is not None:
            if self._mask.shape != orig.shape:
                raise ValueError(f"mask has shape {tuple(self._mask.shape)}, {name} has {tuple(orig.shape)}")
            return None
        if self.rewind_point is None:
            return None
        self._initial = rewind_tensor(self.rewind_point, module, name, orig)
        return self._initial if self.rewind else None

    def _release(self) -> None:
        super()._release()
        self.rewind_point = None
        self._initial = None
        self._mask = None

    def compute_mask(self, t, default_mask):
        """Return the new mask of one tensor: the precomputed pool mask, or a pool of one."""
        if self._mask is not None:
            return default_mask * self._mask.to(device=default_mask.device, dtype=default_mask.dtype)
        if self.criterion in NEEDS_INITIAL and self._initial is None:
            raise ValueError(
                "GlobalMagnitude with a rewind-point criterion works through apply() or global_magnitude()"
            )
        _check_rankable(self, t, self._initial, default_mask)
        scores = criterion_scores(self.criterion, t, self._initial)
        (keep,) = pool_keep([scores], [default_mask != 0], self.amount, self.min_remaining)
        return keep.to(default_mask.dtype)

    @classmethod
    def apply(cls, module, name, amount, criterion="large_final", rewind_point=None, rewind=True,
              min_remaining=1, importance_scores=None):  # type: ignore[override]
        """Prune ``module.<name>`` as a pool of one tensor; return the method."""
        return super().apply(module, name, amount=amount, criterion=criterion, rewind_point=rewind_point,
                             rewind=rewind, min_remaining=min_remaining, importance_scores=importance_scores)


def _pairs(parameters: Any) -> list[tuple[nn.Module, str]]:
    if isinstance(parameters, (str, bytes)) or not isinstance(parameters, Iterable):
        raise TypeError(f"parameters must be an iterable of (module, name) pairs, got {describe(parameters)}")
    pairs = []
    for item in parameters:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise TypeError(f"parameters must hold (module, name) pairs, got {describe(item)}")
        check_module_name(*item)
        pairs.append(item)
    if not pairs:
        raise ValueError("parameters is empty: nothing to prune")
    seen = set()
    for module, name in pairs:
        if (id(module), name) in seen:
            raise ValueError(f"parameters lists {type(module).__name__}.{name} twice")
        seen.add((id(module), name))
    return pairs


def _lookup(table: dict, module: nn.Module, name: str, default):
    for key in ((module, name), module):
        try:
            if key in table:
                return table[key]
        except TypeError:
            continue
    return default


def _check_keys(keys: Iterable, pairs, argument: str) -> None:
    ids = {(id(m), n) for m, n in pairs}
    modules = {id(m) for m, _ in pairs}
    for key in keys:
        if isinstance(key, tuple) and len(key) == 2 and (id(key[0]), key[1]) in ids:
            continue
        if isinstance(key, nn.Module) and id(key) in modules:
            continue
        raise ValueError(f"{argument} names {describe(key)}, which is not in parameters")


def global_magnitude(parameters, amount, *, importance_scores=None, criterion="large_final",
                     rewind_point=None, rewind=True, rate_multipliers=None, min_remaining=1,
                     exclude=()) -> None:
    """Prune a pool of tensors by magnitude with one threshold, in place.

    Takes ``parameters`` the way stock ``prune.global_unstructured`` does. Tensors
    with a rate multiplier ``m != 1`` leave the pool and are pruned on their own
    at ``amount * m`` (``m = 0`` leaves them untouched); excluded tensors are not
    pruned. Every tensor keeps at least ``min_remaining`` surviving entries. With a
    ``rewind_point``, every tensor of ``parameters`` it covers is reset to it
    (excluded ones too: they are part of the ticket). All checks run first, so on
    an error no tensor is changed.

    Args:
        parameters (iterable of (nn.Module, str)): the tensors to prune.
        amount (int or float): entries of the pool to prune: a count, or a
            fraction of the pool's surviving entries.
        importance_scores (dict, optional): ``{(module, name): tensor}`` used in
            place of the trained weights.
        criterion (str): mask criterion (see :class:`LotteryMagnitude`).
        rewind_point (RewindPoint, optional): weights to rewind to.
        rewind (bool): write the rewind point into the tensors (default True).
        rate_multipliers (dict, optional): ``{(module, name) or module: float}``,
            e.g. ``{(net.fc3, "weight"): 0.5}``; needs a float ``amount``.
        min_remaining (int): surviving entries kept per tensor at least.
        exclude (iterable): ``(module, name)`` pairs or modules not to prune.

    Raises:
        TypeError, ValueError: on bad arguments (naming the argument and value),
            or if ``amount`` cannot be pruned without breaking ``min_remaining``.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from torch_lottery import global_magnitude
        >>> net = nn.Sequential(nn.Linear(100, 10), nn.ReLU(), nn.Linear(10, 2))
        >>> params = [(net[0], "weight"), (net[2], "weight")]
        >>> global_magnitude(params, amount=0.2, rate_multipliers={(net[2], "weight"): 0.5})
        >>> int(net[0].weight_mask.sum()), int(net[2].weight_mask.sum())
        (800, 18)
    """
    pairs = _pairs(parameters)
    if isinstance(rewind_point, torch.Tensor):
        raise TypeError("rewind_point must be a torch_lottery.RewindPoint for a pool of tensors, got a Tensor")
    check_magnitude_options(amount, criterion, rewind_point, rewind)
    check_nonneg_int(min_remaining, "min_remaining")
    importance_scores = {} if importance_scores is None else importance_scores
    if not isinstance(importance_scores, dict):
        raise TypeError(f"importance_scores must be a dict, got {describe(importance_scores)}")
    _check_keys(importance_scores, pairs, "importance_scores")
    rate_multipliers = {} if rate_multipliers is None else rate_multipliers
    if not isinstance(rate_multipliers, dict):
        raise TypeError(f"rate_multipliers must be a dict, got {describe(rate_multipliers)}")
    _check_keys(rate_multipliers, pairs, "rate_multipliers")
    if isinstance(exclude, (str, bytes, nn.Module)) or not isinstance(exclude, Iterable):
        raise TypeError(f"exclude must be an iterable of (module, name) pairs or modules, got {describe(exclude)}")
    exclude = list(exclude)
    _check_keys(exclude, pairs, "exclude")

    devices = {parameter_tensor(m, n).device for m, n in pairs}
    if len(devices) > 1:
        raise ValueError(f"parameters are on several devices ({sorted(map(str, devices))}); one pool needs one device")

    pool, alone = [], []
    for module, name in pairs:
        if any(k is module or k == (module, name) for k in exclude):
            continue
        m = _lookup(rate_multipliers, module, name, 1.0)
        if isinstance(m, bool) or not isinstance(m, numbers.Real) or not m >= 0:
            raise ValueError(f"rate_multipliers[{type(module).__name__}.{name}]={describe(m)} must be a number >= 0")
        if m == 1:
            pool.append((module, name))
        elif m != 0:
            if isinstance(amount, numbers.Integral):
                raise ValueError(f"rate_multipliers need a float amount (a fraction), got amount={amount}")
            if float(amount) * m > 1:
                raise ValueError(f"amount={amount} * rate_multipliers[{type(module).__name__}.{name}]={m} exceeds 1")
            alone.append((module, name, float(amount) * m))

    def source(module, name):
        orig = parameter_tensor(module, name)
        scores = check_scores(_lookup(importance_scores, module, name, None), orig, name)
        final = scores if scores is not None else orig.detach()
        initial = rewind_tensor(rewind_point, module, name, orig) if criterion in NEEDS_INITIAL else None
        mask = current_mask(module, name)
        check_finite(final, f"{type(module).__name__}.{name}", mask)  # NaN/inf: no ranking
        if initial is not None:
            check_finite(initial, f"rewind_point (for {type(module).__name__}.{name})", mask)
        # Scores are computed chunk by chunk while ranking: no copy of the pool is made.
        return _Source(final, criterion, initial, eligible=mask)

    if rewind_point is not None and rewind:  # validate every rewind tensor before changing anything
        for module, name in pairs:
            rewind_tensor(rewind_point, module, name, parameter_tensor(module, name))

    # Plan every mask (one threshold per pool) before changing anything.
    jobs: list[tuple[_Pool, int, Any, nn.Module, str, float, bool]] = []
    with torch.no_grad():
        if pool:
            shared = _Pool([source(m, n) for m, n in pool])
            plans = plan_pool(shared, amount, min_remaining)
            shared.release()
            jobs += [(shared, i, plan, m, n, amount, True) for i, (plan, (m, n)) in enumerate(zip(plans, pool))]
        for module, name, rate in alone:
            single = _Pool([source(module, name)])
            (plan,) = plan_pool(single, rate, min_remaining,
                                name=f"amount * rate_multipliers[{type(module).__name__}.{name}]")
            single.release()
            jobs.append((single, 0, plan, module, name, rate, False))

        # Write each mask straight into its new buffer and install it, one tensor at a time, so that
        # the only memory added is what the pruned layout holds (the mask and the masked weight).
        for selection, i, plan, module, name, rate, pooled in jobs:
            orig = parameter_tensor(module, name)
            old = current_mask(module, name)
            mask = torch.empty(orig.shape, dtype=orig.dtype if old is None else old.dtype, device=orig.device)
            selection.write_mask(i, plan, mask, old)  # keep * old, as GlobalMagnitude.compute_mask does
            method = GlobalMagnitude(rate, criterion=criterion, rewind_point=rewind_point, rewind=False,
                                     min_remaining=min_remaining, _mask=mask)
            method.pooled = pooled
            attach(module, name, method, mask=mask)
            del mask, method
        for selection, *_ in jobs:
            selection.release()
    del jobs
    if rewind_point is not None and rewind:
        write_rewind(pairs, rewind_point)
