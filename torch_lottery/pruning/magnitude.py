"""Rewind-aware magnitude pruning and the sign-preserving supermask."""

from __future__ import annotations

from typing import Any, cast

import torch

from .. import _layout
from .._validation import check_amount, check_bool, check_choice, check_pairs, count_to_prune
from ._core import LotteryMethod, attach, check_scores
from ._rewind import check_rewind_point, rewind_tensor, signed_constant_values
from ._select import CRITERIA, NEEDS_INITIAL, _Pool, _Source, plan, same_sign
from ._stock import StockPool, stock_pool
from .container import adopt

SUPERMASK_VALUES = ("rewind", "signed_constant")


def check_magnitude_options(amount: Any, criterion: Any, rewind_point: Any, rewind: Any) -> None:
    """Validate the options shared by the magnitude methods (raising TypeError/ValueError)."""
    check_amount(amount)
    check_choice(criterion, CRITERIA, "criterion")
    check_rewind_point(rewind_point)
    check_bool(rewind, "rewind")
    if criterion in NEEDS_INITIAL and rewind_point is None:
        raise ValueError(f"criterion={criterion!r} compares trained and rewind-point weights; pass rewind_point")


class LotteryMagnitude(LotteryMethod):
    r"""Prune the lowest-scoring ``amount`` of the *surviving* entries, rewinding the rest.

    With no option besides ``amount`` it computes exactly the masks of stock
    :class:`~torch.nn.utils.prune.L1Unstructured` (ties at the threshold go to the
    lower index), and like it works in ``apply``, in iterative rounds on top of
    any stock mask, and inside stock ``prune.global_unstructured``. Wherever it
    is used it ranks the *current* weights (``<name>_orig`` on the surviving
    entries), also right after an optimizer step with no forward since; inside
    ``prune.global_unstructured`` it also gives every tensor of the pool a
    deep-copyable hook (see :mod:`torch_lottery.pruning`).

    Given a ``rewind_point`` it also resets the tensor (``<name>_orig``; the mask
    is never written) to the rewind point's values in the same step, which is
    one round of iterative magnitude pruning with rewinding (Frankle & Carbin
    2019; Frankle et al. 2019); inside ``prune.global_unstructured`` every tensor
    of the pool is reset. ``criterion`` picks the mask criterion of Zhou et al.
    (2019), comparing the trained weights :math:`w_f` (or ``importance_scores``)
    with the rewind-point weights :math:`w_i`:

    ========================  ===================================================
    ``large_final``           :math:`|w_f|` (default; magnitude pruning)
    ``small_final``           :math:`-|w_f|`
    ``large_init``            :math:`|w_i|`
    ``magnitude_increase``    :math:`|w_f| - |w_i|`
    ``movement``              :math:`|w_f - w_i|`
    ``large_final_same_sign`` :math:`|w_f|` where sign agrees, pruned first otherwise
    ========================  ===================================================

    Args:
        amount (int or float): entries to prune: a count, or a fraction of the
            surviving entries (two rounds of 0.2 keep 64%).
        criterion (str): one of the criteria above.
        rewind_point (RewindPoint or Tensor, optional): the weights to rewind to.
            With ``apply`` a plain tensor of the parameter's shape works too.
        rewind (bool): write the rewind point into the tensor (default True);
            False only uses it for the criterion.

    Raises:
        TypeError: ``amount`` not a number, ``rewind_point`` of the wrong type.
        ValueError: ``amount`` out of range or larger than the surviving count,
            unknown ``criterion``, a criterion that needs a missing
            ``rewind_point``, or a rewind point whose tensors do not match.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from torch.nn.utils import prune
        >>> from torch_lottery import LotteryMagnitude, RewindPoint
        >>> net = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> init = RewindPoint.capture(net)
        >>> params = [(net[0], "weight"), (net[2], "weight")]
        >>> prune.global_unstructured(params, pruning_method=LotteryMagnitude, amount=0.5, rewind_point=init)
        >>> int(net[0].weight_mask.sum() + net[2].weight_mask.sum())
        20
        >>> torch.equal(net[0].weight_orig, init["0.weight"])
        True
    """

    PRUNING_TYPE = "unstructured"
    #: Surviving entries kept per tensor at least, and what to do when ``amount`` would break that.
    min_remaining = 0
    on_floor = "clamp"

    def __init__(self, amount, criterion="large_final", rewind_point=None, rewind=True) -> None:
        check_magnitude_options(amount, criterion, rewind_point, rewind)
        self.amount = amount
        self.criterion = criterion
        self.rewind_point = rewind_point
        self.rewind = rewind

    # -- rewinding ---------------------------------------------------------------
    def _prepare(self, module, name, orig):
        if self.rewind_point is None:
            return None, None
        initial = rewind_tensor(self.rewind_point, module, name, orig)
        return initial, (self._written(initial) if self.rewind else None)

    def _written(self, rewind: torch.Tensor) -> torch.Tensor:
        """Return the values written into the tensor for rewind-point values ``rewind``."""
        return rewind

    def _release(self) -> None:
        super()._release()
        self.rewind_point = None

    # -- mask --------------------------------------------------------------------
    def _amount(self, pool: _Pool) -> Any:
        """Return what to prune of ``pool`` (the supermask also prunes every sign flip)."""
        return self.amount

    def _plan(self, sources: list[_Source], labels: list[str]) -> tuple[_Pool, list]:
        pool = _Pool(sources)
        return pool, plan(
            pool, self._amount(pool), labels=labels, min_remaining=self.min_remaining, on_floor=self.on_floor
        )

    def compute_mask(self, t, default_mask):
        """Return ``default_mask`` with the lowest-scoring surviving entries of ``t`` set to 0."""
        if self._round is None:
            stock = stock_pool()
            if stock is not None:
                return self._stock_pool_mask(stock, t, default_mask)
        initial = self._initial_like(t)
        everything = default_mask.numel() and bool(default_mask.amin() > 0)
        # Inside a PruningContainer every entry survives (it passes the survivors only): no copy.
        source = _Source(t, self.criterion, initial, eligible=None if everything else default_mask)
        label = self._round.label if self._round is not None else "the weights (or importance_scores)"
        pool, (p,) = self._plan([source], [label])
        mask = pool.write_mask(
            0, p, torch.empty(t.shape, dtype=default_mask.dtype, device=t.device), None if everything else default_mask
        )
        pool.release()
        return mask

    def _initial_like(self, t: torch.Tensor) -> torch.Tensor | None:
        """Return the rewind values aligned with ``t`` (the tensor, or its survivors inside a container)."""
        if self.rewind_point is None or self.criterion not in NEEDS_INITIAL:
            return None
        if self._round is None or self._round.initial is None:
            raise ValueError(
                f"{type(self).__name__} with criterion={self.criterion!r} needs the tensor's rewind "
                "values: use apply(), torch_lottery.global_magnitude() or prune.global_unstructured()"
            )
        full = self._round.initial
        if t.shape == full.shape:
            return full
        return full[self._round.default_mask == 1].view_as(t)

    def _stock_pool_mask(self, stock: StockPool, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
        """The mask of the surviving entries of a stock ``global_unstructured`` pool (see :mod:`._stock`)."""
        if isinstance(self.rewind_point, torch.Tensor):
            raise TypeError(
                "a Tensor rewind_point only works with apply() on one tensor; for a pool of tensors "
                "pass a torch_lottery.RewindPoint (e.g. RewindPoint.capture(model))"
            )
        pairs = check_pairs(stock.pairs)
        first = _layout.aliases(pairs)  # tied weights: one tensor, ranked once, one mask
        unique = [i for i, f in enumerate(first) if f == i]
        sources, labels = [], []
        for i in unique:
            module, name = pairs[i]
            orig = _layout.original(module, name)
            label = f"{type(module).__name__}.{name}"
            scores = check_scores(stock.importance_scores.get((module, name)), orig, label)
            initial = None
            if self.rewind_point is not None and self.criterion in NEEDS_INITIAL:
                initial = rewind_tensor(self.rewind_point, module, name, orig)
            sources.append(
                _Source(
                    orig if scores is None else scores, self.criterion, initial, eligible=_layout.mask_of(module, name)
                )
            )
            labels.append(label)
        rewinds = []
        if self.rewind_point is not None and self.rewind:  # every value checked before anything changes
            rewinds = [
                self._written(rewind_tensor(self.rewind_point, *pairs[i], _layout.original(*pairs[i]))) for i in unique
            ]
        pool, plans = self._plan(sources, labels)
        # The vector stock expects: each pair's surviving entries, in order (tied names repeat their tensor's).
        olds = [_layout.mask_of(m, n) for m, n in pairs]
        counts = [
            _layout.original(m, n).numel() if o is None else int(torch.count_nonzero(o))
            for (m, n), o in zip(pairs, olds, strict=True)
        ]
        if sum(counts) != t.numel():
            raise ValueError(
                f"prune.global_unstructured passed {t.numel()} surviving entries, but its parameters "
                f"hold {sum(counts)}; pass each (module, name) pair once"
            )
        survivors = torch.empty(t.numel(), dtype=default_mask.dtype, device=t.device)
        slot = {i: j for j, i in enumerate(unique)}
        offset = 0
        for i, old in enumerate(olds):  # one tensor-sized bool at a time: no pool-sized copies
            j = slot[first[i]]
            keep = pool.write(j, plans[j], torch.empty(sources[j].numel, dtype=torch.bool, device=sources[j].device))
            survivors[offset : offset + counts[i]] = keep if old is None else keep[old.reshape(-1) != 0]
            offset += counts[i]
        pool.release()
        # Commit: stock installs the masks next; before that every tensor gets our hook (and is rewound).
        for module, name in pairs:
            adopt(module, name)
        if rewinds:
            _layout.write_values([pairs[i] for i in unique], rewinds)
        return survivors

    @classmethod
    def apply(  # type: ignore[override]
        cls, module, name, amount, criterion="large_final", rewind_point=None, rewind=True, importance_scores=None
    ):
        """Prune ``module.<name>`` in place and return the new method (see the class doc).

        Args:
            module (nn.Module): module holding the tensor.
            name (str): parameter name within ``module``, e.g. ``"weight"``.
            amount (int or float): as for the class.
            criterion (str): as for the class.
            rewind_point (RewindPoint or Tensor, optional): as for the class.
            rewind (bool): as for the class.
            importance_scores (Tensor, optional): scores of the parameter's shape
                used in place of the trained weights :math:`w_f`.

        Returns:
            LotteryMagnitude: the method, recorded in the tensor's hook.
        """
        method = cls(amount, criterion=criterion, rewind_point=rewind_point, rewind=rewind)
        return attach(module, name, method, importance_scores=importance_scores)


def lottery_magnitude(
    module, name, amount, criterion="large_final", rewind_point=None, rewind=True, importance_scores=None
):
    """Prune ``amount`` of the surviving entries of ``module.<name>`` by ``criterion``; return ``module``.

    Functional twin of :class:`LotteryMagnitude` (same arguments).

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from torch_lottery import lottery_magnitude
        >>> layer = nn.Linear(10, 10)
        >>> init = layer.weight.detach().clone()
        >>> layer = lottery_magnitude(layer, "weight", amount=0.2, rewind_point=init)
        >>> layer = lottery_magnitude(layer, "weight", amount=0.2, rewind_point=init)
        >>> int(layer.weight_mask.sum())
        64
    """
    LotteryMagnitude.apply(
        module,
        name,
        amount,
        criterion=criterion,
        rewind_point=rewind_point,
        rewind=rewind,
        importance_scores=importance_scores,
    )
    return module


class SignPreservingSupermask(LotteryMagnitude):
    """Keep the largest weights among those whose trained sign equals their rewind-point sign.

    The supermask of Zhou et al. (2019) (``large_final_same_sign``): every entry
    whose sign flipped during training is pruned, whatever ``amount`` says, and of
    the rest the ``amount`` lowest magnitudes are pruned too, so at least
    ``amount`` is pruned and every survivor keeps its rewind-point sign. The
    tensor is then reset to the rewind point (``values="rewind"``) or to Zhou et
    al.'s signed constant ``sign(w_i) * std(w_i)`` (``values="signed_constant"``):
    the pruned, reset network is a supermask that can be evaluated as it is,
    without training.

    Args:
        amount (int or float): entries to prune at least, as for :class:`LotteryMagnitude`.
        rewind_point (RewindPoint or Tensor): the weights whose signs must be kept.
        values (str): ``"rewind"`` or ``"signed_constant"``: what the survivors are reset to.

    Raises:
        ValueError: missing ``rewind_point``, unknown ``values``, bad ``amount``.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from torch_lottery import RewindPoint, sign_preserving_supermask
        >>> torch.manual_seed(0)
        <torch._C.Generator object at ...>
        >>> layer = nn.Linear(20, 20)
        >>> init = RewindPoint.capture(layer)
        >>> with torch.no_grad():
        ...     _ = layer.weight.add_(torch.randn(20, 20) * 0.1)  # stand-in for training
        >>> trained = layer.weight.detach().clone()
        >>> layer = sign_preserving_supermask(layer, "weight", amount=0.5, rewind_point=init)
        >>> kept = layer.weight_mask.bool()
        >>> bool((torch.sign(trained[kept]) == torch.sign(init["weight"][kept])).all())
        True
    """

    def __init__(self, amount, rewind_point=None, values="rewind") -> None:
        if rewind_point is None:
            raise ValueError("SignPreservingSupermask needs rewind_point (the signs to preserve)")
        check_choice(values, SUPERMASK_VALUES, "values")
        super().__init__(amount, criterion="large_final_same_sign", rewind_point=rewind_point, rewind=True)
        self.values = values

    def _written(self, rewind: torch.Tensor) -> torch.Tensor:
        return signed_constant_values(rewind) if self.values == "signed_constant" else rewind

    def _amount(self, pool: _Pool) -> int:
        flipped = 0
        for s in pool.sources:
            flips = ~same_sign(s.final, cast(torch.Tensor, s.initial))  # the criterion needs initial values
            if s.eligible is not None:
                flips &= s.eligible != 0
            flipped += int(flips.sum())
        return max(count_to_prune(self.amount, sum(pool.surviving)), flipped)

    @classmethod
    def apply(cls, module, name, amount, rewind_point=None, values="rewind", importance_scores=None):  # type: ignore[override]
        """Prune ``module.<name>`` to a sign-preserving supermask and reset it; return the method.

        Returns:
            SignPreservingSupermask: the method, recorded in the tensor's hook.
        """
        method = cls(amount, rewind_point=rewind_point, values=values)
        return attach(module, name, method, importance_scores=importance_scores)


def sign_preserving_supermask(module, name, amount, rewind_point, values="rewind", importance_scores=None):
    """Prune ``module.<name>`` to a sign-preserving supermask, reset it, and return ``module``.

    Functional twin of :class:`SignPreservingSupermask` (same arguments).

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from torch_lottery import sign_preserving_supermask
        >>> layer = nn.Linear(4, 4)
        >>> init = layer.weight.detach().clone()
        >>> layer = sign_preserving_supermask(layer, "weight", amount=0.5, rewind_point=init,
        ...                                   values="signed_constant")
        >>> int(layer.weight_mask.sum()), len(layer.weight_orig.abs().unique())
        (8, 1)
    """
    SignPreservingSupermask.apply(
        module, name, amount, rewind_point=rewind_point, values=values, importance_scores=importance_scores
    )
    return module
