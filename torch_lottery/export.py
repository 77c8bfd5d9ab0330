"""Sparse export of pruned models: compact files and sparse (CSR) inference.

:func:`export` turns a model pruned with :mod:`torch.nn.utils.prune` (stock
methods or torch-lottery's, any number of rounds) into a :class:`SparseState`:
every pruned tensor is kept as a bitmask (one bit per entry, packed in uint8)
plus its surviving values, every other tensor of the ``state_dict`` as it is.
It never changes the model it reads. :meth:`SparseState.state_dict` gives back
the dense ``state_dict`` of the model as if ``prune.remove`` had been called on
every pruned tensor, which loads with ``strict=True`` into a fresh, unpruned
model of the same architecture. Given a :class:`~torch_lottery.Ticket` as well,
:func:`export` stores the model's current weights under the ticket's masks, so a
dense model and a ticket give the compact file without pruning the model.

:func:`to_sparse_inference` returns a new model with pruning made permanent in
which each sparse enough ``nn.Linear`` becomes a :class:`SparseLinear`, which
multiplies by a CSR weight (``torch.sparse.addmm``) from ``min_batch`` rows on
and uses the dense kernel below that.
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from collections.abc import Iterator
from typing import Any, cast

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import prune

from . import _layout
from ._files import load_state, save_state
from ._validation import check_binary_mask, check_fraction, check_module, check_number, check_path, describe
from .driver.ticket import Ticket

#: The ``format`` field of a saved sparse state; :meth:`SparseState.load` refuses other files.
FORMAT = "torch_lottery.sparse"
#: The version of the saved layout (files carry a SHA-256 digest of their content).
VERSION = 2

#: Default batch size (rows) from which :class:`SparseLinear` uses the sparse kernel.
#: Measured with ``benchmarks/bench_export.py`` (docs/export.md): at batch 1 the CSR kernel
#: loses below ~95% sparsity, at batch 16 it wins from 80-90% on.
DEFAULT_MIN_BATCH = 16

_BIT_WEIGHTS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)


# -- bit packing ---------------------------------------------------------------
def pack_mask(mask: torch.Tensor) -> torch.Tensor:
    """Pack a bool tensor into uint8, 8 entries a byte, most significant bit first (like ``numpy.packbits``).

    Args:
        mask (Tensor): bool (or 0/1) tensor of any shape; it is read flattened.

    Returns:
        Tensor: 1-D uint8 tensor of ``ceil(mask.numel() / 8)`` bytes (the last one zero-padded).

    Examples:
        >>> import torch
        >>> from torch_lottery.export import pack_mask, unpack_mask
        >>> mask = torch.tensor([[True, False, True], [False, False, True]])
        >>> pack_mask(mask)
        tensor([164], dtype=torch.uint8)
        >>> torch.equal(unpack_mask(pack_mask(mask), (2, 3)), mask)
        True
    """
    flat = mask.reshape(-1).to(torch.uint8)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    weights = _BIT_WEIGHTS.to(flat.device)
    return (flat.view(-1, 8) * weights).sum(dim=1, dtype=torch.uint8)


def unpack_mask(packed: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Unpack a mask packed by :func:`pack_mask` into a bool tensor of ``shape``.

    Args:
        packed (Tensor): 1-D uint8 tensor from :func:`pack_mask`.
        shape (tuple of int): the shape of the mask that was packed.

    Returns:
        Tensor: bool tensor of ``shape`` (the padding bits are dropped).
    """
    numel = math.prod(shape)
    weights = _BIT_WEIGHTS.to(packed.device)
    bits = packed.unsqueeze(1).bitwise_and(weights).ne(0).reshape(-1)
    return bits[:numel].reshape(shape)


# -- discovery -----------------------------------------------------------------
def _pruned_names(model: nn.Module) -> dict[str, tuple[nn.Module, str]]:
    """Map the qualified name of every pruned tensor (at every path, as ``state_dict``) to ``(module, name)``."""
    return {q: (m, n) for q, m, n in _layout.pruned_tensors(model, remove_duplicate=False)}


def _check_model(model: Any) -> None:
    check_module(model)


# -- sparse state --------------------------------------------------------------
class SparseState:
    """The compact state of a pruned model: bitmask + survivors per pruned tensor, the rest dense.

    Build one with :func:`export`; read it back with :meth:`load`. Keys are the
    ``state_dict`` keys of the model after ``prune.remove`` (``"1.weight"``, not
    ``"1.weight_orig"``), in the order of the model's ``state_dict``.

    Attributes:
        pruned (list[str]): the keys stored sparse.
    """

    def __init__(self, entries: dict[str, dict[str, Any]]) -> None:
        self._entries = entries

    # -- mapping-like views ----------------------------------------------------
    def keys(self):
        """Return the keys of the dense ``state_dict``, in order."""
        return self._entries.keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    @property
    def pruned(self) -> list[str]:
        """The keys of the tensors stored as bitmask + surviving values."""
        return [k for k, e in self._entries.items() if e["kind"] == "sparse"]

    def remaining(self) -> tuple[int, int]:
        """Return ``(surviving, total)`` entries over the pruned tensors."""
        kept = total = 0
        for entry in self._entries.values():
            if entry["kind"] == "sparse":
                kept += entry["values"].numel()
                total += math.prod(entry["shape"])
        return kept, total

    def __repr__(self) -> str:
        kept, total = self.remaining()
        return f"SparseState(tensors={len(self)}, pruned={len(self.pruned)}, remaining={kept}/{total})"

    # -- dense view ------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Return the dense ``state_dict`` (pruned entries as zeros), new tensors each call."""
        out = {}
        for key, entry in self._entries.items():
            if entry["kind"] == "dense":
                out[key] = entry["tensor"].clone()
            else:
                shape = tuple(entry["shape"])
                values = entry["values"]
                dense = torch.zeros(shape, dtype=values.dtype, device=values.device)
                dense[unpack_mask(entry["mask"], shape).to(values.device)] = values
                out[key] = dense
        return out

    # -- files -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Return the plain dict written by :meth:`save` (format, version, tensors)."""
        return {"format": FORMAT, "version": VERSION, "tensors": self._entries}

    def save(self, path: str | os.PathLike) -> None:
        """Write this state to ``path`` atomically (temporary file, fsync, ``os.replace``), with a SHA-256 digest.

        Raises:
            TypeError: if ``path`` is not a str or path-like.
        """
        check_path(path)
        save_state(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: Any = "cpu") -> SparseState:
        """Load a state written by :meth:`save` with ``torch.load(weights_only=True)``.

        Raises:
            TypeError: if ``path`` is not a str or path-like.
            FileNotFoundError: if ``path`` does not exist.
            ValueError: if the file is not a sparse state, is damaged or truncated (its
                SHA-256 digest does not match), or holds anything but plain containers
                and tensors (pickled objects are refused without running their code).
        """
        source = f"path={check_path(path)!r}"
        data = load_state(path, "sparse state", FORMAT, (VERSION,), map_location=map_location)  # checks the digest
        return cls.from_dict(data, source=source)

    @classmethod
    def from_dict(cls, data: Any, source: str = "data") -> SparseState:
        """Check and wrap a dict made by :meth:`to_dict`.

        Raises:
            ValueError: if ``data`` is not a consistent sparse state of this version.
        """
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"{source} is not a sparse state (format {found!r}, expected {FORMAT!r})")
        if type(data.get("version")) is not int or data["version"] != VERSION:
            raise ValueError(f"{source} has version {data.get('version')!r}; this torch-lottery reads {VERSION}")
        tensors = data.get("tensors")
        if not isinstance(tensors, dict):
            raise ValueError(f"{source} is damaged: 'tensors' is not a dict")
        for key, entry in tensors.items():
            _check_entry(key, entry, source)
        return cls(tensors)


def _check_entry(key: Any, entry: Any, source: str) -> None:
    bad = f"{source} is damaged: entry {key!r}"
    if not isinstance(key, str) or not isinstance(entry, dict):
        raise ValueError(f"{bad} is not a str -> dict pair")
    kind = entry.get("kind")
    if kind == "dense":
        if not isinstance(entry.get("tensor"), torch.Tensor):
            raise ValueError(f"{bad} has no tensor")
        return
    if kind != "sparse":
        raise ValueError(f"{bad} has unknown kind {kind!r}")
    shape, mask, values = entry.get("shape"), entry.get("mask"), entry.get("values")
    if not (isinstance(shape, list) and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)):
        raise ValueError(f"{bad} has a bad shape {describe(shape)}")
    numel = math.prod(shape)
    if not (
        isinstance(mask, torch.Tensor)
        and mask.dtype == torch.uint8
        and mask.dim() == 1
        and mask.numel() == (numel + 7) // 8
    ):
        raise ValueError(f"{bad} has a bad mask {describe(mask)} for shape {shape}")
    if not (isinstance(values, torch.Tensor) and values.dim() == 1):
        raise ValueError(f"{bad} has bad values {describe(values)}")
    bits = unpack_mask(mask, (mask.numel() * 8,))
    kept = int(bits[:numel].sum())
    if kept != values.numel() or bool(bits[numel:].any()):
        raise ValueError(f"{bad}: its mask keeps {kept} entries but it holds {values.numel()} values")


def _parameters_by_key(model: nn.Module) -> dict[str, tuple[nn.Module, str]]:
    """Map the ``state_dict`` key of every parameter (at every path) to ``(module, tensor name)``."""
    return {
        _layout.join(prefix, key): (module, _layout.tensor_of_key(module, key))
        for prefix, module in model.named_modules(remove_duplicate=False)
        for key, value in module._parameters.items()
        if value is not None
    }


def _ticket_masks(model: nn.Module, ticket: Ticket) -> dict[tuple[int, str], torch.Tensor]:
    """Return the ticket's masks keyed by ``(id(module), name)`` of ``model``; each must fit.

    Raises:
        TypeError: if ``ticket`` is not a :class:`~torch_lottery.Ticket`.
        ValueError: naming each tensor of the ticket that ``model`` lacks or has with another shape.
    """
    if not isinstance(ticket, Ticket):
        raise TypeError(f"ticket must be a torch_lottery.Ticket, got {describe(ticket)}")
    return {(id(module), name): mask for _, (module, name), mask in ticket._mask_targets(model)}


def export(model: nn.Module, path: str | os.PathLike | None = None, ticket: Ticket | None = None) -> SparseState:
    """Build the compact :class:`SparseState` of a pruned ``model``, without changing it.

    Each pruned tensor (``<name>_orig`` and ``<name>_mask`` of any
    :mod:`torch.nn.utils.prune` method) is stored as a packed bitmask and the
    surviving values of ``<name>_orig * <name>_mask``; every other
    ``state_dict`` entry (unpruned parameters and buffers) is copied as it is.
    An unpruned model exports too (all entries dense).

    With a ``ticket``, its masks are used instead: every tensor the ticket
    masks is stored with the ticket's mask and the model's *current* values
    (``<name>_orig`` if the model prunes it, else the parameter) where that
    mask keeps them, whether or not the model is pruned; the ticket's rewind
    values are not used (apply the ticket first to export rewound weights).
    Tensors the ticket does not mask export as without a ticket. So a dense,
    trained model and a ticket give the sparse file directly, and the model is
    neither pruned nor changed.

    Args:
        model (nn.Module): the pruned (or, with a ticket, dense) model; it is only read.
        path (str or os.PathLike, optional): if given, also :meth:`~SparseState.save` there.
        ticket (Ticket, optional): masks to export the model's weights with.

    Returns:
        SparseState: keys are the ``state_dict`` keys after ``prune.remove``.

    Raises:
        TypeError: if ``model`` is not a module, ``path`` not a path or ``ticket`` not a Ticket.
        ValueError: if a mask holds values other than 0 and 1, or ``model`` lacks a
            tensor of the ticket or has it with another shape (the error names it).

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from torch.nn.utils import prune
        >>> from torch_lottery.export import export
        >>> net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> _ = prune.l1_unstructured(net[0], "weight", amount=0.75)
        >>> state = export(net)
        >>> state.pruned, state.remaining()
        (['0.weight'], (16, 64))
        >>> fresh = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> _ = fresh.load_state_dict(state.state_dict(), strict=True)
        >>> x = torch.randn(3, 8)
        >>> torch.equal(fresh(x), net(x))
        True

        A dense model with a ticket's masks:

        >>> from torch_lottery import Ticket
        >>> dense = nn.Sequential(nn.Linear(2, 2, bias=False))
        >>> ticket = Ticket({"0.weight": torch.tensor([[1, 0], [0, 1]])}, {})
        >>> state = export(dense, ticket=ticket)
        >>> state.pruned, torch.equal(state.state_dict()["0.weight"], dense[0].weight * torch.eye(2))
        (['0.weight'], True)
    """
    _check_model(model)
    if path is not None:
        check_path(path)
    chosen = {} if ticket is None else _ticket_masks(model, ticket)
    parameters = _parameters_by_key(model)
    masks = {_layout.mask_name(q) for q in _pruned_names(model)}
    entries: dict[str, dict[str, Any]] = {}
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if key in masks:
                continue
            module, attr = parameters.get(key, (None, key))
            mask = None if module is None else chosen.get((id(module), attr))
            if mask is None and module is not None and _layout.is_pruned(module, attr):
                stored = cast(torch.Tensor, _layout.mask_of(module, attr)).detach()
                mask = check_binary_mask(stored, f"model's mask {key}")
            if mask is None:
                entries[key] = {"kind": "dense", "tensor": tensor.detach().clone()}
                continue
            keep = mask.to(device=tensor.device, dtype=torch.bool)
            values = tensor.detach()[keep].clone()  # the survivors of <name>_orig * mask
            name = _layout.join(_layout.split(key)[0], attr)  # "1.weight", never "1.weight_orig"
            entries[name] = {"kind": "sparse", "shape": list(tensor.shape), "mask": pack_mask(keep), "values": values}
    state = SparseState(entries)
    if path is not None:
        state.save(path)
    return state


# -- sparse inference ----------------------------------------------------------
class SparseLinear(nn.Module):
    """Compute a frozen, pruned ``nn.Linear`` with a CSR weight (int32 indices) from ``min_batch`` rows on.

    For inputs with at least ``min_batch`` rows (leading dimensions flattened),
    it computes ``x @ W.T + b`` with ``torch.sparse.addmm`` on the CSR weight;
    below that it calls the dense ``F.linear`` on :attr:`weight`, with no more
    work than ``nn.Linear`` itself. For 2-D sparse-kernel outputs the result is a
    transposed (non-contiguous) view, which the next ``SparseLinear`` consumes
    without a copy: call ``.contiguous()`` before ``.view``. Inference only: no
    gradients flow to the weights (they are buffers). ``load_state_dict`` and
    ``.to(...)`` rebuild the CSR copy.

    Args:
        linear (nn.Linear): the (unpruned) layer to convert; it is not changed.
        min_batch (int): rows from which the sparse kernel is used (>= 1).

    Raises:
        TypeError: if ``linear`` is not an ``nn.Linear`` or ``min_batch`` not an int.
        ValueError: if ``min_batch < 1``.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from torch_lottery.export import SparseLinear
        >>> dense = nn.Linear(64, 32)
        >>> with torch.no_grad():
        ...     _ = dense.weight.mul_(torch.rand(32, 64) < 0.05)   # about 95% zeros
        >>> sparse = SparseLinear(dense, min_batch=16)
        >>> x = torch.randn(128, 64)
        >>> torch.allclose(sparse(x), dense(x), atol=1e-5)
        True
    """

    # Annotations only (no class attributes): the buffers, and the plain references ``_rebuild`` sets.
    weight: torch.Tensor
    bias: torch.Tensor | None
    _dense_weight: torch.Tensor
    _dense_bias: torch.Tensor | None

    def __init__(self, linear: nn.Linear, min_batch: int = DEFAULT_MIN_BATCH) -> None:
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {describe(linear)}")
        _check_min_batch(min_batch)
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.min_batch = int(min_batch)
        self.register_buffer("weight", linear.weight.detach().clone())
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())
        self._rebuild()

    def _rebuild(self) -> None:
        """Derive the CSR weight, the bias column and the plain references from the buffers."""
        weight, bias = cast(torch.Tensor, self._buffers["weight"]), self._buffers["bias"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
            csr = weight.detach().to_sparse_csr()
            self.weight_csr = torch.sparse_csr_tensor(
                csr.crow_indices().to(torch.int32), csr.col_indices().to(torch.int32), csr.values(), weight.shape
            )
        self._bias_column = (bias if bias is not None else weight.new_zeros(self.out_features)).unsqueeze(1)
        # Plain attributes skip nn.Module.__getattr__ on the dense path (what nn.Linear pays twice).
        self.__dict__["_dense_weight"], self.__dict__["_dense_bias"] = weight, bias

    @property
    def sparsity(self) -> float:
        """Fraction of zero weights."""
        return 1.0 - self.weight_csr.values().numel() / max(1, self.weight.numel())

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, sparsity={self.sparsity:.3f}, min_batch={self.min_batch}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.shape[0] if x.dim() == 2 else (x.numel() // self.in_features if self.in_features else 0)
        if rows < self.min_batch or x.dim() == 0:
            return F.linear(x, self._dense_weight, self._dense_bias)
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.in_features)
        # W @ x^T with x^T contiguous is the fast CSR layout; the output is (out, rows).
        out = torch.sparse.addmm(self._bias_column.to(flat.dtype), self.weight_csr, flat.t().contiguous()).t()
        return out if x.dim() == 2 else out.reshape(*lead, self.out_features)

    def _apply(self, fn, recurse=True):  # keep the CSR copy on the buffers' device and dtype
        super()._apply(fn, recurse)
        self._rebuild()
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._rebuild()  # the CSR copy follows the loaded weight


def _check_min_batch(min_batch: Any) -> None:
    check_number(min_batch, "min_batch", integer=True, low=1)


def permanent_copy(model: nn.Module) -> nn.Module:
    """Return a deep copy of ``model`` with every pruned tensor made permanent (``prune.remove``).

    Works for stock and torch-lottery pruning, also right after a forward pass
    (when stock prune's computed tensors cannot be deep-copied). ``model`` is not
    changed.

    Args:
        model (nn.Module): a model, pruned or not.

    Returns:
        nn.Module: the copy, with plain parameters (zeros where pruned) and no pruning hooks.

    Raises:
        TypeError: if ``model`` is not an ``nn.Module``.

    Examples:
        >>> from torch import nn
        >>> from torch.nn.utils import prune
        >>> from torch_lottery.export import permanent_copy
        >>> net = nn.Sequential(nn.Linear(4, 4))
        >>> _ = prune.l1_unstructured(net[0], "weight", amount=0.5)
        >>> plain = permanent_copy(net)
        >>> sorted(plain.state_dict()), int((plain[0].weight == 0).sum()), prune.is_pruned(net)
        (['0.bias', '0.weight'], 8, True)
    """
    _check_model(model)
    pruned = _pruned_names(model)
    memo: dict[int, Any] = {}
    for module, name in pruned.values():
        computed = module.__dict__.get(name)
        if isinstance(computed, torch.Tensor):
            # Stock prune leaves a non-leaf tensor there, which deepcopy refuses (pytorch 37322).
            memo[id(computed)] = computed.detach().clone()
    clone = copy.deepcopy(model, memo)
    for module, name in _pruned_names(clone).values():
        prune.remove(module, name)
    return clone


def to_sparse_inference(model: nn.Module, min_sparsity: float = 0.9, min_batch: int = DEFAULT_MIN_BATCH) -> nn.Module:
    """Return a new model for inference, with sparse ``nn.Linear`` layers as :class:`SparseLinear`.

    The copy has pruning made permanent; each ``nn.Linear`` (exact type, float32
    or float64) whose weight has at least ``min_sparsity`` zeros becomes a
    :class:`SparseLinear`; other layers (convolutions, denser linears) stay as
    they are. ``model`` is not changed. The copy is in eval mode.

    Args:
        model (nn.Module): a model, pruned or not.
        min_sparsity (float): fraction of zeros in [0, 1] from which a linear is converted.
        min_batch (int): rows from which :class:`SparseLinear` uses the sparse kernel.

    Returns:
        nn.Module: the inference copy, in eval mode.

    Raises:
        TypeError: on a non-module ``model`` or non-numeric arguments.
        ValueError: if ``min_sparsity`` is outside [0, 1] or ``min_batch`` < 1.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> import torch_lottery as tl
        >>> from torch_lottery.export import SparseLinear, to_sparse_inference
        >>> net = nn.Sequential(nn.Linear(100, 50), nn.ReLU(), nn.Linear(50, 10))
        >>> for layer in (net[0], net[2]):
        ...     _ = tl.lottery_magnitude(layer, "weight", amount=0.95)
        >>> fast = to_sparse_inference(net)
        >>> [type(m).__name__ for m in fast]
        ['SparseLinear', 'ReLU', 'SparseLinear']
        >>> x = torch.randn(64, 100)
        >>> with torch.no_grad():
        ...     torch.allclose(fast(x), net(x), atol=1e-5)
        True
    """
    _check_model(model)
    check_fraction(min_sparsity, "min_sparsity")
    _check_min_batch(min_batch)
    clone = permanent_copy(model)
    targets = []
    for prefix, module in clone.named_modules():
        if (
            type(module) is nn.Linear
            and module.weight.dtype in (torch.float32, torch.float64)
            and module.weight.layout == torch.strided
            and module.weight.numel() > 0
        ):
            zeros = int((module.weight == 0).sum())
            if zeros / module.weight.numel() >= float(min_sparsity):
                targets.append(prefix)
    for prefix in targets:
        parent_name, _, child = prefix.rpartition(".")
        parent = clone.get_submodule(parent_name) if parent_name else clone
        if not prefix:  # the model itself is a Linear
            return SparseLinear(cast(nn.Linear, clone), min_batch).eval()
        setattr(parent, child, SparseLinear(getattr(parent, child), min_batch))
    return clone.eval()


__all__ = [
    "FORMAT",
    "VERSION",
    "SparseLinear",
    "SparseState",
    "export",
    "pack_mask",
    "permanent_copy",
    "to_sparse_inference",
    "unpack_mask",
]
