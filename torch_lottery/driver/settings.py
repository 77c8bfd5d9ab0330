"""The driver's set-up: every argument of :func:`~torch_lottery.find_ticket` checked once, into one object.

:meth:`Settings.from_arguments` runs every check before anything trains or any file
is written: the types and values of the arguments, the tensors to prune, the
strategy's options and its own ``validate`` (which sees the model and the data),
the retrain mode against the optimizer and scheduler, and ``checkpoint_dir``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .. import _layout
from .._validation import (
    check_bool,
    check_choice,
    check_fraction,
    check_module,
    check_module_name,
    check_nonneg_int,
    check_number,
    describe,
)
from ..distributed import unwrap
from ..plugins.manager import get_strategy
from ..pruning.utils import named_prunable_parameters
from ..strategies.base import WHEN
from ..strategies.context import check_data
from . import checkpoints
from .instability import AutoRewind

TrainFn = Callable[[nn.Module, Any], Any]
EvalFn = Callable[[nn.Module], Any]

#: How each round after the first starts (Renda et al. 2020 compare the three).
RETRAIN = ("rewind", "lr_rewind", "finetune")
#: The controls of Frankle et al. 2021 ("missing the mark"), usable with any strategy.
CONTROLS = ("shuffle", "invert", "reinit")


@dataclass(frozen=True)
class Settings:
    """Every checked argument of one :func:`~torch_lottery.find_ticket` run."""

    model: nn.Module  # the module whose tensors are pruned (a DDP wrapper looked through)
    wrapper: nn.Module  # what train and evaluate get
    train: TrainFn
    evaluate: EvalFn | None
    strategy_name: str
    strategy: Any
    names: tuple[str, ...]
    pairs: tuple[tuple[nn.Module, str], ...]
    rounds: int | None
    target: float | None
    optimizer: torch.optim.Optimizer | None
    scheduler: Any
    rewind_state: bool
    retrain: str
    control: str | None
    checkpoint_dir: str | None
    seed: int
    data: Iterable | None
    loss: Callable | None
    plugins: tuple[Any, ...]
    distributed: bool | None
    rewind: int | AutoRewind = 0  # the iteration to rewind to, or how to pick it after the dense run
    progress: bool = False  # show a progress bar (rounds, steps, surviving weights)

    @property
    def auto(self) -> AutoRewind | None:
        """How to pick the rewind iteration after the dense run (``rewind_iteration="auto"``), or None."""
        return self.rewind if isinstance(self.rewind, AutoRewind) else None

    @property
    def at_init(self) -> bool:
        """True if the run has no dense round: the strategy prunes the initial weights (also while training)."""
        return self.when in ("at_init", "during_training")

    @property
    def when(self) -> str:
        return str(getattr(self.strategy, "when", "between_rounds"))

    @property
    def rewind_iteration(self) -> int:
        """The iteration to rewind to, as set (0 while an :class:`AutoRewind` has not picked one)."""
        return self.rewind if isinstance(self.rewind, int) else 0

    @property
    def rewind_setting(self) -> int | dict[str, Any]:
        """The rewind iteration as configured: an int, or ``{"auto": <options>}`` (configs, checkpoints)."""
        return self.rewind if isinstance(self.rewind, int) else {"auto": self.rewind.options()}

    @classmethod
    def from_arguments(
        cls,
        model: Any,
        train: Any,
        evaluate: Any,
        *,
        strategy: Any,
        strategy_options: Any,
        rounds: Any,
        target_remaining: Any,
        parameters: Any,
        optimizer: Any,
        scheduler: Any,
        rewind_state: Any,
        retrain: Any,
        control: Any,
        checkpoint_dir: Any,
        seed: Any,
        plugins: Any,
        distributed: Any,
        data: Any,
        loss: Any,
        rewind_iteration: Any = None,
        progress: Any = False,
    ) -> Settings:
        """Check every argument of ``find_ticket`` (see there) and return them as one object.

        Raises:
            TypeError, ValueError: naming the first argument that does not fit.
            StrategyError: on an unknown strategy name.
        """
        check_module(model)
        if distributed is not None:
            check_bool(distributed, "distributed")
        if distributed and not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            raise ValueError(
                "distributed=True needs an initialized torch.distributed process group "
                "(torch.distributed.init_process_group)"
            )
        wrapper, model = model, unwrap(model)
        if not callable(train):
            raise TypeError(f"train must be callable as train(model, context), got {describe(train)}")
        if evaluate is not None and not callable(evaluate):
            raise TypeError(f"evaluate must be callable as evaluate(model), got {describe(evaluate)}")
        check_data(data, loss)
        strategy_name, instance = _resolve_strategy(strategy, strategy_options)
        when = getattr(instance, "when", "between_rounds")
        check_choice(when, WHEN, f"strategy {strategy_name!r}'s when")
        if rounds is not None:
            check_nonneg_int(rounds, "rounds")
        if target_remaining is not None:
            target_remaining = check_fraction(target_remaining, "target_remaining", high_open=True)
        if when == "during_training":  # one training run that starts sparse and ends with the ticket
            if rounds not in (None, 1):
                raise ValueError(
                    f"rounds={rounds}: strategy {strategy_name!r} moves its masks while training, so the run "
                    "is one training run (rounds=1)"
                )
            if target_remaining is not None:
                raise ValueError(
                    f"target_remaining={target_remaining}: strategy {strategy_name!r} keeps its own density "
                    "while training (set it through the strategy's options)"
                )
            rounds = 1
        max_rounds = getattr(instance, "max_rounds", None)
        if max_rounds is not None:
            rounds = max_rounds if rounds is None else min(rounds, max_rounds)
        if rounds is None and target_remaining is None:
            raise ValueError("pass rounds or target_remaining: the run needs a stopping point")
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {describe(optimizer)}")
        if scheduler is not None and not (hasattr(scheduler, "state_dict") and hasattr(scheduler, "load_state_dict")):
            raise TypeError(f"scheduler must have state_dict() and load_state_dict(), got {describe(scheduler)}")
        if scheduler is not None and optimizer is None:
            raise ValueError("scheduler needs optimizer= too")
        check_bool(rewind_state, "rewind_state")
        if rewind_state and optimizer is None:
            raise ValueError("rewind_state=True needs optimizer= (the state to rewind)")
        check_choice(retrain, RETRAIN, "retrain")
        if rewind_state and retrain != "rewind":
            raise ValueError(
                f"rewind_state=True rewinds with the weights: it goes with retrain='rewind', not retrain={retrain!r}"
            )
        rewind = _resolve_rewind(rewind_iteration, instance, strategy_name)
        rewind_iteration = rewind if isinstance(rewind, int) else None  # None: picked after the dense run
        if when != "between_rounds" and rewind_iteration != 0:
            raise ValueError(
                f"strategy {strategy_name!r} has no dense run (when={when!r}): rewind_iteration="
                f"{rewind_iteration if rewind_iteration is not None else 'auto'!r} has nothing to rewind into"
            )
        if isinstance(rewind, AutoRewind) and rewind.error is None and data is None:
            raise ValueError(
                "rewind_iteration='auto' measures the error along the line between two trained copies: pass "
                "data=<iterable of (inputs, targets)> (its classification error is used) or "
                "rewind_iteration=AutoRewind(error=<callable(model) -> float>)"
            )
        if when == "during_training":
            check_number(getattr(instance, "every", None), f"strategy {strategy_name!r}'s every", integer=True, low=1)
            if not callable(getattr(instance, "update", None)):
                raise TypeError(f"strategy {strategy_name!r} prunes during training: it needs update(context)")
        if getattr(instance, "needs_optimizer", False) and optimizer is None:
            raise ValueError(
                f"strategy {strategy_name!r} moves masks while training: pass optimizer= (the driver resets the "
                "optimizer state of regrown weights and counts the steps through it)"
            )
        if retrain == "lr_rewind" and rewind_iteration != 0 and scheduler is None:
            raise ValueError(
                f"retrain='lr_rewind' replays the learning-rate schedule from iteration "
                f"{rewind_iteration if rewind_iteration is not None else 'auto'!r}: pass scheduler= (and "
                "optimizer=) so the driver can rewind it"
            )
        if control is not None:
            check_choice(control, CONTROLS, "control")
            if control == "invert" and not callable(getattr(instance, "scores", None)):
                raise ValueError(
                    f"control='invert' inverts a strategy's scores, and strategy {strategy_name!r} "
                    "has none (it needs a scores(context, name) method)"
                )
        seed = check_number(seed, "seed", integer=True)
        if checkpoint_dir is not None:
            checkpoint_dir = checkpoints.check_directory(checkpoint_dir)  # every path problem, before anything runs
        names, pairs = _parameters(model, parameters)
        if getattr(instance, "needs_data", False) and data is None:
            raise ValueError(
                f"strategy {strategy_name!r} scores with the data: pass data=<iterable of (inputs, "
                "targets)> (and loss= if it computes gradients)"
            )
        if getattr(instance, "needs_loss", False) and loss is None:
            raise ValueError(
                f"strategy {strategy_name!r} computes gradients of the loss: pass loss=<callable(output, targets)>"
            )
        _validate(instance, names, model, data)
        if isinstance(plugins, (str, bytes, nn.Module)) or not isinstance(plugins, Iterable):
            raise TypeError(f"plugins must be an iterable of plugin objects, got {describe(plugins)}")
        check_bool(progress, "progress")
        return cls(
            model=model,
            wrapper=wrapper,
            train=train,
            evaluate=evaluate,
            strategy_name=strategy_name,
            strategy=instance,
            names=names,
            pairs=tuple(pairs),
            rounds=rounds,
            target=target_remaining,
            optimizer=optimizer,
            scheduler=scheduler,
            rewind_state=rewind_state,
            retrain=retrain,
            control=control,
            checkpoint_dir=checkpoint_dir,
            seed=seed,
            data=data,
            loss=loss,
            plugins=tuple(plugins),
            distributed=distributed,
            rewind=rewind,
            progress=progress,
        )


def _resolve_rewind(value: Any, strategy: Any, strategy_name: str) -> int | AutoRewind:
    """Resolve ``find_ticket``'s ``rewind_iteration`` against the strategy's own option."""
    own = int(getattr(strategy, "rewind_iteration", 0))
    if value is None:
        return own
    if isinstance(value, str):
        if value != "auto":
            raise ValueError(f"rewind_iteration={value!r}: give an iteration (int >= 0), 'auto' or an AutoRewind")
        value = AutoRewind()
    if not isinstance(value, AutoRewind):
        check_nonneg_int(value, "rewind_iteration")
        value = int(value)
    if own and own != value:
        shown = value if isinstance(value, int) else "auto"
        raise ValueError(
            f"rewind_iteration={shown!r} but strategy {strategy_name!r} has rewind_iteration={own}: set it in one place"
        )
    return value


def _resolve_strategy(strategy: Any, options: Mapping[str, Any] | None) -> tuple[str, Any]:
    if options is not None and not isinstance(options, Mapping):
        raise TypeError(f"strategy_options must be a dict, got {describe(options)}")
    if isinstance(strategy, str):
        factory = get_strategy(strategy)
        try:
            instance = factory(**dict(options or {}))
        except TypeError as error:
            raise TypeError(
                f"strategy {strategy!r} does not accept strategy_options={dict(options or {})}: {error}"
            ) from None
        return strategy, instance
    if options:
        raise ValueError("strategy_options only goes with a strategy name; configure the instance instead")
    if not callable(getattr(strategy, "prune", None)):
        raise TypeError(
            f"strategy must be a registered name or an object with prune(context), got {describe(strategy)}"
        )
    return getattr(strategy, "name", type(strategy).__name__), strategy


def _validate(strategy: Any, names: tuple[str, ...], model: nn.Module, data: Any) -> None:
    """Call the strategy's ``validate``: with ``model`` and ``data`` if it takes them (older plugins take names)."""
    validate = getattr(strategy, "validate", None)
    if validate is None:
        return
    try:
        accepted: Mapping[str, inspect.Parameter] = inspect.signature(validate).parameters
    except (TypeError, ValueError):  # a builtin or C callable: names only
        accepted = {}
    takes_all = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
    extra = {k: v for k, v in (("model", model), ("data", data)) if takes_all or k in accepted}
    validate(names, **extra)


def _parameters(model: nn.Module, parameters: Any) -> tuple[tuple[str, ...], list[tuple[nn.Module, str]]]:
    """Resolve ``parameters`` (qualified names or pairs; default every prunable weight) to names and pairs.

    Tensors with no entries are skipped; a tensor tied to other names of the model
    brings them along (tied weights get one mask).
    """
    if parameters is None:
        named = [(q, m, n) for q, m, n in named_prunable_parameters(model)]
    else:
        if isinstance(parameters, (str, bytes)) or not isinstance(parameters, Iterable):
            raise TypeError(f"parameters must be qualified names or (module, name) pairs, got {describe(parameters)}")
        prefixes = _layout.module_prefixes(model)
        named = []
        for item in parameters:
            if isinstance(item, str):
                found = _layout.resolve(model, item)
                if found is None:
                    raise ValueError(f"parameters names {item!r}, which is not a parameter of model")
                named.append((item, *found))
            elif isinstance(item, tuple) and len(item) == 2 and id(item[0]) in prefixes:
                if not isinstance(item[1], str) or not _layout.has_tensor(*item):
                    raise ValueError(f"parameters names {describe(item)}, which is not a parameter of model")
                named.append((_layout.join(prefixes[id(item[0])], item[1]), *item))
            else:
                raise ValueError(f"parameters holds {describe(item)}, which is not a tensor of model")
        if not named:
            raise ValueError("parameters is empty: nothing to prune")
        listed = {id(_layout.original(m, n)) for _, m, n in named}
        known = {q for q, _, _ in named}
        named += [
            (q, m, n)
            for q, m, n in _layout.named_tensors(model)
            if id(_layout.original(m, n)) in listed and q not in known
        ]
    for qualified, module, name in named:
        try:
            check_module_name(module, name)
        except (TypeError, ValueError) as error:
            raise type(error)(f"the tensor {qualified!r} to prune: {error}") from None
    named = [(q, m, n) for q, m, n in named if _layout.original(m, n).numel() > 0]
    if not named:
        raise ValueError("model has no prunable parameters with entries (pass parameters=...)")
    if len({q for q, _, _ in named}) != len(named):
        raise ValueError("parameters lists a tensor twice")
    return tuple(q for q, _, _ in named), [(m, n) for _, m, n in named]
