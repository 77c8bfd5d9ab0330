"""The hook every torch-lottery method installs: one :class:`LotteryContainer` per pruned tensor.

* :class:`LotteryContainer`, a :class:`~torch.nn.utils.prune.PruningContainer`
  that carries the rounds of one tensor and keeps the model deep-copyable and its
  memory flat: it drops the per-round mask copies that stock ``CustomFromMask``
  hooks keep (pytorch issues 34257, 49332).
* :func:`adopt` and :func:`compact_hooks`, which give tensors pruned (or about to
  be pruned) by stock code that container.
* A refresh of ``nn.MultiheadAttention.out_proj``: attention never calls
  ``out_proj.forward``, so stock pruning hooks on it never run (pytorch issue
  69353). Pruning it with a torch-lottery method installs a global pre-hook that
  recomputes the masked weight whenever an attention module runs.

The layout itself (``<name>_orig``, ``<name>_mask``, ``module.<name>``) belongs to
:mod:`torch_lottery._layout`.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn
from torch.nn.utils import prune

from .. import _layout
from .._validation import check_module


def release_round_state(method: prune.BasePruningMethod) -> None:
    """Drop the tensors a finished round's method no longer needs (it is never asked again)."""
    if isinstance(method, prune.CustomFromMask):
        method.mask = None
    release = getattr(method, "_release", None)
    if release is not None:
        release()


class LotteryContainer(prune.PruningContainer):
    """A :class:`~torch.nn.utils.prune.PruningContainer` that keeps models deep-copyable.

    torch-lottery installs one per pruned tensor; stock methods applied later are
    added to it by stock ``apply`` (it *is* a ``PruningContainer``), so rounds of
    stock and lottery methods mix in either order. Only the last round's method is
    ever asked for a mask, so earlier rounds keep their settings but drop their
    tensors: the hooks hold no mask copies, whatever the number of rounds.
    """

    _tracked: int | None = None  # id of the module whose tensor is tracked (see _layout.track)

    def __call__(self, module: nn.Module, inputs: Any) -> None:
        if self._tracked != id(module):  # first forward of this module (or of a copy of it)
            _layout.track(module, self._tensor_name)
            self._tracked = id(module)
        _layout.install_weight(module, self._tensor_name, self.apply_mask(module))

    def apply_mask(self, module: nn.Module) -> torch.Tensor:
        """Return ``mask * orig`` as a deep-copyable tensor (also when stock ``apply`` sets it)."""
        name = getattr(self, "_tensor_name", None)
        if name is None:
            raise ValueError("this LotteryContainer is not attached to a tensor (its _tensor_name is not set)")
        return _layout.masked_product(module, name)

    def remove(self, module: nn.Module) -> None:
        """Make the pruning permanent, as stock ``remove`` does, with a plain tensor."""
        name = self._tensor_name
        with torch.no_grad():
            weight = prune.BasePruningMethod.apply_mask(self, module)
        if hasattr(module, name):
            delattr(module, name)
        orig = cast(nn.Parameter, module._parameters[_layout.orig_name(name)])
        orig.data = weight.data
        del module._parameters[_layout.orig_name(name)]
        del module._buffers[_layout.mask_name(name)]
        setattr(module, name, orig)

    def add_pruning_method(self, method: prune.BasePruningMethod) -> None:
        super().add_pruning_method(method)
        for earlier in self._pruning_methods[:-1]:
            release_round_state(earlier)

    def compute_mask(self, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
        """Compute the new round's mask (stock composition), then drop what the rounds' methods hold.

        Stock ``apply`` (e.g. ``prune.global_unstructured`` adding a ``CustomFromMask``
        to this container) asks for the mask once and never again, so the new
        method's tensors are released here too, not only at the next round.

        The mask keeps ``default_mask``'s kind: stock composes the rounds in the
        tensor's dtype, and the result is turned back into bool when the current
        mask is bool (torch-lottery's masks stay 1 byte an entry under stock
        methods too); a float mask stays float.
        """
        mask = super().compute_mask(t, default_mask)
        for method in self._pruning_methods:
            release_round_state(method)
        if default_mask.dtype == torch.bool and mask.dtype != torch.bool:
            mask = torch.ne(mask, 0)  # stock composes in the tensor's dtype; a bool mask stays bool
        return mask


def make_container(name: str, methods: tuple[prune.BasePruningMethod, ...]) -> LotteryContainer:
    """Return a :class:`LotteryContainer` for tensor ``name`` holding ``methods`` in order.

    Nothing is released here, so a failed round leaves the earlier ones intact.
    """
    container = LotteryContainer()
    container._tensor_name = name
    for method in methods:
        prune.PruningContainer.add_pruning_method(container, method)
    return container


def rounds_of(hook: prune.BasePruningMethod | None) -> tuple[prune.BasePruningMethod, ...]:
    if hook is None:
        return ()
    return tuple(hook) if isinstance(hook, prune.PruningContainer) else (hook,)


def install(module: nn.Module, name: str, key: Any, container: LotteryContainer) -> None:
    """Put ``container`` where the tensor's hook was (or add it), track the tensor, recompute ``module.<name>``."""
    if key is not None:
        module._forward_pre_hooks[key] = container
    else:
        module.register_forward_pre_hook(container)
    _layout.track(module, name)
    container._tracked = id(module)
    if isinstance(module, nn.modules.linear.NonDynamicallyQuantizableLinear):
        ensure_attention_refresh()


def adopt(module: nn.Module, name: str) -> None:
    """Give ``module.<name>`` a :class:`LotteryContainer`, so that stock code pruning it next keeps it.

    An unpruned tensor is pruned with stock's identity (an all-ones mask); a tensor
    pruned by stock methods keeps its mask and rounds, in a container. Used right
    before stock ``global_unstructured`` installs the masks our methods computed:
    its ``custom_from_mask`` then joins the container, so the model stays
    deep-copyable and memory-flat.
    """
    key, hook = _layout.find_hook(module, name)
    if isinstance(hook, LotteryContainer):
        return
    fresh = hook is None
    if fresh:
        orig = _layout.original(module, name)
        module.register_parameter(_layout.orig_name(name), cast(nn.Parameter, orig))
        del module._parameters[name]
        # WHY an expanded one-element mask: stock replaces it with the real mask right after (cloning it
        # tensor by tensor), so the whole pool never holds a second set of full-size masks at once.
        ones = torch.ones((), dtype=torch.bool, device=orig.device).expand(orig.shape)
        module.register_buffer(_layout.mask_name(name), ones)
        methods: tuple[prune.BasePruningMethod, ...] = (prune.Identity(),)
        methods[0]._tensor_name = name
    else:
        methods = rounds_of(hook)
    container = make_container(name, methods)
    for done in container:
        release_round_state(done)
    install(module, name, key, container)
    with torch.no_grad():
        # with an all-ones mask the masked weight is the tensor itself: a view, no copy
        weight = _layout.as_pruned_weight(orig.detach()) if fresh else container.apply_mask(module)
        _layout.install_weight(module, name, weight)


def compact_hooks(model: nn.Module) -> int:
    """Turn every stock pruning hook of ``model`` into a :class:`LotteryContainer`; return how many.

    After stock ``prune.global_unstructured`` or repeated stock rounds, each tensor's
    hook keeps one mask copy per round (pytorch issues 34257, 49332) and the model
    cannot be deep-copied after a forward pass (pytorch issue 37322). This keeps
    the masks and the round history, drops the copies, and makes the model
    deep-copyable. Masks, weights and outputs are unchanged. (Tensors pruned
    through torch-lottery, including stock ``global_unstructured`` with its
    methods, already have such a hook.)

    Examples:
        >>> import copy
        >>> from torch import nn
        >>> from torch.nn.utils import prune
        >>> from torch_lottery import compact_hooks
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
        >>> params = [(net[0], "weight"), (net[1], "weight")]
        >>> for _ in range(3):
        ...     prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=0.2)
        >>> compact_hooks(net)
        2
        >>> _ = copy.deepcopy(net)
    """
    check_module(model)
    converted = 0
    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if not isinstance(hook, prune.BasePruningMethod):
                continue
            if isinstance(hook, LotteryContainer):
                for done in hook:
                    release_round_state(done)
                continue
            if _layout.is_pruned(module, hook._tensor_name):
                adopt(module, hook._tensor_name)
                converted += 1
    return converted


_ATTENTION_HOOK: Any = None


def _refresh_attention(module: nn.Module, inputs: Any) -> None:
    if isinstance(module, nn.MultiheadAttention):
        out_proj = module.out_proj
        for hook in out_proj._forward_pre_hooks.values():
            if isinstance(hook, prune.BasePruningMethod):
                hook(out_proj, inputs)


def ensure_attention_refresh() -> None:
    """Install (once per process) the pre-hook that refreshes pruned ``out_proj`` weights."""
    global _ATTENTION_HOOK
    if _ATTENTION_HOOK is None:
        _ATTENTION_HOOK = nn.modules.module.register_module_forward_pre_hook(_refresh_attention)
