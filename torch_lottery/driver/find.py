"""The ticket-finding driver: runs a strategy around the user's own training loop."""

from __future__ import annotations

import copy
import numbers
import os
import random
import time
from typing import Any, Callable, Iterable, Mapping

import pluggy
import torch
from torch import nn

from .._validation import check_finite, check_nonneg_int, describe
from ..distributed import RunSync, unwrap
from ..plugins.manager import PluginError, get_plugin_manager, get_strategy, strategy_entries
from ..pruning._core import is_pruned_tensor
from ..pruning._rewind import parameter_tensor
from ..pruning.fixed import FixedMask
from ..pruning.utils import get_mask, named_prunable_parameters
from .._files import save_state
from ..rewinding.point import RewindPoint
from ..strategies.base import PruneContext, Strategy
from . import files
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

    def __init__(self, round_index: int, seed: int, rewind_iteration: int, on_iteration=None,
                 counts_itself: bool = False) -> None:
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


def _round_seed(seed: int, round_index: int, salt: int = 0) -> int:
    return (seed * 1_000_003 + round_index * 7919 + salt) % (2 ** 63)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    try:  # numpy is optional
        import numpy
    except ImportError:
        return
    numpy.random.seed(seed % (2 ** 32))


def _all_parameters(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    out = []
    for prefix, module in model.named_modules():
        for pname, value in module._parameters.items():
            if value is None:
                continue
            name = pname[:-5] if pname.endswith("_orig") and is_pruned_tensor(module, pname[:-5]) else pname
            out.append((f"{prefix}.{name}" if prefix else name, module, name))
    return out


def _buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: buf.detach().clone() for name, buf in model.named_buffers()
            if not name.endswith("_mask")}


def _load_buffers(model: nn.Module, buffers: Mapping[str, torch.Tensor]) -> None:
    own = dict(model.named_buffers())
    with torch.no_grad():
        for name, value in buffers.items():
            own[name].copy_(value.to(own[name].device))


def _metrics(value: Any, source: str) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, bool) or isinstance(value, numbers.Real):
        return {"score": float(value)}
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if isinstance(item, torch.Tensor) and item.numel() == 1:
                item = item.item()
            if not isinstance(key, str) or not isinstance(item, (int, float, str, bool, type(None))):
                raise TypeError(f"{source} must return a dict of str to numbers or strings, "
                                f"got {describe(key)}: {describe(item)}")
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
            raise TypeError(f"strategy {strategy!r} does not accept strategy_options={dict(options or {})}: {error}") from None
        return strategy, instance
    if options:
        raise ValueError("strategy_options only goes with a strategy name; configure the instance instead")
    if not callable(getattr(strategy, "prune", None)):
        raise TypeError(f"strategy must be a registered name or an object with prune(context), got {describe(strategy)}")
    return getattr(strategy, "name", type(strategy).__name__), strategy


def _check_masks(new: Any, names: tuple[str, ...], old: Mapping[str, torch.Tensor], strategy_name: str,
                 may_grow: bool) -> dict[str, torch.Tensor]:
    if not isinstance(new, Mapping):
        raise TypeError(f"strategy {strategy_name!r} returned {describe(new)}, not a dict of masks")
    missing = [n for n in names if n not in new]
    if missing:
        raise ValueError(f"strategy {strategy_name!r} returned no mask for {missing}")
    out = {}
    for name in names:
        mask = new[name]
        if not isinstance(mask, torch.Tensor) or mask.shape != old[name].shape:
            raise ValueError(f"strategy {strategy_name!r} returned a mask for {name!r} of "
                             f"{describe(mask)}; expected shape {tuple(old[name].shape)}")
        if mask.dtype != torch.bool and bool(((mask != 0) & (mask != 1)).any()):
            raise ValueError(f"strategy {strategy_name!r} returned a mask for {name!r} with values "
                             "other than 0 and 1")
        mask = mask.bool()
        if not may_grow and bool((mask & ~old[name]).any()):
            raise ValueError(f"strategy {strategy_name!r} revived pruned entries of {name!r}; "
                             "masks may only shrink (set may_grow = True on the strategy to allow it)")
        out[name] = mask
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
                    "are kept, so it can be resumed)") from error

        return call


class _Run:
    """One run of the driver (kept in one object so resume can rebuild it)."""

    def __init__(self, model, train, evaluate, strategy_name, strategy, names, pairs, rounds, target,
                 optimizer, scheduler, rewind_state, checkpoint_dir, seed):
        self.model, self.train_fn, self.evaluate_fn = model, train, evaluate
        self.strategy_name, self.strategy = strategy_name, strategy
        self.names, self.pairs = names, pairs
        self.rounds, self.target = rounds, target
        self.optimizer, self.scheduler, self.rewind_state = optimizer, scheduler, rewind_state
        self.checkpoint_dir, self.seed = checkpoint_dir, seed
        self.rewind_iteration = int(getattr(strategy, "rewind_iteration", 0))
        self.rewind_point: RewindPoint | None = None
        self.rewind_extra: dict[str, Any] | None = None
        self.history: list[dict] = []
        self.hook = _GuardedHooks(get_plugin_manager())  # an observer that raises is named in the error
        self.wrapper = model  # what train and evaluate get (e.g. the DDP wrapper of model)
        self.sync = RunSync(enabled=False)  # identical ranks under torch.distributed

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
        return {n: get_mask(m, name).bool() for n, (m, name) in zip(self.names, self.pairs)}

    def figures(self) -> dict[str, Any]:
        masks = self.masks()
        alive = sum(int(m.count_nonzero()) for m in masks.values())
        total = sum(m.numel() for m in masks.values())
        return {
            "remaining": alive / total if total else 1.0,
            "remaining_weights": alive,
            "total_weights": total,
            "per_tensor": {n: int(m.count_nonzero()) / m.numel() for n, m in masks.items()},
        }

    # -- rewinding --------------------------------------------------------------
    def capture(self, iteration: int) -> None:
        pairs = [(m, n) for _, m, n in _all_parameters(self.model)]
        self.rewind_point = RewindPoint.capture(self.model, parameters=pairs, iteration=iteration)
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
        self.rewind_point.restore(self.model)
        if self.rewind_extra is not None:
            _load_buffers(self.model, self.rewind_extra["buffers"])
            self.optimizer.load_state_dict(copy.deepcopy(self.rewind_extra["optimizer"]))
            if self.scheduler is not None and self.rewind_extra["scheduler"] is not None:
                self.scheduler.load_state_dict(copy.deepcopy(self.rewind_extra["scheduler"]))
        self.sync.model(self.model)  # rank 0's rewound weights and buffers on every rank

    # -- one round --------------------------------------------------------------
    def train_and_record(self, round_index: int, started: float) -> dict[str, Any]:
        seed = _round_seed(self.seed, round_index)
        _seed_everything(seed)
        on_iteration = self._capture_at if round_index == 0 and self.rewind_iteration > 0 else None
        context = RoundContext(round_index, seed, self.rewind_iteration, on_iteration,
                               counts_itself=self.optimizer is not None)
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
        record = {"round": round_index, **self.figures(), "metrics": metrics,
                  "seconds": round(time.perf_counter() - started, 6)}
        record = self.sync.value(record)  # rank 0's metrics in every rank's history
        self.history.append(record)
        self.hook.torch_lottery_round_end(round_index=round_index, model=self.model, record=copy.deepcopy(record))
        return record

    def prune_round(self, round_index: int) -> None:
        old = self.masks()
        generator = torch.Generator().manual_seed(_round_seed(self.seed, round_index, salt=1))
        weights = {n: parameter_tensor(m, name).detach() for n, (m, name) in zip(self.names, self.pairs)}
        for name, values in weights.items():  # a diverged training run stops here, before anything is pruned
            check_finite(values, f"the weights of {name!r} after training round {round_index - 1} (diverged?)",
                         old[name])
        rewind = {n: self.rewind_point[n] for n in self.names if n in self.rewind_point}
        context = PruneContext(self.model, self.names, weights, old, rewind, round_index, generator)
        try:
            proposed = self.strategy.prune(context)
        except (ValueError, TypeError):  # the strategy's own checks, which name what is wrong
            raise
        except Exception as error:
            raise PluginError(f"strategy {self.strategy_name!r}{_origin(self.strategy_name)} raised in prune "
                              f"(round {round_index}): {type(error).__name__}: {error}; nothing was pruned") from error
        new = _check_masks(proposed, self.names, old, self.strategy_name,
                           bool(getattr(self.strategy, "may_grow", False)))
        new = self.sync.masks(new)  # rank 0's masks on every rank, whatever their RNG states
        source = f"{self.strategy_name} round {round_index}"
        for name, (module, tensor_name) in zip(self.names, self.pairs):
            FixedMask.apply(module, tensor_name, new[name], source=source)
        self.hook.torch_lottery_after_prune(round_index=round_index, model=self.model,
                                            masks={n: m.clone() for n, m in new.items()},
                                            remaining=self.figures()["remaining"])

    def done(self, round_index: int) -> bool:
        if self.rounds is not None and round_index >= self.rounds:
            return True
        if self.target is not None and self.history[-1]["remaining"] <= self.target:
            return True
        if len(self.history) >= 2 and self.history[-1]["remaining_weights"] == self.history[-2]["remaining_weights"]:
            return True  # the strategy cannot prune any further
        return False

    # -- checkpoints ------------------------------------------------------------
    def save(self, round_index: int) -> None:
        if self.checkpoint_dir is None:
            return
        self.sync.write(lambda: self._write_round(round_index))  # rank 0 writes; the others wait

    def _write_round(self, round_index: int) -> None:
        state = {
            "format": files.CHECKPOINT_FORMAT,
            "version": files.CHECKPOINT_VERSION,
            "round": round_index,
            "config": self.config(),
            "masks": {n: m.cpu() for n, m in self.masks().items()} if round_index > 0 else None,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "rewind": self.rewind_point.state_dict(),
            "rewind_extra": self.rewind_extra,
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "history": copy.deepcopy(self.history),
        }
        save_state(state, files.round_path(self.checkpoint_dir, round_index))  # atomic, with a digest

    def resume(self, finished: list[int] | None = None) -> int:
        """Load the last finished round from the checkpoint directory; return the next round."""
        if self.checkpoint_dir is None:
            return 0
        done = files.finished_rounds(self.checkpoint_dir) if finished is None else finished
        if not done:
            return 0
        path = files.round_path(self.checkpoint_dir, done[-1])
        state = files.load_checkpoint(path, done)  # digest and layout checked; damage stops the run
        saved, current = state["config"], self.config()
        differ = sorted(k for k in current if saved.get(k) != current[k] and k != "rounds" and k != "target_remaining")
        if differ:
            raise ValueError(f"checkpoint_dir={os.fspath(self.checkpoint_dir)!r} holds a run with other settings "
                             f"({', '.join(f'{k}: {saved.get(k)!r} vs {current[k]!r}' for k in differ)}); "
                             "use another directory or the same settings")
        files.check_checkpoint_fits(state, path, self.model, self.names, self.pairs, self.optimizer,
                                    self.scheduler)  # before anything changes
        if state["masks"] is not None:
            for name, (module, tensor_name) in zip(self.names, self.pairs):
                FixedMask.apply(module, tensor_name, state["masks"][name], source=f"{self.strategy_name} (resumed)")
        device_state = {k: v for k, v in state["model"].items()}
        self.model.load_state_dict(device_state)
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
            finished = self.sync.value(files.finished_rounds(self.checkpoint_dir))
        start_round = self.sync.together(lambda: self.resume(finished))
        round_index = start_round
        if round_index == 0:
            started = time.perf_counter()
            self.hook.torch_lottery_round_start(round_index=0, model=self.model, strategy=self.strategy,
                                                remaining=self.figures()["remaining"])
            if self.rewind_iteration == 0:
                self.capture(0)
            self.train_and_record(0, started)
            self.sync.point(self.rewind_point)  # rank 0's rewind point on every rank
            self.save(0)
            round_index = 1
        while not (len(self.history) and self.done(round_index - 1)):
            started = time.perf_counter()
            self.hook.torch_lottery_round_start(round_index=round_index, model=self.model, strategy=self.strategy,
                                                remaining=self.figures()["remaining"])
            self.prune_round(round_index)
            self.rewind()
            self.hook.torch_lottery_after_rewind(round_index=round_index, model=self.model,
                                                 rewind_point=self.rewind_point)
            self.train_and_record(round_index, started)
            self.save(round_index)
            round_index += 1
        ticket = Ticket(self.masks(), self.rewind_point, self.history, self.config())
        if self.checkpoint_dir is not None:
            path = os.path.join(os.fspath(self.checkpoint_dir), files.TICKET_FILE)
            self.sync.write(lambda: ticket.save(path))
        return ticket


def _check_directory(path: str | os.PathLike) -> None:
    """Check that ``checkpoint_dir`` is, or can become, a directory (nothing is created here)."""
    probe = os.path.abspath(os.fspath(path))
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        where = "is a file" if probe == os.path.abspath(os.fspath(path)) else f"is inside a file ({probe!r})"
        raise ValueError(f"checkpoint_dir={os.fspath(path)!r} {where}, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"checkpoint_dir={os.fspath(path)!r} is not writable ({probe!r} refuses new files)")


def _parameters(model: nn.Module, parameters: Any) -> tuple[tuple[str, ...], list[tuple[nn.Module, str]]]:
    named = {q: (m, n) for q, m, n in named_prunable_parameters(model)}
    if parameters is None:
        names = tuple(named)
    else:
        if isinstance(parameters, (str, bytes)) or not isinstance(parameters, Iterable):
            raise TypeError(f"parameters must be qualified names or (module, name) pairs, got {describe(parameters)}")
        prefixes = {id(m): p for p, m in model.named_modules()}
        names_list = []
        for item in parameters:
            if isinstance(item, str):
                qualified = item
            elif isinstance(item, tuple) and len(item) == 2 and id(item[0]) in prefixes:
                prefix = prefixes[id(item[0])]
                qualified = f"{prefix}.{item[1]}" if prefix else item[1]
            else:
                raise ValueError(f"parameters holds {describe(item)}, which is not a tensor of model")
            prefix, _, name = qualified.rpartition(".")
            try:
                module = model.get_submodule(prefix)
                parameter_tensor(module, name)
            except (AttributeError, KeyError):
                raise ValueError(f"parameters names {qualified!r}, which is not a parameter of model") from None
            named[qualified] = (module, name)
            names_list.append(qualified)
        names = tuple(names_list)
        if not names:
            raise ValueError("parameters is empty: nothing to prune")
    if not names:
        raise ValueError("model has no prunable parameters (pass parameters=...)")
    for name in names:
        module, tensor_name = named[name]
        if parameter_tensor(module, tensor_name).device.type == "meta":
            raise ValueError(f"the tensor {name!r} to prune is on the meta device (it has no values to train or prune)")
    return names, [named[n] for n in names]


def find_ticket(model: nn.Module, train: TrainFn, evaluate: EvalFn | None = None, *,
                strategy: str | Strategy = "imp", strategy_options: Mapping[str, Any] | None = None,
                rounds: int | None = None, target_remaining: float | None = None,
                parameters: Iterable | None = None, optimizer: torch.optim.Optimizer | None = None,
                scheduler: Any = None, rewind_state: bool = False,
                checkpoint_dir: str | os.PathLike | None = None, seed: int = 0,
                plugins: Iterable[Any] = (), distributed: bool | None = None) -> Ticket:
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
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {describe(model)}")
    if distributed is not None and not isinstance(distributed, bool):
        raise TypeError(f"distributed must be None or a bool, got {describe(distributed)}")
    if distributed and not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        raise ValueError("distributed=True needs an initialized torch.distributed process group "
                         "(torch.distributed.init_process_group)")
    wrapper, model = model, unwrap(model)
    if not callable(train):
        raise TypeError(f"train must be callable as train(model, context), got {describe(train)}")
    if evaluate is not None and not callable(evaluate):
        raise TypeError(f"evaluate must be callable as evaluate(model), got {describe(evaluate)}")
    strategy_name, instance = _resolve_strategy(strategy, strategy_options)
    if rounds is not None:
        check_nonneg_int(rounds, "rounds")
    if target_remaining is not None:
        if isinstance(target_remaining, bool) or not isinstance(target_remaining, numbers.Real):
            raise TypeError(f"target_remaining must be a float, got {describe(target_remaining)}")
        if not 0.0 <= float(target_remaining) < 1.0:
            raise ValueError(f"target_remaining={target_remaining} must be a float in [0, 1)")
        target_remaining = float(target_remaining)
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
    if not isinstance(rewind_state, bool):
        raise TypeError(f"rewind_state must be a bool, got {describe(rewind_state)}")
    if rewind_state and optimizer is None:
        raise ValueError("rewind_state=True needs optimizer= (the state to rewind)")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {describe(seed)}")
    if checkpoint_dir is not None:
        if not isinstance(checkpoint_dir, (str, os.PathLike)):
            raise TypeError(f"checkpoint_dir must be a path, got {describe(checkpoint_dir)}")
        _check_directory(checkpoint_dir)
    names, pairs = _parameters(model, parameters)
    validate = getattr(instance, "validate", None)
    if validate is not None:
        validate(names)
    if isinstance(plugins, (str, bytes, nn.Module)) or not isinstance(plugins, Iterable):
        raise TypeError(f"plugins must be an iterable of plugin objects, got {describe(plugins)}")
    plugins = list(plugins)
    created = checkpoint_dir is not None and not os.path.exists(checkpoint_dir)
    if checkpoint_dir is not None:
        os.makedirs(checkpoint_dir, exist_ok=True)  # only once every argument is known to be good

    pm = get_plugin_manager()
    ours = []  # only what this run registered is unregistered at its end
    try:
        for index, plugin in enumerate(plugins):
            if not pm.is_registered(plugin):
                try:
                    pm.register(plugin)
                except pluggy.PluginValidationError as error:
                    detail = " ".join(str(error).split())
                    raise PluginError(f"plugins[{index}]={describe(plugin)} cannot be registered: {detail}") from None
                ours.append(plugin)
        run = _Run(model, train, evaluate, strategy_name, instance, names, pairs, rounds, target_remaining,
                   optimizer, scheduler, rewind_state, checkpoint_dir, int(seed))
        run.wrapper = wrapper
        group = wrapper.process_group if isinstance(wrapper, nn.parallel.DistributedDataParallel) else None
        run.sync = RunSync(group, enabled=distributed is not False)
        return run.run()
    except BaseException:
        if created and os.path.isdir(checkpoint_dir) and not os.listdir(checkpoint_dir):
            os.rmdir(checkpoint_dir)  # a run that failed before writing anything leaves no empty folder
        raise
    finally:
        for plugin in ours:
            if pm.is_registered(plugin):
                pm.unregister(plugin)
