"""Rewind-aware magnitude pruning and the sign-preserving supermask."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .._validation import check_amount, check_bool, check_choice, check_finite, count_to_prune
from ._core import LotteryMethod
from ._rewind import check_rewind_point, pooled, rewind_tensor, signed_constant, write_rewind
from ._select import CRITERIA, NEEDS_INITIAL, _Pool, _Source, same_sign

SUPERMASK_VALUES = ("rewind", "signed_constant")


def check_magnitude_options(amount: Any, criterion: Any, rewind_point: Any, rewind: Any) -> None:
    """Validate the options shared by the magnitude methods (raising TypeError/ValueError)."""
    check_amount(amount)
    check_choice(criterion, CRITERIA, "criterion")
    check_rewind_point(rewind_point)
    check_bool(rewind, "rewind")
    if criterion in NEEDS_INITIAL and rewind_point is None:
        raise ValueError(
            f"criterion={criterion!r} compares trained and rewind-point weights; pass rewind_point"
        )


def _check_rankable(method, t, initial, default_mask) -> None:
    """Refuse NaN or infinite scores (or rewind values a criterion uses) among the surviving entries."""
    target = method._target
    name = (f"{type(target[0]).__name__}.{target[1]}" if target is not None
            else "the pooled weights (or importance_scores)")
    check_finite(t, name, default_mask)
    if initial is not None and method.criterion in NEEDS_INITIAL:
        check_finite(initial, f"rewind_point (for {name})", default_mask)


class LotteryMagnitude(LotteryMethod):
    r"""Prune the lowest-scoring ``amount`` of the *surviving* entries, rewinding the rest.

    With no option besides ``amount`` it computes exactly the masks of stock
    :class:`~torch.nn.utils.prune.L1Unstructured` (ties at the threshold go to the
    lower index), and like it works in ``apply``, in iterative rounds on top of
    any stock mask, and inside stock ``prune.global_unstructured``.

    Given a ``rewind_point`` it also resets the tensor (``<name>_orig``; the mask
    is never written) to the rewind point's values in the same step, which is
    one round of iterative magnitude pruning with rewinding (Frankle & Carbin
    2019; Frankle et al. 2019). ``criterion`` picks the mask criterion of Zhou et
    al. (2019), comparing the trained weights :math:`w_f` (or ``importance_scores``)
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
            With ``apply`` a plain tensor of the parameter's shape works too; in
            ``prune.global_unstructured`` pass
            ``RewindPoint.capture(model).select(parameters)``.
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
        >>> prune.global_unstructured(params, pruning_method=LotteryMagnitude, amount=0.5,
        ...                           rewind_point=init.select(params))
        >>> int(net[0].weight_mask.sum() + net[2].weight_mask.sum())
        20
        >>> torch.equal(net[0].weight_orig, init["0.weight"])
        True
    """

    PRUNING_TYPE = "unstructured"

    def __init__(self, amount, criterion="large_final", rewind_point=None, rewind=True) -> None:
        check_magnitude_options(amount, criterion, rewind_point, rewind)
        self.amount = amount
        self.criterion = criterion
        self.rewind_point = rewind_point
        self.rewind = rewind
        self._initial: torch.Tensor | None = None

    # -- hooks used by attach() (local use) --------------------------------------
    def _prepare(self, module: nn.Module, name: str, orig: torch.Tensor) -> torch.Tensor | None:
        if self.rewind_point is None:
            return None
        self._initial = rewind_tensor(self.rewind_point, module, name, orig)
        return self._written(self._initial) if self.rewind else None

    def _written(self, rewind: torch.Tensor) -> torch.Tensor:
        """Return the values written into the tensor for rewind-point values ``rewind``."""
        return rewind

    def _release(self) -> None:
        super()._release()
        self.rewind_point = None
        self._initial = None

    # -- mask --------------------------------------------------------------------
    def _aligned_initial(self, t: torch.Tensor):
        """Return (pairs or None, rewind values aligned with ``t``)."""
        if self._target is not None:
            full = self._initial
            if t.shape == full.shape:
                return None, full
            return None, full[self._default_mask == 1].view_as(t)
        return pooled(self.rewind_point, t)

    def _prune_count(self, surviving: int, final: torch.Tensor, initial) -> int:
        return count_to_prune(self.amount, surviving)

    def compute_mask(self, t, default_mask):
        """Return ``default_mask`` with the lowest-scoring surviving entries of ``t`` set to 0."""
        pairs, initial = None, None
        if self.rewind_point is not None:
            pairs, initial = self._aligned_initial(t)
        _check_rankable(self, t, initial, default_mask)
        if default_mask.numel() and bool(default_mask.amin() > 0):
            # Every entry survives (always so inside a PruningContainer or stock
            # global_unstructured, which pass the survivors only): no gather, no copy.
            eligible, final, init = None, t, initial
        else:
            eligible = default_mask != 0
            final = t[eligible]
            init = initial[eligible] if initial is not None else None
        k = self._prune_count(final.numel(), final, init)
        # Scores are computed chunk by chunk while ranking, and the mask written in place.
        pool = _Pool([_Source(final, self.criterion, init)])
        ((plan, _),) = pool.bottom([0], k).values()
        if eligible is None:
            mask = pool.write_mask(0, plan, torch.empty(final.shape, dtype=default_mask.dtype, device=final.device))
        else:
            mask = default_mask.clone(memory_format=torch.contiguous_format)
            mask[eligible] = pool.write(0, plan, torch.empty(final.shape, dtype=mask.dtype, device=mask.device))
        pool.release()
        if pairs is not None and self.rewind:
            # Pool use (stock global_unstructured): rewind every tensor of the pool now.
            write_rewind(pairs, self.rewind_point, self._written)
        return mask

    @classmethod
    def apply(cls, module, name, amount, criterion="large_final", rewind_point=None, rewind=True,
              importance_scores=None):  # type: ignore[override]
        """Prune ``module.<name>`` in place and return the new method (see the class doc).

        Args:
            module (nn.Module): module holding the tensor.
            name (str): parameter name within ``module``, e.g. ``"weight"``.
            amount, criterion, rewind_point, rewind: as for the class.
            importance_scores (Tensor, optional): scores of the parameter's shape
                used in place of the trained weights :math:`w_f`.
        """
        return super().apply(module, name, amount=amount, criterion=criterion,
                             rewind_point=rewind_point, rewind=rewind,
                             importance_scores=importance_scores)


def lottery_magnitude(module, name, amount, criterion="large_final", rewind_point=None, rewind=True,
                      importance_scores=None):
    """Prune ``amount`` of the surviving entries of ``module.<name>`` by ``criterion``; return ``module``.

    Functional twin of :class:`LotteryMagnitude`.

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
    LotteryMagnitude.apply(module, name, amount, criterion=criterion, rewind_point=rewind_point,
                           rewind=rewind, importance_scores=importance_scores)
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
        return signed_constant(rewind) if self.values == "signed_constant" else rewind

    def _prune_count(self, surviving, final, initial) -> int:
        flipped = int((~same_sign(final, initial)).sum())
        return max(count_to_prune(self.amount, surviving), flipped)

    @classmethod
    def apply(cls, module, name, amount, rewind_point=None, values="rewind",
              importance_scores=None):  # type: ignore[override]
        """Prune ``module.<name>`` to a sign-preserving supermask and reset it; return the method."""
        return super(LotteryMagnitude, cls).apply(module, name, amount=amount, rewind_point=rewind_point,
                                                  values=values, importance_scores=importance_scores)


def sign_preserving_supermask(module, name, amount, rewind_point, values="rewind", importance_scores=None):
    """Prune ``module.<name>`` to a sign-preserving supermask, reset it, and return ``module``.

    Functional twin of :class:`SignPreservingSupermask`.
    """
    SignPreservingSupermask.apply(module, name, amount, rewind_point=rewind_point, values=values,
                                  importance_scores=importance_scores)
    return module
