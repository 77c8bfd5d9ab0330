"""Dynamic sparse training: what ``sparse_momentum``, ``rigl`` and ``set`` share.

These strategies train a sparse network from the start and move its survivors
while it trains (``when = "during_training"``): every ``every`` optimizer steps,
each tensor drops the ``f(t)`` fraction of its survivors with the smallest
magnitude and regrows as many entries elsewhere; the total number of survivors
stays exactly ``round(density * total)`` at every step.

* The starting masks are random within each tensor, with per-tensor counts from
  :func:`erk_densities` (Erdős-Rényi-Kernel by default, Evci et al. 2020), drawn
  from the run's seeded generator (``PruneContext.generator``): two runs with the
  same ``find_ticket(seed=...)`` start from the same masks.
* The drop fraction follows a cosine decay (the RigL paper's schedule),
  ``f(t) = drop_fraction / 2 * (1 + cos(pi * t / total_steps))`` at optimizer step
  ``t``, reaching 0 at ``total_steps``; no update moves anything from then on.
  Each tensor drops ``floor(f(t) * survivors)`` entries.
* What regrows where is the strategy's own rule (:meth:`DynamicSparse.grow_scores`,
  :meth:`DynamicSparse.grow_counts`). The candidates for regrowth are all the
  entries not kept after the drop, *the ones just dropped included*, as in the
  reference implementations (google-research/rigl, where the drop and growth
  masks are disjoint and a connection dropped and regrown in the same update is
  not a new connection; Dettmers' sparse_learning, which grows among the zeros of
  the mask after pruning). An entry dropped and regrown in the same update simply
  stays: its weight and optimizer state are kept. Every other regrown entry
  starts at zero with a fresh optimizer state (the driver zeroes the weight and
  the optimizer-state tensors of its shape there), as RigL does.

Every drop and growth selection is one :func:`~torch_lottery.strategies.base.keep_top`
(exact counts, deterministic ties). Tied tensors (one weight object under several
names) are counted once and get one mask.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Any, ClassVar

import torch
from torch import nn

from .. import _layout
from .._validation import check_choice, check_fraction, check_number, describe
from .base import StepContext, Strategy, _distinct, _first_names, keep_top
from .context import PruneContext

#: How the kept weights are spread over the tensors (the ``distribution`` option).
DISTRIBUTIONS = ("erk", "uniform")


def _allocate(total: int, weights: Sequence[Any], caps: Sequence[int]) -> list[int]:
    """Split the integer ``total`` over items in proportion to ``weights``, no item above its cap; exactly.

    Water-filling in exact rational arithmetic: items whose share would exceed
    their cap get their cap and the rest is re-solved among the others, until no
    share exceeds its cap (one pass fixes every item over its cap at once: fixing
    one only raises the others' shares). The rational shares are then rounded by
    the largest-remainder rule (floors first; the units left go to the largest
    fractional parts, ties to the lower index), so the counts sum to ``total``.
    If the items still free all have weight 0 while some of ``total`` is left,
    it is spread in proportion to their caps.
    """
    weight = [Fraction(w) for w in weights]
    if total > sum(caps) or any(w < 0 for w in weight):
        raise ValueError(f"cannot split {total} over caps {list(caps)} with weights {list(weights)}")
    full: set[int] = set()
    while True:
        free = [i for i in range(len(caps)) if i not in full]
        budget = total - sum(caps[i] for i in full)
        mass = sum((weight[i] for i in free), Fraction(0))
        if free and budget > 0 and mass == 0:
            for i in free:
                weight[i] = Fraction(caps[i])
            continue
        over = [i for i in free if budget * weight[i] > caps[i] * mass]
        if not over:
            break
        full.update(over)

    def share(i: int) -> Fraction:
        if i in full:
            return Fraction(caps[i])
        return budget * weight[i] / mass if mass else Fraction(0)  # mass 0: nothing is left to give

    quota = [share(i) for i in range(len(caps))]
    counts = [math.floor(q) for q in quota]
    left = total - sum(counts)
    for i in sorted(range(len(caps)), key=lambda i: (-(quota[i] - counts[i]), i))[:left]:
        counts[i] += 1
    return counts


def _check_shapes(shapes: Any) -> list[tuple[int, ...]]:
    if isinstance(shapes, (str, bytes, torch.Tensor)) or not isinstance(shapes, Iterable):
        raise TypeError(f"shapes must be a list of tensor shapes, got {describe(shapes)}")
    out = []
    for index, shape in enumerate(shapes):
        if isinstance(shape, (str, bytes)) or not isinstance(shape, Iterable):
            raise TypeError(f"shapes[{index}] must be a shape (a tuple of ints), got {describe(shape)}")
        dims = tuple(shape)
        if not dims or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims):
            raise ValueError(f"shapes[{index}]={describe(shape)} must be a non-empty tuple of sizes >= 1")
        out.append(dims)
    if not out:
        raise ValueError("shapes is empty: there is nothing to allocate")
    return out


def _kept_counts(shapes: Sequence[tuple[int, ...]], density: float, distribution: str) -> list[int]:
    """The exact number of weights each tensor keeps (see :func:`erk_densities`)."""
    sizes = [math.prod(s) for s in shapes]
    total = round(density * sum(sizes))
    # ERK: density_l = eps * sum(dims_l) / prod(dims_l), so tensor l keeps eps * sum(dims_l) weights
    weights = [sum(s) for s in shapes] if distribution == "erk" else sizes
    return _allocate(total, weights, sizes)


def erk_densities(shapes: Iterable[Sequence[int]], density: float, distribution: str = "erk") -> list[float]:
    """Return the density of each tensor for an overall ``density``: Erdős-Rényi-Kernel or uniform.

    ``"erk"`` (Evci et al. 2020): tensor ``l`` of shape ``(d_1, ..., d_k)`` gets a
    density proportional to ``(d_1 + ... + d_k) / (d_1 * ... * d_k)`` (a Linear
    ``(out, in)``: ``(in + out) / (in * out)``; a conv ``(co, ci, kh, kw)``:
    ``(co + ci + kh + kw) / (co * ci * kh * kw)``), scaled so the kept weights add
    up to the overall target; a tensor whose density would exceed 1 is made dense
    and the others are re-solved, as RigL does. ``"uniform"``: every tensor gets
    ``density``.

    The total is exact: ``round(density * total)`` weights (Python's ``round``,
    halves to even) over all tensors. Each tensor's count is an integer, from its
    exact rational share by the largest-remainder rule (floors first; the
    weights left over go to the largest fractional parts, ties to the earlier
    tensor). The densities returned are ``count / size``: ``round(d * size)``
    gives each tensor's count back exactly.

    Args:
        shapes (list of tuples): the tensors' shapes, in order.
        density (float): the overall fraction of weights kept, in (0, 1].
        distribution (str): ``"erk"`` (default) or ``"uniform"``.

    Returns:
        list of float: one density per shape, in [0, 1].

    Raises:
        TypeError, ValueError: naming the argument (``shapes[i]``, ``density``,
            ``distribution``) that does not fit.

    Examples:
        >>> erk_densities([(3, 4), (2, 3)], 0.5)  # ERK quotas 7 * 0.75 and 5 * 0.75: 5 and 4 weights
        [0.4166666666666667, 0.6666666666666666]
        >>> erk_densities([(8, 2), (2, 8), (1, 2)], 0.5)  # the (1, 2) tensor would exceed 1: dense
        [0.5, 0.4375, 1.0]
        >>> erk_densities([(3, 4), (2, 3)], 0.5, distribution="uniform")
        [0.5, 0.5]
    """
    checked = _check_shapes(shapes)
    density = check_fraction(density, "density", low_open=True)
    check_choice(distribution, DISTRIBUTIONS, "distribution")
    return [
        count / math.prod(s) for count, s in zip(_kept_counts(checked, density, distribution), checked, strict=True)
    ]


class DynamicSparse(Strategy):
    """Train sparse from the start, dropping and regrowing survivors every ``every`` steps at exact density.

    The shared base of ``sparse_momentum``, ``rigl`` and ``set`` (see the
    module's notes). :meth:`prune` gives the starting masks (random per tensor,
    counts by :func:`erk_densities`); :meth:`update` drops ``floor(f(t) *
    survivors)`` smallest-magnitude survivors of each tensor and regrows where a
    subclass's :meth:`grow_scores` are highest, as many per tensor as its
    :meth:`grow_counts` say (by default the number each tensor dropped).

    Args:
        total_steps (int): required: the optimizer step at which the drop
            fraction reaches zero (the RigL paper's ``T_end``; e.g. the length
            of the training loop); no update moves anything from then on.
        density (float): fraction of the weights kept throughout, in (0, 1]
            (default 0.1).
        every (int): optimizer steps between two updates (default 100), at most
            ``total_steps``.
        drop_fraction (float): the fraction of each tensor's survivors moved at
            step 0, in [0, 1], cosine-decayed to zero at ``total_steps`` (default:
            the strategy's paper's, :attr:`default_drop_fraction`).
        distribution (str): ``"erk"`` (default) or ``"uniform"``.

    Raises:
        TypeError, ValueError: naming the option and value that do not fit.
    """

    when: ClassVar[str] = "during_training"
    needs_optimizer: ClassVar[bool] = True
    may_grow: ClassVar[bool] = True
    max_rounds: ClassVar[int | None] = 1
    #: The drop fraction of the strategy's paper (used when ``drop_fraction`` is not given).
    default_drop_fraction: ClassVar[float] = 0.3

    def __init__(
        self,
        total_steps: int | None = None,
        density: float = 0.1,
        every: int = 100,
        drop_fraction: float | None = None,
        distribution: str = "erk",
    ) -> None:
        super().__init__()
        if total_steps is None:
            raise ValueError(
                f"{type(self).__name__} needs total_steps (an int >= 1): the optimizer step at which the drop "
                "fraction reaches zero, e.g. the number of steps of the training loop"
            )
        self.total_steps = check_number(total_steps, "total_steps", integer=True, low=1)
        self.density = check_fraction(density, "density", low_open=True)
        self.every = check_number(every, "every", integer=True, low=1)
        if self.every > self.total_steps:
            raise ValueError(
                f"every={self.every} exceeds total_steps={self.total_steps}: no update would move the masks "
                "before the drop fraction reaches zero"
            )
        self.drop_fraction = check_fraction(
            self.default_drop_fraction if drop_fraction is None else drop_fraction, "drop_fraction"
        )
        self.distribution = check_choice(distribution, DISTRIBUTIONS, "distribution")
        self._generator: torch.Generator | None = None

    # -- the schedule ---------------------------------------------------------------------
    def drop_fraction_at(self, step: int) -> float:
        """Return the fraction of survivors an update at optimizer step ``step`` moves (cosine decay).

        ``f(t) = drop_fraction / 2 * (1 + cos(pi * t / total_steps))`` for
        ``t < total_steps``, and 0 from ``total_steps`` on.

        Raises:
            TypeError, ValueError: if ``step`` is not an int >= 0.

        Examples:
            >>> from torch_lottery.strategies.rigl import RigL
            >>> rigl = RigL(total_steps=100, drop_fraction=0.3)
            >>> rigl.drop_fraction_at(0), round(rigl.drop_fraction_at(50), 12), rigl.drop_fraction_at(100)
            (0.3, 0.15, 0.0)
        """
        step = check_number(step, "step", integer=True, low=0)
        if step >= self.total_steps:
            return 0.0
        return self.drop_fraction / 2 * (1 + math.cos(math.pi * step / self.total_steps))

    # -- the starting masks -----------------------------------------------------------------
    def validate(self, names: tuple[str, ...], model: nn.Module | None = None, data: Any = None) -> None:
        """Check that ``density`` keeps at least one weight of the run's tensors.

        Raises:
            ValueError: naming ``density`` if ``round(density * total)`` is 0.
        """
        if model is None:
            return
        found = [_layout.resolve(model, n) for n in names]
        tensors = {id(t): t for t in (_layout.original(*pair) for pair in found if pair is not None)}
        total = sum(t.numel() for t in tensors.values())
        if total and round(self.density * total) == 0:
            raise ValueError(
                f"density={self.density} keeps round({self.density} * {total}) = 0 of the {total} weights; "
                "raise density"
            )

    def prune(self, context: PruneContext) -> dict[str, torch.Tensor]:
        """Return the starting masks: random within each tensor, with the counts of :func:`erk_densities`.

        Drawn from ``context.generator`` (seeded by the run); the generator of the
        strategy's random choices during training is seeded from it too.
        """
        first = _distinct(context)
        unique = list(first)
        shapes = [tuple(context.weights[n].shape) for n in unique]
        counts = _kept_counts(shapes, self.density, self.distribution)
        if sum(counts) == 0:
            raise ValueError(f"density={self.density} keeps none of the {sum(map(math.prod, shapes))} weights")
        start = {}
        for name, count in zip(unique, counts, strict=True):
            weights = context.weights[name]
            scores = torch.rand(weights.shape, generator=context.generator, dtype=torch.float64)
            start[name] = keep_top(scores.to(weights.device), count)
        seed = int(torch.randint(0, 2**62, (1,), generator=context.generator))
        self._generator = torch.Generator().manual_seed(seed)
        return {n: start[f].clone() for n, f in _first_names(context, first).items()}

    # -- the updates ----------------------------------------------------------------------
    def update(self, context: StepContext) -> dict[str, torch.Tensor] | None:
        """Drop the smallest-magnitude ``f(t)`` of each tensor's survivors and regrow as many; or None.

        Returns None (nothing moves) from ``total_steps`` on, or when no tensor
        has a survivor to drop at this step's fraction.
        """
        step = context.iteration
        if step >= self.total_steps:
            return None
        fraction = self.drop_fraction_at(step)
        names = context.names
        first = _layout.aliases(context.pairs())
        unique = [n for i, n in enumerate(names) if first[i] == i]
        masks, weights = context.masks(), context.weights()
        kept, dropped = {}, {}
        for name in unique:
            alive = int(masks[name].sum())
            dropped[name] = math.floor(fraction * alive)
            kept[name] = keep_top(weights[name].abs(), alive - dropped[name], eligible=masks[name])
        if not any(dropped.values()):
            return None
        before = {n: masks[n] for n in unique}
        counts = self.grow_counts(context, before, kept, dropped)
        scores = self.grow_scores(context, unique)
        new = {n: kept[n] | keep_top(scores[n], counts[n], eligible=~kept[n]) for n in unique}
        return {n: new[names[first[i]]].clone() for i, n in enumerate(names)}

    def grow_counts(
        self,
        context: StepContext,
        masks: Mapping[str, torch.Tensor],
        kept: Mapping[str, torch.Tensor],
        dropped: Mapping[str, int],
    ) -> dict[str, int]:
        """Return how many entries each tensor regrows (default: what it dropped; per-tensor counts fixed).

        ``masks`` are the masks before the update, ``kept`` what survives the drop,
        ``dropped`` how many each tensor dropped (all by the first name of each
        distinct tensor). The counts must add up to the total dropped, and no
        tensor may regrow more than its entries not kept.
        """
        return dict(dropped)

    @abc.abstractmethod
    def grow_scores(self, context: StepContext, names: list[str]) -> dict[str, torch.Tensor]:
        """Return the regrowth scores of the tensors ``names`` (higher regrows first), each of its tensor's shape."""

    def _run_generator(self) -> torch.Generator:
        """The strategy's generator for random choices while training (seeded by :meth:`prune`)."""
        if self._generator is None:
            raise RuntimeError(
                f"{type(self).__name__}.update needs the generator that prune(context) seeds from the run: "
                "call prune first (find_ticket does)"
            )
        return self._generator

    def options(self) -> dict[str, Any]:
        return {
            "total_steps": self.total_steps,
            "density": self.density,
            "every": self.every,
            "drop_fraction": self.drop_fraction,
            "distribution": self.distribution,
        }
