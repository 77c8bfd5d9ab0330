"""The ticket-finding driver: runs a strategy around the user's own training loop."""

from __future__ import annotations

import contextlib
import copy
import numbers
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import pluggy
import torch
from torch import nn

from .. import _layout
from .._validation import (
    check_binary_mask,
    check_bool,
    check_finite,
    check_fraction,
    check_module,
    check_module_name,
    check_nonneg_int,
    check_number,
    describe,
)
from ..distributed import unwrap
from ..plugins.manager import PluginError, get_plugin_manager, get_strategy, strategy_entries
from ..pruning.fixed import FixedMask
from ..pruning.utils import get_mask, named_prunable_parameters
from ..rewinding.point import RewindPoint
from ..strategies.base import PruneContext, Strategy
from . import checkpoints
from ._sync import RunSync
from .ticket import Ticket

TrainFn = Callable[[nn.Module, "RoundContext"], Any]
EvalFn = Callable[[nn.Module], Any]


class RoundContext:
    """What the driver hands to your ``train(model, context)`` each round.

    Attributes:
        round_index (int): 0 for the dense run, then 1, 2, ...
        seed (int): a seed for this round (the driver already seeded torch's and
            Python's global RNGs with it); use it for your own generators.
        iteration (int): training iterations counted so far this round.
        rewind_iteration (int): the iteration of the dense run to rewind to.

    Call :meth:`step` after every optimizer step, unless you passed
    ``optimizer=`` to :func:`find_ticket` (then the driver counts by itself).
    """

    def __init__(
        self, round_index: int, seed: int, rewind_iteration: int, on_iteration=None, counts_itself: bool = False
    ) -> None:
        self.round_index = round_index
        self.seed = seed
        self.rewind_iteration = rewind_iteration
        self.iteration = 0
        self._on_iteration = on_iteration
        self._counts_itself = counts_itself

    def step(self) -> None:
        """Count one training iteration (captures the rewind point at ``rewind_iteration``)."""
        if not self._counts_itself:
            self._advance()

    def _advance(self) -> None:
        self.iteration += 1
        if self._on_iteration is not None:
            self._on_iteration(self.iteration)


def round_seed(seed: int, round_index: int, salt: int = 0) -> int:
    """Return the seed of round ``round_index`` of a run seeded with ``seed`` (``salt`` for a second stream)."""
    return (seed * 1_000_003 + round_index * 7919 + salt) % (2**63)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    try:  # numpy is optional
        import numpy
    except ImportError:
        return
    numpy.random.seed(seed % (2**32))


def _buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {q: cast(torch.Tensor, m._buffers[n]).detach().clone() for q, m, n in _layout.named_buffers(model)}


def _load_buffers(model: nn.Module, buffers: Mapping[str, torch.Tensor]) -> None:
    own = {q: cast(torch.Tensor, m._buffers[n]) for q, m, n in _layout.named_buffers(model)}
    with torch.no_grad():
        for name, value in buffers.items():
            own[name].copy_(value.to(own[name].device))


def _metrics(value: Any, source: str) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, (bool, numbers.Real)):
        return {"score": float(value)}
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if isinstance(item, torch.Tensor) and item.numel() == 1:
                item = item.item()
            if not isinstance(key, str) or not isinstance(item, (int, float, str, bool, type(None))):
                raise TypeError(
                    f"{source} must return a dict of str to numbers or strings, got {describe(key)}: {describe(item)}"
                )
            out[key] = item
        return out
    raise TypeError(f"{source} must return a dict of metrics, a number or None, got {describe(value)}")


def _resolve_strategy(strategy: Any, options: Mapping[str, Any] | None) -> tuple[str, Strategy]:
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


def _check_masks(
    new: Any,
    names: tuple[str, ...],
    old: Mapping[str, torch.Tensor],
    strategy_name: str,
    may_grow: bool,
    tied: Mapping[str, str],
) -> dict[str, torch.Tensor]:
    if not isinstance(new, Mapping):
        raise TypeError(f"strategy {strategy_name!r} returned {describe(new)}, not a dict of masks")
    missing = [n for n in names if n not in new]
    if missing:
        raise ValueError(f"strategy {strategy_name!r} returned no mask for {missing}")
    out = {}
    for name in names:
        mask = new[name]
        if not isinstance(mask, torch.Tensor) or mask.shape != old[name].shape:
            raise ValueError(
                f"strategy {strategy_name!r} returned a mask for {name!r} of "
                f"{describe(mask)}; expected shape {tuple(old[name].shape)}"
            )
        mask = check_binary_mask(mask, f"the mask strategy {strategy_name!r} returned for {name!r}").bool()
        if not may_grow and bool((mask & ~old[name]).any()):
            raise ValueError(
                f"strategy {strategy_name!r} revived pruned entries of {name!r}; "
                "masks may only shrink (set may_grow = True on the strategy to allow it)"
            )
        out[name] = mask
    for name, first in tied.items():
        if not torch.equal(out[name], out[first]):
            raise ValueError(
                f"strategy {strategy_name!r} returned different masks for {first!r} and {name!r}, "
                "which are one tied tensor; tied weights get one mask"
            )
    return out


def _plugin_label(impl: Any) -> str:
    name = impl.plugin_name
    if name.isdigit():  # registered without a name: pluggy uses id(plugin)
        plugin = impl.plugin
        name = getattr(plugin, "__name__", None) or f"{type(plugin).__module__}.{type(plugin).__qualname__} object"
    return name


def _culprit(caller: Any, error: BaseException) -> str:
    """Return the name of the plugin whose hook implementation raised ``error`` (from its traceback)."""
    codes = {}
    for impl in caller.get_hookimpls():
        function = getattr(impl.function, "__func__", impl.function)
        code = getattr(function, "__code__", None)
        if code is not None:
            codes[code] = _plugin_label(impl)
    tb, found = error.__traceback__, None
    while tb is not None:
        found = codes.get(tb.tb_frame.f_code, found)
        tb = tb.tb_next
    return found or "unknown"


def _origin(strategy_name: str) -> str:
    for entry in strategy_entries():
        if entry.name == strategy_name:
            return f" (plugin {entry.plugin!r})"
    return ""


class _GuardedHooks:
    """The plugin manager's ``hook`` relay; an exception raised by an observer becomes a
    :class:`PluginError` naming the plugin, the hook and the round (the original is its cause)."""

    def __init__(self, pm: Any) -> None:
        self._pm = pm

    def __getattr__(self, hook_name: str) -> Callable[..., Any]:
        caller = getattr(self._pm.hook, hook_name)

        def call(**kwargs: Any) -> Any:
            try:
                return caller(**kwargs)
            except Exception as error:
                raise PluginError(
                    f"plugin {_culprit(caller, error)!r} raised in {hook_name} (round {kwargs.get('round_index')}): "
                    f"{type(error).__name__}: {error}; the run stops here (finished rounds in checkpoint_dir "
                    "are kept, so it can be resumed)"
                ) from error

        return call


class _Run:
    """One run of the driver (kept in one object so resume can rebuild it)."""

    def __init__(
        self,
        model,
        wrapper,
        train,
        evaluate,
        strategy_name,
        strategy,
        names,
        pairs,
        rounds,
        target,
        optimizer,
        scheduler,
        rewind_state,
        checkpoint_dir,
        seed,
        sync,
    ):
        self.model, self.wrapper = model, wrapper  # train and evaluate get the wrapper (e.g. DDP)
        self.train_fn, self.evaluate_fn = train, evaluate
        self.strategy_name, self.strategy = strategy_name, strategy
        self.names, self.pairs = names, pairs
        first = _layout.aliases(pairs)  # tied weights: name -> the first name of its tensor
        self.tied = {names[i]: names[f] for i, f in enumerate(first) if f != i}
        self.rounds, self.target = rounds, target
        self.optimizer, self.scheduler, self.rewind_state = optimizer, scheduler, rewind_state
        self.checkpoint_dir, self.seed, self.sync = checkpoint_dir, seed, sync
        self.rewind_iteration = int(getattr(strategy, "rewind_iteration", 0))
        self.rewind_point: RewindPoint | None = None
        self.rewind_extra: dict[str, Any] | None = None
        self.history: list[dict] = []
        self.hook = _GuardedHooks(get_plugin_manager())  # an observer that raises is named in the error

    # -- bookkeeping ------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        options = self.strategy.options() if hasattr(self.strategy, "options") else {}
        return {
            "strategy": self.strategy_name,
            "strategy_options": copy.deepcopy(options),
            "names": list(self.names),
            "rounds": self.rounds,
            "target_remaining": self.target,
            "rewind_iteration": self.rewind_iteration,
            "rewind_state": self.rewind_state,
            "seed": self.seed,
        }

    def masks(self) -> dict[str, torch.Tensor]:
        return {n: get_mask(m, name).bool() for n, (m, name) in zip(self.names, self.pairs, strict=True)}

    def figures(self) -> dict[str, Any]:
        masks = self.masks()
        distinct = [m for n, m in masks.items() if n not in self.tied]  # a tied tensor counts once
        alive = sum(int(m.count_nonzero()) for m in distinct)
        total = sum(m.numel() for m in distinct)
        return {
            "remaining": alive / total if total else 1.0,
            "remaining_weights": alive,
            "total_weights": total,
            "per_tensor": {n: int(m.count_nonzero()) / m.numel() for n, m in masks.items()},
        }

    # -- rewinding --------------------------------------------------------------
    def capture(self, iteration: int) -> None:
        self.rewind_point = RewindPoint.capture(self.model, iteration=iteration)  # every parameter
        if self.rewind_state:
            self.rewind_extra = {
                "buffers": _buffers(self.model),
                "optimizer": copy.deepcopy(self.optimizer.state_dict()),
                "scheduler": copy.deepcopy(self.scheduler.state_dict()) if self.scheduler is not None else None,
            }

    def _capture_at(self, iteration: int) -> None:
        if iteration == self.rewind_iteration:
            self.capture(iteration)

    def rewind(self) -> None:
        cast(RewindPoint, self.rewind_point).restore(self.model)  # round 0 (or resume) set it
        if self.rewind_extra is not None:
            _load_buffers(self.model, self.rewind_extra["buffers"])
            self.optimizer.load_state_dict(copy.deepcopy(self.rewind_extra["optimizer"]))
            if self.scheduler is not None and self.rewind_extra["scheduler"] is not None:
                self.scheduler.load_state_dict(copy.deepcopy(self.rewind_extra["scheduler"]))
        self.sync.model(self.model)  # rank 0's rewound weights and buffers on every rank

    # -- one round --------------------------------------------------------------
    def train_and_record(self, round_index: int, started: float) -> dict[str, Any]:
        seed = round_seed(self.seed, round_index)
        _seed_everything(seed)
        on_iteration = self._capture_at if round_index == 0 and self.rewind_iteration > 0 else None
        context = RoundContext(
            round_index, seed, self.rewind_iteration, on_iteration, counts_itself=self.optimizer is not None
        )
        handle = None
        if self.optimizer is not None:
            handle = self.optimizer.register_step_post_hook(lambda *_: context._advance())
        try:
            metrics = _metrics(self.train_fn(self.wrapper, context), "train")
        finally:
            if handle is not None:
                handle.remove()
        if round_index == 0 and self.rewind_point is None:
            raise ValueError(
                f"rewind_iteration={self.rewind_iteration} but the dense run counted only "
                f"{context.iteration} iterations; call context.step() after each optimizer step "
                "or pass optimizer= to find_ticket"
            )
        if self.evaluate_fn is not None:
            metrics.update(_metrics(self.evaluate_fn(self.wrapper), "evaluate"))
        metrics.setdefault("iterations", context.iteration)
        record = {
            "round": round_index,
            **self.figures(),
            "metrics": metrics,
            "seconds": round(time.perf_counter() - started, 6),
        }
        record = self.sync.value(record)  # rank 0's metrics in every rank's history
        self.history.append(record)
        self.hook.torch_lottery_round_end(round_index=round_index, model=self.model, record=copy.deepcopy(record))
        return record

    def prune_round(self, round_index: int) -> None:
        old = self.masks()
        generator = torch.Generator().manual_seed(round_seed(self.seed, round_index, salt=1))
        detached: dict[int, torch.Tensor] = {}  # one object per tensor, so tied names share it
        weights = {}
        for n, (m, name) in zip(self.names, self.pairs, strict=True):
            tensor = _layout.original(m, name)
            weights[n] = detached.setdefault(id(tensor), tensor.detach())
        for name, values in weights.items():  # a diverged training run stops here, before anything is pruned
            check_finite(
                values, f"the weights of {name!r} after training round {round_index - 1} (diverged?)", old[name]
            )
        point = cast(RewindPoint, self.rewind_point)
        rewind = {n: point[n] for n in self.names if n in point}
        context = PruneContext(self.model, self.names, weights, old, rewind, round_index, generator)
        try:
            proposed = self.strategy.prune(context)
        except (ValueError, TypeError):  # WHY: the strategy's own checks, which name what is wrong
            raise
        except Exception as error:
            raise PluginError(
                f"strategy {self.strategy_name!r}{_origin(self.strategy_name)} raised in prune "
                f"(round {round_index}): {type(error).__name__}: {error}; nothing was pruned"
            ) from error
        new = _check_masks(
            proposed, self.names, old, self.strategy_name, bool(getattr(self.strategy, "may_grow", False)), self.tied
        )
        new = self.sync.masks(new)  # rank 0's masks on every rank, whatever their RNG states
        self.install(new, f"{self.strategy_name} round {round_index}")
        self.hook.torch_lottery_after_prune(
            round_index=round_index,
            model=self.model,
            masks={n: m.clone() for n, m in new.items()},
            remaining=self.figures()["remaining"],
        )

    def install(self, masks: Mapping[str, torch.Tensor], source: str) -> None:
        for name, (module, tensor_name) in zip(self.names, self.pairs, strict=True):
            FixedMask.apply(module, tensor_name, masks[name], source=source)

    def done(self, round_index: int) -> bool:
        if self.rounds is not None and round_index >= self.rounds:
            return True
        if self.target is not None and self.history[-1]["remaining"] <= self.target:
            return True
        # the strategy cannot prune any further
        return len(self.history) >= 2 and self.history[-1]["remaining_weights"] == self.history[-2]["remaining_weights"]

    # -- checkpoints ------------------------------------------------------------
    def save(self, round_index: int) -> None:
        if self.checkpoint_dir is None:
            return
        contents = {
            "config": self.config(),
            "masks": {n: m.cpu() for n, m in self.masks().items()} if round_index > 0 else None,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "rewind": cast(RewindPoint, self.rewind_point).state_dict(),
            "rewind_extra": self.rewind_extra,
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "history": copy.deepcopy(self.history),
        }
        # rank 0 writes (atomically, with a digest); the others wait
        self.sync.write(lambda: checkpoints.write_round(self.checkpoint_dir, round_index, contents))

    def resume(self, finished: list[int] | None = None) -> int:
        """Load the last finished round from the checkpoint directory; return the next round."""
        if self.checkpoint_dir is None:
            return 0
        done = checkpoints.finished_rounds(self.checkpoint_dir) if finished is None else finished
        if not done:
            return 0
        path = checkpoints.round_path(self.checkpoint_dir, done[-1])
        state = checkpoints.load_checkpoint(path, done)  # digest, layout and history checked
        saved, current = state["config"], self.config()
        differ = sorted(k for k in current if saved.get(k) != current[k] and k not in ("rounds", "target_remaining"))
        if differ:
            raise ValueError(
                f"checkpoint_dir={os.fspath(self.checkpoint_dir)!r} holds a run with other settings "
                f"({', '.join(f'{k}: {saved.get(k)!r} vs {current[k]!r}' for k in differ)}); "
                "use another directory or the same settings"
            )
        checkpoints.check_checkpoint_fits(
            state, path, self.model, self.names, self.pairs, self.optimizer, self.scheduler
        )  # before anything changes
        if state["masks"] is not None:
            self.install(state["masks"], f"{self.strategy_name} (resumed)")
        self.model.load_state_dict(state["model"])
        self.rewind_point = RewindPoint.from_state_dict(state["rewind"], source=path).bind(self.model)
        self.rewind_extra = state["rewind_extra"]
        if self.optimizer is not None and state["optimizer"] is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.history = state["history"]
        return state["round"] + 1

    # -- the loop ---------------------------------------------------------------
    def run(self) -> Ticket:
        finished = None
        if self.checkpoint_dir is not None and self.sync.active:  # every rank resumes rank 0's round
            finished = self.sync.value(checkpoints.finished_rounds(self.checkpoint_dir))
        round_index = self.sync.together(lambda: self.resume(finished))
        if round_index == 0:
            started = time.perf_counter()
            self.hook.torch_lottery_round_start(
                round_index=0, model=self.model, strategy=self.strategy, remaining=self.figures()["remaining"]
            )
            if self.rewind_iteration == 0:
                self.capture(0)
            self.train_and_record(0, started)
            self.sync.point(self.rewind_point)  # rank 0's rewind point on every rank
            self.save(0)
            round_index = 1
        while not (len(self.history) and self.done(round_index - 1)):
            started = time.perf_counter()
            self.hook.torch_lottery_round_start(
                round_index=round_index, model=self.model, strategy=self.strategy, remaining=self.figures()["remaining"]
            )
            self.prune_round(round_index)
            self.rewind()
            self.hook.torch_lottery_after_rewind(
                round_index=round_index, model=self.model, rewind_point=self.rewind_point
            )
            self.train_and_record(round_index, started)
            self.save(round_index)
            round_index += 1
        ticket = Ticket(self.masks(), cast(RewindPoint, self.rewind_point), self.history, self.config())
        if self.checkpoint_dir is not None:
            self.sync.write(lambda: ticket.save(checkpoints.ticket_path(self.checkpoint_dir)))
        return ticket


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


def find_ticket(
    model: nn.Module,
    train: TrainFn,
    evaluate: EvalFn | None = None,
    *,
    strategy: str | Strategy = "imp",
    strategy_options: Mapping[str, Any] | None = None,
    rounds: int | None = None,
    target_remaining: float | None = None,
    parameters: Iterable | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    rewind_state: bool = False,
    checkpoint_dir: str | os.PathLike | None = None,
    seed: int = 0,
    plugins: Iterable[Any] = (),
    distributed: bool | None = None,
) -> Ticket:
    """Find a lottery ticket with your own training loop: train, prune, rewind, repeat.

    Round 0 trains the dense model (capturing the rewind point at the strategy's
    ``rewind_iteration``); each later round asks the strategy for new masks,
    installs them, rewinds the weights (and, with ``rewind_state``, the optimizer,
    LR scheduler and buffers such as BatchNorm statistics) and trains again.
    Stops after ``rounds`` pruning rounds, once ``target_remaining`` is reached,
    after the strategy's own ``max_rounds``, or when a round prunes nothing.

    Before each round torch's and Python's global RNGs (and NumPy's, if
    installed) are seeded from ``seed`` and the round, so two runs with the same
    seed are identical and a resumed run matches an uninterrupted one.

    Under ``torch.distributed`` (e.g. ``torchrun`` with ``DistributedDataParallel``)
    call it on every rank with the same arguments: rank 0's masks, rewind point,
    rewound weights and history are broadcast each round (so every rank holds
    bit-identical masks and weights, whatever its RNG state), and only rank 0
    writes checkpoints and the ticket. See ``docs/distributed.md``.

    Args:
        model (nn.Module): the model, at its initialization, or its
            ``DistributedDataParallel`` wrapper: ``train`` and ``evaluate`` then get
            the wrapper, while pruning, tensor names and files use ``model.module``.
        train (callable): ``train(model, context) -> dict | None``: trains the
            model for one round with your own loop; ``context`` is a
            :class:`RoundContext` (call ``context.step()`` after each optimizer
            step unless you pass ``optimizer=``). Returned metrics go to the history.
        evaluate (callable, optional): ``evaluate(model) -> dict | float | None``.
        strategy (str or Strategy): a registered name (see
            :func:`list_strategies`) or a strategy instance.
        strategy_options (dict, optional): keyword options for a named strategy,
            e.g. ``{"rate": 0.2, "scope": "global", "rewind_iteration": 100}``.
        rounds (int, optional): number of pruning rounds after the dense run.
        target_remaining (float, optional): stop once at most this fraction of the
            prunable weights survives.
        parameters (optional): the tensors to prune, as qualified names or
            ``(module, name)`` pairs; default: every prunable weight.
        optimizer (Optimizer, optional): your optimizer, if it lives across
            rounds: the driver then counts iterations through it and saves its
            state in checkpoints.
        scheduler (optional): your LR scheduler, saved and rewound with the optimizer.
        rewind_state (bool): also rewind the optimizer state, the scheduler
            position and the model's buffers to the rewind iteration (needs ``optimizer``).
        checkpoint_dir (path, optional): write every finished round there
            (atomically, with a SHA-256 digest) and the ticket as ``ticket.pt``; a
            run started again with the same directory and settings resumes after
            the last finished round. A damaged last round stops the run with a
            ``ValueError`` saying how to resume from the round before it.
        seed (int): seed of the run.
        plugins (iterable): plugin objects registered for this run only (e.g. loggers).
        distributed (bool, optional): keep the ranks of a ``torch.distributed``
            job identical (see above). Default (None): whenever a process group
            of more than one rank is initialized; False: each rank runs on its own
            (e.g. one seed per rank; give each its own ``checkpoint_dir``); True:
            require an initialized process group.

    Returns:
        Ticket: final masks, rewind values, per-round history and configuration.
        The model is left pruned and trained (the last round's subnetwork).

    Raises:
        TypeError, ValueError: on bad arguments (before anything runs), a
            damaged or unfitting checkpoint (before anything is loaded), or
            NaN/infinite trained weights (before they are pruned);
        StrategyError: on an unknown strategy name;
        PluginError: if an observer plugin, or the strategy's ``prune``, raises.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from torch_lottery import find_ticket
        >>> torch.manual_seed(0)
        <torch._C.Generator object at ...>
        >>> model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
        >>> x, y = torch.randn(64, 4), torch.randn(64, 1)
        >>> def train(model, context):
        ...     optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        ...     for _ in range(20):
        ...         optimizer.zero_grad()
        ...         loss = nn.functional.mse_loss(model(x), y)
        ...         loss.backward()
        ...         optimizer.step()
        ...         context.step()
        ...     return {"loss": loss.item()}
        >>> ticket = find_ticket(model, train, strategy="imp", strategy_options={"rate": 0.5}, rounds=2)
        >>> round(ticket.remaining, 2), len(ticket.history)
        (0.25, 3)
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
    strategy_name, instance = _resolve_strategy(strategy, strategy_options)
    if rounds is not None:
        check_nonneg_int(rounds, "rounds")
    if target_remaining is not None:
        target_remaining = check_fraction(target_remaining, "target_remaining", high_open=True)
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
    seed = check_number(seed, "seed", integer=True)
    if checkpoint_dir is not None:
        checkpoint_dir = checkpoints.check_directory(checkpoint_dir)  # every path problem, before anything runs
    names, pairs = _parameters(model, parameters)
    validate = getattr(instance, "validate", None)
    if validate is not None:
        validate(names)
    if isinstance(plugins, (str, bytes, nn.Module)) or not isinstance(plugins, Iterable):
        raise TypeError(f"plugins must be an iterable of plugin objects, got {describe(plugins)}")
    group = wrapper.process_group if isinstance(wrapper, nn.parallel.DistributedDataParallel) else None
    sync = RunSync(group, enabled=distributed is not False)
    with _registered(list(plugins)), _directory(checkpoint_dir, sync):
        run = _Run(
            model,
            wrapper,
            train,
            evaluate,
            strategy_name,
            instance,
            names,
            pairs,
            rounds,
            target_remaining,
            optimizer,
            scheduler,
            rewind_state,
            checkpoint_dir,
            seed,
            sync,
        )
        return run.run()


@contextlib.contextmanager
def _registered(plugins: list[Any]):
    """Register ``plugins`` for one run; unregister what this run registered when it ends."""
    pm = get_plugin_manager()
    ours = []
    try:
        for index, plugin in enumerate(plugins):
            if not pm.is_registered(plugin):
                try:
                    pm.register(plugin)
                except pluggy.PluginValidationError as error:
                    detail = " ".join(str(error).split())
                    raise PluginError(f"plugins[{index}]={describe(plugin)} cannot be registered: {detail}") from None
                ours.append(plugin)
        yield
    finally:
        for plugin in ours:
            if pm.is_registered(plugin):
                pm.unregister(plugin)


@contextlib.contextmanager
def _directory(checkpoint_dir: str | None, sync: RunSync):
    """Create and lock ``checkpoint_dir`` for one run (rank 0 locks); remove it if the run left it empty."""
    if checkpoint_dir is None:
        yield
        return
    created = not os.path.exists(checkpoint_dir)
    stack = contextlib.ExitStack()
    try:
        os.makedirs(checkpoint_dir, exist_ok=True)
        if sync.writer:
            sync.together(lambda: stack.enter_context(checkpoints.locked(checkpoint_dir)))
        else:
            sync.together(lambda: None)
        with stack:
            yield
    finally:
        if created and os.path.isdir(checkpoint_dir) and not os.listdir(checkpoint_dir):
            os.rmdir(checkpoint_dir)  # a run that failed before writing anything leaves no empty folder
