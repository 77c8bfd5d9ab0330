"""Randomly permuted masks: the permuted random ticket of Morcos et al. (2019)."""

from __future__ import annotations

import torch

from .._validation import check_generator
from ._core import LotteryMethod, attach


class RandomPermutation(LotteryMethod):
    """Shuffle a tensor's existing mask: same number of survivors, new random positions.

    The baseline of Morcos et al. (2019): a ticket with the winning ticket's
    per-layer sparsity but a random structure. ``PRUNING_TYPE`` is ``"global"``
    because the method must see the whole tensor and its current mask, and may
    revive entries that were pruned. Entries that come back to life carry
    whatever ``<name>_orig`` holds there; rewind or reinitialize afterwards
    (e.g. :meth:`RewindPoint.restore` or :func:`random_reinit`).

    Args:
        generator (torch.Generator, optional): CPU generator for the shuffle.
        seed (int, optional): seed for a fresh generator (instead of ``generator``).
            With neither, the global RNG is used.

    Raises:
        TypeError, ValueError: on a bad ``generator`` or ``seed``, or both given.

    Examples:
        >>> from torch import nn
        >>> from torch.nn.utils import prune
        >>> from torch_lottery import random_permutation
        >>> layer = prune.l1_unstructured(nn.Linear(10, 10), "weight", amount=0.9)
        >>> before = layer.weight_mask.clone()
        >>> layer = random_permutation(layer, "weight", seed=0)
        >>> int(layer.weight_mask.sum()) == int(before.sum())
        True
    """

    PRUNING_TYPE = "global"

    def __init__(self, generator=None, seed=None) -> None:
        self.generator = check_generator(generator, seed)
        self.seed = seed

    def _release(self) -> None:
        super()._release()
        self.generator = None

    def compute_mask(self, t, default_mask):
        """Return ``default_mask`` with its entries shuffled."""
        flat = default_mask.reshape(-1)
        order = torch.randperm(flat.numel(), generator=self.generator).to(flat.device)
        return flat[order].reshape(default_mask.shape).clone(memory_format=torch.contiguous_format)

    @classmethod
    def apply(cls, module, name, generator=None, seed=None):  # type: ignore[override]
        """Shuffle the mask of ``module.<name>`` in place; return the method.

        Returns:
            RandomPermutation: the method, recorded in the tensor's hook.
        """
        return attach(module, name, cls(generator=generator, seed=seed))


def random_permutation(module, name, generator=None, seed=None):
    """Shuffle the mask of ``module.<name>`` within the tensor and return ``module``.

    Functional twin of :class:`RandomPermutation` (same arguments).

    Examples:
        >>> from torch import nn
        >>> from torch_lottery import lottery_magnitude, random_permutation
        >>> layer = lottery_magnitude(nn.Linear(5, 5), "weight", amount=20)
        >>> int(random_permutation(layer, "weight", seed=0).weight_mask.sum())
        5
    """
    RandomPermutation.apply(module, name, generator=generator, seed=seed)
    return module
