"""Machinery shared by every torch-lottery pruning method.

Stock :mod:`torch.nn.utils.prune` keeps, per pruned tensor ``<name>``, a parameter
``<name>_orig``, a buffer ``<name>_mask`` and a forward pre-hook that recomputes
``module.<name> = <name>_mask * <name>_orig``. torch-lottery keeps that layout
exactly, so stock helpers (``prune.remove``, ``prune.is_pruned``, ``state_dict``)
keep working. What it adds:

* :class:`LotteryContainer`, a :class:`~torch.nn.utils.prune.PruningContainer`
  that carries the rounds of one tensor and makes the computed ``module.<name>``
  a :class:`MaskedTensor`, which ``copy.deepcopy`` accepts at any time
  (stock prune fails there, pytorch issue 37322). It drops the per-round mask
  copies that stock ``CustomFromMask`` hooks keep (pytorch issues 34257, 49332).
* :func:`attach`, the transactional core of every ``apply``: it validates and
  computes everything first and changes the module only once nothing can fail,
  so bad input leaves the model exactly as it was.
* A refresh of ``nn.MultiheadAttention.out_proj``: attention never calls
  ``out_proj.forward``, so stock pruning hooks on it never run (pytorch issue
  69353). Pruning it with a torch-lottery method installs a global pre-hook that
  recomputes the masked weight whenever an attention module runs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch._C import _disabled_torch_function_impl
from torch.nn.utils import prune

from .._validation import check_finite, check_module_name, describe

try:
    from torch.compiler import is_compiling as _is_compiling
except ImportError:  # torch < 2.3: compiled models take a graph break at the pre-hook
    def _is_compiling() -> bool:
        return False


class MaskedTensor(torch.Tensor):
    """The computed ``module.<name>`` of a tensor pruned by torch-lottery.

    It behaves exactly like a plain tensor in every operation (its results are
    plain tensors and it stays attached to the autograd graph), but it can be
    deep-copied and pickled even while it carries a graph: a copy is a detached
    plain tensor, which the module recomputes at its next forward anyway.
    """

    __torch_function__ = _disabled_torch_function_impl

    def __deepcopy__(self, memo: dict) -> torch.Tensor:
        return self.detach().as_subclass(torch.Tensor).clone()

    def __reduce_ex__(self, protocol: int):
        return self.detach().as_subclass(torch.Tensor).__reduce_ex__(protocol)


def masked_weight(method: prune.BasePruningMethod, module: nn.Module) -> torch.Tensor:
    """Return ``mask * orig`` for ``method``'s tensor as a :class:`MaskedTensor`."""
    weight = method.apply_mask(module)
    return weight if type(weight) is MaskedTensor else weight.as_subclass(MaskedTensor)


def masked_product(module: nn.Module, name: str) -> MaskedTensor:
    """Return ``<name>_mask * <name>_orig`` of ``module`` as a :class:`MaskedTensor`.

    The same product as stock ``BasePruningMethod.apply_mask`` (same operands, same
    order, bit for bit) on the forward path's budget: the tensors are read from the
    module's dicts instead of through ``nn.Module.__getattr__``, and the product
    itself becomes the :class:`MaskedTensor` (its class is switched in place), so
    the autograd graph is stock's: one ``MulBackward0``, no alias node, which
    ``as_subclass`` would add to every forward and backward pass. Under
    ``torch.compile`` (which cannot trace a class switch) and for results that are
    themselves tensor subclasses, it uses ``as_subclass``.
    """
    try:
        orig = module._parameters[name + "_orig"]
        mask = module._buffers[name + "_mask"]
    except KeyError:  # not where stock prune puts them: the ordinary lookup (and its error)
        orig = getattr(module, name + "_orig")
        mask = getattr(module, name + "_mask")
    if mask.dtype != orig.dtype:
        mask = mask.to(dtype=orig.dtype)
    product = torch.mul(mask, orig)
    if type(product) is not torch.Tensor or _is_compiling():  # e.g. a tensor subclass's own result type
        return product.as_subclass(MaskedTensor)
    product.__class__ = MaskedTensor  # a fresh plain result that nothing else refers to yet
    return product


def install_weight(module: nn.Module, name: str, weight: torch.Tensor) -> None:
    """Set ``module.<name> = weight`` as stock prune's pre-hook does.

    Once ``<name>`` is a plain attribute (which a parameter, buffer or submodule
    never is), it is written straight into the instance dict, skipping the checks
    of ``nn.Module.__setattr__``; otherwise ``setattr`` runs them (and raises
    where stock would).
    """
    attributes = module.__dict__
    if name in attributes:
        attributes[name] = weight
    else:
        setattr(module, name, weight)


def release_round_state(method: prune.BasePruningMethod) -> None:
    """Drop tensors a finished round's method no longer needs (it is never asked again)."""
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

    def __call__(self, module: nn.Module, inputs: Any) -> None:
        install_weight(module, self._tensor_name, self.apply_mask(module))

    def apply_mask(self, module: nn.Module) -> torch.Tensor:
        """Return ``mask * orig`` as a :class:`MaskedTensor` (also when stock ``apply`` sets it)."""
        name = getattr(self, "_tensor_name", None)
        if name is None:
            raise ValueError("this LotteryContainer is not attached to a tensor (its _tensor_name is not set)")
        return masked_product(module, name)

    def remove(self, module: nn.Module) -> None:
        """Make the pruning permanent, as stock ``remove`` does, with a plain tensor."""
        with torch.no_grad():
            weight = prune.BasePruningMethod.apply_mask(self, module)
        if hasattr(module, self._tensor_name):
            delattr(module, self._tensor_name)
        orig = module._parameters[self._tensor_name + "_orig"]
        orig.data = weight.data
        del module._parameters[self._tensor_name + "_orig"]
        del module._buffers[self._tensor_name + "_mask"]
        setattr(module, self._tensor_name, orig)

    def add_pruning_method(self, method: prune.BasePruningMethod) -> None:
        super().add_pruning_method(method)
        for earlier in self._pruning_methods[:-1]:
            release_round_state(earlier)

    def compute_mask(self, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
        """Compute the new round's mask (stock composition), then drop what the rounds' methods hold.

        Stock ``apply`` (e.g. ``prune.global_unstructured`` adding a ``CustomFromMask``
        to this container) asks for the mask once and never again, so the new
        method's tensors are released here too, not only at the next round.
        """
        mask = super().compute_mask(t, default_mask)
        for method in self._pruning_methods:
            release_round_state(method)
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


def find_hook(module: nn.Module, name: str) -> tuple[Any, prune.BasePruningMethod | None]:
    """Return ``(key, hook)`` of the pruning hook of ``module.<name>``, or ``(None, None)``."""
    found = [
        (key, hook)
        for key, hook in module._forward_pre_hooks.items()
        if isinstance(hook, prune.BasePruningMethod) and hook._tensor_name == name
    ]
    if len(found) > 1:
        raise ValueError(
            f"{type(module).__name__}.{name} has {len(found)} pruning hooks; expected at most one"
        )
    return found[0] if found else (None, None)


def is_pruned_tensor(module: nn.Module, name: str) -> bool:
    """Return True if ``module.<name>`` is reparametrized as ``<name>_orig * <name>_mask``."""
    return name + "_orig" in module._parameters and name + "_mask" in module._buffers


def current_mask(module: nn.Module, name: str) -> torch.Tensor | None:
    """Return the stored mask of ``module.<name>``, or None if it is not pruned."""
    return module._buffers[name + "_mask"] if is_pruned_tensor(module, name) else None


def refresh(module: nn.Module, name: str) -> None:
    """Recompute ``module.<name>`` from its ``_orig`` and ``_mask`` (after a write to either)."""
    key, hook = find_hook(module, name)
    if hook is None:
        return
    setattr(module, name, masked_weight(hook, module))


def check_scores(importance_scores: Any, orig: torch.Tensor, name: str) -> torch.Tensor | None:
    """Validate optional per-tensor ``importance_scores`` against parameter ``orig``."""
    if importance_scores is None:
        return None
    if not isinstance(importance_scores, torch.Tensor):
        raise TypeError(f"importance_scores must be a Tensor, got {describe(importance_scores)}")
    if importance_scores.shape != orig.shape:
        raise ValueError(
            f"importance_scores has shape {tuple(importance_scores.shape)} but "
            f"{name} has shape {tuple(orig.shape)}"
        )
    check_finite(importance_scores, "importance_scores")
    return importance_scores.detach()


def attach(
    module: nn.Module,
    name: str,
    method: "LotteryMethod",
    importance_scores: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> "LotteryMethod":
    """Compute ``method``'s mask for ``module.<name>`` and install it, all or nothing.

    Every check and the whole mask computation run before the module is touched;
    only then is the reparametrization installed (or the existing container
    extended), the rewind values written to ``<name>_orig`` and ``module.<name>``
    recomputed.

    ``mask``, if given, is the final mask, already computed (e.g. by
    :func:`global_magnitude` for a whole pool): it becomes the ``<name>_mask``
    buffer as it is, without the copies that computing a mask needs.
    """
    orig = check_module_name(module, name)
    scores = check_scores(importance_scores, orig, name)
    key, old = find_hook(module, name)
    pruned = is_pruned_tensor(module, name)
    if mask is not None and mask.shape != orig.shape:
        raise ValueError(f"mask has shape {tuple(mask.shape)}, {name} has {tuple(orig.shape)}")

    method._tensor_name = name
    method._target = (module, name)
    previous = () if old is None else (tuple(old) if isinstance(old, prune.PruningContainer) else (old,))
    try:
        rewind_values = method._prepare(module, name, orig)
        container = make_container(name, previous + (method,))
        if mask is None:
            if pruned:
                default_mask = module._buffers[name + "_mask"].detach().clone(memory_format=torch.contiguous_format)
            else:
                default_mask = torch.ones_like(orig, memory_format=torch.contiguous_format)
            method._default_mask = default_mask
            with torch.no_grad():
                mask = container.compute_mask(orig.detach() if scores is None else scores, default_mask)
            del default_mask
    except BaseException:
        method._release()
        raise
    finally:
        method._default_mask = None

    # Commit: nothing below validates or can fail on user input.
    if not pruned:
        module.register_parameter(name + "_orig", orig)
        del module._parameters[name]
    module.register_buffer(name + "_mask", mask)
    if key is not None:
        module._forward_pre_hooks[key] = container
    else:
        module.register_forward_pre_hook(container)
    if rewind_values is not None:
        with torch.no_grad():
            orig.copy_(rewind_values)
    setattr(module, name, masked_weight(container, module))
    for done in container:
        release_round_state(done)
    if isinstance(module, nn.modules.linear.NonDynamicallyQuantizableLinear):
        ensure_attention_refresh()
    return method


def compact_hooks(model: nn.Module) -> int:
    """Turn every stock pruning hook of ``model`` into a :class:`LotteryContainer`; return how many.

    After stock ``prune.global_unstructured`` or repeated stock rounds, each tensor's
    hook keeps one mask copy per round (pytorch issues 34257, 49332) and the model
    cannot be deep-copied after a forward pass (pytorch issue 37322). This keeps
    the masks and the round history, drops the copies, and makes the model
    deep-copyable. Masks, weights and outputs are unchanged.

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
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {describe(model)}")
    converted = 0
    for module in model.modules():
        for key, hook in list(module._forward_pre_hooks.items()):
            if not isinstance(hook, prune.BasePruningMethod):
                continue
            if isinstance(hook, LotteryContainer):
                for done in hook:
                    release_round_state(done)
                continue
            methods = tuple(hook) if isinstance(hook, prune.PruningContainer) else (hook,)
            container = make_container(hook._tensor_name, methods)
            for done in container:
                release_round_state(done)
            module._forward_pre_hooks[key] = container
            if is_pruned_tensor(module, hook._tensor_name):
                with torch.no_grad():
                    setattr(module, hook._tensor_name, masked_weight(container, module))
            converted += 1
    return converted


class LotteryMethod(prune.BasePruningMethod):
    """Base of torch-lottery's pruning methods (not for direct use).

    Subclasses set ``PRUNING_TYPE`` and implement ``compute_mask``. ``apply``
    goes through :func:`attach`, which makes it transactional.
    """

    _target: tuple[nn.Module, str] | None = None
    _default_mask: torch.Tensor | None = None

    def __call__(self, module: nn.Module, inputs: Any) -> None:
        install_weight(module, self._tensor_name, masked_weight(self, module))

    @classmethod
    def apply(cls, module, name, *args, importance_scores=None, **kwargs):  # type: ignore[override]
        """Prune ``module.<name>`` with a new ``cls(*args, **kwargs)``; see :func:`attach`."""
        check_module_name(module, name)
        method = cls(*args, **kwargs)
        return attach(module, name, method, importance_scores=importance_scores)

    def _prepare(self, module: nn.Module, name: str, orig: torch.Tensor) -> torch.Tensor | None:
        """Validate against the target tensor; return values to write into ``orig`` (or None)."""
        return None

    def _release(self) -> None:
        """Drop references to tensors and models once the mask is installed."""
        self._target = None
        self._default_mask = None


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

