"""Train a pruned model at the speed its size allows: survivor-only parameters and sparse kernels.

A ticket pruned with stock's layout trains as the dense network does: the
optimizer steps every entry of ``<name>_orig``, pruned or not, and forward and
backward each pay a mask product. :func:`sparse_training` suspends that layout
for the duration of a ``with`` block: each pruned tensor's trainable values
become one parameter ``<name>_values`` holding only its survivors (so the
optimizer's work scales with the ticket's size), and ``module.<name>`` is built
from them at each forward, by a scatter into a dense tensor (any module) or, for
``nn.Linear`` layers sparse enough, not at all: a CSR kernel multiplies by the
survivors directly. On leaving the block the survivors are written back into
``<name>_orig`` and stock's layout returns, hooks, masks and all.

The results equal the masked dense path's to float tolerance (the same
element-wise optimizer updates of the same values; only the summation order of
the sparse kernels differs), which the tests check step by step.
"""

from __future__ import annotations

import contextlib
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import nn
from torch.nn.utils import prune
from torch.optim.optimizer import register_optimizer_step_pre_hook

from . import _layout
from ._validation import check_choice, check_module, describe

__all__ = ["ELEMENTWISE_OPTIMIZERS", "KERNELS", "SparseTraining", "sparse_training"]

#: The kernels :func:`sparse_training` can give a pruned tensor (``"auto"`` chooses per tensor).
KERNELS = ("auto", "masked", "scatter", "csr")

#: Optimizers whose update of an entry depends only on that entry's own gradient and state, so that
#: stepping only the survivors gives the survivors the same updates as stepping the whole tensor.
ELEMENTWISE_OPTIMIZERS: tuple[type[torch.optim.Optimizer], ...] = (
    torch.optim.SGD,
    torch.optim.Adam,
    torch.optim.AdamW,
    torch.optim.Adamax,
    torch.optim.Adagrad,
    torch.optim.Adadelta,
    torch.optim.RMSprop,
    torch.optim.Rprop,
    torch.optim.NAdam,
    torch.optim.RAdam,
    torch.optim.ASGD,
)

# The rules of kernel="auto", from the measurements of benchmarks/bench_training.py on a 2-core CPU
# (docs/benchmarks.md, "Training a ticket"): per tensor, the cheapest of the three paths per step.
#: Tensors denser than this stay on the masked dense path: the optimizer's saving no longer pays the scatter.
AUTO_MAX_DENSITY = 0.75
#: Tensors smaller than this stay on the masked dense path: the scatter's fixed cost exceeds what it saves.
AUTO_MIN_NUMEL = 4096
#: The CSR kernel serves ``nn.Linear`` weights at most this dense ...
CSR_MAX_DENSITY = 0.1
#: ... of at least this many entries (below, its fixed cost per call exceeds the dense product's) ...
CSR_MIN_NUMEL = 65536
#: ... on inputs of at most this many rows (above, the dense kernel's throughput wins); larger inputs
#: take the scatter path for that call.
CSR_MAX_ROWS = 512
#: The weight gradient of the CSR kernel is a sampled product up to this density, else dense then gathered.
SAMPLED_MAX_DENSITY = 0.1

_CONTEXT_KEY = "_lottery_sparse_training"  # in a suspended module's __dict__: its _ModuleState
_ROOT_KEY = "_lottery_sparse_training_root"  # in the model's __dict__ while its block runs

# torch warns once per process that CSR tensors are "in beta"; the kernels here use only the CSR
# operations the tests check (``sparse.mm``, ``sampled_addmm``), so the warning tells users nothing.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)


# -- the kernels --------------------------------------------------------------------
class _Scatter(torch.autograd.Function):
    """``values`` scattered into a dense zero tensor of ``shape`` at the flat positions ``flat``."""

    @staticmethod
    def forward(ctx: Any, values: torch.Tensor, flat: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        ctx.save_for_backward(flat)
        dense = values.new_zeros(shape.numel())
        return dense.scatter_(0, flat, values).view(shape)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (flat,) = ctx.saved_tensors
        return grad.reshape(-1).index_select(0, flat), None, None


@dataclass
class _CsrPlan:
    """The CSR structure of a pruned ``nn.Linear`` weight and of its transpose."""

    shape: tuple[int, int]
    crow: torch.Tensor
    col: torch.Tensor
    crow_t: torch.Tensor
    col_t: torch.Tensor
    perm_t: torch.Tensor  # values[perm_t] are the transpose's values in its CSR order
    flat: torch.Tensor
    density: float

    @classmethod
    def of(cls, flat: torch.Tensor, shape: tuple[int, int]) -> _CsrPlan:
        rows, cols = flat // shape[1], flat % shape[1]
        perm_t = torch.argsort(cols * shape[0] + rows)
        return cls(
            shape,
            _crow(rows, shape[0]),
            cols,
            _crow(cols[perm_t], shape[1]),
            rows[perm_t],
            perm_t,
            flat,
            flat.numel() / max(shape[0] * shape[1], 1),
        )

    def matrix(self, values: torch.Tensor) -> torch.Tensor:
        return torch.sparse_csr_tensor(self.crow, self.col, values, self.shape, check_invariants=False)

    def transpose(self, values: torch.Tensor) -> torch.Tensor:
        shape = (self.shape[1], self.shape[0])
        return torch.sparse_csr_tensor(self.crow_t, self.col_t, values[self.perm_t], shape, check_invariants=False)


def _crow(rows: torch.Tensor, count: int) -> torch.Tensor:
    crow = rows.new_zeros(count + 1)
    torch.cumsum(torch.bincount(rows, minlength=count), 0, out=crow[1:])
    return crow


class _CsrLinear(torch.autograd.Function):
    """``x @ W.T + bias`` with ``W`` given by its CSR plan and survivor values."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, values: torch.Tensor, bias: torch.Tensor | None, plan: _CsrPlan
    ) -> torch.Tensor:
        rows = x.reshape(-1, plan.shape[1])
        out = torch.sparse.mm(plan.matrix(values), rows.t()).t().contiguous()
        if bias is not None:
            out += bias
        ctx.save_for_backward(rows, values)
        ctx.plan, ctx.input_shape, ctx.has_bias = plan, x.shape, bias is not None
        return out.view(*x.shape[:-1], plan.shape[0])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        rows, values = ctx.saved_tensors
        plan: _CsrPlan = ctx.plan
        grad_rows = grad.reshape(-1, plan.shape[0])
        grad_x = grad_values = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.sparse.mm(plan.transpose(values), grad_rows.t()).t().reshape(ctx.input_shape)
        if ctx.needs_input_grad[1]:
            if plan.density <= SAMPLED_MAX_DENSITY:
                pattern = plan.matrix(values.detach())
                grad_values = torch.sparse.sampled_addmm(pattern, grad_rows.t(), rows, beta=0.0).values()
            else:
                grad_values = (grad_rows.t() @ rows).reshape(-1).index_select(0, plan.flat)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_rows.sum(0)
        return grad_x, grad_values, grad_bias, None


# -- one suspended tensor --------------------------------------------------------------
@dataclass
class _Compact:
    """A pruned tensor trained through its survivors: what was suspended and what replaced it."""

    name: str
    kernel: str
    orig: nn.Parameter
    values: nn.Parameter
    flat: torch.Tensor
    shape: torch.Size
    hook_key: Any
    hook: prune.BasePruningMethod
    plan: _CsrPlan | None = None

    def dense(self) -> torch.Tensor:
        return _Scatter.apply(self.values, self.flat, self.shape)


@dataclass
class _ModuleState:
    cls: type[nn.Module]
    parameters: OrderedDict
    tensors: dict[str, _Compact] = field(default_factory=dict)


def _compacts(module: nn.Module) -> dict[str, _Compact]:
    return cast(_ModuleState, module.__dict__[_CONTEXT_KEY]).tensors


def _values_name(name: str) -> str:
    return name + "_values"


class _Suspended:
    """Stands in for a pruning hook while its tensor trains through its survivors (does nothing)."""

    def __init__(self, hook: prune.BasePruningMethod) -> None:
        self.hook = hook

    def __call__(self, module: nn.Module, inputs: Any) -> None:
        return None


def _dense_property(name: str) -> property:
    def get(module: nn.Module) -> torch.Tensor:
        return _compacts(module)[name].dense()

    return property(get, doc=f"``{name}`` built from ``{_values_name(name)}`` (inside sparse_training)")


def _orig_property(name: str) -> property:
    def get(module: nn.Module) -> torch.Tensor:
        return _written_back(_compacts(module)[name])

    return property(get, doc=f"A copy of ``{_layout.orig_name(name)}`` as leaving the block would write it")


def _csr_forward(module: nn.Module, input: torch.Tensor) -> torch.Tensor:
    compact = _compacts(module)["weight"]
    plan = cast(_CsrPlan, compact.plan)
    rows = input.numel() // max(input.shape[-1], 1) if input.dim() else 0
    if (
        input.dim() == 0
        or input.layout != torch.strided
        or input.device.type != compact.values.device.type
        or torch.is_autocast_enabled(input.device.type)
        or (compact.kernel == "auto-csr" and rows > CSR_MAX_ROWS)
    ):
        return nn.functional.linear(input, compact.dense(), cast(torch.Tensor | None, module.bias))
    return _CsrLinear.apply(input, compact.values, module.bias, plan)


def _save_to_state_dict(module: nn.Module, destination: dict, prefix: str, keep_vars: bool) -> None:
    """Write the module's state as stock's layout would (``<name>_orig``, not ``<name>_values``)."""
    state = cast(_ModuleState, module.__dict__[_CONTEXT_KEY])
    before = len(destination)
    state.cls._save_to_state_dict(module, destination, prefix, keep_vars)
    added = list(destination.items())[before:]
    for key, _ in added:
        del destination[key]
    by_values = {prefix + _values_name(c.name): c for c in state.tensors.values()}
    for key, value in added:
        compact = by_values.get(key)
        if compact is None:
            destination[key] = value
        else:
            destination[prefix + _layout.orig_name(compact.name)] = _written_back(compact)


def _written_back(compact: _Compact) -> torch.Tensor:
    """Return ``<name>_orig`` as it would be on leaving the block now (a copy, survivors from the values)."""
    return _with_survivors(compact.orig.detach(), compact.flat, compact.values.detach())


def _with_survivors(dense: torch.Tensor, flat: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Return a contiguous copy of ``dense`` with ``values`` at the flat positions ``flat``."""
    out = dense.clone(memory_format=torch.contiguous_format)
    out.view(-1).index_copy_(0, flat, values.to(out.dtype))
    return out


def _load_from_state_dict(
    module: nn.Module,
    state_dict: dict,
    prefix: str,
    local_metadata: dict,
    strict: bool,
    missing_keys: list,
    unexpected_keys: list,
    error_msgs: list,
) -> None:
    """Read stock's layout (``<name>_orig`` and ``<name>_mask``) into the survivors."""
    state = cast(_ModuleState, module.__dict__[_CONTEXT_KEY])
    loaded: list[tuple[_Compact, torch.Tensor]] = []
    for compact in state.tensors.values():
        key, mask_key = prefix + _layout.orig_name(compact.name), prefix + _layout.mask_name(compact.name)
        if key not in state_dict:
            continue
        dense = state_dict.pop(key)
        mask = state_dict.get(mask_key)
        if not isinstance(dense, torch.Tensor) or dense.shape != compact.shape:
            error_msgs.append(f"{key}: expected a tensor of shape {tuple(compact.shape)}, got {describe(dense)}")
            continue
        if (
            isinstance(mask, torch.Tensor)
            and mask.shape == compact.shape
            and not torch.equal(mask.reshape(-1).nonzero().view(-1).to(compact.flat.device), compact.flat)
        ):
            error_msgs.append(
                f"{mask_key}: another mask than the one sparse_training is training; "
                "load it after leaving the sparse_training block"
            )
            del state_dict[mask_key]  # neither half of this tensor is loaded
            state_dict[prefix + _values_name(compact.name)] = compact.values.detach()
            continue
        state_dict[prefix + _values_name(compact.name)] = dense.reshape(-1)[compact.flat.to(dense.device)]
        loaded.append((compact, dense))
    state.cls._load_from_state_dict(
        module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    )
    with torch.no_grad():
        for compact, dense in loaded:  # the pruned entries of <name>_orig come back on leaving the block
            compact.orig.copy_(dense.to(device=compact.orig.device, dtype=compact.orig.dtype))


_CLASSES: dict[tuple[type, tuple[str, ...], bool], type] = {}


def _compact_class(cls: type, names: tuple[str, ...], csr: bool) -> type:
    """Return (once per combination) ``cls`` with ``names`` as properties built from their survivors."""
    key = (cls, names, csr)
    if key not in _CLASSES:
        namespace: dict[str, Any] = {name: _dense_property(name) for name in names}
        namespace.update({_layout.orig_name(name): _orig_property(name) for name in names})
        namespace["_save_to_state_dict"] = _save_to_state_dict
        namespace["_load_from_state_dict"] = _load_from_state_dict
        if csr:
            namespace["forward"] = _csr_forward
        namespace["__module__"] = cls.__module__
        _CLASSES[key] = type(f"SparseTraining{cls.__name__}", (cls,), namespace)
    return _CLASSES[key]


# -- the optimizer check ----------------------------------------------------------------
#: id(parameter) -> (weak parameter, what it is, a description, the optimizers allowed to step it)
_WATCHED: dict[int, tuple[weakref.ref, str, str, tuple[type, ...]]] = {}
_STEP_HOOK: Any = None


def _before_step(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    if not _WATCHED:
        return
    for group in optimizer.param_groups:
        for param in group["params"]:
            entry = _WATCHED.get(id(param))
            if entry is None or entry[0]() is not param:
                continue
            _, kind, label, allowed = entry
            if kind == "orig":
                raise RuntimeError(
                    f"{type(optimizer).__name__} steps {label}, which sparse_training has suspended: build the "
                    "optimizer inside the sparse_training block, from model.parameters() there"
                )
            if not isinstance(optimizer, allowed):
                raise TypeError(
                    f"optimizer {type(optimizer).__name__} is not known to update each entry from its own "
                    f"gradient only, so training {label} through its survivors could change its results; use "
                    "sparse_training(model, kernel='masked'), or pass optimizers=ELEMENTWISE_OPTIMIZERS + "
                    f"({type(optimizer).__name__},) if it is element-wise"
                )


def _watch(param: torch.Tensor, kind: str, label: str, allowed: tuple[type, ...]) -> None:
    global _STEP_HOOK
    key = id(param)
    _WATCHED[key] = (weakref.ref(param, lambda _: _WATCHED.pop(key, None)), kind, label, allowed)
    if _STEP_HOOK is None:
        _STEP_HOOK = register_optimizer_step_pre_hook(_before_step)


# -- choosing ---------------------------------------------------------------------------
def _is_plain_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) and type(module).forward is nn.Linear.forward


def _choose(kernel: str, module: nn.Module, name: str, density: float, orig: torch.Tensor) -> str:
    """Return the kernel of one tensor: ``masked``, ``scatter``, ``csr`` or ``auto-csr`` (CSR for small inputs)."""
    csr_able = (
        name == "weight"
        and _is_plain_linear(module)
        and orig.dim() == 2
        and orig.dtype in (torch.float32, torch.float64)  # the CPU CSR kernels' dtypes
    )
    if kernel == "csr":
        return "csr" if csr_able else "scatter"
    if kernel != "auto":
        return kernel
    if density > AUTO_MAX_DENSITY or orig.numel() < AUTO_MIN_NUMEL:
        return "masked"
    if csr_able and orig.device.type == "cpu" and density <= CSR_MAX_DENSITY and orig.numel() >= CSR_MIN_NUMEL:
        return "auto-csr"
    return "scatter"


def _fallback_reason(module: nn.Module, name: str, tied: set[int]) -> str | None:
    """Return why ``module.<name>`` must stay on the masked dense path, or None."""
    key, hook = _layout.find_hook(module, name)
    orig = _layout.original(module, name)
    if hook is None:
        return "no pruning hook"
    if id(orig) in tied:
        return "tied to another tensor"
    if orig.layout != torch.strided or orig.is_complex():
        return f"a {orig.layout} / {orig.dtype} tensor"
    others = [h for h in module._forward_pre_hooks.values() if not isinstance(h, prune.BasePruningMethod)]
    if others or hasattr(module, "parametrizations"):
        return "the module has other forward pre-hooks or parametrizations that may read its layout"
    return None


# -- the context manager ----------------------------------------------------------------
@dataclass
class SparseTraining:
    """What :func:`sparse_training` did with each pruned tensor of the model.

    Attributes:
        kernels: qualified tensor name -> ``"csr"``, ``"scatter"`` or ``"masked"``.
        reasons: qualified tensor name -> why it stays ``"masked"`` (density, ties, hooks, ...).
        parameters: trainable entries the optimizer steps inside the block.
        dense_parameters: trainable entries it would step on the masked dense path.
    """

    kernels: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    parameters: int = 0
    dense_parameters: int = 0


@contextlib.contextmanager
def sparse_training(
    model: nn.Module,
    kernel: str = "auto",
    optimizers: tuple[type[torch.optim.Optimizer], ...] = ELEMENTWISE_OPTIMIZERS,
) -> Iterator[SparseTraining]:
    """Train the pruned tensors of ``model`` through their survivors only, inside a ``with`` block.

    Build the optimizer inside the block, from ``model.parameters()`` as usual: it
    then holds, per pruned tensor, a parameter ``<name>_values`` of the survivors
    instead of the dense ``<name>_orig``. Forward, backward, ``model.state_dict()``
    (stock's keys and layout) and ``load_state_dict`` (same masks) work as outside.
    On leaving the block, also on an error, the trained survivors are written
    into ``<name>_orig`` and the stock layout (hooks, masks, ``module.<name>``) is
    back; the optimizer built inside belongs to the block.

    The weights after the same steps equal those of the masked dense path to float
    tolerance, for the optimizers in ``optimizers`` (element-wise updates); any
    other optimizer that steps a survivor-only parameter is refused at its first
    step, before it changes anything. Tensors it cannot train this way, or that
    would not train faster, stay on the masked dense path (``kernels`` says which
    and ``reasons`` why).

    Args:
        model (nn.Module): a model pruned with stock's layout (by stock
            ``torch.nn.utils.prune`` or torch-lottery).
        kernel (str): ``"auto"`` (default): per tensor, the masked dense path for
            tensors denser than 75% or smaller than 4096 entries, a CSR kernel for
            float32/float64 ``nn.Linear`` weights on the CPU at most 10% dense with
            at least 65536 entries (calls with more than 512 input rows take the
            scatter), a scatter into a dense weight otherwise; ``"scatter"``,
            ``"csr"`` (``nn.Linear`` weights; scatter elsewhere) or ``"masked"``
            (nothing changes) for every pruned tensor.
        optimizers (tuple): optimizer classes allowed to step the survivors.

    Yields:
        SparseTraining: the kernel of each pruned tensor and the parameter counts.

    Raises:
        TypeError: if ``model`` is not a module or ``optimizers`` not a tuple of
            optimizer classes; at an optimizer's step, if it is not one of them.
        ValueError: if ``kernel`` is not one of :data:`KERNELS`, or ``model`` is
            already inside a ``sparse_training`` block.
        RuntimeError: at an optimizer's step, if it was built before the block and
            steps a suspended ``<name>_orig``.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from torch.nn.utils import prune
        >>> import torch_lottery as tl
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 10))
        >>> for layer in (net[0], net[2]):
        ...     _ = prune.l1_unstructured(layer, "weight", amount=0.95)
        >>> with tl.sparse_training(net) as fast:
        ...     opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        ...     for _ in range(3):
        ...         opt.zero_grad()
        ...         net(torch.randn(8, 784)).square().mean().backward()
        ...         opt.step()
        >>> fast.kernels
        {'0.weight': 'csr', '2.weight': 'masked'}
        >>> fast.reasons
        {'2.weight': '3000 entries < 4096'}
        >>> fast.parameters, fast.dense_parameters
        (15070, 238510)
        >>> int(net[0].weight_mask.sum()), bool((net[0].weight[net[0].weight_mask == 0] == 0).all())
        (11760, True)
    """
    check_module(model, "model")
    check_choice(kernel, KERNELS, "kernel")
    if not isinstance(optimizers, tuple) or not all(
        isinstance(o, type) and issubclass(o, torch.optim.Optimizer) for o in optimizers
    ):
        raise TypeError(f"optimizers must be a tuple of torch.optim.Optimizer classes, got {describe(optimizers)}")
    if any(_CONTEXT_KEY in m.__dict__ or _ROOT_KEY in m.__dict__ for m in model.modules()):
        raise ValueError("model is already inside a sparse_training block")

    report = SparseTraining()
    pruned = _layout.pruned_tensors(model)
    pairs = [(m, n) for _, m, n in pruned]
    first = _layout.aliases(pairs)
    tied = {id(_layout.original(*pairs[i])) for i, f in enumerate(first) if f != i}
    plans: dict[int, tuple[nn.Module, list[tuple[str, str, torch.Tensor, str]]]] = {}
    for qualified, module, name in pruned:
        mask = cast(torch.Tensor, _layout.mask_of(module, name))
        orig = _layout.original(module, name)
        report.dense_parameters += orig.numel()
        density = float(mask.count_nonzero()) / max(mask.numel(), 1)
        reason = _fallback_reason(module, name, tied)
        chosen = "masked" if reason is not None else _choose(kernel, module, name, density, orig)
        if chosen == "masked":
            report.kernels[qualified] = "masked"
            report.reasons[qualified] = reason or (
                "kernel='masked'"
                if kernel == "masked"
                else f"density {density:.3f} > {AUTO_MAX_DENSITY}"
                if density > AUTO_MAX_DENSITY
                else f"{orig.numel()} entries < {AUTO_MIN_NUMEL}"
            )
            report.parameters += orig.numel()
            continue
        flat = mask.reshape(-1).nonzero().view(-1).to(orig.device)
        plans.setdefault(id(module), (module, []))[1].append((qualified, name, flat, chosen))
        report.kernels[qualified] = "csr" if chosen.endswith("csr") else "scatter"
        report.parameters += flat.numel()
    counted = {id(p) for _, m, n in pruned for p in [_layout.original(m, n)]}
    report.parameters += sum(p.numel() for p in model.parameters() if id(p) not in counted)
    report.dense_parameters += sum(p.numel() for p in model.parameters() if id(p) not in counted)

    entered: list[nn.Module] = []
    model.__dict__[_ROOT_KEY] = True
    try:
        for module, tensors in plans.values():
            _enter(module, tensors, optimizers)
            entered.append(module)
        yield report
    finally:
        for module in reversed(entered):
            _leave(module)
        model.__dict__.pop(_ROOT_KEY, None)


def _enter(module: nn.Module, tensors: list[tuple[str, str, torch.Tensor, str]], allowed: tuple[type, ...]) -> None:
    state = _ModuleState(type(module), OrderedDict(module._parameters))
    csr = False
    for qualified, name, flat, chosen in tensors:
        orig = cast(nn.Parameter, module._parameters[_layout.orig_name(name)])
        key, hook = _layout.find_hook(module, name)
        values = nn.Parameter(orig.detach().reshape(-1).index_select(0, flat), requires_grad=orig.requires_grad)
        plan = _CsrPlan.of(flat, (orig.shape[0], orig.shape[1])) if chosen.endswith("csr") else None
        csr = csr or plan is not None
        state.tensors[name] = _Compact(name, chosen, orig, values, flat, orig.shape, key, cast(Any, hook), plan)
        _watch(orig, "orig", f"{qualified} ({_layout.orig_name(name)})", allowed)
        _watch(values, "values", f"{qualified} ({_values_name(name)})", allowed)
    # Commit: the parameters in their order with <name>_values where <name>_orig was, the hooks
    # suspended in place, the computed module.<name> dropped for the class's property.
    by_orig = {_layout.orig_name(c.name): c for c in state.tensors.values()}
    module._parameters = OrderedDict(
        (_values_name(by_orig[k].name), by_orig[k].values) if k in by_orig else (k, v)
        for k, v in state.parameters.items()
    )
    for compact in state.tensors.values():
        module._forward_pre_hooks[compact.hook_key] = _Suspended(compact.hook)
        module.__dict__.pop(compact.name, None)
    module.__dict__[_CONTEXT_KEY] = state
    module.__class__ = _compact_class(state.cls, tuple(sorted(state.tensors)), csr)


def _leave(module: nn.Module) -> None:
    state = cast(_ModuleState, module.__dict__.pop(_CONTEXT_KEY))
    module.__class__ = state.cls
    with torch.no_grad():
        for compact in state.tensors.values():
            if compact.orig.is_contiguous():  # in place: no copy of the whole tensor
                compact.orig.view(-1).index_copy_(0, compact.flat, compact.values.to(compact.orig.dtype))
            else:
                compact.orig.copy_(_with_survivors(compact.orig, compact.flat, compact.values))
            if compact.values.grad is not None:  # as the masked path leaves it: zero at pruned entries
                zeros = torch.zeros_like(compact.orig, memory_format=torch.contiguous_format)
                compact.orig.grad = _with_survivors(zeros, compact.flat, compact.values.grad)
    module._parameters = state.parameters
    for compact in state.tensors.values():
        module._forward_pre_hooks[compact.hook_key] = compact.hook
        for param in (compact.orig, compact.values):
            _WATCHED.pop(id(param), None)
        _layout.refresh(module, compact.name)
