"""Targeted dropout (Gomez et al. 2019): while training, drop only what pruning would remove.

Gomez, Zhang, Kamalakara, Madaan, Swersky, Gal and Hinton, "Learning Sparse Networks
Using Targeted Dropout" (2019). Before every weight update, each unit's weights of
smallest magnitude (or the units of smallest norm) form a *targeted set*, and each
member of it is dropped with probability ``drop_rate``; nothing outside it is ever
touched. The network learns not to rely on what it will lose, so pruning that set
after training (post hoc, without retraining) costs little accuracy.

:func:`targeted_dropout` installs it on one tensor of the user's own model, in the
style of stock prune's functional API, and :func:`remove_targeted_dropout` takes it
off. It works on an unpruned tensor and on one already pruned by stock prune or
torch-lottery (the targeted set then ranks the surviving entries; pruned ones stay
zero). :func:`targeted_set` is the selection both the dropout and the
``targeted_dropout`` strategy use, so the strategy prunes exactly what was targeted.
"""

from __future__ import annotations

import numbers
from typing import Any, cast

import torch
from torch import nn

from .. import _layout
from .._validation import (
    check_choice,
    check_fraction,
    check_generator,
    check_module,
    check_module_name,
    count_to_prune,
    describe,
)

#: What targeted dropout targets: the smallest weights of each unit, or the smallest units.
KINDS = ("weight", "unit")


# -- the targeted set ------------------------------------------------------------------
def _smallest(scores: torch.Tensor, eligible: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """True at the ``counts[r]`` eligible entries of each row ``r`` with the smallest scores.

    Ties go to the lower index first (the order in which ``keep_top`` drops them);
    a NaN score ranks above every number.
    """
    order = torch.sort(scores, dim=1, stable=True).indices
    ineligible = (~eligible).gather(1, order).to(torch.uint8)
    order = order.gather(1, torch.sort(ineligible, dim=1, stable=True).indices)  # eligible first, in score order
    chosen = torch.arange(scores.shape[1], device=scores.device)[None, :] < counts[:, None]
    return torch.zeros_like(eligible).scatter_(1, order, chosen)


def _count(targ_rate: float, n: int) -> int:
    """Return how many of ``n`` entries (or units) ``targ_rate`` targets: the one rounding rule of torch-lottery."""
    return count_to_prune(cast(numbers.Real, targ_rate), n, "targ_rate")


def _counts(targ_rate: float, surviving: torch.Tensor) -> torch.Tensor:
    """Per unit ``u``, ``_count(targ_rate, surviving[u])``."""
    values, inverse = torch.unique(surviving, return_inverse=True)
    table = [_count(targ_rate, int(v)) for v in values.tolist()]
    return torch.tensor(table, dtype=torch.long, device=surviving.device)[inverse]


def _target(
    weight: torch.Tensor, targ_rate: float, kind: str, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(targeted, surviving)``, per entry of the unit rows (``"weight"``) or per unit (``"unit"``)."""
    rows = weight.detach().reshape(weight.shape[0], -1)
    if mask is None:
        surviving = torch.ones(rows.shape, dtype=torch.bool, device=rows.device)
    else:
        surviving = mask.detach().reshape(rows.shape).to(device=rows.device) != 0
    if kind == "weight":
        if mask is None:  # every unit has all its entries: one count
            counts = torch.full((rows.shape[0],), _count(targ_rate, rows.shape[1]), device=rows.device)
        else:
            counts = _counts(targ_rate, surviving.sum(dim=1))
        return _smallest(rows.abs(), surviving, counts), surviving
    alive = surviving.any(dim=1)
    living = rows.shape[0] if mask is None else int(alive.sum())
    precision = torch.float32 if rows.dtype in (torch.float16, torch.bfloat16) else rows.dtype
    norms = torch.linalg.vector_norm(rows.masked_fill(~surviving, 0), dim=1, dtype=precision)
    count = torch.tensor([_count(targ_rate, living)], device=rows.device)
    return _smallest(norms[None], alive[None], count)[0], surviving


def _check_weight(weight: Any, name: str = "weight") -> torch.Tensor:
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{name} must be a Tensor, got {describe(weight)}")
    if weight.dim() == 0:
        raise ValueError(f"{name} is a scalar: targeted dropout needs units (slices along dim 0)")
    return weight


def targeted_set(
    weight: torch.Tensor, targ_rate: float, kind: str = "weight", mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Return the entries of ``weight`` targeted dropout targets, as a bool tensor of its shape.

    A *unit* is a slice of ``weight`` along dim 0: a row ``(out, in)`` of a
    Linear's weight, an output channel of a convolution's (for a transposed
    convolution, whose dim 0 is the input channel, an input channel). Only
    surviving entries (``mask != 0``; all of them without ``mask``) are ranked
    or targeted.

    * ``kind="weight"``: in each unit, the ``n = count_to_prune(targ_rate, s)``
      surviving entries of smallest ``|w|``, where ``s`` is the unit's number of
      survivors.
    * ``kind="unit"``: every surviving entry of the ``n = count_to_prune(targ_rate,
      u)`` units of smallest L2 norm (of their surviving entries), where ``u`` is
      the number of units with a survivor.

    ``count_to_prune`` rounds ``targ_rate * s`` to the nearest int as stock prune
    rounds an ``amount`` (Python's ``round``: halves go to the even count). Among
    equal magnitudes (or norms) the lower index is targeted first.

    Args:
        weight (Tensor): the values, at least 1-D.
        targ_rate (float): the targeted fraction, in [0, 1].
        kind (str): ``"weight"`` (default) or ``"unit"``.
        mask (Tensor, optional): 0/1 or bool tensor of ``weight``'s shape; its
            zeros are pruned entries, never targeted.

    Returns:
        Tensor: bool, ``weight``'s shape.

    Raises:
        TypeError, ValueError: naming the argument that does not fit.

    Examples:
        >>> import torch
        >>> w = torch.tensor([[0.5, -0.1, 0.3, 2.0], [1.0, 1.0, -4.0, 0.2]])
        >>> targeted_set(w, 0.5).int().tolist()
        [[0, 1, 1, 0], [1, 0, 0, 1]]
        >>> targeted_set(w, 0.5, kind="unit").int().tolist()
        [[1, 1, 1, 1], [0, 0, 0, 0]]
        >>> targeted_set(w, 0.5, mask=torch.tensor([[1, 0, 0, 1], [1, 1, 1, 1]])).int().tolist()
        [[1, 0, 0, 0], [1, 0, 0, 1]]
    """
    weight = _check_weight(weight)
    targ_rate = check_fraction(targ_rate, "targ_rate")
    check_choice(kind, KINDS, "kind")
    if mask is not None and (not isinstance(mask, torch.Tensor) or mask.shape != weight.shape):
        raise ValueError(f"mask must be a tensor of weight's shape {tuple(weight.shape)}, got {describe(mask)}")
    targeted, surviving = _target(weight, targ_rate, kind, mask)
    if kind == "unit":
        targeted = targeted[:, None] & surviving
    return targeted.view(weight.shape)


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Uniform draws in [0, 1) on ``device``, from ``generator`` (drawn on its own device) or the global RNG."""
    if generator is None:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def _dropped(
    weight: torch.Tensor,
    drop_rate: float,
    targ_rate: float,
    kind: str,
    mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return one draw of the entries targeted dropout zeroes (bool, ``weight``'s shape; see :func:`targeted_set`).

    Each targeted entry (``kind="weight"``: one uniform draw per entry of
    ``weight``, in its flat order) or each targeted unit (``kind="unit"``: one
    draw per unit) is dropped when its draw is below ``drop_rate``.
    """
    targeted, surviving = _target(weight, targ_rate, kind, mask)
    if kind == "weight":
        return (targeted & (_uniform(tuple(targeted.shape), generator, weight.device) < drop_rate)).view(weight.shape)
    units = targeted & (_uniform((targeted.shape[0],), generator, weight.device) < drop_rate)
    return (units[:, None] & surviving).view(weight.shape)


# -- the hooks ---------------------------------------------------------------------------
class _TargetedDropoutHook:
    """The forward pre-hook of one tensor's targeted dropout; :meth:`restore` is its forward hook.

    In training mode the pre-hook (which runs after the tensor's pruning hook, if
    any) reads ``module.<name>`` as the forward would, draws the dropped entries
    and makes ``module.<name>`` read the dropped weight for this forward only;
    the forward hook (``always_call=True``, so also when the forward raises)
    puts the module back. Parameters, buffers and ``state_dict`` never change.
    """

    def __init__(
        self, name: str, drop_rate: float, targ_rate: float, kind: str, generator: torch.Generator | None
    ) -> None:
        self.name = name
        self.drop_rate, self.targ_rate, self.kind = drop_rate, targ_rate, kind
        self.generator = generator
        self._previous: torch.Tensor | None = None
        self._substituted = False

    def __call__(self, module: nn.Module, args: Any) -> None:
        self.restore(module)  # a forward that skipped its forward hooks (torch.compile on an error) left it
        if not module.training or self.drop_rate == 0.0 or self.targ_rate == 0.0:
            return
        mask = _layout.mask_of(module, self.name)
        if mask is not None:
            self._check_order(module)
        weight = getattr(module, self.name)
        drop = _dropped(weight, self.drop_rate, self.targ_rate, self.kind, mask, self.generator)
        # WHY masked_fill: its gradient is zero at the dropped entries, and a dropped inf becomes 0, not NaN
        self._previous = _layout.substitute_weight(module, self.name, weight.masked_fill(drop, 0))
        self._substituted = True

    def restore(self, module: nn.Module, args: Any = None, output: Any = None) -> None:
        """Make ``module.<name>`` read the undropped weight again (a no-op if nothing is substituted)."""
        if self._substituted:
            _layout.restore_weight(module, self.name, self._previous)
            self._previous, self._substituted = None, False

    def _check_order(self, module: nn.Module) -> None:
        key, _ = _layout.find_hook(module, self.name)
        keys = list(module._forward_pre_hooks)
        mine = next(k for k, hook in module._forward_pre_hooks.items() if hook is self)
        if keys.index(key) > keys.index(mine):
            raise RuntimeError(
                f"{type(module).__name__}.{self.name} was pruned after targeted dropout was installed on it, so "
                "its pruning hook runs after the dropout and would undo it; call "
                f"remove_targeted_dropout(module, {self.name!r}) and targeted_dropout(...) again after pruning"
            )

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_previous"], state["_substituted"] = None, False  # a copy never holds a forward's dropped weight
        return state


def _find(module: nn.Module, name: str) -> tuple[Any, _TargetedDropoutHook] | None:
    """Return ``(key, hook)`` of the targeted dropout of ``module.<name>``, or None."""
    for key, hook in module._forward_pre_hooks.items():
        if isinstance(hook, _TargetedDropoutHook) and hook.name == name:
            return key, hook
    return None


def has_targeted_dropout(module: nn.Module, name: str) -> bool:
    """Return True if :func:`targeted_dropout` is installed on ``module.<name>``."""
    return _find(module, name) is not None


def check_targetable(module: Any, name: Any) -> torch.Tensor:
    """Check that targeted dropout can be installed on ``module.<name>`` and return its trainable tensor.

    Raises:
        TypeError, ValueError: as :func:`~torch_lottery._validation.check_module_name`;
            ValueError if the tensor is a scalar, if the module never reads
            ``module.<name>`` in its forward (``nn.RNN``/``LSTM``/``GRU``, which read a
            cached list of their weights, and the ``out_proj`` of
            ``nn.MultiheadAttention``, whose forward is never called), or if the
            tensor already has targeted dropout.
    """
    param = check_module_name(module, name)
    where = f"{type(module).__name__}.{name}"
    _check_weight(param, where)
    if isinstance(module, nn.RNNBase):
        raise ValueError(
            f"{where}: {type(module).__name__} reads a cached list of its weights, not module.{name}, so "
            "targeted dropout cannot drop them"
        )
    if isinstance(module, nn.modules.linear.NonDynamicallyQuantizableLinear):
        raise ValueError(
            f"{where}: this is the out_proj of an nn.MultiheadAttention, which reads out_proj.{name} without "
            "calling out_proj's forward, so targeted dropout would never run"
        )
    if has_targeted_dropout(module, name):
        raise ValueError(
            f"{where} already has targeted dropout; call remove_targeted_dropout(module, {name!r}) before "
            "installing it again"
        )
    return param


# -- the functional API ----------------------------------------------------------------------
def targeted_dropout(
    module: nn.Module,
    name: str,
    drop_rate: float,
    targ_rate: float,
    kind: str = "weight",
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Install targeted dropout on ``module.<name>`` and return ``module`` (Gomez et al. 2019).

    In training mode, at every forward, the targeted set of :func:`targeted_set`
    is recomputed from the current weights (``kind="weight"``: in each unit, the
    ``targ_rate`` fraction of its weights of smallest ``|w|``; ``kind="unit"``: the
    ``targ_rate`` fraction of units of smallest L2 norm), and each targeted weight
    (or unit) is zeroed with probability ``drop_rate``, independently; the forward
    uses that weight, so the gradient reaches only the kept entries. Nothing
    outside the targeted set is touched, and the kept weights are not rescaled
    (as in the paper's reference code, whose targeted dropout does not rescale).
    In eval mode the module computes exactly what it computes without it.

    The parameter, the ``state_dict`` keys and every other hook stay as they are.
    On a tensor pruned by stock prune or torch-lottery, the dropout runs after the
    pruning hook: the targeted set ranks the surviving entries only and pruned
    entries stay zero (prune first, then install: a tensor pruned afterwards is
    refused at its next training forward). Deep copies and pickles of the module
    keep the dropout, each with a copy of ``generator``.

    Args:
        module (nn.Module): the module holding the tensor (not ``nn.RNN``/``LSTM``/
            ``GRU``, nor the ``out_proj`` of ``nn.MultiheadAttention``: neither
            reads ``module.<name>`` in its own forward).
        name (str): the tensor's name, e.g. ``"weight"``.
        drop_rate (float): probability of dropping a targeted weight (or unit), in
            [0, 1] (the paper's experiments mostly use 0.5).
        targ_rate (float): fraction of each unit's weights (``"weight"``) or of the
            units (``"unit"``) that is targeted, in [0, 1] (mostly 0.5 in the paper).
        kind (str): ``"weight"`` (default) or ``"unit"``.
        generator (torch.Generator, optional): draws the drops (reproducible runs);
            default: torch's global RNG, which ``find_ticket`` seeds per round.

    Returns:
        nn.Module: ``module``.

    Raises:
        TypeError, ValueError: naming the argument that does not fit (nothing is
            changed then), or if ``module.<name>`` already has targeted dropout.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> import torch_lottery as tl
        >>> layer = tl.targeted_dropout(nn.Linear(8, 4), "weight", drop_rate=0.5, targ_rate=0.5)
        >>> x = torch.randn(2, 8)
        >>> y = layer(x)  # training mode: some of the smallest weights of each row are zeroed
        >>> torch.equal(layer.eval()(x), nn.functional.linear(x, layer.weight, layer.bias))
        True
        >>> sorted(layer.state_dict())
        ['bias', 'weight']
    """
    check_targetable(module, name)
    drop_rate = check_fraction(drop_rate, "drop_rate")
    targ_rate = check_fraction(targ_rate, "targ_rate")
    check_choice(kind, KINDS, "kind")
    generator = check_generator(generator, None)
    hook = _TargetedDropoutHook(name, drop_rate, targ_rate, kind, generator)
    module.register_forward_pre_hook(hook)
    module.register_forward_hook(hook.restore, prepend=True, always_call=True)
    return module


def remove_targeted_dropout(module: nn.Module, name: str) -> nn.Module:
    """Remove the targeted dropout of ``module.<name>`` and return ``module``.

    Both of its hooks go; the module computes as it did before the dropout was
    installed (a pruned tensor stays pruned).

    Args:
        module (nn.Module): the module holding the tensor.
        name (str): the tensor's name.

    Returns:
        nn.Module: ``module``.

    Raises:
        TypeError: if ``module`` is not a module or ``name`` not a str.
        ValueError: naming module and tensor if it has no targeted dropout.

    Examples:
        >>> from torch import nn
        >>> import torch_lottery as tl
        >>> layer = tl.targeted_dropout(nn.Linear(3, 2), "weight", 0.5, 0.5)
        >>> layer = tl.remove_targeted_dropout(layer, "weight")
        >>> len(layer._forward_pre_hooks), len(layer._forward_hooks)
        (0, 0)
    """
    check_module(module, "module")
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {describe(name)}")
    found = _find(module, name)
    if found is None:
        raise ValueError(
            f"{type(module).__name__}.{name} has no targeted dropout to remove (targeted_dropout(module, "
            f"{name!r}, ...) installs it)"
        )
    key, hook = found
    hook.restore(module)
    del module._forward_pre_hooks[key]
    for post in [k for k, h in module._forward_hooks.items() if getattr(h, "__self__", None) is hook]:
        del module._forward_hooks[post]
        module._forward_hooks_always_called.pop(post, None)
    return module
