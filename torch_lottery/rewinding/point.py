"""Rewind points: the weights of chosen tensors at initialization or at iteration k."""

from __future__ import annotations

import os
import weakref
from typing import Any, Iterable, Iterator, Mapping

import torch
from torch import nn

from .._files import atomic_save, load_state, save_state  # noqa: F401 (atomic_save: historical home)
from .._validation import check_nonneg_int, describe
from ..pruning._core import refresh
from ..pruning._rewind import parameter_tensor
from ..pruning.utils import named_prunable_parameters

#: The ``format`` field of a saved rewind point; :meth:`RewindPoint.load` refuses other files.
FORMAT = "torch_lottery.rewind_point"
#: The version of the saved layout (2: files carry a SHA-256 digest of their content).
VERSION = 2
#: Versions :meth:`RewindPoint.load` reads (version 1 files have no digest).
READS = (1, 2)


def _check_path(path: Any) -> None:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {describe(path)}")


def _module_prefixes(model: nn.Module) -> dict[int, str]:
    return {id(module): prefix for prefix, module in model.named_modules(remove_duplicate=False)}


def _split(qualified: str) -> tuple[str, str]:
    prefix, _, name = qualified.rpartition(".")
    return prefix, name


class RewindPoint:
    """The weights of chosen tensors of a model at one iteration, keyed by qualified name.

    Capture one at initialization (``iteration=0``) or at iteration k of the first
    training run (late resetting, Frankle et al. 2019), then rewind a pruned
    model to it: :meth:`restore` writes ``<name>_orig`` (never ``<name>_mask``),
    so the mask stays and the survivors get the captured values. It also works
    for tensors pruned by stock methods and for unpruned ones. Keys are the
    qualified parameter names without ``_orig`` (``"features.0.weight"``).

    A rewind point is *bound* to the model it was captured from (a weak
    reference), which lets pruning methods find the tensor of a ``(module, name)``
    pair; :meth:`bind` binds it to another model of the same architecture.

    Args:
        tensors (Mapping[str, Tensor]): captured values by qualified name.
        iteration (int): the training iteration they were captured at.
        model (nn.Module, optional): the model to bind to.

    Raises:
        TypeError, ValueError: on a bad mapping or iteration.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from torch_lottery import RewindPoint, lottery_magnitude
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
        >>> init = RewindPoint.capture(net)
        >>> list(init)
        ['0.weight', '2.weight']
        >>> with torch.no_grad():
        ...     _ = net[0].weight.mul_(3)  # stand-in for training
        >>> _ = lottery_magnitude(net[0], "weight", amount=0.5)
        >>> _ = init.restore(net)
        >>> torch.equal(net[0].weight_orig, init["0.weight"])
        True
    """

    def __init__(self, tensors: Mapping[str, torch.Tensor], iteration: int = 0,
                 model: nn.Module | None = None) -> None:
        if not isinstance(tensors, Mapping):
            raise TypeError(f"tensors must be a mapping of name to Tensor, got {describe(tensors)}")
        for key, value in tensors.items():
            if not isinstance(key, str) or not isinstance(value, torch.Tensor):
                raise TypeError(f"tensors must map str to Tensor, got {describe(key)}: {describe(value)}")
            if value.device.type == "meta":
                raise ValueError(f"tensors[{key!r}] is on the meta device: it has no values to rewind to")
        check_nonneg_int(iteration, "iteration")
        # Copies: a rewind point must not follow the tensors it was built from as they train.
        self._tensors = {k: v.detach().clone() for k, v in tensors.items()}
        self.iteration = int(iteration)
        self.explicit_order = False
        self._model_ref = None
        self._prefixes: dict[int, str] | None = None
        if model is not None:
            self.bind(model)

    # -- capture -----------------------------------------------------------------
    @classmethod
    def capture(cls, model: nn.Module, parameters: Iterable[tuple[nn.Module, str]] | None = None,
                iteration: int = 0, device: torch.device | str | None = None) -> "RewindPoint":
        """Copy the current values of ``parameters`` (default: every prunable weight) of ``model``.

        Args:
            model (nn.Module): the model; the rewind point is bound to it.
            parameters (iterable of (module, name), optional): the tensors to
                capture, all inside ``model``; default
                :func:`~torch_lottery.prunable_parameters` ``(model)``. Their order
                is kept (see :meth:`select`).
            iteration (int): the iteration the values belong to (0 = init).
            device (optional): where to keep the copies (default: the tensors' own).

        Raises:
            TypeError: if ``model`` is not a module.
            ValueError: if a pair is not a tensor of ``model``.
        """
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {describe(model)}")
        check_nonneg_int(iteration, "iteration")
        if parameters is None:
            named = [(q, m, n) for q, m, n in named_prunable_parameters(model)]
        else:
            prefixes = _module_prefixes(model)
            named = []
            for item in parameters:
                if not (isinstance(item, tuple) and len(item) == 2):
                    raise TypeError(f"parameters must hold (module, name) pairs, got {describe(item)}")
                module, name = item
                if id(module) not in prefixes:
                    raise ValueError(f"parameters holds a {type(module).__name__} that is not part of model")
                prefix = prefixes[id(module)]
                named.append((f"{prefix}.{name}" if prefix else name, module, name))
        tensors = {}
        with torch.no_grad():
            for qualified, module, name in named:
                try:
                    tensor = parameter_tensor(module, name)
                except KeyError:
                    raise ValueError(f"parameters names {qualified!r}, which is not a parameter") from None
                if tensor.device.type == "meta" or (device is not None and torch.device(device).type == "meta"):
                    raise ValueError(f"{qualified!r} is on the meta device: it has no values to capture")
                tensors[qualified] = tensor.detach().to(device=device, copy=True)
        point = cls._wrap(tensors, iteration, model)
        point.explicit_order = parameters is not None
        return point

    @classmethod
    def _wrap(cls, tensors: dict[str, torch.Tensor], iteration: int, model: nn.Module | None) -> "RewindPoint":
        """Build a rewind point around ``tensors`` without copying them (they must be private)."""
        point = cls.__new__(cls)
        point._tensors = tensors
        point.iteration = int(iteration)
        point.explicit_order = False
        point._model_ref = weakref.ref(model) if model is not None else None
        point._prefixes = None
        return point

    # -- mapping -----------------------------------------------------------------
    def __getitem__(self, qualified: str) -> torch.Tensor:
        return self._tensors[qualified]

    def __contains__(self, qualified: object) -> bool:
        return qualified in self._tensors

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    def keys(self):
        """Return the qualified names, in capture order."""
        return self._tensors.keys()

    def items(self):
        """Return ``(qualified name, tensor)`` pairs, in capture order."""
        return self._tensors.items()

    def __repr__(self) -> str:
        bound = "bound" if self.model is not None else "unbound"
        return f"RewindPoint(iteration={self.iteration}, tensors={len(self)}, {bound})"

    # -- binding -----------------------------------------------------------------
    @property
    def model(self) -> nn.Module | None:
        """The model this rewind point is bound to, or None."""
        return self._model_ref() if self._model_ref is not None else None

    def _resolve(self, model: nn.Module, qualified: str) -> tuple[nn.Module, str]:
        prefix, name = _split(qualified)
        try:
            module = model.get_submodule(prefix)
        except AttributeError:
            module = None
        if module is None or not (
            module._parameters.get(name) is not None or module._parameters.get(name + "_orig") is not None
        ):
            raise ValueError(
                f"rewind_point has tensor {qualified!r}, which {type(model).__name__} does not have: "
                "the rewind point is from another model"
            )
        return module, name

    def check_model(self, model: nn.Module) -> list[tuple[nn.Module, str]]:
        """Return the ``(module, name)`` pairs of ``model`` for every tensor, checking names and shapes.

        Raises:
            TypeError: if ``model`` is not a module.
            ValueError: if a tensor is missing from ``model`` or has another shape.
        """
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {describe(model)}")
        pairs = []
        for qualified, tensor in self._tensors.items():
            module, name = self._resolve(model, qualified)
            target = parameter_tensor(module, name)
            if target.shape != tensor.shape:
                raise ValueError(
                    f"rewind_point[{qualified!r}] has shape {tuple(tensor.shape)} but the model's "
                    f"tensor has shape {tuple(target.shape)}: the rewind point is from another model"
                )
            pairs.append((module, name))
        return pairs

    def bind(self, model: nn.Module) -> "RewindPoint":
        """Bind to ``model`` (same architecture: names and shapes are checked) and return self."""
        self.check_model(model)
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
        if self._prefixes is None:
            self._prefixes = _module_prefixes(model)
        if id(module) not in self._prefixes:
            self._prefixes = _module_prefixes(model)  # the model may have changed
        if id(module) not in self._prefixes:
            raise ValueError(
                f"the {type(module).__name__} being pruned is not part of the model rewind_point is bound to; "
                "call rewind_point.bind(model) with the model being pruned"
            )
        prefix = self._prefixes[id(module)]
        return f"{prefix}.{name}" if prefix else name

    def tensor_for(self, module: nn.Module, name: str) -> torch.Tensor:
        """Return the captured tensor of ``module.<name>`` (a module of the bound model)."""
        qualified = self.key_for(module, name)
        if qualified not in self._tensors:
            raise ValueError(f"rewind_point has no tensor {qualified!r} (it has {len(self)} tensors)")
        return self._tensors[qualified]

    def pairs(self) -> list[tuple[nn.Module, str]]:
        """Return the ``(module, name)`` pairs of the bound model, in this rewind point's order."""
        model = self._bound()
        return [self._resolve(model, q) for q in self._tensors]

    def select(self, parameters: Iterable[tuple[nn.Module, str]]) -> "RewindPoint":
        """Return a rewind point restricted to ``parameters``, in their order.

        Use it where a method pools tensors in the order of a parameter list,
        e.g. ``prune.global_unstructured(params, pruning_method=LotteryMagnitude,
        amount=0.2, rewind_point=init.select(params))``.
        """
        model = self._bound()
        tensors = {}
        for item in parameters:
            if not (isinstance(item, tuple) and len(item) == 2):
                raise TypeError(f"parameters must hold (module, name) pairs, got {describe(item)}")
            module, name = item
            qualified = self.key_for(module, name)
            if qualified not in self._tensors:
                raise ValueError(f"rewind_point has no tensor {qualified!r}")
            tensors[qualified] = self._tensors[qualified]
        point = RewindPoint._wrap(tensors, self.iteration, model)  # shares the (private) tensors
        point.explicit_order = True
        return point

    # -- rewinding ---------------------------------------------------------------
    def restore(self, model: nn.Module | None = None) -> nn.Module:
        """Write the captured values into ``model`` (default: the bound model) and return it.

        Writes ``<name>_orig`` of pruned tensors (the masks are untouched) and the
        parameter itself of unpruned ones, then recomputes ``module.<name>``. Every
        name and shape is checked first: on an error nothing is written.

        Raises:
            ValueError: if the model lacks a tensor or its shape differs.
        """
        model = self._bound() if model is None else model
        pairs = self.check_model(model)
        with torch.no_grad():
            for (module, name), tensor in zip(pairs, self._tensors.values()):
                target = parameter_tensor(module, name)
                target.copy_(tensor.to(device=target.device, dtype=target.dtype))
                refresh(module, name)
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
    def from_state_dict(cls, state: Any, source: str = "state") -> "RewindPoint":
        """Build a rewind point from :meth:`state_dict` output, checking its layout."""
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError(f"{source} is not a torch-lottery rewind point (no format={FORMAT!r} field)")
        if type(state.get("version")) is not int or state["version"] not in READS:
            raise ValueError(f"{source} has rewind point version {state.get('version')!r}; "
                             f"this release reads {', '.join(map(str, READS))}")
        try:
            return cls(state["tensors"], iteration=state["iteration"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{source} is a damaged rewind point: {error}") from None

    def save(self, path: str | os.PathLike) -> None:
        """Save to ``path`` atomically (temporary file, fsync, rename) with a SHA-256 digest of the content."""
        _check_path(path)
        save_state(self.state_dict(), path)

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: Any = "cpu",
             model: nn.Module | None = None) -> "RewindPoint":
        """Load a rewind point saved by :meth:`save` (``weights_only=True``), optionally binding it.

        Raises:
            TypeError: if ``path`` is not a str or path-like.
            FileNotFoundError: if ``path`` does not exist.
            ValueError: if the file is not a rewind point, is damaged or truncated
                (its SHA-256 digest does not match), or does not fit ``model``.
        """
        _check_path(path)
        state = load_state(path, "rewind point", FORMAT, map_location=map_location)
        point = cls.from_state_dict(state, source=f"path={os.fspath(path)!r}")
        if model is not None:
            point.bind(model)
        return point
