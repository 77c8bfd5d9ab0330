"""One run of the ticket-finding driver, as explicit phases.

:class:`Run` takes checked :class:`~torch_lottery.driver.settings.Settings` and runs
them: *resume* (from ``checkpoint_dir``), the *initial phase* (the dense training
run, or, for a strategy that prunes at initialization, a record of the initial
model), then per round *prune* (the strategy's masks and the run's control),
*reset* (the retrain mode: rewind, learning-rate rewind or fine-tuning), *train*
(the user's loop, with the strategy's ``on_step``), *record* and *checkpoint*.
"""

from __future__ import annotations

import contextlib
import copy
import numbers
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, cast

import pluggy
import torch

from .. import _layout
from .._files import digest
from .._validation import check_binary_mask, check_finite, describe
from ..plugins.manager import PluginError, get_plugin_manager, strategy_entries
from ..pruning.fixed import FixedMask
from ..pruning.utils import get_mask
from ..rewinding.baselines import random_reinit
from ..rewinding.point import RewindPoint
from ..strategies.base import StepContext
from ..strategies.context import build_context
from . import checkpoints
from ._sync import RunSync
from .context import RoundContext, StopRound, round_seed, seed_everything
from .instability import AutoRewind, Instability, classification_error, error_barrier
from .progress import RunProgress
from .settings import Settings
from .ticket import Ticket

#: Settings recorded by older runs' checkpoints lack these; resuming such a run compares them with their defaults.
CONFIG_DEFAULTS = {"retrain": "rewind", "control": None}


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
        mask = check_binary_mask(mask, f"the mask strategy {strategy_name!r} returned for {name!r}").to(
            torch.bool, copy=True
        )
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


class Run:
    """One run of the driver (kept in one object so resume can rebuild it)."""

    def __init__(self, settings: Settings, sync: RunSync, progress: RunProgress | None = None) -> None:
        self.s = settings
        self.progress = progress  # find_ticket(progress=True): counts every training step
        self.model = settings.model
        self.sync = sync
        first = _layout.aliases(list(settings.pairs))  # tied weights: name -> the first name of its tensor
        self.tied = {settings.names[i]: settings.names[f] for i, f in enumerate(first) if f != i}
        self.rewind_point: RewindPoint | None = None
        self.rewind_extra: dict[str, Any] | None = None
        #: the iteration to rewind to (None until an AutoRewind picks it after the dense run)
        self.k: int | None = settings.rewind_iteration if settings.auto is None else None
        #: AutoRewind: the state at each candidate iteration of the dense run (point, buffers, optimizer, scheduler)
        self.candidates: dict[int, dict[str, Any]] = {}
        self._candidates_pending: list[int] = []
        self.initial: dict[str, torch.Tensor] | None = None
        self.history: list[dict] = []
        self.hook = _GuardedHooks(get_plugin_manager())  # an observer that raises is named in the error

    # -- bookkeeping ------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        strategy = self.s.strategy
        options = strategy.options() if hasattr(strategy, "options") else {}
        return {
            "strategy": self.s.strategy_name,
            "strategy_options": copy.deepcopy(options),
            "names": list(self.s.names),
            "rounds": self.s.rounds,
            "target_remaining": self.s.target,
            "rewind_iteration": self.s.rewind_setting,
            "rewind_state": self.s.rewind_state,
            "retrain": self.s.retrain,
            "control": self.s.control,
            "seed": self.s.seed,
        }

    def masks(self) -> dict[str, torch.Tensor]:
        return {
            n: get_mask(m, name).to(torch.bool, copy=True)
            for n, (m, name) in zip(self.s.names, self.s.pairs, strict=True)
        }

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

    @property
    def point(self) -> RewindPoint:
        """The rewind point (set by the initial phase, or by resume)."""
        return cast(RewindPoint, self.rewind_point)

    # -- capture and reset ---------------------------------------------------------
    def capture(self, iteration: int) -> None:
        """Capture the state of the dense run at iteration k (right after its step) and make it the rewind point.

        The optimizer's and scheduler's state of iteration k are taken just before the
        next optimizer step (:meth:`capture_state`), once the user's loop has stepped
        its scheduler for iteration k too: a rewound schedule then resumes exactly
        where the dense run was.
        """
        wants_state = self.s.rewind_state or self.s.retrain == "lr_rewind"
        self.rewind_point = self._keep(iteration, buffers=self.s.rewind_state, state=wants_state)["point"]

    def _keep(self, iteration: int, buffers: bool, state: bool) -> dict[str, Any]:
        """Keep the dense run's state at ``iteration``: every parameter, the buffers, the optimizer's state (pending).

        The bundle (``point``, ``buffers``, ``optimizer``, ``scheduler``) goes to
        :attr:`candidates`; the optimizer's and scheduler's parts are filled by
        :meth:`capture_state` just before the next step.
        """
        bundle = {
            "point": RewindPoint.capture(self.model, iteration=iteration),
            "buffers": _layout.snapshot(self.model, parameters=False) if buffers else None,
            "optimizer": None,
            "scheduler": None,
        }
        self.candidates[iteration] = bundle
        if state and self.s.optimizer is not None:
            self._candidates_pending.append(iteration)
            if iteration == 0:  # before any step: nothing to wait for
                self.capture_state()
        elif self.s.auto is None:  # the one rewind iteration, complete now
            self.rewind_extra = self._extra(bundle)
            del self.candidates[iteration]
        return bundle

    def capture_state(self, *args: Any) -> None:
        """Fill in the optimizer's and scheduler's state of the iterations kept since the last step."""
        optimizer, scheduler = self.s.optimizer, self.s.scheduler
        for iteration in self._candidates_pending:
            bundle = self.candidates[iteration]
            bundle["optimizer"] = copy.deepcopy(cast(torch.optim.Optimizer, optimizer).state_dict())
            bundle["scheduler"] = copy.deepcopy(scheduler.state_dict()) if scheduler is not None else None
            if self.s.auto is None:  # the one rewind iteration, complete now
                self.rewind_extra = self._extra(bundle)
                del self.candidates[iteration]
        self._candidates_pending = []

    def _extra(self, bundle: Mapping[str, Any]) -> dict[str, Any] | None:
        """What the retrain mode rewinds besides the weights, from a kept bundle (None: nothing)."""
        if self.s.optimizer is None:
            return None
        if self.s.rewind_state:
            return {"buffers": bundle["buffers"], "optimizer": bundle["optimizer"], "scheduler": bundle["scheduler"]}
        if self.s.retrain == "lr_rewind":  # the rates and schedule of iteration k
            return {
                "optimizer_groups": copy.deepcopy(cast(dict, bundle["optimizer"])["param_groups"]),
                "scheduler": bundle["scheduler"],
            }
        return None

    def _capture_at(self, iteration: int) -> None:
        if self.s.auto is not None:
            if self._is_candidate(iteration):
                self._keep(iteration, buffers=True, state=True)
        elif iteration == self.k:
            self.capture(iteration)

    # -- rewind_iteration="auto" (instability analysis after the dense run) --------------
    def _is_candidate(self, iteration: int) -> bool:
        candidates = cast(AutoRewind, self.s.auto).candidates
        if candidates is not None:
            return iteration in candidates
        return iteration == 0 or iteration & (iteration - 1) == 0  # 0 and the powers of two

    def train_copy(self, iteration: int, seed: int, iterations: int) -> dict[str, torch.Tensor]:
        """Train the model from the candidate state of ``iteration`` for ``iterations`` steps; return its state."""
        bundle, optimizer, scheduler = self.candidates[iteration], self.s.optimizer, self.s.scheduler
        bundle["point"].restore(self.model)
        _layout.load_snapshot(self.model, bundle["buffers"])
        if optimizer is not None and bundle["optimizer"] is not None:
            optimizer.load_state_dict(copy.deepcopy(bundle["optimizer"]))
        if scheduler is not None and bundle["scheduler"] is not None:
            scheduler.load_state_dict(copy.deepcopy(bundle["scheduler"]))
        self.sync.model(self.model)
        seed_everything(seed)
        context = RoundContext(0, seed, iteration, counts_itself=optimizer is not None, retrain="rewind")

        def stop_after(count: int) -> None:
            if count >= iterations:
                context._stop(f"instability copy: {iterations} iterations from iteration {iteration}")

        context._on_iteration = stop_after
        context.reads_weights = False  # stop_after counts; the masks stay as they are
        with self._counting(context):
            try:
                self.s.train(self.s.wrapper, context)
            except StopRound:
                pass
        return _layout.snapshot(self.model)

    def choose_rewind(self, length: int) -> dict[str, Any]:
        """Measure the error barrier at the candidates, earliest first; rewind to the first stable one.

        ``length`` is the dense run's number of iterations. Returns what round 0's
        record gains: every measured barrier and the iteration picked.
        """
        auto = cast(AutoRewind, self.s.auto)
        wanted = auto.default_candidates(length)
        measured = [k for k in wanted if k in self.candidates]
        if not measured:
            raise ValueError(
                f"rewind_iteration='auto': the dense run counted {length} iterations, so no candidate "
                f"{list(auto.candidates) if auto.candidates is not None else '(0, 1, 2, 4, ...)'} lies before its "
                "end; call context.step() after each optimizer step or pass optimizer= to find_ticket"
            )
        if auto.candidates is not None and len(measured) < len(auto.candidates):
            skipped = [k for k in auto.candidates if k not in measured]
            warnings.warn(
                f"instability analysis: candidates {skipped} lie at or after the end of the dense run "
                f"({length} iterations) and are skipped",
                stacklevel=5,
            )
        error = auto.error if auto.error is not None else classification_error(cast(Iterable, self.s.data))
        optimizer, scheduler = self.s.optimizer, self.s.scheduler
        dense = _layout.snapshot(self.model)  # the trained dense model, which the first round prunes
        dense_optimizer = copy.deepcopy(optimizer.state_dict()) if optimizer is not None else None
        dense_scheduler = copy.deepcopy(scheduler.state_dict()) if scheduler is not None else None
        results: list[dict[str, Any]] = []
        try:
            for j, k in enumerate(measured):
                first, second = (
                    self.train_copy(k, round_seed(self.s.seed, 0, salt=100 + 2 * j + c), length - k) for c in (0, 1)
                )
                if all(torch.equal(first[q], second[q]) for q in first):
                    warnings.warn(
                        f"instability analysis: the two copies trained from iteration {k} ended identical; "
                        "does your loop's data order follow context.seed or torch's global RNG?",
                        stacklevel=5,
                    )
                barrier, errors, alphas = error_barrier(self.model, first, second, error, auto.points)
                result = Instability(k, barrier, tuple(errors), tuple(alphas), barrier <= auto.threshold, length - k)
                results.append(result.as_record())
                if auto.first_stable and result.stable:
                    break
        finally:  # back to the trained dense model, whatever happened
            _layout.load_snapshot(self.model, dense)
            if optimizer is not None and dense_optimizer is not None:
                optimizer.load_state_dict(dense_optimizer)
            if scheduler is not None and dense_scheduler is not None:
                scheduler.load_state_dict(dense_scheduler)
        results = self.sync.value(results)  # rank 0's measurements decide on every rank
        stable = [r for r in results if r["stable"]]
        if stable:
            chosen = stable[0]["iteration"]
        else:
            chosen = min(results, key=lambda r: r["barrier"])["iteration"]
            if self.s.rounds != 0:  # (instability_analysis runs no round: the pick does not matter there)
                warnings.warn(
                    f"rewind_iteration='auto': no candidate was stable (barrier <= {auto.threshold}); rewinding to "
                    f"iteration {chosen}, the smallest barrier ({min(r['barrier'] for r in results):.4f})",
                    stacklevel=5,
                )
        bundle = self.candidates[chosen]
        self.k, self.rewind_point, self.rewind_extra = chosen, bundle["point"], self._extra(bundle)
        self.candidates.clear()
        return {"instability": results, "rewind_iteration": chosen}

    @contextlib.contextmanager
    def _counting(self, context: RoundContext, capture: bool = False) -> Iterator[None]:
        """Count the steps of ``optimizer=`` for ``context`` (and refuse steps after a stop) while inside."""
        optimizer = self.s.optimizer
        with contextlib.ExitStack() as hooks:
            if optimizer is not None:
                hooks.callback(optimizer.register_step_pre_hook(context._before_step).remove)
                if capture:
                    hooks.callback(optimizer.register_step_pre_hook(self.capture_state).remove)
                hooks.callback(optimizer.register_step_post_hook(lambda *_: context._advance()).remove)
            yield

    def reset_phase(self, round_index: int) -> None:
        """Start the round as the retrain mode says; the ``reinit`` control then draws fresh weights."""
        retrain, optimizer, scheduler, extra = self.s.retrain, self.s.optimizer, self.s.scheduler, self.rewind_extra
        if retrain == "rewind":
            self.point.restore(self.model)
            if extra is not None and "buffers" in extra:
                _layout.load_snapshot(self.model, extra["buffers"])
                cast(torch.optim.Optimizer, optimizer).load_state_dict(copy.deepcopy(extra["optimizer"]))
                if scheduler is not None and extra["scheduler"] is not None:
                    scheduler.load_state_dict(copy.deepcopy(extra["scheduler"]))
        elif retrain == "lr_rewind" and optimizer is not None and extra is not None:
            optimizer.state.clear()  # the trained weights restart with a fresh optimizer state ...
            for group, saved in zip(optimizer.param_groups, extra["optimizer_groups"], strict=True):
                group.update({k: v for k, v in saved.items() if k != "params"})  # ... at iteration k's rates
            if scheduler is not None and extra["scheduler"] is not None:
                scheduler.load_state_dict(copy.deepcopy(extra["scheduler"]))
        # retrain == "finetune": weights, buffers, optimizer and scheduler all carry on
        if self.s.control == "reinit":
            generator = torch.Generator().manual_seed(round_seed(self.s.seed, round_index, salt=3))
            random_reinit(self.model, list(self.s.pairs), generator=generator)
        self.sync.model(self.model)  # rank 0's weights and buffers on every rank
        self.hook.torch_lottery_after_rewind(round_index=round_index, model=self.model, rewind_point=self.point)

    # -- phases -------------------------------------------------------------------
    def initial_phase(self) -> None:
        """Round 0: train the dense model, or (pruning at initialization) record the initial model."""
        started = time.perf_counter()
        self.hook.torch_lottery_round_start(
            round_index=0, model=self.model, strategy=self.s.strategy, remaining=self.figures()["remaining"]
        )
        if self.k == 0:
            self.capture(0)
        elif self.s.auto is not None and self._is_candidate(0):
            self._keep(0, buffers=True, state=True)
        if self.s.at_init:
            metrics = self.evaluated({})  # nothing trains: the initial model's figures
            metrics.setdefault("iterations", 0)
            self.record(0, metrics, started)
        else:
            self.train_phase(0, started)
        self.sync.point(self.point)  # rank 0's rewind point on every rank
        self.save(0)

    def prune_phase(self, round_index: int) -> None:
        """Ask the strategy for the next masks, apply the run's control, and install them."""
        old = self.masks()
        strategy, name = self.s.strategy, self.s.strategy_name
        context = build_context(
            self.model,
            self.s.names,
            list(self.s.pairs),
            rewind={n: self.point[n] for n in self.s.names if n in self.point},
            round_index=round_index,
            generator=torch.Generator().manual_seed(round_seed(self.s.seed, round_index, 1)),
            initial=self.initial,
            data=self.s.data,
            loss=self.s.loss,
            rounds=self.s.rounds,
            target_remaining=self.s.target,
            control=self.s.control,
        )
        if not self.s.at_init or round_index > 1:  # a diverged training run stops here, before anything is pruned
            for tensor_name, values in context.weights.items():
                check_finite(
                    values,
                    f"the weights of {tensor_name!r} after training round {round_index - 1} (diverged?)",
                    old[tensor_name],
                )
        try:
            proposed = strategy.prune(context)
        except (ValueError, TypeError):  # WHY: the strategy's own checks, which name what is wrong
            raise
        except Exception as error:
            raise PluginError(
                f"strategy {name!r}{_origin(name)} raised in prune (round {round_index}): "
                f"{type(error).__name__}: {error}; nothing was pruned"
            ) from error
        new = _check_masks(proposed, self.s.names, old, name, bool(getattr(strategy, "may_grow", False)), self.tied)
        if self.s.control == "shuffle":  # Frankle et al. 2021: the same per-tensor density, positions at random
            generator = torch.Generator().manual_seed(round_seed(self.s.seed, round_index, salt=2))
            new = _shuffled(new, self.tied, generator)
        new = self.sync.masks(new)  # rank 0's masks on every rank, whatever their RNG states
        self.install(new, f"{name} round {round_index}")
        self.hook.torch_lottery_after_prune(
            round_index=round_index,
            model=self.model,
            masks={n: m.clone() for n, m in new.items()},
            remaining=self.figures()["remaining"],
        )

    def move(
        self, proposed: Any, round_index: int, iteration: int, keep_density: bool = True, regrow_at_zero: bool = False
    ) -> None:
        """Install the masks a strategy moved while training (in place).

        The masks are checked like any strategy's (with ``keep_density``, the total
        density must stay exact), then written into the ``<name>_mask`` buffers.
        With ``regrow_at_zero`` (the updates of drop-and-regrow strategies) each
        regrown entry's weight is set to 0 and its optimizer state (momentum,
        moments) cleared; the masks a strategy's ``end`` returns keep the weights.
        """
        if proposed is None:
            return
        old = self.masks()
        new = _check_masks(proposed, self.s.names, old, self.s.strategy_name, True, self.tied)
        if keep_density:
            before, after = (sum(int(m.sum()) for n, m in masks.items() if n not in self.tied) for masks in (old, new))
            if before != after:
                raise ValueError(
                    f"strategy {self.s.strategy_name!r} changed the number of surviving weights from {before} to "
                    f"{after} at step {iteration} of round {round_index}; a training-time update keeps the density"
                )
        new = self.sync.masks(new)
        optimizer = self.s.optimizer
        with torch.no_grad():
            for name, (module, tensor_name) in zip(self.s.names, self.s.pairs, strict=True):
                grown = new[name] & ~old[name]
                orig = _layout.original(module, tensor_name)
                if regrow_at_zero and bool(grown.any()):
                    orig[grown] = 0
                    state = optimizer.state.get(orig, {}) if optimizer is not None else {}
                    for value in state.values():
                        if isinstance(value, torch.Tensor) and value.shape == orig.shape:
                            value[grown] = 0
                _layout.write_mask(module, tensor_name, new[name])

    def install(self, masks: Mapping[str, torch.Tensor], source: str) -> None:
        for name, (module, tensor_name) in zip(self.s.names, self.s.pairs, strict=True):
            FixedMask.apply(module, tensor_name, masks[name], source=source)

    def train_phase(self, round_index: int, started: float) -> None:
        """Train with the user's loop (the strategy's ``on_step`` may end it early), evaluate, record."""
        seed = round_seed(self.s.seed, round_index)
        seed_everything(seed)
        optimizer, strategy = self.s.optimizer, self.s.strategy
        capturing = self.s.auto is not None or bool(self.k)
        on_iteration = self._capture_at if round_index == 0 and capturing else None
        context = RoundContext(
            round_index,
            seed,
            self.k or 0,
            counts_itself=optimizer is not None,
            retrain="dense" if round_index == 0 else self.s.retrain,
        )
        step_context = StepContext(
            self.model,
            self.s.names,
            list(self.s.pairs),
            round_index,
            0,
            self.s.rounds,
            self.s.target,
            context._stop,
            optimizer,
            self.s.data,
            self.s.loss,
        )
        calls: list[Callable[[int], Any]] = []  # what runs after each counted step, in order
        if on_iteration is not None:
            calls.append(on_iteration)
        if self.progress is not None:
            calls.append(self.progress.step)
        on_step = getattr(strategy, "on_step", None)
        if on_step is not None:
            calls.append(lambda iteration: on_step(step_context))
        moving = self.s.when == "during_training" and round_index > 0
        if moving:
            every = int(strategy.every)
            keep_density = bool(getattr(strategy, "keep_density", True))
            regrow_at_zero = bool(getattr(strategy, "regrow_at_zero", True))

            def update(iteration: int) -> None:
                if iteration % every == 0:
                    proposed = strategy.update(step_context)
                    self.move(proposed, round_index, iteration, keep_density, regrow_at_zero)

            calls.append(update)
            if callable(getattr(strategy, "begin", None)):
                strategy.begin(step_context)

        def observe(iteration: int) -> None:
            step_context.iteration = iteration
            for call in calls:
                call(iteration)

        context._on_iteration = observe
        context.reads_weights = on_iteration is not None or on_step is not None or moving
        with self._counting(context, capture=round_index == 0):
            final = None
            try:
                metrics = _metrics(self.s.train(self.s.wrapper, context), "train")
            except StopRound:  # the loop kept training after the strategy stopped the round: stopped here
                metrics = {}
            finally:  # what begin installed is removed whatever happened
                if moving and callable(getattr(strategy, "end", None)):
                    final = strategy.end(step_context)
        self.capture_state()  # a kept iteration was the last one
        self.move(final, round_index, context.iteration, keep_density=False)
        if round_index == 0 and self.rewind_point is None and self.s.auto is None:
            raise ValueError(
                f"rewind_iteration={self.k} but the dense run counted only "
                f"{context.iteration} iterations; call context.step() after each optimizer step "
                "or pass optimizer= to find_ticket"
            )
        extra = self.choose_rewind(context.iteration) if round_index == 0 and self.s.auto is not None else {}
        metrics = self.evaluated(metrics)
        metrics.setdefault("iterations", context.iteration)
        if context.stop_reason is not None:
            metrics["stopped_early"] = context.stop_reason
        self.record(round_index, metrics, started, extra)

    def evaluated(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """``metrics`` updated with what the user's ``evaluate`` returns (it wins on a shared key)."""
        if self.s.evaluate is not None:
            metrics.update(_metrics(self.s.evaluate(self.s.wrapper), "evaluate"))
        return metrics

    def record(
        self, round_index: int, metrics: dict[str, Any], started: float, extra: Mapping[str, Any] | None = None
    ) -> None:
        """Append the round's record (figures, masks digest, metrics, ``extra``; why the run stops, if it does)."""
        record = {
            "round": round_index,
            **self.figures(),
            "masks_sha256": digest({"masks": {n: m.cpu() for n, m in self.masks().items()}}),
            "metrics": metrics,
            "seconds": round(time.perf_counter() - started, 6),
            **(extra or {}),
        }
        record = self.sync.value(record)  # rank 0's metrics in every rank's history
        self.history.append(record)
        reason = self.stop_reason(round_index)
        if reason is not None:  # on the last record, before observers see it
            record["stopped"] = reason
        self.hook.torch_lottery_round_end(round_index=round_index, model=self.model, record=copy.deepcopy(record))

    def stop_reason(self, round_index: int) -> str | None:
        """Return why the run stops after ``round_index``, or None to go on."""
        last = self.history[-1]
        if self.s.rounds is not None and round_index >= self.s.rounds:
            return f"rounds={self.s.rounds} reached"
        if self.s.target is not None and last["remaining"] <= self.s.target:
            return f"target_remaining={self.s.target} reached ({last['remaining']:.4f} of the weights remain)"
        if round_index >= 1 and len(self.history) >= 2:
            previous = self.history[-2]
            if "masks_sha256" in last and "masks_sha256" in previous:  # (records of older runs hold counts only)
                same = last["masks_sha256"] == previous["masks_sha256"]
            else:
                same = last["remaining_weights"] == previous["remaining_weights"]
            if same:
                return f"round {round_index} left the masks as they were: the strategy prunes no further"
        return None

    # -- checkpoints ------------------------------------------------------------
    def save(self, round_index: int) -> None:
        if self.s.checkpoint_dir is None:
            return
        contents = {
            "config": self.config(),
            "masks": {n: m.cpu() for n, m in self.masks().items()} if round_index > 0 else None,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "rewind": self.point.state_dict(),
            "rewind_extra": self.rewind_extra,
            "initial": {k: v.cpu() for k, v in self.initial.items()} if self.initial is not None else None,
            "optimizer": self.s.optimizer.state_dict() if self.s.optimizer is not None else None,
            "scheduler": self.s.scheduler.state_dict() if self.s.scheduler is not None else None,
            "history": copy.deepcopy(self.history),
        }
        directory = self.s.checkpoint_dir
        self.sync.write(lambda: checkpoints.write_round(directory, round_index, contents))  # rank 0 writes

    def resume_phase(self, finished: list[int] | None = None) -> int:
        """Load the last finished round from the checkpoint directory; return the next round."""
        directory = self.s.checkpoint_dir
        if directory is None:
            return 0
        done = checkpoints.finished_rounds(directory) if finished is None else finished
        if not done:
            return 0
        path = checkpoints.round_path(directory, done[-1])
        state = checkpoints.load_checkpoint(path, done)  # digest, layout and history checked
        saved, current = state["config"], self.config()
        differ = sorted(
            k
            for k in current
            if saved.get(k, CONFIG_DEFAULTS.get(k)) != current[k] and k not in ("rounds", "target_remaining")
        )
        if differ:
            raise ValueError(
                f"checkpoint_dir={os.fspath(directory)!r} holds a run with other settings "
                f"({', '.join(f'{k}: {saved.get(k, CONFIG_DEFAULTS.get(k))!r} vs {current[k]!r}' for k in differ)});"
                " use another directory or the same settings"
            )
        checkpoints.check_checkpoint_fits(  # before anything changes
            state, path, self.model, self.s.names, list(self.s.pairs), self.s.optimizer, self.s.scheduler
        )
        if state["masks"] is not None:
            self.install(state["masks"], f"{self.s.strategy_name} (resumed)")
        self.model.load_state_dict(state["model"])
        self.rewind_point = RewindPoint.from_state_dict(state["rewind"], source=path).bind(self.model)
        self.rewind_extra = state["rewind_extra"]
        self.initial = state.get("initial")
        if self.s.optimizer is not None and state["optimizer"] is not None:
            self.s.optimizer.load_state_dict(state["optimizer"])
        if self.s.scheduler is not None and state["scheduler"] is not None:
            self.s.scheduler.load_state_dict(state["scheduler"])
        self.history = state["history"]
        self.history[-1].pop("stopped", None)  # the run goes on (the loop decides again)
        if self.s.auto is not None:  # the iteration the analysis picked, recorded with the dense run
            self.k = int(self.history[0]["rewind_iteration"])
        return int(state["round"]) + 1

    # -- the loop ---------------------------------------------------------------
    def run(self) -> Ticket:
        finished = None
        if self.s.checkpoint_dir is not None and self.sync.active:  # every rank resumes rank 0's round
            finished = self.sync.value(checkpoints.finished_rounds(self.s.checkpoint_dir))
        round_index = self.sync.together(lambda: self.resume_phase(finished))
        if round_index == 0:
            self.initial = _layout.snapshot(self.model)
            self.initial_phase()
            round_index = 1
        while (reason := self.stop_reason(round_index - 1)) is None:
            started = time.perf_counter()
            self.hook.torch_lottery_round_start(
                round_index=round_index,
                model=self.model,
                strategy=self.s.strategy,
                remaining=self.figures()["remaining"],
            )
            self.prune_phase(round_index)
            self.reset_phase(round_index)
            self.train_phase(round_index, started)
            self.save(round_index)
            round_index += 1
        self.history[-1]["stopped"] = reason  # (set by record; again for a resumed run that had already ended)
        ticket = Ticket(self.masks(), self.point, self.history, self.config())
        if self.s.checkpoint_dir is not None:
            path = checkpoints.ticket_path(self.s.checkpoint_dir)
            self.sync.write(lambda: ticket.save(path))
        return ticket


def _shuffled(masks: dict[str, torch.Tensor], tied: Mapping[str, str], generator: torch.Generator) -> dict:
    """Each mask with its entries permuted at random (tied names keep sharing one mask)."""
    out = {}
    for name, mask in masks.items():
        if name in tied:
            continue
        flat = mask.reshape(-1)
        order = torch.randperm(flat.numel(), generator=generator).to(flat.device)
        out[name] = flat[order].reshape(mask.shape)
    out.update({name: out[first].clone() for name, first in tied.items()})
    return {name: out[name] for name in masks}


@contextlib.contextmanager
def registered(plugins: tuple[Any, ...]) -> Iterator[None]:
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
def directory(
    checkpoint_dir: str | None, sync: RunSync | None = None, argument: str = "checkpoint_dir"
) -> Iterator[None]:
    """Create and lock ``checkpoint_dir`` for one run (rank 0 locks); remove what it created if left empty.

    ``argument`` names the folder in the refusal of a second live run (``--out`` for the CLI).
    """
    if checkpoint_dir is None:
        yield
        return
    sync = sync if sync is not None else RunSync(enabled=False)
    created = []  # the folders this run creates, innermost first
    probe = os.path.abspath(checkpoint_dir)
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        created.append(probe)
        probe = os.path.dirname(probe)
    stack = contextlib.ExitStack()
    try:
        os.makedirs(checkpoint_dir, exist_ok=True)
        if sync.writer:
            sync.together(lambda: stack.enter_context(checkpoints.locked(checkpoint_dir, argument)))
        else:
            sync.together(lambda: None)
        with stack:
            yield
    finally:
        for folder in created:  # a run that failed before writing anything leaves no empty folder
            try:
                os.rmdir(folder)  # only an empty one
            except OSError:
                break
