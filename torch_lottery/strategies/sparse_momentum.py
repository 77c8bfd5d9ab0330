"""Built-in plugin: sparse momentum (``sparse_momentum``, Dettmers & Zettlemoyer 2019).

Dettmers and Zettlemoyer, "Sparse Networks from Scratch: Faster Training without
Losing Performance" (2019): a sparse network keeps its density fixed while it
trains; periodically each layer prunes its smallest-magnitude weights, the
regrowth is redistributed across layers in proportion to each layer's mean
momentum magnitude, and each layer regrows where the momentum of its zero-valued
weights is largest. They report state-of-the-art sparse accuracy on MNIST,
CIFAR-10 and ImageNet (mean errors 8%, 15% and 6% lower, relative, than the other
sparse algorithms they compare), dense accuracy reproduced reliably, and up to
5.61x faster training with sparse computation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any, ClassVar

import torch
from torch import nn

from .. import _layout
from .._validation import check_fraction
from ..plugins.hookspecs import hookimpl
from .base import StepContext
from .dynamic import DynamicSparse, _allocate


class SparseMomentum(DynamicSparse):
    """Drop the smallest ``|w|``, regrow by momentum: redistributed across tensors, grown within each one.

    Every ``every`` optimizer steps each tensor drops ``floor(f(t) * survivors)``
    of its smallest-magnitude survivors. The total dropped is regrown across the
    tensors in proportion to each one's mean momentum magnitude over its
    survivors (before the drop), capped so no tensor exceeds its size (a tensor
    at its cap gives its excess to the others, in the same proportions; exact
    integer counts by the largest-remainder rule, see :func:`erk_densities`; if
    every mean is 0, each tensor regrows what it dropped). Within a tensor, the
    entries not kept with the largest momentum magnitude regrow. Regrown weights
    start at zero with a fresh optimizer state.

    The momentum is the strategy's own, of *dense* gradients: with stock prune's
    layout the gradient of ``<name>_orig`` is zero at pruned entries, so
    :meth:`begin` hooks every pruned module to capture the gradient of the
    computed ``module.<name>`` (pruned entries included) at each backward pass;
    after each optimizer step (:meth:`on_step`) ``m = momentum * m + g`` with
    ``g`` the gradients summed since the last step. :meth:`end` removes the
    hooks (the driver calls it even when training raises). The run needs
    ``find_ticket(..., optimizer=...)``.

    Args:
        total_steps (int): required: the step at which the drop fraction reaches zero.
        density (float): fraction of the weights kept throughout (default 0.1).
        every (int): steps between updates (default 100; the paper updates once an epoch).
        drop_fraction (float): the initial drop fraction, cosine-decayed (default
            0.5, the paper's prune rate).
        distribution (str): ``"erk"`` (default) or ``"uniform"``.
        momentum (float): the momentum of the dense-gradient average, in [0, 1)
            (default 0.9, the paper's).

    Attributes:
        momentum_buffers (dict): the momentum by the first name of each distinct
            tensor, while the run trains (filled by :meth:`begin`, emptied by :meth:`end`).

    Examples:
        >>> from torch import nn
        >>> from torch_lottery.testing import check_prune, make_context
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> strategy = SparseMomentum(total_steps=1000, density=0.25)
        >>> sum(int(m.sum()) for m in check_prune(strategy, make_context(net)).values())
        12
        >>> strategy.options()["drop_fraction"], strategy.options()["momentum"]
        (0.5, 0.9)
    """

    default_drop_fraction: ClassVar[float] = 0.5

    def __init__(
        self,
        total_steps: int | None = None,
        density: float = 0.1,
        every: int = 100,
        drop_fraction: float | None = None,
        distribution: str = "erk",
        momentum: float = 0.9,
    ) -> None:
        super().__init__(
            total_steps=total_steps,
            density=density,
            every=every,
            drop_fraction=drop_fraction,
            distribution=distribution,
        )
        self.momentum = check_fraction(momentum, "momentum", high_open=True)
        self.momentum_buffers: dict[str, torch.Tensor] = {}
        self._pending: dict[str, torch.Tensor] = {}
        self._handles: list[Any] = []

    # -- the dense-gradient momentum -----------------------------------------------------------
    def begin(self, context: StepContext) -> None:
        """Start the momentum at zero and hook every tensor's module to capture its dense gradient."""
        self._release()
        names, pairs = context.names, context.pairs()
        first = _layout.aliases(pairs)
        for index, (module, tensor_name) in enumerate(pairs):
            key = names[first[index]]  # tied names add into one momentum
            if key not in self.momentum_buffers:
                orig = _layout.original(module, tensor_name)
                self.momentum_buffers[key] = torch.zeros_like(orig, memory_format=torch.contiguous_format).detach()
                self._pending[key] = torch.zeros_like(self.momentum_buffers[key])
            self._handles.append(module.register_forward_hook(self._capture(module, tensor_name, key)))

    def _capture(self, module: nn.Module, tensor_name: str, key: str) -> Callable[..., None]:
        """A forward hook that adds the gradient of the ``module.<name>`` this forward used to ``_pending[key]``."""
        pending = self._pending[key]

        def add(grad: torch.Tensor) -> None:
            pending.add_(grad.detach())  # returns None: the gradient flowing on is left as it is

        def hook(called: nn.Module, inputs: Any, output: Any) -> None:
            if called is not module:  # a copy of the model (deepcopy keeps hooks): not ours
                return
            weight = getattr(module, tensor_name)
            if isinstance(weight, torch.Tensor) and weight.requires_grad:
                weight.register_hook(add)

        return hook

    def on_step(self, context: StepContext) -> None:
        """After an optimizer step, fold the gradients captured since the last step into the momentum."""
        for key, buffer in self.momentum_buffers.items():
            pending = self._pending[key]
            buffer.mul_(self.momentum).add_(pending)
            pending.zero_()

    def end(self, context: StepContext) -> None:
        """Remove the hooks :meth:`begin` installed and drop the momentum (the masks stay as they are)."""
        self._release()

    def _release(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.momentum_buffers, self._pending = {}, {}

    # -- the update ---------------------------------------------------------------------------
    def _buffers(self, names: list[str]) -> dict[str, torch.Tensor]:
        missing = [n for n in names if n not in self.momentum_buffers]
        if missing:
            raise RuntimeError(
                f"SparseMomentum has no momentum of {missing}: begin(context) installs it before training "
                "(find_ticket calls it)"
            )
        return {n: self.momentum_buffers[n] for n in names}

    def grow_counts(
        self,
        context: StepContext,
        masks: Mapping[str, torch.Tensor],
        kept: Mapping[str, torch.Tensor],
        dropped: Mapping[str, int],
    ) -> dict[str, int]:
        """Split the total dropped across tensors by mean momentum magnitude over survivors, capped by free room."""
        names = list(masks)
        buffers = self._buffers(names)
        means = []
        for name in names:
            alive = masks[name].to(torch.bool, copy=True)
            means.append(float(buffers[name][alive].abs().mean()) if bool(alive.any()) else 0.0)
        weights: list[Any] = [Fraction(m) for m in means] if any(means) else [dropped[n] for n in names]
        room = [kept[n].numel() - int(kept[n].sum()) for n in names]
        counts = _allocate(sum(dropped.values()), weights, room)
        return dict(zip(names, counts, strict=True))

    def grow_scores(self, context: StepContext, names: list[str]) -> dict[str, torch.Tensor]:
        """Return the momentum magnitude of each tensor of ``names``."""
        return {n: b.abs() for n, b in self._buffers(names).items()}

    def options(self) -> dict[str, Any]:
        return {**super().options(), "momentum": self.momentum}


@hookimpl
def torch_lottery_register_strategies(register):
    """Register ``sparse_momentum``."""
    register("sparse_momentum", SparseMomentum)
