"""Mask selection primitives: deterministic bottom-k selection and criteria scores."""

from __future__ import annotations

import torch

from .._validation import check_finite

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


def _rankable(scores: torch.Tensor, name: str) -> torch.Tensor:
    check_finite(scores, name)
    if scores.dtype not in (torch.float32, torch.float64):
        scores = scores.float()
    return scores


# -- selection without sorting ------------------------------------------------------
# The k-th smallest score of a pool of tensors is found by a radix select on the
# scores' bit patterns: a float's bits, read as a signed integer (with the low bits
# of negative numbers flipped), order like the floats.  Each pass histograms the
# next _BITS bits of the entries that share the prefix found so far, tensor by
# tensor, so no pool-sized copy is made; once the bucket holding the k-th score is
# small, its entries are gathered and ``torch.kthvalue`` finishes the job.

_BITS = 12
#: Pools (or buckets) at most this large are ranked directly with kthvalue.
_SMALL = 1 << 16
_INT = {torch.float32: (torch.int32, 32, 0x7F800000), torch.float64: (torch.int64, 64, 0x7FF0000000000000)}
_DEFAULT_NAME = "the scores (weights or importance_scores)"


class _Selection:
    """Flattened 1-D scores of a pool of tensors and the bottom-k machinery over any subset of them."""

    def __init__(self, flat: list[torch.Tensor], name: str = _DEFAULT_NAME) -> None:
        dtype = flat[0].dtype
        for f in flat[1:]:
            dtype = torch.promote_types(dtype, f.dtype)
        if dtype not in _INT:
            dtype = torch.float32
        self.flat = [f.detach().reshape(-1).to(dtype) for f in flat]
        self.sizes = [f.numel() for f in self.flat]
        self.name = name
        self._nonneg: dict[int, bool] = {}
        self._hist0: dict[tuple[int, bool, int], torch.Tensor] = {}

    # -- per-tensor helpers ------------------------------------------------------
    def _check(self, ids: list[int]) -> None:
        """Raise on NaN (as check_finite does for the concatenated pool); record sign-free tensors."""
        n = sum(self.sizes[i] for i in ids)
        for i in ids:
            if i in self._nonneg or self.sizes[i] == 0:
                continue
            f = self.flat[i]
            ity, _, inf_bits = _INT[f.dtype]
            lo, hi = torch.aminmax(f.view(ity))
            if int(lo) >= 0 and int(hi) <= inf_bits:  # only +0.0, positive numbers, +inf
                self._nonneg[i] = True
                continue
            if bool(torch.isnan(f).any()):
                raise ValueError(f"{self.name} contains NaN values (shape ({n},)); cannot rank entries")
            self._nonneg[i] = False

    def _keys(self, i: int, nonneg: bool) -> torch.Tensor:
        """Integer keys ordered like the scores of tensor ``i`` (a view when no sign bit is set)."""
        f = self.flat[i]
        ity, width, _ = _INT[f.dtype]
        if nonneg:
            return f.view(ity)
        u = (f + 0.0).view(ity)  # -0.0 + 0.0 == +0.0: equal floats get equal keys
        return u ^ ((u >> (width - 1)) & ((1 << (width - 1)) - 1))

    def _value(self, key: int, nonneg: bool) -> torch.Tensor:
        dtype = self.flat[0].dtype
        ity, width, _ = _INT[dtype]
        if not nonneg and key < 0:
            key ^= (1 << (width - 1)) - 1
        return torch.tensor([key], dtype=ity, device=self.flat[0].device).view(dtype)[0]

    # -- selection ---------------------------------------------------------------
    def threshold(self, ids: list[int], k: int) -> tuple[torch.Tensor, list[int], list[int]]:
        """Return (k-th smallest score of tensors ``ids``, per-tensor counts below it, counts equal to it).

        Needs ``0 < k < sum of sizes``; NaN must have been ruled out by :meth:`_check`.
        """
        ids = [i for i in ids if self.sizes[i] > 0]
        n = sum(self.sizes[i] for i in ids)
        below = dict.fromkeys(ids, 0)
        if n <= _SMALL:
            pieces = [self.flat[i] for i in ids]
            thr = torch.kthvalue(torch.cat(pieces) if len(pieces) > 1 else pieces[0], k).values
            return (thr, [int(torch.count_nonzero(p < thr)) for p in pieces],
                    [int(torch.count_nonzero(p == thr)) for p in pieces])
        nonneg = all(self._nonneg[i] for i in ids)
        _, width_total, _ = _INT[self.flat[0].dtype]
        limit = max(_SMALL, n >> 3)
        active, prefix, top, rank, count = ids, None, width_total, k, n
        last_counts: list[int] = []
        while top > 0 and count > limit:
            # A wide first pass (when the pool has few tensors) usually leaves a bucket small enough to gather.
            width = min(16 if prefix is None and len(active) <= 256 else _BITS, top)
            shift, bins = top - width, 1 << width
            hists = []
            for i in active:
                key = self._keys(i, nonneg)
                if prefix is None:
                    h = self._hist0.get((i, nonneg, width))
                    if h is None:
                        digit = key >> shift
                        if not nonneg:
                            digit += bins >> 1
                        h = self._hist0[(i, nonneg, width)] = torch.bincount(digit, minlength=bins)
                else:
                    inside = key[(key >> top) == prefix]
                    h = torch.bincount((inside >> shift) & (bins - 1), minlength=bins)
                hists.append(h)
            table = torch.stack(hists)
            cum = table.sum(0).cumsum(0)
            d = int(torch.searchsorted(cum, torch.tensor([rank], dtype=cum.dtype, device=cum.device)))
            for i, b in zip(active, table[:, :d].sum(1).tolist()):
                below[i] += b
            if d > 0:
                rank -= int(cum[d - 1])
            column = table[:, d].tolist()
            count = int(cum[d]) - (int(cum[d - 1]) if d > 0 else 0)
            if prefix is None:
                prefix = d - (bins >> 1) if not nonneg else d
            else:
                prefix = (prefix << width) | d
            top = shift
            active = [i for i, c in zip(active, column) if c > 0]
            last_counts = [c for c in column if c > 0]
        if top == 0:  # every bit resolved: the bucket holds only the threshold
            at = dict(zip(active, last_counts))
            return (self._value(prefix, nonneg), [below[i] for i in ids], [at.get(i, 0) for i in ids])
        pieces = []
        for i in active:
            f = self.flat[i]
            pieces.append(f if prefix is None else f[(self._keys(i, nonneg) >> top) == prefix])
        thr = torch.kthvalue(torch.cat(pieces) if len(pieces) > 1 else pieces[0], rank).values
        at = {}
        for i, p in zip(active, pieces):
            below[i] += int(torch.count_nonzero(p < thr))
            at[i] = int(torch.count_nonzero(p == thr))
        return thr, [below[i] for i in ids], [at.get(i, 0) for i in ids]

    def bottom(self, ids: list[int], k: int) -> dict[int, tuple]:
        """Plan the bottom-``k`` pruning of tensors ``ids`` (ties: lower flat index first).

        Returns ``{i: (plan, kept count)}``; a plan is ``"all"``, ``"none"`` or
        ``(threshold, ties pruned, ties in the tensor)``.
        """
        n = sum(self.sizes[i] for i in ids)
        if k <= 0 or n == 0:
            return {i: ("all", self.sizes[i]) for i in ids}
        if k >= n:
            return {i: ("none", 0) for i in ids}
        self._check(ids)
        thr, below, at = self.threshold(ids, k)
        need = k - sum(below)
        nonempty = [i for i in ids if self.sizes[i] > 0]
        out = {i: ("all", 0) for i in ids}
        for i, b, a in zip(nonempty, below, at):
            p = min(a, need)
            need -= p
            out[i] = ((thr, p, a), self.sizes[i] - b - p)
        return out

    def keep(self, i: int, plan) -> torch.Tensor:
        """Return the 1-D bool keep-mask of tensor ``i`` under ``plan``."""
        f = self.flat[i]
        if plan == "all":
            return torch.ones(f.shape, dtype=torch.bool, device=f.device)
        if plan == "none":
            return torch.zeros(f.shape, dtype=torch.bool, device=f.device)
        thr, pruned, ties = plan
        if pruned == 0:
            return f >= thr
        if pruned >= ties:
            return f > thr
        at = f == thr
        return (f > thr) | (at & (torch.cumsum(at, 0) > pruned))


def bottom_k(scores: torch.Tensor, k: int, name: str = _DEFAULT_NAME) -> torch.Tensor:
    """Return a bool mask over a 1-D ``scores`` that is False at the ``k`` lowest entries.

    Ties at the threshold are broken deterministically: the entry with the lower
    index is pruned first. Without ties the result equals stock
    ``L1Unstructured``'s ``topk`` selection.

    The threshold is found by a radix select (no sort, no topk); see :class:`_Selection`.
    """
    n = scores.numel()
    if k <= 0 or n == 0:
        return torch.ones(n, dtype=torch.bool, device=scores.device)
    if k >= n:
        return torch.zeros(n, dtype=torch.bool, device=scores.device)
    selection = _Selection([scores], name)
    ((plan, _),) = selection.bottom([0], k).values()
    return selection.keep(0, plan)
