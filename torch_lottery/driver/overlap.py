"""Mask overlap between tickets: how much two sets of masks keep the same weights, per tensor and overall.

:func:`mask_overlap` compares two tickets, two mask dicts or two pruned models
(or any mix), e.g. the tickets of two seeds, of two strategies (IMP and SNIP),
or a ticket and its early-bird draw. Per tensor and over all of them it counts
the kept entries of each side and of both, and derives the intersection over
union (IoU) of the kept sets, the fraction of each side's kept weights that the
other keeps too, and both densities.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .. import _layout
from .._validation import check_binary_mask, check_choice, check_nonneg_int, describe
from ..distributed import unwrap
from ..pruning.utils import get_mask, named_prunable_parameters
from .ticket import Ticket

#: What :func:`mask_overlap` does with tensors that only one side masks.
LAYERS = ("all", "common")


def _ratio(part: int, whole: int) -> float:
    """Return ``part / whole``, 1.0 when ``whole`` is 0 (nothing to fall short of)."""
    return part / whole if whole else 1.0


@dataclass(frozen=True)
class LayerOverlap:
    """How two masks of the same shape overlap: the counts, and the figures made from them.

    Built from the four counts; the other attributes are derived from them.
    The ratios of an empty denominator are 1.0: two masks that keep nothing
    have an IoU of 1.0 (they keep the same, empty, set), and a side that keeps
    nothing has all its kept weights (none) in the other side.

    Attributes:
        total (int): entries of the tensor (of all tensors, for the overall row).
        kept_a (int): entries side ``a`` keeps.
        kept_b (int): entries side ``b`` keeps.
        kept_both (int): entries both sides keep (the intersection).
        kept_either (int): entries at least one side keeps (the union).
        iou (float): intersection over union, ``kept_both / kept_either``.
        a_in_b (float): fraction of ``a``'s kept entries that ``b`` keeps too, ``kept_both / kept_a``.
        b_in_a (float): fraction of ``b``'s kept entries that ``a`` keeps too, ``kept_both / kept_b``.
        density_a (float): fraction of the entries ``a`` keeps, ``kept_a / total``.
        density_b (float): fraction of the entries ``b`` keeps, ``kept_b / total``.

    Raises:
        TypeError, ValueError: if a count is not an int >= 0, or the counts contradict
            each other (more kept than entries, more kept by both than by one side).

    Examples:
        >>> from torch_lottery.driver import LayerOverlap
        >>> row = LayerOverlap(total=4, kept_a=2, kept_b=2, kept_both=1)
        >>> row.kept_either, round(row.iou, 4), row.a_in_b, row.density_b
        (3, 0.3333, 0.5, 0.5)
    """

    total: int
    kept_a: int
    kept_b: int
    kept_both: int
    kept_either: int = field(init=False)
    iou: float = field(init=False)
    a_in_b: float = field(init=False)
    b_in_a: float = field(init=False)
    density_a: float = field(init=False)
    density_b: float = field(init=False)

    def __post_init__(self) -> None:
        total, kept_a, kept_b, both = (check_nonneg_int(getattr(self, f), f) for f in _COUNTS)
        if max(kept_a, kept_b) > total or both > min(kept_a, kept_b):
            raise ValueError(
                f"the counts contradict each other: total={total}, kept_a={kept_a}, kept_b={kept_b}, "
                f"kept_both={both} (need kept_both <= kept_a, kept_b <= total)"
            )
        either = kept_a + kept_b - both
        figures = {
            "kept_either": either,
            "iou": _ratio(both, either),
            "a_in_b": _ratio(both, kept_a),
            "b_in_a": _ratio(both, kept_b),
            "density_a": _ratio(kept_a, total),
            "density_b": _ratio(kept_b, total),
        }
        for name, value in figures.items():
            object.__setattr__(self, name, value)  # a frozen dataclass sets its derived fields so


#: The counts a :class:`LayerOverlap` is built from, in its constructor's order.
_COUNTS = ("total", "kept_a", "kept_b", "kept_both")


@dataclass
class MaskOverlap:
    """The overlap of two sets of masks, per tensor and overall, as :func:`mask_overlap` returns it.

    ``str()`` gives :meth:`table`.

    Attributes:
        layers (dict[str, LayerOverlap]): per compared tensor (qualified name), in ``a``'s order.
        overall (LayerOverlap): the counts summed over ``layers``; its ratios weigh
            every entry alike (not a mean of the per-tensor ratios).
        only_a (list[str]): tensors only ``a`` masks (left out with ``layers="common"``).
        only_b (list[str]): tensors only ``b`` masks (left out with ``layers="common"``).
    """

    layers: dict[str, LayerOverlap]
    overall: LayerOverlap
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)

    def table(self) -> str:
        """Return a plain-text table: one row per tensor and an ``overall`` row, ratios to 3 decimals.

        Examples:
            >>> import torch
            >>> import torch_lottery as tl
            >>> a = {"fc.weight": torch.tensor([1, 1, 0, 0])}
            >>> b = {"fc.weight": torch.tensor([1, 0, 1, 0])}
            >>> print(tl.mask_overlap(a, b).table())
            tensor     entries  kept a  kept b  both    IoU  a in b  b in a  density a  density b
            fc.weight        4       2       2     1  0.333   0.500   0.500      0.500      0.500
            overall          4       2       2     1  0.333   0.500   0.500      0.500      0.500
        """
        header = ["tensor", "entries", "kept a", "kept b", "both", "IoU", "a in b", "b in a", "density a", "density b"]
        rows = [header] + [_row(name, row) for name, row in [*self.layers.items(), ("overall", self.overall)]]
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines = [
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths, strict=True))
            )
            for r in rows
        ]
        for side, names in (("a", self.only_a), ("b", self.only_b)):
            if names:
                lines.append(f"only in {side} (not compared): {', '.join(names)}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _row(name: str, row: LayerOverlap) -> list[str]:
    counts = [str(n) for n in (row.total, row.kept_a, row.kept_b, row.kept_both)]
    ratios = [f"{r:.3f}" for r in (row.iou, row.a_in_b, row.b_in_a, row.density_a, row.density_b)]
    return [name, *counts, *ratios]


def _model_masks(model: nn.Module, argument: str) -> dict[str, torch.Tensor]:
    """Return the masks of every prunable weight (all ones if unpruned) and every other pruned tensor of ``model``."""
    model = unwrap(model)
    named = named_prunable_parameters(model)
    listed = {q for q, _, _ in named}
    named += [(q, m, n) for q, m, n in _layout.pruned_tensors(model) if q not in listed]  # e.g. a pruned bias
    return {
        q: check_binary_mask(get_mask(m, n).detach(), f"{argument}'s mask of {q!r}").to(torch.bool, copy=True)
        for q, m, n in named
    }


def _masks(value: Any, argument: str) -> dict[str, torch.Tensor]:
    """Return the masks of a ticket, a ``{qualified name: mask}`` dict or a pruned model, as bool tensors."""
    if isinstance(value, Ticket):
        return dict(value.masks)
    if isinstance(value, nn.Module):
        return _model_masks(value, argument)
    if isinstance(value, Mapping):
        out = {}
        for name, mask in value.items():
            if not isinstance(name, str):
                raise TypeError(f"{argument} must map qualified names (str) to masks, got key {describe(name)}")
            out[name] = check_binary_mask(mask, f"{argument}[{name!r}]").to(torch.bool, copy=True)
        return out
    raise TypeError(f"{argument} must be a Ticket, a dict of masks or a pruned model, got {describe(value)}")


def mask_overlap(a: Any, b: Any, layers: str = "all") -> MaskOverlap:
    """Compare the kept weights of two tickets, mask dicts or pruned models, per tensor and overall.

    Each side is a :class:`~torch_lottery.Ticket` (its ``masks``), a dict
    ``{qualified name: mask}`` (bool or 0/1 tensors, as ``Ticket.masks``) or a
    model: every prunable weight of it (all ones where it is not pruned) and
    every other pruned tensor (e.g. a pruned bias). Tensors are matched by
    qualified name; each pair must have the same shape. Tied weights count at
    each of their names, as in ``Ticket.total_weights``.

    Args:
        a: a Ticket, a mask dict or a model.
        b: a Ticket, a mask dict or a model.
        layers (str): ``"all"`` (default): both sides must mask the same
            tensors; ``"common"``: compare the tensors both mask and list the
            others in ``only_a`` and ``only_b``.

    Returns:
        MaskOverlap: per tensor and overall counts, IoU, ``a_in_b``, ``b_in_a``
        and densities; ``str()`` of it is a plain-text table.

    Raises:
        TypeError: if ``a`` or ``b`` is none of the three kinds, or a dict holds a
            key that is not a str or a value that is not a tensor.
        ValueError: if ``layers`` is not ``"all"`` or ``"common"``; if a mask
            holds values other than 0 and 1; with ``layers="all"``, if a tensor
            is masked on one side only (the error names them); if a tensor has
            another shape on each side (the error names it and both shapes); if
            no tensor is left to compare.

    Examples:
        >>> import torch
        >>> import torch_lottery as tl
        >>> a = {"0.weight": torch.tensor([[1, 1], [0, 0]]), "1.weight": torch.tensor([1, 0, 0, 0])}
        >>> b = {"0.weight": torch.tensor([[1, 0], [1, 0]]), "1.weight": torch.tensor([1, 0, 0, 0])}
        >>> result = tl.mask_overlap(a, b)
        >>> round(result.layers["0.weight"].iou, 4), result.layers["1.weight"].iou
        (0.3333, 1.0)
        >>> result.overall.kept_both, result.overall.kept_either, result.overall.iou
        (2, 4, 0.5)
    """
    check_choice(layers, LAYERS, "layers")
    masks_a, masks_b = _masks(a, "a"), _masks(b, "b")
    only_a = [q for q in masks_a if q not in masks_b]
    only_b = [q for q in masks_b if q not in masks_a]
    if layers == "all" and (only_a or only_b):
        sides = [f"only in {side}: {', '.join(names)}" for side, names in (("a", only_a), ("b", only_b)) if names]
        raise ValueError(
            f"a and b mask different tensors ({'; '.join(sides)}); "
            "pass layers='common' to compare the tensors both mask"
        )
    common = [q for q in masks_a if q in masks_b]
    if not common:
        raise ValueError(
            f"nothing to compare: a masks {len(masks_a)} tensors, b masks {len(masks_b)}, none of them in common"
        )
    for q in common:
        if masks_a[q].shape != masks_b[q].shape:
            raise ValueError(
                f"{q!r} has shape {tuple(masks_a[q].shape)} in a but {tuple(masks_b[q].shape)} in b: "
                "masks of different shapes cannot be compared"
            )
    rows = {}
    for q in common:
        mask_a = masks_a[q]
        mask_b = masks_b[q].to(mask_a.device)
        rows[q] = LayerOverlap(
            total=mask_a.numel(),
            kept_a=int(mask_a.count_nonzero()),
            kept_b=int(mask_b.count_nonzero()),
            kept_both=int((mask_a & mask_b).count_nonzero()),
        )
    overall = LayerOverlap(*(sum(getattr(row, count) for row in rows.values()) for count in _COUNTS))
    return MaskOverlap(rows, overall, only_a, only_b)  # both empty unless layers="common"


__all__ = ["LAYERS", "LayerOverlap", "MaskOverlap", "mask_overlap"]
