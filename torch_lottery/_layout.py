"""The one owner of stock prune's layout: ``<name>_orig``, ``<name>_mask``, the hook and ``module.<name>``.

Stock :mod:`torch.nn.utils.prune` keeps, per pruned tensor ``<name>``, a parameter
``<name>_orig``, a buffer ``<name>_mask``, a forward pre-hook (a
``BasePruningMethod``) and a plain attribute ``module.<name> = <name>_mask *
<name>_orig`` that the hook recomputes before every forward. Every other module
of torch-lottery reads and writes that layout through the functions here, so the
suffixes, the hook lookup and the recomputation of ``module.<name>`` are written
once.

The masks torch-lottery installs are ``torch.bool`` (1 byte an entry; stock's are
float): the product is computed in ``<name>_orig``'s dtype, bit for bit stock's,
and every reader accepts both kinds (see :func:`masked_product`).

Two things are added to stock's layout, both invisible to stock code:

* the computed ``module.<name>`` is a :class:`_PrunedWeight`, a tensor subclass
  that ``copy.deepcopy`` and ``pickle`` accept while it carries a graph (stock
  fails there, pytorch issue 37322);
* after every ``torch.optim`` step, the ``module.<name>`` of the tensors pruned by
  torch-lottery is recomputed from ``<name>_orig`` (:func:`track`). Stock code
  that ranks ``getattr(module, name)`` (``prune.global_unstructured``, or stock
  ``apply`` on a pruned tensor) then ranks the current weights, not those of
  the last forward.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Iterable, Sequence
from typing import Any, cast

import torch
from torch import nn
from torch._C import _disabled_torch_function_impl
from torch.nn.utils import prune
from torch.optim.optimizer import register_optimizer_step_post_hook

try:
    from torch.compiler import is_compiling as _is_compiling
except ImportError:  # torch < 2.3: compiled models take a graph break at the pre-hook

    def _is_compiling() -> bool:
        return False


#: Suffix of the parameter that holds the trainable values of a pruned tensor.
ORIG = "_orig"
#: Suffix of the buffer that holds the mask of a pruned tensor.
MASK = "_mask"


# -- names -------------------------------------------------------------------------
def orig_name(name: str) -> str:
    """Return the parameter name stock prune gives the trainable values of ``name``."""
    return name + ORIG


def mask_name(name: str) -> str:
    """Return the buffer name stock prune gives the mask of ``name``."""
    return name + MASK


def join(prefix: str, name: str) -> str:
    """Return the qualified name of tensor ``name`` of the module at ``prefix``."""
    return f"{prefix}.{name}" if prefix else name


def split(qualified: str) -> tuple[str, str]:
    """Return ``(module prefix, tensor name)`` of a qualified tensor name."""
    prefix, _, name = qualified.rpartition(".")
    return prefix, name


# -- reading ----------------------------------------------------------------------
def is_pruned(module: nn.Module, name: str) -> bool:
    """Return True if ``module.<name>`` is reparametrized as ``<name>_orig * <name>_mask``."""
    return orig_name(name) in module._parameters and mask_name(name) in module._buffers


def has_tensor(module: nn.Module, name: str) -> bool:
    """Return True if ``module.<name>`` is a parameter, pruned or not (``<name>_orig`` of a pruned one is not)."""
    if is_pruned(module, name):
        return True
    return module._parameters.get(name) is not None and tensor_of_key(module, name) == name


def original(module: nn.Module, name: str) -> torch.Tensor:
    """Return the trainable tensor behind ``module.<name>`` (``<name>_orig`` when pruned).

    Raises:
        KeyError: if ``module`` has no such parameter.
    """
    if is_pruned(module, name):
        return cast(torch.Tensor, module._parameters[orig_name(name)])
    tensor = module._parameters[name]
    if tensor is None:
        raise KeyError(name)
    return tensor


def mask_of(module: nn.Module, name: str) -> torch.Tensor | None:
    """Return the stored mask of ``module.<name>``, or None if it is not pruned."""
    return module._buffers[mask_name(name)] if is_pruned(module, name) else None


def find_hook(module: nn.Module, name: str) -> tuple[Any, prune.BasePruningMethod | None]:
    """Return ``(key, hook)`` of the pruning hook of ``module.<name>``, or ``(None, None)``."""
    found = [
        (key, hook)
        for key, hook in module._forward_pre_hooks.items()
        if isinstance(hook, prune.BasePruningMethod) and hook._tensor_name == name
    ]
    if len(found) > 1:
        raise ValueError(f"{type(module).__name__}.{name} has {len(found)} pruning hooks; expected at most one")
    return found[0] if found else (None, None)


def tensor_of_key(module: nn.Module, key: str) -> str:
    """Return the tensor name of parameter ``key`` of ``module`` (``weight`` for a pruned ``weight_orig``)."""
    if key.endswith(ORIG) and is_pruned(module, key[: -len(ORIG)]):
        return key[: -len(ORIG)]
    return key


def is_mask_buffer(module: nn.Module, key: str) -> bool:
    """Return True if buffer ``key`` of ``module`` is the mask of a pruned tensor."""
    return key.endswith(MASK) and is_pruned(module, key[: -len(MASK)])


def named_tensors(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """Return ``(qualified name, module, name)`` for every parameter of ``model``, ``_orig`` stripped.

    A module shared at several places is listed once (at its first name); a parameter
    shared by several modules (tied weights) is listed at each of its names.
    """
    out = []
    for prefix, module in model.named_modules():
        for key, value in module._parameters.items():
            if value is not None:
                name = tensor_of_key(module, key)
                out.append((join(prefix, name), module, name))
    return out


def named_buffers(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """Return ``(qualified name, module, name)`` for every buffer of ``model`` except the masks."""
    out = []
    for prefix, module in model.named_modules():
        for key, value in module._buffers.items():
            if value is not None and not is_mask_buffer(module, key):
                out.append((join(prefix, key), module, key))
    return out


def snapshot(model: nn.Module, parameters: bool = True, buffers: bool = True) -> dict[str, torch.Tensor]:
    """Return copies of every parameter (``_orig`` values of pruned ones) and buffer (masks aside) by qualified name."""
    tensors = {q: original(m, n) for q, m, n in named_tensors(model)} if parameters else {}
    if buffers:
        tensors.update({q: cast(torch.Tensor, m._buffers[n]) for q, m, n in named_buffers(model)})
    return {q: t.detach().clone() for q, t in tensors.items()}


def load_snapshot(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy a :func:`snapshot` (or part of one) back into ``model``: parameters, then buffers; masks untouched."""
    params = [(q, m, n) for q, m, n in named_tensors(model) if q in state]
    write_values([(m, n) for _, m, n in params], [state[q] for q, _, _ in params])
    with torch.no_grad():
        for q, m, n in named_buffers(model):
            if q in state:
                buffer = cast(torch.Tensor, m._buffers[n])
                buffer.copy_(state[q].to(device=buffer.device, dtype=buffer.dtype))


def pruned_tensors(model: nn.Module, remove_duplicate: bool = True) -> list[tuple[str, nn.Module, str]]:
    """Return ``(qualified name, module, name)`` for every pruned tensor of ``model``.

    With ``remove_duplicate=False`` a module shared at several places is listed at
    each of them, as ``model.state_dict()`` lists it.
    """
    out = []
    for prefix, module in model.named_modules(remove_duplicate=remove_duplicate):
        for key in module._buffers:
            if is_mask_buffer(module, key):
                name = key[: -len(MASK)]
                out.append((join(prefix, name), module, name))
    return out


def resolve(model: nn.Module, qualified: str) -> tuple[nn.Module, str] | None:
    """Return ``(module, name)`` of the parameter ``qualified`` of ``model`` (pruned or not), or None."""
    prefix, name = split(qualified)
    try:
        module = model.get_submodule(prefix)
    except AttributeError:
        return None
    return (module, name) if has_tensor(module, name) else None


def resolve_buffer(model: nn.Module, qualified: str) -> tuple[nn.Module, str] | None:
    """Return ``(module, name)`` of the buffer ``qualified`` of ``model`` (masks excepted), or None."""
    prefix, name = split(qualified)
    try:
        module = model.get_submodule(prefix)
    except AttributeError:
        return None
    if module._buffers.get(name) is None or is_mask_buffer(module, name):
        return None
    return module, name


def module_prefixes(model: nn.Module) -> dict[int, str]:
    """Map ``id(module)`` to its qualified prefix, for every module of ``model``."""
    return {id(module): prefix for prefix, module in model.named_modules()}


def aliases(pairs: Sequence[tuple[nn.Module, str]]) -> list[int]:
    """Return, per pair, the index of the first pair holding the same trainable tensor (tied weights)."""
    first: dict[int, int] = {}
    return [first.setdefault(id(original(m, n)), i) for i, (m, n) in enumerate(pairs)]


# -- the computed module.<name> ----------------------------------------------------
class _PrunedWeight(torch.Tensor):
    """The computed ``module.<name>`` of a tensor pruned by torch-lottery.

    It behaves exactly like a plain tensor in every operation (its results are
    plain tensors and it stays attached to the autograd graph), but it can be
    deep-copied and pickled even while it carries a graph: a copy is a detached
    plain tensor, which the module recomputes at its next forward anyway.
    """

    __torch_function__ = _disabled_torch_function_impl  # type: ignore[assignment]

    def __deepcopy__(self, memo: dict) -> torch.Tensor:
        return self.detach().as_subclass(torch.Tensor).clone()

    def __reduce_ex__(self, protocol: Any) -> Any:
        return self.detach().as_subclass(torch.Tensor).__reduce_ex__(protocol)


def as_pruned_weight(weight: torch.Tensor) -> torch.Tensor:
    """Return ``weight`` as a :class:`_PrunedWeight` (a view, sharing its data and graph)."""
    return weight if type(weight) is _PrunedWeight else weight.as_subclass(_PrunedWeight)


#: module -> {name: (weak mask, mask._version, factor)}: the float 0/1 factor of a bool mask that
#: forwards recording a graph multiply by (see :func:`_grad_factor`); entries go with their modules.
_FACTORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _grad_factor(module: nn.Module, name: str, mask: torch.Tensor, orig: torch.Tensor) -> torch.Tensor:
    """Return ``mask`` as 0/1 in ``orig``'s dtype for a product that records a graph, kept between forwards.

    WHY: a training forward multiplies by the mask and its backward multiplies the
    gradient by it again, so autograd saves the factor. Converting a bool mask afresh
    at every forward costs a tensor-sized allocation (page faults, on CPU) and a pass;
    stock's float mask costs neither. The factor is therefore kept while the mask is
    unchanged (the same tensor at the same ``_version``: any in-place write, e.g.
    ``load_state_dict``, bumps it), refilled in place when the mask changed and no
    graph still holds the factor, and dropped when torch-lottery prunes the tensor
    (:func:`recompute_weight`), so pruning rounds never hold it.
    """
    per_module = _FACTORS.get(module)
    if per_module is None:
        per_module = _FACTORS[module] = {}
    entry = per_module.get(name)
    factor = None
    if entry is not None:
        ref, version, factor = entry
        fits = factor.shape == mask.shape and factor.dtype == orig.dtype and factor.device == mask.device
        if fits and ref() is mask and version == mask._version:
            return factor
        if not fits or factor._use_count() != 1:  # a live graph saved it: leave it to that graph
            factor = None
    source = _factor_source(mask)
    with torch.no_grad():
        factor = source.to(dtype=orig.dtype) if factor is None else factor.copy_(source)
    per_module[name] = (weakref.ref(mask), mask._version, factor)
    return factor


def _current_factor(module: nn.Module, name: str, mask: torch.Tensor, orig: torch.Tensor) -> torch.Tensor | None:
    """The kept factor of ``module.<name>`` if it still is ``mask`` in ``orig``'s dtype, else None (none made)."""
    entry = _FACTORS.get(module, {}).get(name)
    if entry is None:
        return None
    ref, version, factor = entry
    if ref() is mask and version == mask._version and factor.dtype == orig.dtype and factor.device == orig.device:
        return factor
    return None


def _factor_source(mask: torch.Tensor) -> torch.Tensor:
    """``mask`` ready to convert to 0/1 floats: a bool mask read as uint8 (whose conversion is vectorized)."""
    return mask.view(torch.uint8) if mask.dtype == torch.bool else mask


def _product_factor(mask: torch.Tensor, orig: torch.Tensor) -> torch.Tensor:
    """``mask`` as a fresh 0/1 tensor in ``orig``'s dtype."""
    return _factor_source(mask).to(dtype=orig.dtype)


def drop_factor(module: nn.Module, name: str) -> None:
    """Forget the kept factor of ``module.<name>`` (see :func:`_grad_factor`)."""
    per_module = _FACTORS.get(module)
    if per_module is not None:
        per_module.pop(name, None)


def kept_factors(module: nn.Module) -> list[torch.Tensor]:
    """The factors kept for ``module``'s pruned tensors (for :func:`~torch_lottery.pruning.held_bytes`)."""
    return [entry[2] for entry in _FACTORS.get(module, {}).values()]


def _product(mask: torch.Tensor, orig: torch.Tensor) -> torch.Tensor:
    """Return ``mask * orig`` in ``orig``'s dtype, bit for bit stock's product (``0.0 * -x`` is ``-0.0``).

    A bool mask (what torch-lottery installs: 1 byte an entry) is read as uint8,
    whose conversion to floating point is vectorized (bool's is not, and a mixed
    bool/float product is slower still); the 0/1 values and so the product are
    the same. When no graph is recorded the converted mask itself becomes the
    product (multiplied in place), so computing it allocates one tensor, as
    stock's product with a float mask does.
    """
    if mask.dtype == orig.dtype:
        return torch.mul(mask, orig)
    factor = _product_factor(mask, orig)
    if (orig.requires_grad and torch.is_grad_enabled()) or _is_compiling():
        return torch.mul(factor, orig)
    return factor.mul_(orig)


def masked_product(module: nn.Module, name: str, keep: bool = True) -> torch.Tensor:
    """Return ``<name>_mask * <name>_orig`` of ``module`` as a :class:`_PrunedWeight`.

    The same product as stock ``BasePruningMethod.apply_mask`` (same operands, same
    order, bit for bit) on the forward path's budget: the tensors are read from the
    module's dicts instead of through ``nn.Module.__getattr__``, and the product
    itself becomes the :class:`_PrunedWeight`.

    A bool mask (torch-lottery's) becomes a 0/1 factor in orig's dtype: 1.0 and 0.0
    times orig, so the product is stock's bit for bit, ``-0.0`` for a pruned negative
    weight included (``masked_fill``/``torch.where`` would give ``+0.0``, and are
    several times slower on CPU). A forward that records a graph uses the factor
    kept between forwards (:func:`_grad_factor`); otherwise the converted mask is
    multiplied in place and becomes the product (:func:`_product`).

    WHY the class switch: ``as_subclass`` would add an alias node to every forward
    and backward pass; switching ``__class__`` of a fresh plain result that nothing
    else refers to keeps stock's graph (one ``MulBackward0``). Under
    ``torch.compile`` (which cannot trace a class switch) and for results that are
    themselves tensor subclasses, ``as_subclass`` is used. A test in
    ``tests/pruning/test_masked_training.py`` pins the graph.
    """
    try:
        # the forward path: annotations, not cast() calls (the dicts hold Optional tensors)
        orig: torch.Tensor = module._parameters[orig_name(name)]  # type: ignore[assignment]
        mask: torch.Tensor = module._buffers[mask_name(name)]  # type: ignore[assignment]
    except KeyError:  # not where stock prune puts them: the ordinary lookup (and its error)
        orig = getattr(module, orig_name(name))
        mask = getattr(module, mask_name(name))
    if mask.dtype == orig.dtype or _is_compiling():
        product = _product(mask, orig)
    elif orig.requires_grad and torch.is_grad_enabled():
        # a training forward keeps the factor; the product installed when pruning (keep=False) does not
        factor = _grad_factor(module, name, mask, orig) if keep else _product_factor(mask, orig)
        product = torch.mul(factor, orig)
    else:  # e.g. the recomputation after an optimizer step: the kept factor if it is current
        kept = _current_factor(module, name, mask, orig)
        product = _product(mask, orig) if kept is None else torch.mul(kept, orig)
    if type(product) is not torch.Tensor or _is_compiling():
        return product.as_subclass(_PrunedWeight)
    product.__class__ = _PrunedWeight
    return product


def install_weight(module: nn.Module, name: str, weight: torch.Tensor) -> None:
    """Set ``module.<name> = weight`` as stock prune's pre-hook does.

    Once ``<name>`` is a plain attribute (which a parameter, buffer or submodule
    never is), it is written straight into the instance dict, skipping the checks
    of ``nn.Module.__setattr__``; otherwise ``setattr`` runs them.
    """
    attributes = module.__dict__
    if name in attributes:
        attributes[name] = weight
    else:
        setattr(module, name, weight)


# -- reusing memory nothing else can see ------------------------------------------------
def _counts(holder: dict, key: str) -> tuple[int, int, int] | None:
    """(Python references, C++ references, storage users) of ``holder[key]``, counted the same way every call."""
    tensor = holder.get(key)
    try:
        return (
            sys.getrefcount(holder[key]),
            tensor._use_count(),  # type: ignore[union-attr]
            torch._C._storage_Use_Count(tensor.untyped_storage()._cdata),  # type: ignore[union-attr]
        )
    except (AttributeError, RuntimeError, TypeError):  # private counters missing in this torch: never reuse
        return None


_ALONE: list[tuple[int, int, int] | None] = []


def sole_owner(holder: dict, key: str) -> bool:
    """True if ``holder[key]`` is a plain tensor that only ``holder`` refers to, so writing it in place is unseen.

    Nothing else may hold it: no Python reference (a user's ``mask = module.weight_mask``,
    or ``.bool()`` of a bool mask, which is the mask itself), no view or tensor sharing its
    storage (``.detach()``, ``.view(-1)``), no autograd graph that saved it, no gradient
    history of its own. The counts are compared with those of a fresh tensor held by a
    fresh dict, counted by the same code, so they do not depend on how this Python
    counts references; where torch lacks the counters, nothing is reused.
    """
    tensor = holder.get(key)
    if (
        not isinstance(tensor, torch.Tensor)
        or type(tensor) not in (torch.Tensor, _PrunedWeight)
        or tensor.layout != torch.strided
        or tensor.requires_grad
        or tensor.grad_fn is not None
        or tensor._base is not None
        or tensor.is_inference()
        or tensor.storage_offset() != 0
        or not tensor.is_contiguous()
        or tensor.untyped_storage().nbytes() != tensor.numel() * tensor.element_size()
    ):
        return False
    del tensor
    if not _ALONE:
        _ALONE.append(_counts({key: torch.empty(1)}, key))
    counts = _counts(holder, key)
    return counts is not None and counts == _ALONE[0]


def release_weight(module: nn.Module, name: str) -> None:
    """Drop the module's reference to the computed ``module.<name>`` before it is recomputed.

    WHY: the previous product is freed before the next one is allocated (unless
    someone else still holds it), so a recomputation never holds two products of
    the tensor, and the allocator can give the next one the memory just freed.
    Only a plain attribute is dropped; a parameter (an unpruned tensor) is not.
    """
    attributes = module.__dict__
    if name in attributes:
        attributes[name] = None


def recompute_weight(module: nn.Module, name: str, hook: prune.BasePruningMethod) -> None:
    """Set ``module.<name> = mask * orig`` again with ``hook``'s product (after a change of either).

    The previous product is written in place when nothing but the module can see it
    (:func:`sole_owner`), no graph is to be recorded, and the product is torch-lottery's
    (:func:`masked_product`): the values are the same, bit for bit, and no memory is
    allocated or freed. Otherwise it is dropped before the new one is computed.
    """
    from .pruning.container import LotteryContainer  # the container computes masked_product

    drop_factor(module, name)
    orig: torch.Tensor = module._parameters[orig_name(name)]  # type: ignore[assignment]
    mask: torch.Tensor = module._buffers[mask_name(name)]  # type: ignore[assignment]
    attributes = module.__dict__
    if (
        isinstance(hook, LotteryContainer)
        and not (orig.requires_grad and torch.is_grad_enabled())
        and not _is_compiling()
        and name in attributes
        and sole_owner(attributes, name)
    ):
        old = attributes[name]
        if old.shape == orig.shape and old.dtype == orig.dtype and old.device == orig.device == mask.device:
            with torch.no_grad():
                if mask.dtype == orig.dtype:
                    torch.mul(mask, orig, out=old)
                else:  # as _product: the 0/1 factor in orig's dtype, times orig
                    old.copy_(_factor_source(mask)).mul_(orig)
            return
    release_weight(module, name)
    product = (
        masked_product(module, name, keep=False) if isinstance(hook, LotteryContainer) else hook.apply_mask(module)
    )
    install_weight(module, name, as_pruned_weight(product))


def refresh(module: nn.Module, name: str) -> None:
    """Recompute ``module.<name>`` from its ``_orig`` and ``_mask`` (after a write to either)."""
    _, hook = find_hook(module, name)
    if hook is not None and is_pruned(module, name):
        recompute_weight(module, name, hook)


def write_mask(module: nn.Module, name: str, mask: torch.Tensor) -> None:
    """Copy ``mask`` (0/1 or bool, the tensor's shape) into the mask of the pruned ``module.<name>`` and refresh."""
    with torch.no_grad():
        module._buffers[mask_name(name)].copy_(mask)  # type: ignore[union-attr]
        refresh(module, name)


def write_values(pairs: Iterable[tuple[nn.Module, str]], values: Iterable[torch.Tensor]) -> None:
    """Copy ``values`` into the trainable tensors of ``pairs`` (``<name>_orig``; never the masks) and refresh."""
    with torch.no_grad():
        for (module, name), value in zip(pairs, values, strict=True):
            target = original(module, name)
            target.copy_(value.to(device=target.device, dtype=target.dtype))
            refresh(module, name)


def substitute_mask(module: nn.Module, name: str, mask: torch.Tensor) -> None:
    """Set ``module.<name> = mask * <name>_orig`` with a mask of the caller's instead of ``<name>_mask``.

    For strategies that train the mask itself (learned supermasks): ``mask`` may
    carry a graph (e.g. a straight-through estimator of scores), and gradients
    reach it through the product, as they reach ``<name>_orig``. The buffer is
    neither read nor written, so the next forward pre-hook of the tensor (or
    :func:`refresh`) puts ``<name>_mask * <name>_orig`` back; a strategy calls
    this from a pre-hook of its own that runs after the pruning hook.

    Args:
        module (nn.Module): the module of the pruned tensor.
        name (str): the tensor's name (``"weight"``).
        mask (Tensor): the tensor's shape, 0/1 values (cast to the tensor's dtype).

    Raises:
        ValueError: if ``module.<name>`` is not pruned, or ``mask`` has another shape.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from torch.nn.utils import prune
        >>> layer = prune.identity(nn.Linear(2, 1, bias=False), "weight")
        >>> scores = torch.tensor([[0.0, 1.0]], requires_grad=True)
        >>> substitute_mask(layer, "weight", scores)
        >>> layer.weight.sum().backward()
        >>> torch.equal(scores.grad, layer.weight_orig.detach())  # d(sum)/d(mask) = orig
        True
    """
    if not is_pruned(module, name):
        raise ValueError(f"{type(module).__name__}.{name} is not pruned: there is no {orig_name(name)} to mask")
    orig = cast(torch.Tensor, module._parameters[orig_name(name)])
    if mask.shape != orig.shape:
        raise ValueError(
            f"mask has shape {tuple(mask.shape)} but {type(module).__name__}.{name} has {tuple(orig.shape)}"
        )
    if mask.dtype != orig.dtype:
        mask = mask.to(dtype=orig.dtype)
    install_weight(module, name, as_pruned_weight(torch.mul(mask, orig)))


# -- a weight read in place of module.<name> for one forward (targeted dropout) ---------
def substitute_weight(module: nn.Module, name: str, weight: torch.Tensor) -> torch.Tensor | None:
    """Make ``module.<name>`` read ``weight`` until :func:`restore_weight`; return what it read before.

    No parameter, buffer, hook or ``state_dict`` key changes. For an unpruned
    tensor ``weight`` goes into the instance dict, which attribute lookup reads
    before ``nn.Module.__getattr__`` reaches ``_parameters`` (None is returned);
    for a pruned one it replaces the computed ``module.<name>`` (which is returned).
    """
    attributes = module.__dict__
    previous = attributes.get(name)
    attributes[name] = weight
    return previous


def restore_weight(module: nn.Module, name: str, previous: torch.Tensor | None) -> None:
    """Undo :func:`substitute_weight`: ``module.<name>`` reads ``previous`` again (the parameter if None)."""
    if previous is None:
        module.__dict__.pop(name, None)
    else:
        module.__dict__[name] = previous


# -- keeping module.<name> current after optimizer steps ------------------------------
#: id(<name>_orig) -> (weak <name>_orig, [(weak module, name), ...]) of every tensor torch-lottery prunes
#: (a tied tensor has one entry per module that holds it).
_TRACKED: dict[int, tuple[weakref.ref, list[tuple[weakref.ref, str]]]] = {}
_STEP_HOOK: Any = None


def track(module: nn.Module, name: str) -> None:
    """Recompute ``module.<name>`` after every ``torch.optim`` step that may change ``<name>_orig``.

    Called when torch-lottery installs a tensor's hook, and by the hook at the
    first forward of a copied model, so the tensors of every model it pruned stay
    tracked; entries go away with their tensors.
    """
    global _STEP_HOOK
    orig = module._parameters[orig_name(name)]
    key = id(orig)
    entry = _TRACKED.get(key)
    if entry is None or entry[0]() is not orig:

        def forget(_: weakref.ref) -> None:
            _TRACKED.pop(key, None)

        entry = (weakref.ref(orig, forget), [])
        _TRACKED[key] = entry
    owners = entry[1]
    owners[:] = [(ref, n) for ref, n in owners if ref() is not None]
    if not any(ref() is module and n == name for ref, n in owners):
        owners.append((weakref.ref(module), name))
    if _STEP_HOOK is None:
        _STEP_HOOK = register_optimizer_step_post_hook(_after_step)


def _after_step(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    with torch.no_grad():
        for group in optimizer.param_groups:
            for param in group["params"]:
                entry = _TRACKED.get(id(param))
                if entry is None or entry[0]() is not param:
                    continue
                for ref, name in entry[1]:
                    module = ref()
                    if (
                        module is not None
                        and module._parameters.get(orig_name(name)) is param
                        and is_pruned(module, name)
                    ):
                        install_weight(module, name, masked_product(module, name))
