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


def bottom_k(scores: torch.Tensor, k: int, name: str = "the scores (weights or importance_scores)") -> torch.Tensor:
    """Return a bool mask over a 1-D ``scores`` that is False at the ``k`` lowest entries.

    Ties at the threshold are broken deterministically: the entry with the lower
    index is pruned first. Without ties the result equals stock
    ``L1Unstructured``'s ``topk`` selection.
    """
    n = scores.numel()
    keep = torch.ones(n, dtype=torch.bool, device=scores.device)
    if k <= 0 or n == 0:
        return keep
    if k >= n:
        return keep.zero_()
    scores = _rankable(scores.reshape(-1), name)
    threshold = torch.kthvalue(scores, k).values
    below = scores < threshold
    need = k - int(below.sum())
    at = scores == threshold
    prune_at = at & (torch.cumsum(at, 0) <= need)
    keep &= ~(below | prune_at)
    return keep
