"""The base of torch-lottery's pruning methods and their transactional ``apply``.

:func:`attach` is the core of every ``apply``: it validates and computes
everything first and changes the module only once nothing can fail, so bad input
leaves the model exactly as it was. The hook it installs is a
:class:`~torch_lottery.pruning.container.LotteryContainer`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn
from torch.nn.utils import prune

from .. import _layout
from .._validation import check_finite, check_module_name, describe
from .container import install, make_container, release_round_state, rounds_of


def check_scores(importance_scores: Any, orig: torch.Tensor, name: str) -> torch.Tensor | None:
    """Validate optional per-tensor ``importance_scores`` against parameter ``orig``."""
    if importance_scores is None:
        return None
    if not isinstance(importance_scores, torch.Tensor):
        raise TypeError(f"importance_scores must be a Tensor, got {describe(importance_scores)}")
    if importance_scores.shape != orig.shape:
        raise ValueError(
            f"importance_scores has shape {tuple(importance_scores.shape)} but {name} has shape {tuple(orig.shape)}"
        )
    check_finite(importance_scores, "importance_scores")
    return importance_scores.detach()


@dataclass
class _Round:
    """What :func:`attach` knows about the tensor being pruned and a method's ``compute_mask`` needs."""

    module: nn.Module
    name: str
    default_mask: torch.Tensor | None
    initial: torch.Tensor | None  # the rewind-point values of the tensor, if the method uses them

    @property
    def label(self) -> str:
        return f"{type(self.module).__name__}.{self.name}"


class LotteryMethod(prune.BasePruningMethod):
    """Base of torch-lottery's pruning methods (not for direct use).

    Subclasses set ``PRUNING_TYPE``, validate their options in ``__init__`` and
    implement ``compute_mask``; ``apply`` goes through :func:`attach`, which makes
    it transactional and sets :attr:`_round` while the mask is computed.
    """

    _round: _Round | None = None

    @classmethod
    def apply(cls, module, name, *args, importance_scores=None, **kwargs):
        """Prune ``module.<name>`` with a new ``cls(*args, **kwargs)``; see :func:`attach`."""
        return attach(module, name, cls(*args, **kwargs), importance_scores=importance_scores)

    def _prepare(self, module: nn.Module, name: str, orig: torch.Tensor) -> tuple[Any, Any]:
        """Validate against the target tensor; return ``(rewind values it reads, values to write)``."""
        return None, None

    def _release(self) -> None:
        """Drop references to tensors and models once the mask is installed."""
        self._round = None


def as_mask(mask: torch.Tensor) -> torch.Tensor:
    """Return ``mask`` (0/1 of any dtype, or bool) as the bool mask torch-lottery installs: 1 byte an entry.

    A bool mask is returned as it is (no copy).
    """
    if mask.dtype == torch.bool:
        return mask
    return torch.ne(mask, 0)


def attach(
    module: nn.Module,
    name: str,
    method: LotteryMethod,
    importance_scores: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> LotteryMethod:
    """Compute ``method``'s mask for ``module.<name>`` and install it, all or nothing.

    Every check and the whole mask computation run before the module is touched;
    only then is the reparametrization installed (or the existing container
    extended), the rewind values written to ``<name>_orig`` and ``module.<name>``
    recomputed.

    ``mask``, if given, is the final mask, already computed (e.g. by
    :func:`global_magnitude` for a whole pool): it becomes the ``<name>_mask``
    buffer as it is (a bool one; other dtypes are converted), without the copies
    that computing a mask needs. It may be the tensor's current mask buffer,
    written in place.

    The installed mask is always a ``torch.bool`` buffer (stock installs float
    ones): a quarter of a float32 mask's bytes, and stock code reads and extends
    it as it does its own (see :func:`torch_lottery._layout.masked_product`).
    """
    orig = check_module_name(module, name)
    scores = check_scores(importance_scores, orig, name)
    key, old = _layout.find_hook(module, name)
    pruned = _layout.is_pruned(module, name)
    if mask is not None and mask.shape != orig.shape:
        raise ValueError(f"mask has shape {tuple(mask.shape)}, {name} has {tuple(orig.shape)}")

    method._tensor_name = name
    try:
        initial, written = method._prepare(module, name, orig)
        container = make_container(name, rounds_of(old) + (method,))
        if mask is None:
            current = _layout.mask_of(module, name)
            if current is not None:
                default_mask = current.detach().clone(memory_format=torch.contiguous_format)
            else:
                default_mask = torch.ones(orig.shape, dtype=torch.bool, device=orig.device)
            method._round = _Round(module, name, default_mask, initial)
            with torch.no_grad():
                mask = container.compute_mask(orig.detach() if scores is None else scores, default_mask)
            del default_mask
        mask = as_mask(mask)
    except BaseException:
        method._release()
        raise
    finally:
        method._round = None

    # Commit: nothing below validates or can fail on user input.
    if not pruned:
        module.register_parameter(_layout.orig_name(name), cast(nn.Parameter, orig))
        del module._parameters[name]
    module.register_buffer(_layout.mask_name(name), mask)
    install(module, name, key, container)
    if written is not None:
        with torch.no_grad():
            orig.copy_(written)
    _layout.recompute_weight(module, name, container)
    for done in container:
        release_round_state(done)
    return method
