"""Global magnitude pruning: one threshold over many tensors, with per-tensor rates and floors."""

from __future__ import annotations

import torch

from .. import _layout
from .._validation import check_multiplier, check_nonneg_int, check_on_floor
from ._core import attach, check_scores
from ._rewind import rewind_tensor
from ._select import NEEDS_INITIAL, _Pool, _Source, plan
from .magnitude import LotteryMagnitude, check_magnitude_options
from .utils import Targets


class GlobalMagnitude(LotteryMagnitude):
    """Prune by magnitude with one threshold over a pool, keeping a floor of survivors per tensor.

    :class:`LotteryMagnitude` with a floor: every tensor keeps at least
    ``min_remaining`` surviving entries, so that no layer is pruned away (layer
    collapse). It works wherever ``LotteryMagnitude`` does: in stock
    ``prune.global_unstructured`` (one threshold over the pool, with stock's
    options), in ``apply`` (a pool of one tensor), and behind
    :func:`global_magnitude`, which adds per-tensor rate multipliers and
    exclusions.

    ``amount`` counts the surviving entries of the pool, so rounds compound as
    with :class:`LotteryMagnitude`.

    Args:
        amount (int or float): entries of the pool to prune (count or fraction
            of the surviving ones).
        criterion (str): mask criterion, as for :class:`LotteryMagnitude`.
        rewind_point (RewindPoint or Tensor, optional): weights to rewind to.
        rewind (bool): write the rewind point into the tensors (default True).
        min_remaining (int): surviving entries kept per tensor at least (default 1).
        on_floor (str): when ``amount`` would break a floor: ``"clamp"`` (default)
            prunes what the floors allow, ``"raise"`` refuses with a ``ValueError``.

    Raises:
        TypeError, ValueError: on bad arguments, naming the argument and value.

    Examples:
        >>> from torch import nn
        >>> from torch.nn.utils import prune
        >>> from torch_lottery import GlobalMagnitude
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
        >>> params = [(net[0], "weight"), (net[1], "weight")]
        >>> prune.global_unstructured(params, pruning_method=GlobalMagnitude, amount=22, min_remaining=1)
        >>> int(net[0].weight_mask.sum()), int(net[1].weight_mask.sum())
        (1, 1)
        >>> _ = GlobalMagnitude.apply(net[0], "weight", amount=1, min_remaining=1, on_floor="raise")
        Traceback (most recent call last):
        ...
        ValueError: amount=1 would prune 1 of 1 surviving entries, but min_remaining=1 per tensor leaves only 0 ...
    """

    def __init__(
        self, amount, criterion="large_final", rewind_point=None, rewind=True, min_remaining=1, on_floor="clamp"
    ) -> None:
        super().__init__(amount, criterion=criterion, rewind_point=rewind_point, rewind=rewind)
        self.min_remaining = check_nonneg_int(min_remaining, "min_remaining")
        self.on_floor = check_on_floor(on_floor)

    @classmethod
    def apply(  # type: ignore[override]
        cls,
        module,
        name,
        amount,
        criterion="large_final",
        rewind_point=None,
        rewind=True,
        min_remaining=1,
        on_floor="clamp",
        importance_scores=None,
    ):
        """Prune ``module.<name>`` as a pool of one tensor; return the method.

        Returns:
            GlobalMagnitude: the method, recorded in the tensor's hook.
        """
        method = cls(
            amount,
            criterion=criterion,
            rewind_point=rewind_point,
            rewind=rewind,
            min_remaining=min_remaining,
            on_floor=on_floor,
        )
        return attach(module, name, method, importance_scores=importance_scores)


def _writable(module: torch.nn.Module, name: str) -> bool:
    """True if the next mask of ``module.<name>`` can be written into its current one, unseen.

    It must be a bool mask of the tensor's shape and device that nothing but the module
    refers to (:func:`~torch_lottery._layout.sole_owner`): a mask a caller kept (say
    ``before = module.weight_mask``) is left as it is and a new one installed, as stock does.
    """
    mask = _layout.mask_of(module, name)
    orig = _layout.original(module, name)
    if mask is None or mask.dtype != torch.bool or mask.shape != orig.shape or mask.device != orig.device:
        return False
    del mask
    return _layout.sole_owner(module._buffers, _layout.mask_name(name))


def global_magnitude(
    parameters,
    amount,
    *,
    importance_scores=None,
    criterion="large_final",
    rewind_point=None,
    rewind=True,
    rate_multipliers=None,
    min_remaining=1,
    exclude=(),
    on_floor="clamp",
) -> None:
    """Prune a pool of tensors by magnitude with one threshold, in place.

    Takes ``parameters`` the way stock ``prune.global_unstructured`` does, or a
    model (every prunable tensor of it). Tensors with a rate multiplier
    ``m != 1`` leave the pool and are pruned on their own at ``amount * m``
    (``m = 0`` leaves them untouched); excluded tensors are not pruned. Every
    tensor keeps at least ``min_remaining`` surviving entries (``on_floor`` says
    what happens when ``amount`` would break that). A weight tied between
    several modules is ranked once and gets one mask. With a ``rewind_point``,
    every tensor of ``parameters`` is reset to it (excluded ones too: they are
    part of the ticket). All checks run first, so on an error no tensor is
    changed.

    The options that name tensors (``importance_scores``, ``rate_multipliers``,
    ``exclude``) take qualified names (``"fc3.weight"``, the keys
    :func:`~torch_lottery.find_ticket` uses), ``(module, name)`` pairs or modules.
    Qualified names need the model: pass it as ``parameters``, or a
    ``rewind_point`` bound to it.

    Args:
        parameters (nn.Module or iterable of (nn.Module, str)): the tensors to prune.
        amount (int or float): entries of the pool to prune: a count, or a
            fraction of the pool's surviving entries.
        importance_scores (dict, optional): ``{key: tensor}`` used in place of
            the trained weights.
        criterion (str): mask criterion (see :class:`LotteryMagnitude`).
        rewind_point (RewindPoint, optional): weights to rewind to.
        rewind (bool): write the rewind point into the tensors (default True).
        rate_multipliers (dict, optional): ``{key: float}``, e.g. ``{"4.weight": 0.5}``;
            needs a float ``amount``.
        min_remaining (int): surviving entries kept per tensor at least.
        exclude (iterable): keys of tensors not to prune.
        on_floor (str): ``"clamp"`` (default: prune what the floors allow) or
            ``"raise"`` (refuse an ``amount`` the floors do not allow).

    Raises:
        TypeError, ValueError: on bad arguments (naming the argument and value),
            or (``on_floor="raise"``) if ``amount`` cannot be pruned without
            breaking ``min_remaining``.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from torch_lottery import global_magnitude
        >>> net = nn.Sequential(nn.Linear(100, 10), nn.ReLU(), nn.Linear(10, 2))
        >>> global_magnitude(net, amount=0.2, rate_multipliers={"2.weight": 0.5})
        >>> int(net[0].weight_mask.sum()), int(net[2].weight_mask.sum())
        (800, 18)
    """
    if isinstance(rewind_point, torch.Tensor):
        raise TypeError("rewind_point must be a torch_lottery.RewindPoint for a pool of tensors, got a Tensor")
    check_magnitude_options(amount, criterion, rewind_point, rewind)
    check_nonneg_int(min_remaining, "min_remaining")
    check_on_floor(on_floor)
    targets = Targets.of(parameters, getattr(rewind_point, "model", None))
    pairs = targets.pairs
    scores = targets.table(importance_scores, "importance_scores")
    multipliers = {
        i: check_multiplier(m, targets.label(i), amount)
        for i, m in targets.table(rate_multipliers, "rate_multipliers").items()
    }
    excluded = targets.members(exclude, "exclude") | {i for i, m in multipliers.items() if m == 0.0}

    first = _layout.aliases(pairs)  # tied weights: one tensor, ranked once, one mask for every name
    unique = [i for i, f in enumerate(first) if f == i and not any(first[j] == i for j in excluded)]
    # which masks are written in place, decided before anything of ours refers to them
    in_place = {k for k, f in enumerate(first) if f in unique and _writable(*pairs[k])}
    sources = []
    for i in unique:
        module, name = pairs[i]
        orig = _layout.original(module, name)
        given = check_scores(scores.get(i), orig, targets.label(i))
        initial = rewind_tensor(rewind_point, module, name, orig) if criterion in NEEDS_INITIAL else None
        # Scores are computed chunk by chunk while ranking: no copy of the pool is made.
        sources.append(
            _Source(orig if given is None else given, criterion, initial, eligible=_layout.mask_of(module, name))
        )
    rewinds = []
    if rewind_point is not None and rewind:  # every rewind tensor checked before anything changes
        rewinds = [rewind_tensor(rewind_point, m, n, _layout.original(m, n)) for m, n in pairs]

    with torch.no_grad():
        pool = _Pool(sources)
        plans = plan(
            pool,
            amount,
            labels=[targets.label(i) for i in unique],
            multipliers=[multipliers.get(i, 1.0) for i in unique],
            min_remaining=min_remaining,
            on_floor=on_floor,
        )
        # Write each mask and install it, one tensor at a time, so that the only memory added is what
        # the pruned layout holds (a bool mask and the masked weight). A bool mask already there is
        # written in place (a round only turns survivors off): no mask is allocated after the first
        # round, and the chunk buffers of the selection are reused from tensor to tensor.
        for j, i in enumerate(unique):
            rate = amount if multipliers.get(i, 1.0) == 1.0 else float(amount) * multipliers[i]
            module, name = pairs[i]
            orig = _layout.original(module, name)
            old = _layout.mask_of(module, name)
            mask = (
                old
                if old is not None and i in in_place
                else torch.empty(orig.shape, dtype=torch.bool, device=orig.device)
            )
            pool.write_mask(j, plans[j], mask, old)  # keep * old
            for k in (k for k, f in enumerate(first) if f == i):  # the tensor and its tied names
                method = GlobalMagnitude(
                    rate,
                    criterion=criterion,
                    rewind_point=rewind_point,
                    rewind=False,
                    min_remaining=min_remaining,
                    on_floor=on_floor,
                )
                if k == i:
                    attach(*pairs[k], method, mask=mask)
                    continue
                tied = _layout.mask_of(*pairs[k])
                if k in in_place and tied is not None and tied is not mask:
                    attach(*pairs[k], method, mask=tied.copy_(mask))
                else:
                    attach(*pairs[k], method, mask=mask.clone())
                del tied
            del mask, old
        pool.release()
    if rewinds:
        _layout.write_values(pairs, rewinds)
