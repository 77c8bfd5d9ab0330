"""Install a given mask: how tickets and strategies put their masks on a model."""

from __future__ import annotations

import torch

from .._validation import check_binary_mask, describe
from ._core import LotteryMethod, attach


class FixedMask(LotteryMethod):
    """Install exactly ``mask`` on a tensor, replacing its current mask.

    Unlike stock :class:`~torch.nn.utils.prune.CustomFromMask`, which multiplies
    the new mask into the old one, the mask *replaces* the current one (a ticket
    or a strategy decides the whole mask), and the tensor's hook stays a
    deep-copyable :class:`LotteryContainer` that keeps no mask copy.

    Args:
        mask (Tensor): 0/1 or bool tensor of the parameter's shape (installed as a
            ``torch.bool`` buffer, as every mask torch-lottery installs).
        source (str, optional): where the mask comes from (e.g. ``"imp round 3"``),
            kept on the hook for inspection.

    Raises:
        TypeError: if ``mask`` is not a tensor.
        ValueError: if its shape differs from the parameter's, or it is not 0/1.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from torch_lottery import fixed_mask
        >>> layer = fixed_mask(nn.Linear(2, 2), "weight", torch.tensor([[1, 0], [0, 1]]))
        >>> layer.weight_mask
        tensor([[ True, False],
                [False,  True]])
    """

    PRUNING_TYPE = "global"

    def __init__(self, mask, source=None) -> None:
        check_binary_mask(mask, "mask")
        if source is not None and not isinstance(source, str):
            raise TypeError(f"source must be a str, got {describe(source)}")
        self.mask = mask
        self.source = source

    def _prepare(self, module, name, orig):
        if self.mask.shape != orig.shape:
            raise ValueError(
                f"mask has shape {tuple(self.mask.shape)} but {type(module).__name__}.{name} "
                f"has shape {tuple(orig.shape)}"
            )
        return None, None

    def _release(self) -> None:
        super()._release()
        self.mask = None

    def compute_mask(self, t, default_mask):
        """Return the given mask in ``default_mask``'s dtype and device."""
        return self.mask.to(device=default_mask.device, dtype=default_mask.dtype).clone(
            memory_format=torch.contiguous_format
        )

    @classmethod
    def apply(cls, module, name, mask, source=None):  # type: ignore[override]
        """Install ``mask`` on ``module.<name>``; return the method.

        Returns:
            FixedMask: the method, recorded in the tensor's hook.
        """
        return attach(module, name, cls(mask, source=source))


def fixed_mask(module, name, mask, source=None):
    """Install exactly ``mask`` on ``module.<name>`` (replacing its mask) and return ``module``.

    Functional twin of :class:`FixedMask` (same arguments).

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from torch_lottery import fixed_mask
        >>> layer = fixed_mask(nn.Linear(2, 1), "weight", torch.tensor([[True, False]]), source="by hand")
        >>> layer.weight_mask.tolist()
        [[True, False]]
    """
    FixedMask.apply(module, name, mask, source=source)
    return module
