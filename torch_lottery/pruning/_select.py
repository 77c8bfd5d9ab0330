"""Mask selection: criteria scores, deterministic bottom-k over pools of tensors, and the one planner.

:func:`plan` is the pooled-selection rule of the whole package: ``global_magnitude``,
the methods (alone or inside stock ``prune.global_unstructured``) and the
strategies all call it, so floors, rate multipliers, scopes and devices mean the
same everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .._validation import check_finite, count_to_prune

#: Mask criteria of Zhou et al. (2019), "Deconstructing Lottery Tickets".
#: Each maps (final weights, rewind-point weights) to a score; low scores are pruned.
CRITERIA = (
    "large_final",
    "small_final",
    "large_init",
    "magnitude_increase",
    "movement",
    "large_final_same_sign",
)

#: Criteria that need the rewind-point (initial) weights.
NEEDS_INITIAL = frozenset(CRITERIA) - {"large_final", "small_final"}


def criterion_scores(criterion: str, final: torch.Tensor, initial: torch.Tensor | None) -> torch.Tensor:
    """Return the keep-scores of ``criterion`` (higher is kept first).

    Args:
        criterion: one of :data:`CRITERIA`.
        final: the trained weights (or the user's importance scores).
        initial: the rewind-point weights, aligned with ``final``; needed by
            every criterion in :data:`NEEDS_INITIAL`.
    """
    if criterion == "large_final":
        return final.abs()
    if criterion == "small_final":
        return -final.abs()
    if initial is None:  # guarded by the callers' validation
        raise ValueError(f"criterion={criterion!r} needs a rewind_point")
    if criterion == "large_init":
        return initial.abs()
    if criterion == "magnitude_increase":
        return final.abs() - initial.abs()
    if criterion == "movement":
        return (final - initial).abs()
    if criterion == "large_final_same_sign":
        same = same_sign(final, initial)
        # Sign-flipped weights score below every magnitude, so they go first.
        return torch.where(same, final.abs(), torch.full_like(final, -1.0))
    raise ValueError(f"criterion={criterion!r} is not one of {', '.join(CRITERIA)}")


def same_sign(final: torch.Tensor, initial: torch.Tensor) -> torch.Tensor:
    """Return a bool tensor: True where ``final`` and ``initial`` have the same (non-zero) sign."""
    return (torch.sign(final) * torch.sign(initial)) > 0


# -- selection without sorting ------------------------------------------------------
# The k-th smallest surviving score of a pool of tensors is found without sorting,
# without topk and without any pool-sized copy:
#
# 1. A fixed-seed random sample of the scores gives two pivots that bracket the k-th
#    score with high probability (sample order statistics a few standard errors
#    either side of the target rank).
# 2. One counting pass, tensor by tensor and chunk by chunk, counts the surviving
#    scores below and at each pivot. If the k-th score equals a pivot (ties), done;
#    otherwise it lies strictly between two consecutive pivots.
# 3. When few entries lie in that open interval, one more pass gathers them and
#    ``torch.kthvalue`` ranks them; otherwise (heavy ties, or a sample that missed)
#    a new sample is drawn inside the interval and step 2 repeats.
#
# Scores are computed chunk by chunk (``criterion(final, initial)`` on at most _CHUNK
# entries into reused buffers); entries that no longer survive get NaN, which every
# comparison treats as False, so they are neither counted, gathered nor kept (the
# inputs are checked for NaN and infinity once, by :func:`plan`). The result is
# exact whatever the sample: the sample only decides how fast it is. Ties at the
# threshold are pruned in order of (tensor, flat index).

#: Entries scored at once (buffers of this size are reused; counts in float32 stay exact).
_CHUNK = 1 << 20
#: Pools with at most this many surviving entries are ranked directly with kthvalue.
_SMALL = 1 << 16
#: Sample size drawn to place the pivots.
_SAMPLE = 1 << 16
#: Standard errors of the sample rank either side of the target (the bracket's width).
_SIGMAS = 4.0
#: Refinement rounds before the remaining interval is gathered whatever its size.
_ROUNDS = 6
#: Seed of the sample (fixed: the same input takes the same path).
_SEED = 0x5EED


def _float_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


class _Source:
    """The flattened scores of one tensor, computed on demand: ``criterion(final, initial)``.

    ``criterion=None`` means ``final`` already holds the scores. ``eligible`` (bool or
    a 0/1 mask of any dtype; non-zero means "still surviving") restricts the pool.
    """

    def __init__(
        self,
        final: torch.Tensor,
        criterion: str | None = None,
        initial: torch.Tensor | None = None,
        eligible: torch.Tensor | None = None,
    ) -> None:
        self.final = final.detach().reshape(-1)
        self.initial = None if initial is None else initial.detach().reshape(-1)
        self.criterion = criterion
        self.eligible = None if eligible is None else eligible.detach().reshape(-1)
        self.numel = self.final.numel()
        self.raw_dtype = (
            self.final.dtype if self.initial is None else torch.promote_types(self.final.dtype, self.initial.dtype)
        )
        self.surviving = self.numel

    @property
    def device(self) -> torch.device:
        return self.final.device

    def raw(self, index) -> torch.Tensor:
        """Scores of the entries ``index`` (a slice or an index tensor), before the eligibility mask."""
        final = self.final[index]
        if self.criterion is None:
            return final
        initial = None if self.initial is None else self.initial[index]
        return criterion_scores(self.criterion, final, initial)


class _Pool:
    """Bottom-k machinery over several :class:`_Source` (one threshold for any subset of them)."""

    def __init__(self, sources: list[_Source]) -> None:
        dtype = None
        for s in sources:
            dtype = s.raw_dtype if dtype is None else torch.promote_types(dtype, s.raw_dtype)
        self.dtype = _float_dtype(dtype) if dtype is not None else torch.float32
        self.sources = sources
        self._buffers: dict = {}
        # WHY one size: every buffer is allocated once, at the largest chunk it will hold, and reused for
        # every tensor of the pool (growing it tensor by tensor would allocate and free one per size).
        self._chunk = min(_CHUNK, max([s.numel for s in sources] + [1]))
        for s in sources:
            self._count_surviving(s)
        self.surviving = [s.surviving for s in sources]

    # -- buffers and chunks ------------------------------------------------------
    def _buffer(self, kind: str, device: torch.device, size: int, dtype: torch.dtype | None = None) -> torch.Tensor:
        dtype = self.dtype if dtype is None else dtype
        key = (kind, device, dtype)
        buf = self._buffers.get(key)
        if buf is None or buf.numel() < size:
            buf = self._buffers[key] = torch.empty(max(self._chunk, size, 1), dtype=dtype, device=device)
        return buf[:size]

    def release(self) -> None:
        """Free the reused buffers."""
        self._buffers.clear()

    def _count_surviving(self, s: _Source) -> None:
        if s.eligible is None:
            s.surviving = s.numel
            return
        total = 0
        for start in range(0, s.numel, _CHUNK):
            e = s.eligible[start : start + _CHUNK]
            if e.dtype == torch.bool:
                total += int(torch.count_nonzero(e))
            else:
                total += int(torch.ne(e, 0, out=self._buffer("count", s.device, e.numel())).sum())
        s.surviving = total
        if total == s.numel:
            s.eligible = None  # every entry survives: no masking needed

    def _chunks(self, s: _Source):
        """Yield ``(start, scores)`` chunk by chunk; NaN where the entry no longer survives."""
        for start in range(0, s.numel, _CHUNK):
            stop = min(start + _CHUNK, s.numel)
            yield start, self._scores(s, start, stop)

    def _scores(self, s: _Source, start: int, stop: int) -> torch.Tensor:
        size = stop - start
        if s.criterion is None or (s.criterion == "large_final" and s.final.dtype == self.dtype):
            out = self._buffer("scores", s.device, size)
            if s.criterion is None:
                out.copy_(s.final[start:stop])
            else:
                torch.abs(s.final[start:stop], out=out)
        else:  # a new tensor: criterion_scores never returns a view of its inputs
            out = s.raw(slice(start, stop)).to(self.dtype)
        if s.eligible is not None:
            e = self._buffer("eligible", s.device, size)
            alive = s.eligible[start:stop]
            if alive.dtype == torch.bool:  # read as uint8: a vectorized copy, no temporary (ne would make two)
                e.copy_(alive.view(torch.uint8))
            else:
                torch.ne(alive, 0, out=e)
            out.div_(e).mul_(e)  # x / 1 * 1 == x; x / 0 * 0 is NaN (also for x = 0 and x = inf)
        return out

    # -- passes over the pool ----------------------------------------------------
    def _count(
        self, ids: list[int], pivots: list[float], limit: int = 0
    ) -> tuple[list[tuple[list[int], list[int]]], list[torch.Tensor] | None]:
        """Per pivot: (surviving entries < pivot, entries <= pivot), per tensor of ``ids``.

        With two pivots and ``limit > 0`` (the bracket :meth:`_pivots` places around the
        k-th score), the same pass also gathers, per tensor, the surviving scores strictly
        between them, or returns None instead if those are more than ``limit`` in all
        (then :meth:`_gather` reads the pool again). It compares each score twice instead
        of four times: ``< first`` and ``<= last`` are counted, and the entries equal to
        either pivot are counted among the few it gathers, those of the closed bracket.
        """
        if not (limit > 0 and len(pivots) == 2):
            return self._count_each(ids, pivots), None
        first, last = pivots
        lt = [[0] * len(ids), [0] * len(ids)]
        le = [[0] * len(ids), [0] * len(ids)]
        kept: list[list[torch.Tensor]] | None = [[] for _ in ids]
        gathered = 0
        for j, i in enumerate(ids):
            s = self.sources[i]
            for _start, scores in self._chunks(s):
                size = scores.numel()
                below = torch.lt(scores, first, out=self._buffer("count", s.device, size))
                upto = torch.le(scores, last, out=self._buffer("count_last", s.device, size))
                below_first, upto_last = int(below.sum()), int(upto.sum())
                # first <= score <= last  <=>  (score <= last) > (score < first), as 0/1 floats
                closed = scores[torch.gt(upto, below, out=self._buffer("inside", s.device, size, torch.bool))]
                at_first, at_last = int(torch.count_nonzero(closed == first)), int(torch.count_nonzero(closed == last))
                lt[0][j] += below_first
                le[0][j] += below_first + at_first
                lt[1][j] += upto_last - at_last
                le[1][j] += upto_last
                gathered += closed.numel()
                if kept is not None and gathered <= limit:
                    kept[j].append(closed)
                else:
                    kept = None
        counts = list(zip(lt, le, strict=True))
        if kept is None:
            return counts, None
        pieces = [torch.cat(ps) if len(ps) != 1 else ps[0] for ps in kept]
        return counts, [p[(p > first) & (p < last)] for p in pieces]  # the open bracket

    def _count_each(self, ids: list[int], pivots: list[float]) -> list[tuple[list[int], list[int]]]:
        """Per pivot: (surviving entries < pivot, entries <= pivot), per tensor of ``ids``; four comparisons."""
        lt = [[0] * len(ids) for _ in pivots]
        le = [[0] * len(ids) for _ in pivots]
        for j, i in enumerate(ids):
            s = self.sources[i]
            for _start, scores in self._chunks(s):
                tmp = self._buffer("count", s.device, scores.numel())
                for p, pivot in enumerate(pivots):
                    lt[p][j] += int(torch.lt(scores, pivot, out=tmp).sum())
                    le[p][j] += int(torch.le(scores, pivot, out=tmp).sum())
        return list(zip(lt, le, strict=True))

    def _gather(self, ids: list[int], lo: float | None, hi: float | None) -> list[torch.Tensor]:
        """Per tensor of ``ids``: its surviving scores strictly between ``lo`` and ``hi`` (None: unbounded)."""
        out = []
        for i in ids:
            s = self.sources[i]
            pieces = []
            for _, scores in self._chunks(s):
                if lo is None and hi is None:
                    inside = scores == scores  # not NaN
                elif lo is None:
                    inside = scores < hi
                elif hi is None:
                    inside = scores > lo
                else:
                    inside = (scores > lo) & (scores < hi)
                pieces.append(scores[inside])
            out.append(torch.cat(pieces) if len(pieces) != 1 else pieces[0])
        return out

    def _pivots(
        self, ids: list[int], lo: float | None, hi: float | None, rank: int, inside: int, round_: int
    ) -> list[float]:
        """Sample scores strictly inside (lo, hi) and return pivots that bracket the ``rank``-th of them."""
        sizes = [self.sources[i].numel for i in ids]
        total = sum(sizes)
        wanted = max(1, min(_SAMPLE, inside >> 4))  # a sample far smaller than the pool
        draws = min(int(wanted * total / inside) + 1, 16 * wanted)
        generator = torch.Generator().manual_seed(_SEED + round_)
        found = []
        for i, size in zip(ids, sizes, strict=True):
            m = min(size, max(1, round(draws * size / total)))
            s = self.sources[i]
            index = torch.randint(size, (m,), generator=generator).to(s.device)
            values = s.raw(index).to(self.dtype)
            if s.eligible is not None:
                values = torch.where(s.eligible[index] != 0, values, torch.full_like(values, math.nan))
            keep = values == values
            if lo is not None:
                keep &= values > lo
            if hi is not None:
                keep &= values < hi
            found.append(values[keep])
        sample = torch.cat(found)
        m = sample.numel()
        if m == 0:
            return []
        q = rank / inside
        centre = q * m
        margin = _SIGMAS * math.sqrt(m * q * (1 - q)) + _SIGMAS
        pivots = set()
        below, above = math.floor(centre - margin), math.ceil(centre + margin)
        if below >= 1:
            pivots.add(float(torch.kthvalue(sample, below).values))
        if above <= m:
            pivots.add(float(torch.kthvalue(sample, above).values))
        return sorted(pivots)

    # -- selection ---------------------------------------------------------------
    def threshold(self, ids: list[int], k: int) -> tuple[float, list[int], list[int]]:
        """Return (k-th smallest surviving score of tensors ``ids``, per-tensor counts below it, equal to it).

        Needs ``0 < k <= surviving entries of ids``.
        """
        n = sum(self.surviving[i] for i in ids)
        lo = hi = None
        le_lo = [0] * len(ids)
        lt_hi = [self.surviving[i] for i in ids]
        limit = max(_SMALL, n >> 5)
        gathered: tuple[float | None, float | None, list[torch.Tensor]] | None = None
        for round_ in range(_ROUNDS):
            inside = sum(lt_hi) - sum(le_lo)
            if inside <= limit:
                break
            pivots = self._pivots(ids, lo, hi, k - sum(le_lo), inside, round_)
            if not pivots:
                break
            counts, between = self._count(ids, pivots, limit)
            gathered = None if between is None else (pivots[0], pivots[-1], between)
            prev_le, prev_pivot = le_lo, lo
            for pivot, (lt, le) in zip(pivots, counts, strict=True):
                if k <= sum(lt):  # strictly below this pivot
                    lo, le_lo, hi, lt_hi = prev_pivot, prev_le, pivot, lt
                    break
                if k <= sum(le):  # the k-th score equals the pivot
                    return pivot, lt, [b - a for a, b in zip(lt, le, strict=True)]
                prev_le, prev_pivot = le, pivot
            else:  # above the last pivot
                lo, le_lo = prev_pivot, prev_le
        if gathered is not None and gathered[0] == lo and gathered[1] == hi:
            pieces = gathered[2]  # the last counting pass gathered exactly this interval
        else:
            pieces = self._gather(ids, lo, hi)
        rank = k - sum(le_lo)
        nonempty = [p for p in pieces if p.numel()]
        values = torch.cat(nonempty) if len(nonempty) > 1 else nonempty[0]
        thr = float(torch.kthvalue(values, rank).values)
        below = [b + int(torch.count_nonzero(p < thr)) for b, p in zip(le_lo, pieces, strict=True)]
        at = [int(torch.count_nonzero(p == thr)) for p in pieces]
        return thr, below, at

    def bottom(self, ids: list[int], k: int) -> dict[int, tuple]:
        """Plan the bottom-``k`` pruning of tensors ``ids`` (ties: lower tensor, then lower flat index first).

        Returns ``{i: (plan, kept count)}``; a plan is ``"all"`` (keep every survivor),
        ``"none"`` or ``(threshold, ties pruned, ties in the tensor)``.
        """
        n = sum(self.surviving[i] for i in ids)
        if k <= 0 or n == 0:
            return {i: ("all", self.surviving[i]) for i in ids}
        if k >= n:
            return {i: ("none", 0) for i in ids}
        live = [i for i in ids if self.surviving[i] > 0]
        thr, below, at = self.threshold(live, k)
        need = k - sum(below)
        out: dict[int, tuple[str | tuple[float, int, int], int]] = {i: ("all", 0) for i in ids}
        for i, b, a in zip(live, below, at, strict=True):
            p = min(a, need)
            need -= p
            out[i] = ((thr, p, a), self.surviving[i] - b - p)
        return out

    def write(self, i: int, plan, out: torch.Tensor) -> torch.Tensor:
        """Write the keep-mask of tensor ``i`` under ``plan`` into ``out`` (bool or float, any shape) and return it."""
        s = self.sources[i]
        flat = out.view(-1)
        if plan == "none":
            return out.zero_()
        if plan == "all":
            if s.eligible is None:
                return out.fill_(1)
            for start in range(0, s.numel, _CHUNK):
                torch.ne(s.eligible[start : start + _CHUNK], 0, out=flat[start : start + _CHUNK])
            return out
        thr, pruned, ties = plan
        seen = 0
        for start, scores in self._chunks(s):
            o = flat[start : start + scores.numel()]
            if pruned == 0 or (pruned < ties and seen >= pruned):  # every tie (left) is kept
                torch.ge(scores, thr, out=o)
            elif pruned >= ties:  # every tie is pruned
                torch.gt(scores, thr, out=o)
            else:  # the first `pruned` ties in flat order are pruned
                torch.gt(scores, thr, out=o)
                at = scores == thr
                count = int(torch.count_nonzero(at))
                if seen + count > pruned:  # the last pruned tie is in this chunk
                    rank = torch.cumsum(at, 0, dtype=torch.int64) + seen
                    o[at & (rank > pruned)] = 1
                seen += count
        return out

    def write_mask(self, i: int, plan, out: torch.Tensor, old: torch.Tensor | None = None) -> torch.Tensor:
        """Write ``keep * old`` into ``out`` (bool or float) and return it (``old``: the current mask or None).

        ``old`` must be the mask the source's ``eligible`` came from (or None if it had
        none); ``out`` may be ``old`` itself (a bool mask written in place: a round only
        turns survivors off). Unless ties at the threshold are split, no buffer larger
        than a chunk is allocated: a float ``out`` holds the scores while they are
        compared, a bool one gets them chunk by chunk from reused buffers.
        """
        s = self.sources[i]
        plain = s.criterion is None or (s.criterion == "large_final" and s.final.dtype == self.dtype)
        if plan == "all" and old is not None:
            return out if out is old else out.copy_(old)  # (a float 0/1 `old` copies into bool as its non-zeros)
        split = isinstance(plan, tuple) and not (plan[1] == 0 or plan[1] >= plan[2])
        if out.dtype == torch.bool and isinstance(plan, tuple) and not split and out.is_contiguous():
            return self._write_bool(s, plan, out, old)
        if split or not (plain and out.dtype == self.dtype and out.is_contiguous()) or not isinstance(plan, tuple):
            # `write` applies the eligibility (`old`) itself; reading each chunk of `old` before
            # writing it, so `out` may be `old`
            return self.write(i, plan, out)
        thr, pruned, _ = plan
        compare = torch.ge if pruned == 0 else torch.gt
        flat = out.view(-1)
        for start in range(0, s.numel, _CHUNK):
            o, f = flat[start : start + _CHUNK], s.final[start : start + _CHUNK]
            o.copy_(f) if s.criterion is None else torch.abs(f, out=o)
            compare(o, thr, out=o)  # entries that no longer survive are zeroed by `old` below
        if old is not None:
            out.mul_(old)
        return out

    def _write_bool(self, s: _Source, plan: tuple, out: torch.Tensor, old: torch.Tensor | None) -> torch.Tensor:
        """``keep & old`` into the contiguous bool ``out`` (possibly ``old``), chunk by chunk; no split ties."""
        thr, pruned, _ = plan
        compare = torch.ge if pruned == 0 else torch.gt
        flat = out.view(-1)
        previous = None if old is None or s.eligible is None else old.reshape(-1)  # None: everything survives
        plain = s.criterion is None or (s.criterion == "large_final" and s.final.dtype == self.dtype)
        for start in range(0, s.numel, _CHUNK):
            stop = min(start + _CHUNK, s.numel)
            size = stop - start
            if plain:
                scores = self._buffer("scores", s.device, size)
                f = s.final[start:stop]
                scores.copy_(f) if s.criterion is None else torch.abs(f, out=scores)
            else:
                scores = s.raw(slice(start, stop)).to(self.dtype)
            o = flat[start:stop]
            if previous is None:
                compare(scores, thr, out=o)
                continue
            keep = compare(scores, thr, out=self._buffer("keep", s.device, size, torch.bool))
            e = previous[start:stop]
            if e.dtype != torch.bool:
                e = torch.ne(e, 0, out=self._buffer("old", s.device, size, torch.bool))
            torch.logical_and(keep, e, out=o)  # elementwise: `o` may be `e`
        return out


def plan_group(
    pool: _Pool, ids: list[int], amount: Any, min_remaining: int, on_floor: str, name: str = "amount"
) -> dict[int, Any]:
    """Plan one threshold over the tensors ``ids`` of ``pool``, each keeping ``min_remaining`` survivors.

    Tensors that the threshold would push below their floor are held at it and the
    others absorb the rest. If ``amount`` cannot be pruned without breaking a floor,
    ``on_floor="clamp"`` prunes what the floors allow and ``"raise"`` refuses.
    Returns ``{i: plan}`` (see :meth:`_Pool.bottom`); nothing is written.
    """
    total = sum(pool.surviving[i] for i in ids)
    k_total = count_to_prune(amount, total, name)
    floors = {i: min(min_remaining, pool.surviving[i]) for i in ids}
    prunable = total - sum(floors.values())
    if k_total > prunable:
        if on_floor == "raise":
            raise ValueError(
                f"{name}={amount} would prune {k_total} of {total} surviving entries, but "
                f"min_remaining={min_remaining} per tensor leaves only {prunable} prunable "
                "(on_floor='clamp' prunes what the floors allow)"
            )
        k_total = prunable
    plans: dict[int, Any] = {}
    free, k_left = list(ids), k_total
    while free:
        planned = pool.bottom(free, k_left)
        violators = [i for i in free if planned[i][1] < floors[i]]
        if not violators:
            plans.update((i, planned[i][0]) for i in free)
            break
        for i in violators:
            plans[i] = pool.bottom([i], pool.surviving[i] - floors[i])[i][0]
            k_left -= pool.surviving[i] - floors[i]
        free = [i for i in free if i not in violators]
    return plans


#: How tensors with the same multiplier share a threshold: one pool, or one threshold each.
SCOPES = ("global", "local")


def plan(
    pool: _Pool,
    amount: Any,
    *,
    labels: Sequence[str],
    multipliers: Sequence[float] | None = None,
    scope: str = "global",
    min_remaining: int = 0,
    on_floor: str = "clamp",
    fraction: Callable[[list[int]], Any] | None = None,
    name: str = "amount",
) -> list[Any]:
    """Plan the pruning of every tensor of ``pool``: the one pooled-selection rule of torch-lottery.

    * A tensor with multiplier ``m == 0`` is left as it is; one with ``m != 1`` is
      pruned on its own at ``amount * m`` (capped at 1).
    * The others share one threshold (``scope="global"``) or get one each
      (``scope="local"``).
    * Every tensor keeps at least ``min_remaining`` survivors (a floor against
      layer collapse); ``on_floor`` says what happens when ``amount`` would break
      it (``"clamp"``: prune what the floors allow; ``"raise"``: refuse).
    * ``fraction(ids)``, if given, replaces ``amount`` per group (e.g. one-shot
      pruning to a fraction of each group's size).

    Scores and rewind values used by a criterion are checked for NaN and infinity
    first, and a pool must sit on one device. Multipliers are checked by the
    callers (with :func:`~torch_lottery._validation.check_multiplier`), which know
    their keys.

    Returns:
        One plan per tensor, for :meth:`_Pool.write` / :meth:`_Pool.write_mask`.

    Raises:
        ValueError: non-finite scores, a pool on several devices, an int
            ``amount`` larger than a group's survivors, or (``on_floor="raise"``)
            an ``amount`` the floors do not allow.
    """
    n = len(pool.sources)
    multipliers = [1.0] * n if multipliers is None else list(multipliers)
    shared = [i for i in range(n) if multipliers[i] == 1.0]
    groups = [[i] for i in shared] if scope == "local" else ([shared] if shared else [])
    groups += [[i] for i in range(n) if multipliers[i] not in (0.0, 1.0)]
    for ids in groups:
        devices = sorted({str(pool.sources[i].device) for i in ids})
        if len(devices) > 1:
            raise ValueError(
                f"the tensors of one pool (scope={scope!r}) are on several devices "
                f"({', '.join(devices)}); one pool needs one device (move the model, or prune "
                "them separately)"
            )
    for source, label in zip(pool.sources, labels, strict=True):
        check_finite(source.final, label, source.eligible)
        if source.initial is not None and source.criterion in NEEDS_INITIAL:
            check_finite(source.initial, f"rewind_point (for {label})", source.eligible)
    plans: list[Any] = ["all"] * n
    for ids in groups:
        base = amount if fraction is None else fraction(ids)
        m = multipliers[ids[0]]
        if m == 1.0:
            group_amount, group_name = base, name
        else:
            group_amount, group_name = min(1.0, float(base) * m), f"{name} * rate_multipliers[{labels[ids[0]]}]"
        for i, p in plan_group(pool, ids, group_amount, min_remaining, on_floor, group_name).items():
            plans[i] = p
    return plans
