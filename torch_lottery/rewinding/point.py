"""Rewind points: the values of a model's tensors at initialization or at iteration k."""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, cast

import torch
from torch import nn

from .. import _layout
from .._files import load_state, save_state
from .._validation import check_bool, check_finite, check_module, check_nonneg_int, check_path, describe

#: The ``format`` field of a saved rewind point; :meth:`RewindPoint.load` refuses other files.
FORMAT = "torch_lottery.rewind_point"
#: The version of the saved layout (files carry a SHA-256 digest of their content).
VERSION = 2


def _check_values(tensors: Mapping[str, torch.Tensor]) -> None:
    for key, value in tensors.items():
        if value.device.type == "meta":
            raise ValueError(f"tensors[{key!r}] is on the meta device: it has no values to rewind to")
        if value.layout != torch.strided:
            raise ValueError(f"tensors[{key!r}] has layout {value.layout}; rewind values must be dense tensors")
        check_finite(value, f"rewind_point[{key!r}]")


class RewindPoint(Mapping[str, torch.Tensor]):
    """The values of a model's tensors at one iteration, keyed by qualified name.

    Capture one at initialization (``iteration=0``) or at iteration k of the first
    training run (late resetting, Frankle et al. 2019), then rewind a pruned
    model to it: :meth:`restore` writes ``<name>_orig`` (never ``<name>_mask``),
    so the mask stays and the survivors get the captured values. It also works
    for tensors pruned by stock methods and for unpruned ones. By default every
    parameter is captured (weights, biases, normalization parameters: the lottery
    ticket resets them all); ``buffers=True`` adds the buffers (e.g. BatchNorm
    running statistics). Keys are the qualified names without ``_orig``
    (``"features.0.weight"``). Values must be finite.

    A rewind point is *bound* to the model it was captured from (a weak
    reference), which lets pruning methods find the tensor of a ``(module, name)``
    pair; :meth:`bind` binds it to another model of the same architecture.

    Args:
        tensors (Mapping[str, Tensor]): captured values by qualified name.
        iteration (int): the training iteration they were captured at.
        model (nn.Module, optional): the model to bind to.

    Raises:
        TypeError, ValueError: on a bad mapping or iteration, or NaN or infinite values.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from torch_lottery import RewindPoint, lottery_magnitude
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
        >>> init = RewindPoint.capture(net)
        >>> list(init)
        ['0.weight', '0.bias', '2.weight', '2.bias']
        >>> with torch.no_grad():
        ...     _ = net[0].weight.mul_(3)  # stand-in for training
        >>> _ = lottery_magnitude(net[0], "weight", amount=0.5)
        >>> _ = init.restore(net)
        >>> torch.equal(net[0].weight_orig, init["0.weight"])
        True
    """

    __eq__ = object.__eq__  # identity, not the tensors' elementwise ==
    __hash__ = object.__hash__

    def __init__(self, tensors: Mapping[str, torch.Tensor], iteration: int = 0, model: nn.Module | None = None) -> None:
        if not isinstance(tensors, Mapping):
            raise TypeError(f"tensors must be a mapping of name to Tensor, got {describe(tensors)}")
        for key, value in tensors.items():
            if not isinstance(key, str) or not isinstance(value, torch.Tensor):
                raise TypeError(f"tensors must map str to Tensor, got {describe(key)}: {describe(value)}")
        _check_values(tensors)
        check_nonneg_int(iteration, "iteration")
        # Copies: a rewind point must not follow the tensors it was built from as they train.
        self._tensors = {k: v.detach().clone() for k, v in tensors.items()}
        self.iteration = int(iteration)
        self._model_ref: weakref.ref | None = None
        self._prefixes: dict[int, str] | None = None
        if model is not None:
            self.bind(model)

    # -- capture -----------------------------------------------------------------
    @classmethod
    def capture(
        cls,
        model: nn.Module,
        parameters: Iterable[tuple[nn.Module, str]] | None = None,
        iteration: int = 0,
        device: torch.device | str | None = None,
        *,
        buffers: bool = False,
    ) -> RewindPoint:
        """Copy the current values of ``model``'s tensors (default: every parameter).

        Args:
            model (nn.Module): the model; the rewind point is bound to it.
            parameters (iterable of (module, name), optional): only these tensors,
                all inside ``model``, in this order (see :meth:`select`).
            iteration (int): the iteration the values belong to (0 = init).
            device (optional): where to keep the copies (default: the tensors' own).
            buffers (bool): also every buffer except the masks (e.g. BatchNorm
                running statistics), which :meth:`restore` then rewinds too.

        Raises:
            TypeError: if ``model`` is not a module.
            ValueError: if a pair is not a tensor of ``model``, or a value is NaN or infinite.
        """
        check_module(model)
        check_nonneg_int(iteration, "iteration")
        check_bool(buffers, "buffers")
        if device is not None and torch.device(device).type == "meta":
            raise ValueError("device='meta' holds no values to rewind to")
        if parameters is None:
            named = [(q, _layout.original(m, n)) for q, m, n in _layout.named_tensors(model)]
        else:
            prefixes = _layout.module_prefixes(model)
            named = []
            for item in parameters:
                if not (isinstance(item, tuple) and len(item) == 2):
                    raise TypeError(f"parameters must hold (module, name) pairs, got {describe(item)}")
                module, name = item
                if id(module) not in prefixes:
                    raise ValueError(f"parameters holds a {type(module).__name__} that is not part of model")
                qualified = _layout.join(prefixes[id(module)], name)
                try:
                    named.append((qualified, _layout.original(module, name)))
                except KeyError:
                    raise ValueError(f"parameters names {qualified!r}, which is not a parameter") from None
        if buffers:
            named += [(q, cast(torch.Tensor, m._buffers[n])) for q, m, n in _layout.named_buffers(model)]
        for qualified, tensor in named:
            if tensor.device.type == "meta":
                raise ValueError(f"{qualified!r} is on the meta device: it has no values to capture")
            check_finite(tensor, f"the value of {qualified!r} to capture")
        with torch.no_grad():
            tensors = {q: t.detach().to(device=device, copy=True) for q, t in named}
        return cls._wrap(tensors, iteration, model)

    @classmethod
    def _wrap(cls, tensors: dict[str, torch.Tensor], iteration: int, model: nn.Module | None) -> RewindPoint:
        """Build a rewind point around checked ``tensors`` without copying them (they must be private)."""
        point = cls.__new__(cls)
        point._tensors = tensors
        point.iteration = int(iteration)
        point._model_ref = weakref.ref(model) if model is not None else None
        point._prefixes = None
        return point

    # -- mapping -----------------------------------------------------------------
    def __getitem__(self, qualified: str) -> torch.Tensor:
        return self._tensors[qualified]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    def __repr__(self) -> str:
        bound = "bound" if self.model is not None else "unbound"
        return f"RewindPoint(iteration={self.iteration}, tensors={len(self)}, {bound})"

    # -- binding -----------------------------------------------------------------
    @property
    def model(self) -> nn.Module | None:
        """The model this rewind point is bound to, or None."""
        return self._model_ref() if self._model_ref is not None else None

    def _targets(self, model: nn.Module) -> list[tuple[str, nn.Module, str, bool]]:
        """Return ``(qualified, module, name, is_buffer)`` of every tensor in ``model``, checking names and shapes."""
        check_module(model)
        out = []
        for qualified, tensor in self._tensors.items():
            found = _layout.resolve(model, qualified)
            is_buffer = found is None
            if is_buffer:
                found = _layout.resolve_buffer(model, qualified)
            if found is None:
                raise ValueError(
                    f"rewind_point has tensor {qualified!r}, which {type(model).__name__} does not "
                    "have: the rewind point is from another model"
                )
            module, name = found
            target = cast(torch.Tensor, module._buffers[name]) if is_buffer else _layout.original(module, name)
            if target.shape != tensor.shape:
                raise ValueError(
                    f"rewind_point[{qualified!r}] has shape {tuple(tensor.shape)} but the model's "
                    f"tensor has shape {tuple(target.shape)}: the rewind point is from another model"
                )
            out.append((qualified, module, name, is_buffer))
        return out

    def check_model(self, model: nn.Module) -> list[tuple[nn.Module, str]]:
        """Check every tensor's name and shape against ``model``; return the ``(module, name)`` pairs of its parameters.

        Raises:
            TypeError: if ``model`` is not a module.
            ValueError: if a tensor is missing from ``model`` or has another shape.
        """
        return [(module, name) for _, module, name, is_buffer in self._targets(model) if not is_buffer]

    def bind(self, model: nn.Module) -> RewindPoint:
        """Bind to ``model`` (same architecture: names and shapes are checked) and return self."""
        self._targets(model)
        self._model_ref = weakref.ref(model)
        self._prefixes = None
        return self

    def _bound(self) -> nn.Module:
        model = self.model
        if model is None:
            raise ValueError("rewind_point is not bound to a model; call rewind_point.bind(model) first")
        return model

    def key_for(self, module: nn.Module, name: str) -> str:
        """Return the qualified name of ``module.<name>`` in the bound model."""
        model = self._bound()
        if self._prefixes is None or id(module) not in self._prefixes:
            self._prefixes = _layout.module_prefixes(model)  # the model may have changed
        if id(module) not in self._prefixes:
            raise ValueError(
                f"the {type(module).__name__} being pruned is not part of the model rewind_point is bound to; "
                "call rewind_point.bind(model) with the model being pruned"
            )
        return _layout.join(self._prefixes[id(module)], name)

    def tensor_for(self, module: nn.Module, name: str) -> torch.Tensor:
        """Return the captured tensor of ``module.<name>`` (a module of the bound model)."""
        qualified = self.key_for(module, name)
        if qualified not in self._tensors:
            raise ValueError(f"rewind_point has no tensor {qualified!r} (it has {len(self)} tensors)")
        return self._tensors[qualified]

    def pairs(self) -> list[tuple[nn.Module, str]]:
        """Return the ``(module, name)`` pairs of the bound model's parameters in this rewind point, in order."""
        return self.check_model(self._bound())

    def select(self, parameters: Iterable[tuple[nn.Module, str]]) -> RewindPoint:
        """Return a rewind point restricted to ``parameters``, in their order (sharing the values)."""
        model = self._bound()
        tensors = {}
        for item in parameters:
            if not (isinstance(item, tuple) and len(item) == 2):
                raise TypeError(f"parameters must hold (module, name) pairs, got {describe(item)}")
            qualified = self.key_for(*item)
            if qualified not in self._tensors:
                raise ValueError(f"rewind_point has no tensor {qualified!r}")
            tensors[qualified] = self._tensors[qualified]
        return RewindPoint._wrap(tensors, self.iteration, model)

    # -- rewinding ---------------------------------------------------------------
    def restore(self, model: nn.Module | None = None) -> nn.Module:
        """Write the captured values into ``model`` (default: the bound model) and return it.

        Writes ``<name>_orig`` of pruned tensors (the masks are untouched), the
        parameter itself of unpruned ones and the captured buffers, then
        recomputes ``module.<name>``. Every name and shape is checked first: on
        an error nothing is written.

        Raises:
            ValueError: if the model lacks a tensor or its shape differs.
        """
        model = self._bound() if model is None else model
        targets = self._targets(model)
        params = [(q, m, n) for q, m, n, is_buffer in targets if not is_buffer]
        _layout.write_values([(m, n) for _, m, n in params], [self._tensors[q] for q, _, _ in params])
        with torch.no_grad():
            for qualified, module, name, is_buffer in targets:
                if is_buffer:
                    buffer = cast(torch.Tensor, module._buffers[name])
                    buffer.copy_(self._tensors[qualified].to(device=buffer.device, dtype=buffer.dtype))
        return model

    # -- files -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Return a plain dict (tensors on the CPU) that :meth:`from_state_dict` reads back."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "iteration": self.iteration,
            "tensors": {k: v.detach().cpu() for k, v in self._tensors.items()},
        }

    @classmethod
    def from_state_dict(cls, state: Any, source: str = "state") -> RewindPoint:
        """Build a rewind point from :meth:`state_dict` output, checking its layout."""
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError(f"{source} is not a torch-lottery rewind point (no format={FORMAT!r} field)")
        if state.get("version") != VERSION or type(state.get("version")) is not int:
            raise ValueError(
                f"{source} has rewind point version {state.get('version')!r}; this release reads {VERSION}"
            )
        try:
            return cls(state["tensors"], iteration=state["iteration"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{source} is a damaged rewind point: {error}") from None

    def save(self, path: str | os.PathLike) -> None:
        """Save to ``path`` atomically (temporary file, fsync, rename) with a SHA-256 digest of the content."""
        check_path(path)
        save_state(self.state_dict(), path)

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: Any = "cpu", model: nn.Module | None = None) -> RewindPoint:
        """Load a rewind point saved by :meth:`save` (``weights_only=True``), optionally binding it.

        Raises:
            TypeError: if ``path`` is not a str or path-like.
            FileNotFoundError: if ``path`` does not exist.
            ValueError: if the file is not a rewind point, is damaged or truncated
                (its SHA-256 digest does not match or is missing), or does not fit ``model``.
        """
        check_path(path)
        state = load_state(path, "rewind point", FORMAT, (VERSION,), map_location=map_location)
        point = cls.from_state_dict(state, source=f"path={os.fspath(path)!r}")
        if model is not None:
            point.bind(model)
        return point
