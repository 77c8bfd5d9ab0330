"""Shared machinery of the learned supermasks (``edge_popup``, ``learned_supermask``): train scores, never weights.

A supermask is a mask that makes an *untrained*, randomly initialized network
perform well (Zhou et al. 2019; Ramanujan et al. 2020). Both built-in strategies
find one the same way, and :class:`SupermaskStrategy` is that way:

* :meth:`~SupermaskStrategy.prune` draws one score per weight (from the run's
  seeded generator) and gives round 1's starting masks;
* :meth:`~SupermaskStrategy.begin` freezes the weights (``requires_grad_(False)``
  on every frozen tensor and its ``.grad`` set to None, so no optimizer,
  momentum, weight decay or gradient held from before the run can move it),
  registers each tensor's scores on its module as a trainable parameter
  ``<name>_scores`` (:func:`scores_name`), and installs a forward pre-hook that
  computes ``module.<name> = <name>_orig * STE(mask(scores))``, so the loss's
  gradients reach the scores through a straight-through estimator. The scores
  join ``find_ticket(optimizer=...)`` as a parameter group of their own (they
  inherit the optimizer's defaults); an optimizer that the user's ``train``
  builds from ``model.parameters()`` holds them already;
* :meth:`~SupermaskStrategy.update` (every ``every`` steps) returns the current
  masks, which the driver writes into ``<name>_mask``, so the buffer follows the
  scores;
* :meth:`~SupermaskStrategy.end` (also when training raised) computes the final
  masks, takes out everything ``begin`` installed and restores ``requires_grad``
  as it was (the frozen tensors' ``.grad`` stays None): the model is a plain pruned model
  whose weights are bit for bit the initial ones and whose masks are the ticket.
  It warns if the scores never changed (nothing trained them).

The class sets ``regrow_at_zero = False`` (the driver must not zero the weights of
entries a mask revives, as it does for drop-and-regrow strategies: a supermask's
weights stay as they were) and ``keep_density = False`` (the learned supermask's
density is learned). ``end`` returns the final masks, which the driver installs.

Frozen tensors (option ``freeze``): ``"all"`` (default, as both papers) is every
parameter of the model, biases and BatchNorm's affine weights included;
``"pruned"`` is only the pruned tensors (``<name>_orig``), so biases and the
other parameters train with the scores. BatchNorm's running statistics are
buffers, not trained weights: in train mode they follow the masked network as
usual (the reference code of Ramanujan et al. does the same).
"""

from __future__ import annotations

import abc
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from .. import _layout
from .._validation import check_choice, check_number, describe
from .base import StepContext, Strategy
from .context import PruneContext

#: Suffix of the score parameter registered on the module of each pruned tensor while a supermask trains.
SCORES = "_scores"

#: What option ``freeze`` takes: every parameter of the model, or the pruned tensors only.
FREEZE = ("all", "pruned")


def scores_name(name: str) -> str:
    """Return the name of the score parameter of tensor ``name`` (``"weight"`` -> ``"weight_scores"``).

    Examples:
        >>> scores_name("weight")
        'weight_scores'
    """
    return name + SCORES


class _StraightThrough(torch.autograd.Function):
    """Forward: ``hard`` as it is; backward: the gradient of the output goes to ``soft`` unchanged."""

    @staticmethod
    def forward(ctx: Any, hard: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
        return hard.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, grad


def straight_through(hard: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """Return ``hard`` (e.g. a 0/1 mask) with the gradient passed straight through to ``soft``.

    The straight-through estimator of Bengio et al. 2013: the value is exactly
    ``hard`` (no ``hard + soft - soft`` rounding), and ``d loss / d soft = d loss /
    d output``.

    Args:
        hard (Tensor): the value of the output (no gradient flows into it).
        soft (Tensor): what the gradient reaches, ``hard``'s shape.

    Returns:
        Tensor: ``hard``'s values, attached to ``soft``'s graph.

    Examples:
        >>> import torch
        >>> soft = torch.tensor([0.3, -2.0], requires_grad=True)
        >>> out = straight_through(torch.tensor([1.0, 0.0]), soft)
        >>> (out * torch.tensor([5.0, 7.0])).sum().backward()
        >>> out.tolist(), soft.grad.tolist()
        ([1.0, 0.0], [5.0, 7.0])
    """
    return _StraightThrough.apply(hard, soft)


def kaiming_uniform_scores(weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Return scores for ``weight`` drawn as Ramanujan et al.'s code draws them: Kaiming uniform with ``a = sqrt(5)``.

    That is ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, ``nn.Linear``'s and
    ``nn.Conv2d``'s default init; ``fan_in`` is the size of one output slice
    (``weight[0].numel()``, or the number of entries of a 1-d tensor). Drawn on
    the CPU from ``generator`` in float64, then cast to ``weight``'s dtype and
    device, so a seed gives the same scores everywhere.

    Examples:
        >>> import torch
        >>> scores = kaiming_uniform_scores(torch.empty(3, 4), torch.Generator().manual_seed(0))
        >>> scores.shape, bool(scores.abs().max() <= 0.5)  # fan_in 4: bound 1/2
        (torch.Size([3, 4]), True)
    """
    fan_in = weight[0].numel() if weight.dim() > 1 else weight.numel()
    bound = 1.0 / math.sqrt(max(fan_in, 1))
    draw = torch.rand(weight.shape, generator=generator, dtype=torch.float64) * 2.0 - 1.0
    return (draw * bound).to(device=weight.device, dtype=weight.dtype)


@dataclass
class _Prepared:
    """What :meth:`SupermaskStrategy.prune` drew for round 1, by distinct tensor (tied names share one)."""

    names: tuple[str, ...]
    first: list[int]  # per name: the index of the first name holding the same tensor
    scores: dict[int, torch.Tensor]  # per distinct index: the initial scores
    eligible: dict[int, torch.Tensor | None]  # per distinct index: the entries alive at the start (None: all)
    seed: int  # for the strategy's own random draws while training


@dataclass
class _Installed:
    """What :meth:`SupermaskStrategy.begin` put on the model and the optimizer, to take out in ``end``."""

    pairs: list[tuple[nn.Module, str]]
    first: list[int]
    scores: dict[int, nn.Parameter] = field(default_factory=dict)
    initial: dict[int, torch.Tensor] = field(default_factory=dict)
    eligible: dict[int, torch.Tensor | None] = field(default_factory=dict)
    registered: list[tuple[nn.Module, str]] = field(default_factory=list)
    hooks: list[RemovableHandle] = field(default_factory=list)
    frozen: list[tuple[torch.Tensor, bool]] = field(default_factory=list)  # each tensor and its requires_grad
    optimizer: torch.optim.Optimizer | None = None
    group: dict[str, Any] | None = None


class SupermaskStrategy(Strategy):
    """Base of the strategies that train a mask over frozen initial weights (see the module's docstring).

    A subclass draws the initial scores (:meth:`initial_scores`) and says how
    scores become a mask: while training (:meth:`training_mask`, 0/1 values
    attached to the scores' graph), now (:meth:`current_mask`, what
    :meth:`update` writes into the buffer) and at the end (:meth:`final_mask`).
    Masks only ever keep entries alive when the run started (``eligible``, a
    bool tensor, or None when every entry was): a model pruned before the run
    keeps its pruned entries pruned.

    Args:
        every (int): optimizer steps between two writes of the current masks into
            ``<name>_mask`` (>= 1).
        freeze (str): which tensors stay at their initial values: ``"all"`` (every
            parameter of the model, the default) or ``"pruned"`` (the pruned
            tensors only).

    Raises:
        TypeError, ValueError: naming the option and its value.

    Attributes:
        trace (list[dict]): per :meth:`update`, ``{"iteration", "remaining",
            "changed"}``: the fraction of entries the current masks keep and the
            number of entries that changed since the previous write (a subclass
            may add its own figures).

    Examples:
        >>> from torch_lottery.strategies import EdgePopup, SupermaskStrategy
        >>> strategy = EdgePopup(every=5)
        >>> isinstance(strategy, SupermaskStrategy), strategy.when, strategy.options()
        (True, 'during_training', {'remaining': 0.5, 'every': 5, 'freeze': 'all'})
    """

    when: ClassVar[str] = "during_training"
    regrow_at_zero: ClassVar[bool] = False  # revived entries keep their (initial) weights
    keep_density: ClassVar[bool] = False  # the learned supermask learns its density

    def __init__(self, every: int = 10, freeze: str = "all") -> None:
        super().__init__()
        self.every = check_number(every, "every", integer=True, low=1)
        self.freeze = check_choice(freeze, FREEZE, "freeze")
        self.trace: list[dict[str, Any]] = []
        self._prepared: _Prepared | None = None
        self._installed: _Installed | None = None

    # -- what a subclass defines ------------------------------------------------------
    @abc.abstractmethod
    def initial_scores(self, weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Return the initial scores of a tensor (``weight``'s shape, dtype and device), drawn from ``generator``."""

    @abc.abstractmethod
    def training_mask(self, scores: torch.Tensor, eligible: torch.Tensor | None, training: bool) -> torch.Tensor:
        """Return the mask of a forward pass: 0/1 in ``scores``' dtype, differentiable w.r.t. ``scores``.

        ``training`` is the module's train/eval mode.
        """

    @abc.abstractmethod
    def current_mask(self, scores: torch.Tensor, eligible: torch.Tensor | None) -> torch.Tensor:
        """Return the mask the scores give now (bool), deterministic: what :meth:`update` writes."""

    @abc.abstractmethod
    def final_mask(self, scores: torch.Tensor, eligible: torch.Tensor | None) -> torch.Tensor:
        """Return the ticket's mask (bool) from the trained scores; called once per distinct tensor, in order."""

    def starting_mask(
        self, scores: torch.Tensor, eligible: torch.Tensor | None, generator: torch.Generator
    ) -> torch.Tensor:
        """Return round 1's starting mask (bool) from the initial scores (default: :meth:`current_mask`)."""
        return self.current_mask(scores, eligible)

    def record(self, scores: dict[int, torch.Tensor]) -> dict[str, Any]:
        """Return extra figures for :attr:`trace` at an update (default none)."""
        return {}

    # -- the seam ---------------------------------------------------------------------
    def validate(self, names: tuple[str, ...], model: nn.Module | None = None, data: Any = None) -> None:
        """Check, before anything trains, that every tensor can carry scores.

        Raises:
            ValueError: if a module already has an attribute ``<name>_scores``, or a
                tensor is ``nn.MultiheadAttention``'s ``out_proj.weight`` (attention
                never calls ``out_proj``'s forward, so its pre-hooks never run).
        """
        if model is None:
            return
        for qualified in names:
            found = _layout.resolve(model, qualified)
            if found is not None:
                _check_room(*found, qualified)

    def prune(self, context: PruneContext) -> dict[str, torch.Tensor]:
        """Draw the initial scores of every tensor from ``context.generator`` and return round 1's starting masks.

        Raises:
            ValueError: with the ``"shuffle"`` control (the masks are learned while
                training, so a shuffled start would be thrown away), or if the
                options do not fit a tensor (naming it).
        """
        if context.control == "shuffle":
            raise ValueError(
                f"control='shuffle' permutes the masks a strategy computes; {type(self).__name__} learns its masks "
                "while training, so the shuffled starting masks would be discarded"
            )
        names = tuple(context.names)
        first = _first_of(context)
        scores, eligible, masks = {}, {}, {}
        for i, name in enumerate(names):
            if first[i] != i:
                continue
            weight = context.weights[name]
            scores[i] = self.initial_scores(weight, context.generator)
            alive = context.masks[name].to(device=weight.device, dtype=torch.bool)
            eligible[i] = None if bool(alive.all()) else alive.clone()
            try:
                masks[i] = self.starting_mask(scores[i], eligible[i], context.generator)
            except ValueError as error:  # the subclass's own check of its options: name the tensor
                raise ValueError(f"the tensor {name!r}: {error}") from None
        seed = int(torch.randint(0, 2**62, (1,), generator=context.generator))
        self._prepared = _Prepared(names, first, scores, eligible, seed)
        self.trace = []
        return {name: masks[first[i]].clone() for i, name in enumerate(names)}

    def begin(self, context: StepContext) -> None:
        """Freeze the weights, register the scores and the forward pre-hooks, give the scores to the optimizer.

        Raises:
            RuntimeError: if :meth:`prune` did not prepare these tensors (the driver
                always calls it first).
            ValueError: if a module has no room for the scores (see :meth:`validate`).
        """
        prepared = self._prepared
        if prepared is None or prepared.names != tuple(context.names):
            raise RuntimeError(
                f"{type(self).__name__}.begin needs the scores prune() draws for the same tensors; call prune first"
            )
        pairs = context.pairs()
        for (module, name), qualified in zip(pairs, context.names, strict=True):
            _check_room(module, name, qualified)
        self._sampler_seed(prepared.seed)
        installed = _Installed(pairs, prepared.first)
        self._installed = installed
        try:
            self._freeze(context.model, installed)
            for i, (module, name) in enumerate(pairs):
                j = prepared.first[i]
                if j not in installed.scores:
                    initial = prepared.scores[j]
                    installed.scores[j] = nn.Parameter(initial.clone())
                    installed.initial[j] = initial
                    installed.eligible[j] = prepared.eligible[j]
                module.register_parameter(scores_name(name), installed.scores[j])
                installed.registered.append((module, name))
                installed.hooks.append(module.register_forward_pre_hook(self._hook(module, name, j)))
            self._give_to(context.optimizer, installed)
        except BaseException:
            self._teardown()
            raise

    def update(self, context: StepContext) -> dict[str, torch.Tensor] | None:
        """Return the masks the scores give now (the driver installs them) and record them in :attr:`trace`."""
        installed = self._installed
        if installed is None:
            return None
        with torch.no_grad():
            now = {j: self.current_mask(s.detach(), installed.eligible[j]) for j, s in installed.scores.items()}
            changed = kept = total = 0
            for i, (module, name) in enumerate(installed.pairs):
                j = installed.first[i]
                if j == i:
                    old = _layout.mask_of(module, name)
                    changed += int((old.bool() != now[j]).sum()) if old is not None else 0
                    kept += int(now[j].sum())
                    total += now[j].numel()
        figures = {"iteration": context.iteration, "remaining": kept / total if total else 1.0, "changed": changed}
        figures.update(self.record({j: s.detach() for j, s in installed.scores.items()}))
        self.trace.append(figures)
        return {qualified: now[installed.first[i]].clone() for i, qualified in enumerate(context.names)}

    def end(self, context: StepContext) -> dict[str, torch.Tensor] | None:
        """Return the ticket's masks and take out everything :meth:`begin` installed (also after an error).

        Warns (``RuntimeWarning``) if the scores never changed: nothing trained them.
        """
        installed = self._installed
        if installed is None:
            return None
        try:
            with torch.no_grad():
                final = {j: self.final_mask(s.detach(), installed.eligible[j]) for j, s in installed.scores.items()}
                untouched = all(torch.equal(s.detach(), installed.initial[j]) for j, s in installed.scores.items())
        finally:
            self._teardown()
        if untouched:
            warnings.warn(
                f"{type(self).__name__}: the scores never changed while training, so nothing trained them and the "
                "ticket is the starting mask. Pass optimizer= to find_ticket (the scores join it as a parameter "
                "group), or build the optimizer inside train from model.parameters() (the scores are registered "
                "on the model by then)",
                RuntimeWarning,
                stacklevel=2,
            )
        return {name: final[installed.first[i]].clone() for i, name in enumerate(context.names)}

    def options(self) -> dict[str, Any]:
        return {"every": self.every, "freeze": self.freeze}

    # -- machinery ----------------------------------------------------------------------
    def _sampler_seed(self, seed: int) -> None:
        """Seed the strategy's own random draws while training (default none)."""

    def _hook(self, target: nn.Module, name: str, index: int) -> Any:
        """The forward pre-hook of ``target.<name>``: ``module.<name> = <name>_orig * STE(mask(scores))``."""

        def hook(module: nn.Module, inputs: Any) -> None:
            installed = self._installed
            if module is not target or installed is None:  # a deep copy of the module: leave it alone
                return
            mask = self.training_mask(installed.scores[index], installed.eligible[index], module.training)
            _layout.substitute_mask(module, name, mask)

        return hook

    def _freeze(self, model: nn.Module, installed: _Installed) -> None:
        if self.freeze == "all":
            frozen: list[torch.Tensor] = list(model.parameters())
        else:  # each distinct <name>_orig once (tied names share one)
            frozen = [_layout.original(m, n) for i, (m, n) in enumerate(installed.pairs) if installed.first[i] == i]
        for param in frozen:
            installed.frozen.append((param, param.requires_grad))
            param.requires_grad_(False)
            param.grad = None

    def _give_to(self, optimizer: torch.optim.Optimizer | None, installed: _Installed) -> None:
        if optimizer is None:
            return
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        missing = [s for s in installed.scores.values() if id(s) not in held]
        if missing:
            optimizer.add_param_group({"params": missing})
            installed.optimizer, installed.group = optimizer, optimizer.param_groups[-1]

    def _teardown(self) -> None:
        """Take out what :meth:`begin` installed, in reverse; safe on a partial install."""
        installed, self._installed = self._installed, None
        if installed is None:
            return
        for handle in installed.hooks:
            handle.remove()
        for module, name in installed.registered:
            module._parameters.pop(scores_name(name), None)
        optimizer, group = installed.optimizer, installed.group
        if optimizer is not None and group is not None:
            optimizer.param_groups[:] = [g for g in optimizer.param_groups if g is not group]
            for score in installed.scores.values():
                optimizer.state.pop(score, None)
        for param, requires_grad in reversed(installed.frozen):
            param.requires_grad_(requires_grad)
        with torch.no_grad():
            for module, name in installed.pairs:
                _layout.refresh(module, name)  # module.<name> from the buffer again, without the scores' graph


def _first_of(context: PruneContext) -> list[int]:
    """Per name, the index of the first name holding the same tensor (tied weights share one weights object)."""
    seen: dict[int, int] = {}
    return [seen.setdefault(id(context.weights[n]), i) for i, n in enumerate(context.names)]


def _check_room(module: nn.Module, name: str, qualified: str) -> None:
    """Refuse a tensor whose module cannot carry scores (see :meth:`SupermaskStrategy.validate`)."""
    key = scores_name(name)
    if hasattr(module, key):
        raise ValueError(
            f"the tensor {qualified!r}: its module already has an attribute {key!r}, where the scores would go "
            f"(a supermask still installed, or a name of the model's own): {describe(getattr(module, key))}"
        )
    if isinstance(module, nn.modules.linear.NonDynamicallyQuantizableLinear):
        raise ValueError(
            f"the tensor {qualified!r} is the out_proj weight of an nn.MultiheadAttention, whose forward never "
            "calls out_proj's own, so its scores could not take part; leave it out (parameters=...)"
        )
