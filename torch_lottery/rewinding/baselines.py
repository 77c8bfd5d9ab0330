"""Baseline tickets built from a mask: random reinit, sign-preserving reinit, signed constant."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from .. import _layout
from .._validation import check_generator, check_module, check_pairs, describe
from ..pruning._rewind import rewind_tensor, signed_constant_values
from ..pruning.utils import named_prunable_parameters
from .point import RewindPoint

Init = Callable[[torch.Tensor], object]


def default_init(
    module: nn.Module, name: str, like: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Return a fresh tensor drawn as PyTorch's own ``reset_parameters`` draws ``module.<name>``.

    Linear and convolution weights: Kaiming uniform with ``a = sqrt(5)``; embeddings:
    standard normal; recurrent weights: uniform in ``±1/sqrt(hidden_size)``;
    attention input projections: Xavier uniform; anything else: Kaiming uniform
    (matrices) or uniform in ``±1/sqrt(n)`` (vectors).
    """
    fresh = torch.empty(like.shape, dtype=like.dtype, device="cpu")
    if isinstance(module, nn.RNNBase):
        bound = 1.0 / math.sqrt(module.hidden_size) if module.hidden_size > 0 else 0.0
        nn.init.uniform_(fresh, -bound, bound, generator=generator)
    elif isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        nn.init.normal_(fresh, generator=generator)
        if module.padding_idx is not None and fresh.dim() == 2:
            fresh[module.padding_idx].zero_()  # as Embedding.reset_parameters does
    elif isinstance(module, nn.MultiheadAttention):
        nn.init.xavier_uniform_(fresh, generator=generator)
    elif isinstance(module, nn.Bilinear):
        bound = 1.0 / math.sqrt(fresh.size(1))
        nn.init.uniform_(fresh, -bound, bound, generator=generator)
    elif fresh.dim() >= 2:
        nn.init.kaiming_uniform_(fresh, a=math.sqrt(5), generator=generator)
    else:
        bound = 1.0 / math.sqrt(max(fresh.numel(), 1))
        nn.init.uniform_(fresh, -bound, bound, generator=generator)
    return fresh.to(like.device)


def _fresh(module, name, like, generator, init) -> torch.Tensor:
    if init is None:
        return default_init(module, name, like, generator)
    fresh = torch.empty_like(like)
    init(fresh)
    if fresh.is_floating_point() and not bool(torch.isfinite(fresh).all()):
        raise ValueError(
            f"init={describe(init)} filled {type(module).__name__}.{name} with NaN or infinite "
            "values; nothing was changed"
        )
    return fresh


def _check_init(init) -> None:
    if init is not None and not callable(init):
        raise TypeError(f"init must be a callable that fills a tensor in place, got {describe(init)}")


def _targets(model: nn.Module, parameters, rewind_point: RewindPoint | None) -> list[tuple[nn.Module, str]]:
    """The tensors to reinitialize: ``parameters``, or every prunable weight (that ``rewind_point`` covers)."""
    check_module(model)
    if rewind_point is not None and not isinstance(rewind_point, RewindPoint):
        raise TypeError(f"rewind_point must be a torch_lottery.RewindPoint, got {describe(rewind_point)}")
    if parameters is not None:
        return check_pairs(parameters, allow_empty=True)
    if rewind_point is not None:
        rewind_point.check_model(model)  # names and shapes, before anything is written
        return [(m, n) for q, m, n in named_prunable_parameters(model) if q in rewind_point]
    return [(m, n) for _, m, n in named_prunable_parameters(model)]


def _rewind_values(rewind_point: RewindPoint, model: nn.Module, pairs) -> list[torch.Tensor]:
    # A copy bound to ``model`` (names and shapes checked), leaving the caller's binding alone.
    bound = RewindPoint(dict(rewind_point.items()), iteration=rewind_point.iteration, model=model)
    return [rewind_tensor(bound, m, n, _layout.original(m, n)) for m, n in pairs]


def random_reinit(
    model: nn.Module,
    parameters: Iterable[tuple[nn.Module, str]] | None = None,
    *,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    init: Init | None = None,
) -> nn.Module:
    """Give the tensors of a ticket fresh random values, keeping their masks; return ``model``.

    The random-reinit control of Frankle & Carbin (2019): same mask, new
    initialization. Values go to ``<name>_orig`` (masks untouched).

    Args:
        model (nn.Module): the (pruned) model.
        parameters (iterable of (module, name), optional): default: every prunable weight.
        generator (torch.Generator, optional): randomness of the default initialization
            (see :func:`default_init`).
        seed (int, optional): the same, as a seed.
        init (callable, optional): fills a tensor in place instead, e.g.
            ``torch.nn.init.xavier_normal_`` (uses the global RNG).

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from torch_lottery import lottery_magnitude, random_reinit
        >>> net = nn.Sequential(nn.Linear(6, 6))
        >>> _ = lottery_magnitude(net[0], "weight", amount=0.5)
        >>> mask = net[0].weight_mask.clone()
        >>> _ = random_reinit(net, seed=0)
        >>> torch.equal(net[0].weight_mask, mask)
        True
    """
    _check_init(init)
    generator = check_generator(generator, seed)
    pairs = _targets(model, parameters, None)
    values = [_fresh(m, n, _layout.original(m, n), generator, init) for m, n in pairs]
    _layout.write_values(pairs, values)
    return model


def sign_preserving_reinit(
    model: nn.Module,
    rewind_point: RewindPoint,
    parameters: Iterable[tuple[nn.Module, str]] | None = None,
    *,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    init: Init | None = None,
) -> nn.Module:
    """Give the tensors fresh magnitudes with the rewind point's signs; return ``model``.

    Zhou et al. (2019): a reinitialized ticket that keeps the initial signs does
    nearly as well as the winning ticket. A zero in the rewind point counts as
    positive.

    Args:
        model (nn.Module): the (pruned) model.
        rewind_point (RewindPoint): the signs to keep.
        parameters (optional): default: every prunable weight that ``rewind_point`` holds.
        generator (torch.Generator, optional): as for :func:`random_reinit`.
        seed (int, optional): as for :func:`random_reinit`.
        init (callable, optional): as for :func:`random_reinit`.
    """
    _check_init(init)
    generator = check_generator(generator, seed)
    if rewind_point is None:
        raise ValueError("rewind_point is required: it gives the signs to keep")
    pairs = _targets(model, parameters, rewind_point)
    signs = [torch.where(r < 0, -1.0, 1.0).to(r.dtype) for r in _rewind_values(rewind_point, model, pairs)]
    values = [
        _fresh(m, n, _layout.original(m, n), generator, init).abs() * s for (m, n), s in zip(pairs, signs, strict=True)
    ]
    _layout.write_values(pairs, values)
    return model


def signed_constant(
    model: nn.Module, rewind_point: RewindPoint, parameters: Iterable[tuple[nn.Module, str]] | None = None
) -> nn.Module:
    """Set every tensor to ``sign(w_i) * std(w_i)`` of its rewind-point values; return ``model``.

    The "signed constant" initialization of Zhou et al. (2019): with a
    sign-preserving supermask it scores well without any training.

    Args:
        model (nn.Module): the (pruned) model.
        rewind_point (RewindPoint): the initial weights ``w_i``.
        parameters (optional): default: every prunable weight that ``rewind_point`` holds.
    """
    if rewind_point is None:
        raise ValueError("rewind_point is required: it gives the signs and scales")
    pairs = _targets(model, parameters, rewind_point)
    values = [signed_constant_values(r) for r in _rewind_values(rewind_point, model, pairs)]
    _layout.write_values(pairs, values)
    return model
