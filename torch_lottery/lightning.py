"""``LotteryTicket``: iterative magnitude pruning with rewinding inside Lightning's ``Trainer.fit``.

Needs the ``lightning`` extra (``pip install "torch-lottery[lightning]"``). The callback runs the
phases of :func:`~torch_lottery.find_ticket` (its :class:`~torch_lottery.driver.run.Run`: the
strategy's masks, the rewind to global step k, whole-state rewind, the per-round history and the
plugin hooks) while Lightning trains: round ``r`` is ``epochs_per_round`` epochs, round 0 the dense
run. A round's record is taken at its last epoch's end; the next round's masks and rewind come at
the start of its first epoch, so an end-of-epoch checkpoint holds a trained model and resumes
exactly.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any, cast

import torch
from torch import nn

from . import _layout
from ._validation import check_binary_mask, check_bool, check_nonneg_int, check_number, describe
from .driver._sync import RunSync
from .driver.instability import AutoRewind
from .driver.run import Run, _metrics
from .driver.settings import Settings, _resolve_rewind, _resolve_strategy
from .driver.ticket import Ticket
from .pruning.fixed import FixedMask
from .rewinding.point import RewindPoint
from .strategies.base import Strategy

try:
    import lightning.pytorch as pl
    from lightning.pytorch.utilities import rank_zero_info
except ImportError as error:  # the optional extra
    raise ImportError(
        'torch_lottery.lightning needs Lightning (lightning.pytorch): pip install "torch-lottery[lightning]"'
    ) from error

__all__ = ["LotteryTicket"]

#: The ``format`` field of the callback's checkpoint state; :meth:`LotteryTicket.load_state_dict` refuses others.
FORMAT = "torch_lottery.lightning"
#: The version of that state's layout.
VERSION = 1
#: Settings a resumed run may change: more (or fewer) rounds extend (or end) the search.
_MAY_CHANGE = ("rounds", "target_remaining")


def _lightning_trains(model: nn.Module, context: Any) -> None:
    """Stand in for ``find_ticket``'s ``train`` (never called: Lightning trains)."""


class LotteryTicket(pl.Callback):
    """Find a lottery ticket inside ``Trainer.fit``: train, prune, rewind to global step k, repeat.

    Round 0 trains the dense model for ``epochs_per_round`` epochs, capturing the
    rewind point at global step ``rewind_iteration`` (0: the initialization).
    Each later round starts by asking the strategy for new masks (stock
    ``torch.nn.utils.prune`` layout: ``weight_orig`` and ``weight_mask``),
    rewinding every parameter of the LightningModule to the rewind point (with
    ``rewind_state=True`` also the optimizer's state, the LR scheduler and the
    buffers, as they were at step k) and trains ``epochs_per_round`` epochs
    again. After ``rounds`` pruning rounds (or once a round prunes nothing) the
    callback stops fit; :attr:`ticket` then holds the masks, the rewind point
    and the per-round history, as :func:`~torch_lottery.find_ticket` returns
    them. Each epoch logs ``lottery/remaining`` and ``lottery/round``.

    Lightning's global step and epoch keep counting across rounds (they are not
    rewound). The callback's state (round, masks, rewind point, history) goes
    into Lightning checkpoints as tensors and plain values (loadable with
    ``weights_only=True``), so ``trainer.fit(model, ckpt_path=...)`` resumes the
    search where the checkpoint was taken.

    Args:
        rounds (int): pruning rounds after the dense run (>= 1; a strategy's own
            ``max_rounds``, e.g. ``one_shot``'s 1, caps it).
        epochs_per_round (int): training epochs per round (>= 1); fit trains
            :attr:`max_epochs` = ``(rounds + 1) * epochs_per_round`` epochs.
        rewind_iteration (int, optional): the global step of the dense run whose
            weights the survivors are reset to (0: initialization; k > 0: late
            resetting). Default: the strategy's ``rewind_iteration`` option.
        strategy (str or Strategy): a registered strategy that prunes between
            rounds (``"imp"``, ``"one_shot"``, ``"random"``, a plugin's) or an
            instance of one.
        strategy_options (dict, optional): options of a named strategy, checked
            by the strategy, e.g. ``{"rate": 0.2, "scope": "global",
            "rate_multipliers": {"head.weight": 0.5}}`` for ``imp``.
        parameters (optional): the tensors to prune, as qualified names of the
            LightningModule (``"net.0.weight"``) or ``(module, name)`` pairs;
            default: every prunable weight (Linear, Conv, ...).
        rewind_state (bool): also rewind the optimizer state, the LR scheduler
            and the buffers (e.g. BatchNorm statistics) to step k: whole-state
            rewind. Needs exactly one optimizer (and at most one scheduler).
        verbose (bool): log one line per round (rank zero).

    Raises:
        TypeError, ValueError: on a bad option (here), or at the start of fit
            (before anything trains) on options that do not fit the
            LightningModule or the Trainer (``parameters``, ``max_epochs``, a
            ``rewind_iteration`` beyond the dense round, ...).
        StrategyError: on an unknown strategy name.

    Examples:
        >>> from torch_lottery.lightning import LotteryTicket
        >>> lottery = LotteryTicket(rounds=3, epochs_per_round=2, strategy_options={"rate": 0.5})
        >>> lottery.max_epochs  # Trainer(max_epochs=lottery.max_epochs, callbacks=[lottery])
        8
        >>> LotteryTicket(rounds=3, strategy_options={"rate": 1.5})
        Traceback (most recent call last):
        ...
        ValueError: rate=1.5 must be in [0, 1)

        See ``docs/lightning.md`` for a whole run.
    """

    def __init__(
        self,
        rounds: int,
        epochs_per_round: int = 1,
        *,
        rewind_iteration: int | None = None,
        strategy: str | Strategy = "imp",
        strategy_options: Mapping[str, Any] | None = None,
        parameters: Iterable[Any] | None = None,
        rewind_state: bool = False,
        verbose: bool = False,
    ) -> None:
        rounds = check_number(rounds, "rounds", integer=True, low=1)
        self.epochs_per_round: int = check_number(epochs_per_round, "epochs_per_round", integer=True, low=1)
        if isinstance(rewind_iteration, (str, AutoRewind)):
            raise ValueError(
                f"rewind_iteration={describe(rewind_iteration)}: LotteryTicket rewinds to a global step "
                "(an int >= 0); the instability analysis ('auto') is find_ticket's"
            )
        if rewind_iteration is not None:
            check_nonneg_int(rewind_iteration, "rewind_iteration")
        self.rewind_state: bool = check_bool(rewind_state, "rewind_state")
        self.verbose: bool = check_bool(verbose, "verbose")
        name, instance = _resolve_strategy(strategy, strategy_options)
        when = getattr(instance, "when", "between_rounds")
        if when != "between_rounds" or callable(getattr(instance, "on_step", None)):
            why = f"prunes {when}" if when != "between_rounds" else "acts after every optimizer step (on_step)"
            raise ValueError(
                f"strategy={name!r} {why}; LotteryTicket runs strategies that prune between rounds "
                "(imp, one_shot, random, ...): use torch_lottery.find_ticket for it"
            )
        #: the global step the survivors are rewound to (the strategy's own option unless given)
        self.rewind_iteration: int = cast(int, _resolve_rewind(rewind_iteration, instance, name))  # (no "auto")
        max_rounds = getattr(instance, "max_rounds", None)
        #: pruning rounds after the dense run (capped by the strategy's ``max_rounds``)
        self.rounds: int = rounds if max_rounds is None else min(rounds, int(max_rounds))
        self._strategy, self._options = strategy, strategy_options
        if isinstance(parameters, Iterable) and not isinstance(parameters, (str, bytes, nn.Module)):
            parameters = tuple(parameters)  # (a generator is read once; setup reads it per fit)
        self._parameters = parameters
        self._run: Run | None = None
        self._hook: Any = None

    @property
    def max_epochs(self) -> int:
        """The epochs the search trains: the dense round and every pruning round."""
        return (self.rounds + 1) * self.epochs_per_round

    # -- set-up ------------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Check the options against the Trainer and the LightningModule (before fit changes anything)."""
        if stage != "fit":
            return
        if trainer.max_epochs is not None and 0 <= trainer.max_epochs < self.max_epochs:
            raise ValueError(
                f"Trainer(max_epochs={trainer.max_epochs}) ends fit before the last round: LotteryTicket(rounds="
                f"{self.rounds}, epochs_per_round={self.epochs_per_round}) trains {self.max_epochs} epochs; "
                f"pass max_epochs={self.max_epochs} (LotteryTicket.max_epochs)"
            )
        if trainer.min_epochs is not None and trainer.min_epochs > self.max_epochs:
            raise ValueError(
                f"Trainer(min_epochs={trainer.min_epochs}) trains past the last round ({self.max_epochs} epochs)"
            )
        settings = Settings.from_arguments(
            pl_module,
            _lightning_trains,
            None,
            strategy=self._strategy,
            strategy_options=self._options,
            rounds=self.rounds,
            target_remaining=None,
            parameters=self._parameters,
            optimizer=None,  # (known at on_fit_start)
            scheduler=None,
            rewind_state=False,
            retrain="rewind",
            control=None,
            checkpoint_dir=None,
            seed=0,
            plugins=(),
            distributed=None,
            data=None,
            loss=None,
            rewind_iteration=self.rewind_iteration,
        )
        self._run = Run(settings, RunSync(None, enabled=True))
        self._round, self._recorded, self._round_start_step = 0, -1, 0
        self._started = time.perf_counter()
        self._done = self._loaded = self._fit_started = False
        self._model_masks: dict[str, torch.Tensor] = {}  # the masks of a checkpoint's model (resume)
        self._to_install: dict[str, torch.Tensor] = {}  # the masks to install at on_fit_start (resume)
        # WHY the private alias: the public register_load_state_dict_pre_hook is not in every torch >= 2.1
        self._hook = pl_module._register_load_state_dict_pre_hook(self._dense_checkpoint, with_module=True)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Remove the checkpoint-loading hook that :meth:`setup` installed."""
        if stage == "fit" and self._hook is not None:
            self._hook.remove()
            self._hook = None

    def _active(self) -> Run:
        if self._run is None:
            raise RuntimeError("LotteryTicket is used outside Trainer.fit (its setup did not run)")
        return self._run

    def _dense_checkpoint(self, module: nn.Module, state_dict: dict[str, Any], prefix: str, *_: Any) -> None:
        """Load a checkpoint of the pruned model into the unpruned one: ``<name>_orig`` becomes ``<name>``.

        Its masks are kept aside and installed at ``on_fit_start``, once Lightning has
        built the optimizer over the parameters in their unpruned order (so the
        checkpoint's optimizer state lands on the same tensors as in the
        uninterrupted run).
        """
        run = self._active()
        for name, (owner, tensor_name) in zip(run.s.names, run.s.pairs, strict=True):
            orig, mask = prefix + _layout.orig_name(name), prefix + _layout.mask_name(name)
            if orig in state_dict and mask in state_dict and not _layout.is_pruned(owner, tensor_name):
                state_dict[prefix + name] = state_dict.pop(orig)
                self._model_masks[name] = check_binary_mask(state_dict.pop(mask), f"the checkpoint's {mask}").to(
                    torch.bool, copy=True
                )

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Install a resumed run's masks; take the optimizer and scheduler that ``rewind_state`` rewinds."""
        run = self._active()
        optimizers, schedulers = trainer.optimizers, trainer.lr_scheduler_configs
        if self.rewind_state and (len(optimizers) != 1 or len(schedulers) > 1):
            raise ValueError(
                f"rewind_state=True rewinds one optimizer and at most one LR scheduler; "
                f"{type(pl_module).__name__}.configure_optimizers gave {len(optimizers)} optimizer(s) and "
                f"{len(schedulers)} scheduler(s)"
            )
        if self.rewind_state:
            scheduler = schedulers[0].scheduler if schedulers else None
            run.s = dataclasses.replace(run.s, optimizer=optimizers[0], scheduler=scheduler, rewind_state=True)
        self._fit_started = True
        self._install_resumed()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Check the rewind step against the dense round; capture the rewind point if k = 0."""
        run = self._active()
        if self._model_masks and not self._loaded:
            raise ValueError(
                "the checkpoint holds a pruned model but no LotteryTicket state (it was not saved with this "
                "callback): resume with the callback the checkpoint was saved with, or load the weights yourself"
            )
        batches = trainer.num_training_batches
        if pl_module.automatic_optimization and math.isfinite(batches):
            per_epoch = math.ceil(batches / trainer.accumulate_grad_batches)
            dense = per_epoch * self.epochs_per_round
            if not self._loaded and self.rewind_iteration > dense:
                raise ValueError(
                    f"rewind_iteration={self.rewind_iteration} lies beyond the dense round: "
                    f"epochs_per_round={self.epochs_per_round} epoch(s) of {per_epoch} optimizer steps make {dense}"
                )
            needed = per_epoch * self.max_epochs
            if 0 <= trainer.max_steps < needed:
                raise ValueError(
                    f"Trainer(max_steps={trainer.max_steps}) ends fit before the last round (it ends at step {needed})"
                )
        self._started = time.perf_counter()
        if self._loaded:  # (the round's first step comes with the state)
            return
        self._round_start_step = trainer.global_step
        run.initial = _layout.snapshot(run.model)
        run.hook.torch_lottery_round_start(
            round_index=0, model=run.model, strategy=run.s.strategy, remaining=run.figures()["remaining"]
        )
        if self.rewind_iteration == 0:
            self._capture(0)

    # -- the rounds --------------------------------------------------------------------------
    def _capture(self, step: int) -> None:
        run = self._active()
        run.capture(step)  # the weights (and with rewind_state the buffers) ...
        run.capture_state()  # ... and the optimizer and scheduler: Lightning stepped both for step k already

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Capture the rewind point at global step k of the dense round."""
        run = self._active()
        k = self.rewind_iteration
        if k > 0 and self._round == 0 and run.rewind_point is None and trainer.global_step >= k:
            self._capture(k)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """At a round's first epoch: prune with the strategy's new masks and rewind to step k."""
        run = self._active()
        round_index, offset = divmod(trainer.current_epoch, self.epochs_per_round)
        if offset or self._done or round_index != self._round + 1 or self._recorded != self._round:
            return
        self._started, self._round_start_step = time.perf_counter(), trainer.global_step
        run.hook.torch_lottery_round_start(
            round_index=round_index, model=run.model, strategy=run.s.strategy, remaining=run.figures()["remaining"]
        )
        run.prune_phase(round_index)  # the strategy's masks, checked and installed
        run.reset_phase(round_index)  # every parameter (and with rewind_state the rest) back to step k
        self._round = round_index

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """At a round's last epoch: record the round (and stop fit after the last); log the figures."""
        run = self._active()
        if trainer.current_epoch + 1 == (self._round + 1) * self.epochs_per_round and self._recorded < self._round:
            self._record(trainer)
        pl_module.log("lottery/remaining", float(run.figures()["remaining"]), on_step=False, on_epoch=True)
        pl_module.log("lottery/round", float(self._round), on_step=False, on_epoch=True)

    def _record(self, trainer: pl.Trainer, stopped: str | None = None) -> None:
        run = self._active()
        if run.rewind_point is None:
            raise ValueError(
                f"rewind_iteration={self.rewind_iteration} but the dense round ended at global step "
                f"{trainer.global_step}: lower rewind_iteration or raise epochs_per_round"
            )
        logged = {k: v for k, v in trainer.callback_metrics.items() if not k.startswith("lottery/")}
        metrics = _metrics(logged, "trainer.callback_metrics")
        metrics.setdefault("iterations", trainer.global_step - self._round_start_step)
        extra = {"epoch": trainer.current_epoch, "global_step": trainer.global_step}
        run.record(self._round, metrics, self._started, extra)
        if self._round == 0:
            run.sync.point(run.point)  # rank 0's rewind point on every rank
        self._recorded = self._round
        figures = run.history[-1]
        reason = figures.get("stopped")
        if stopped is not None:
            figures["stopped"] = stopped
        if self.verbose:
            rank_zero_info(
                f"LotteryTicket round {self._round}/{self.rounds}: {figures['remaining']:.2%} of the weights remain "
                f"({figures['remaining_weights']}/{figures['total_weights']})"
            )
        if reason is not None:
            self._done = True
            trainer.should_stop = True

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Say in the history why fit ended early, if it did (the ticket is then the current round's)."""
        run = self._active()
        if self._done or run.rewind_point is None:
            return
        if self._recorded < self._round:  # stopped inside a round: its record, as far as it trained
            self._record(trainer, stopped=f"fit ended at epoch {trainer.current_epoch} inside round {self._round}")
        else:
            run.history[-1]["stopped"] = f"fit ended before round {self._round + 1} of {self.rounds}"

    # -- the result --------------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        run = self._active()
        return {**run.config(), "rewind_state": self.rewind_state, "epochs_per_round": self.epochs_per_round}

    @property
    def ticket(self) -> Ticket:
        """The ticket: masks, rewind point and per-round history (as :func:`~torch_lottery.find_ticket` returns).

        Raises:
            RuntimeError: before fit has finished the dense round.
        """
        run = self._run
        if run is None or run.rewind_point is None or not run.history:
            raise RuntimeError("LotteryTicket.ticket: no ticket yet (trainer.fit has not finished the dense round)")
        return Ticket(run.masks(), run.point, run.history, self._config())

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Return the search's state for Lightning checkpoints: tensors, numbers, strings, lists and dicts."""
        run = self._run
        if run is None:
            return {}
        return {
            "format": FORMAT,
            "version": VERSION,
            "config": self._config(),
            "round": self._round,
            "recorded": self._recorded,
            "round_start_step": self._round_start_step,
            "masks": {n: m.cpu() for n, m in run.masks().items()},
            "rewind": run.point.state_dict() if run.rewind_point is not None else None,
            "rewind_extra": copy.deepcopy(run.rewind_extra),
            "initial": {k: v.cpu() for k, v in run.initial.items()} if run.initial is not None else None,
            "history": copy.deepcopy(run.history),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume the search from :meth:`state_dict` output (Lightning calls it with ``ckpt_path=``).

        Raises:
            ValueError: if the state is not a LotteryTicket state, comes from a run
                with other settings, or disagrees with the checkpoint's model.
        """
        run = self._active()
        source = "the checkpoint's LotteryTicket state"
        if not isinstance(state_dict, dict) or state_dict.get("format") != FORMAT:
            raise ValueError(f"{source} is not one (no format={FORMAT!r} field)")
        if type(state_dict.get("version")) is not int or state_dict["version"] != VERSION:
            raise ValueError(f"{source} has version {state_dict.get('version')!r}; this release reads {VERSION}")
        saved, current = state_dict["config"], self._config()
        differ = [
            f"{k}: {saved.get(k)!r} vs {v!r}" for k, v in current.items() if k not in _MAY_CHANGE and saved.get(k) != v
        ]
        if differ:
            raise ValueError(
                f"{source} comes from a run with other settings ({'; '.join(differ)}); resume with the same"
            )
        round_index = int(state_dict["round"])
        masks, model = {n: m.to(torch.bool, copy=True) for n, m in state_dict["masks"].items()}, self._model_masks
        wrong = [n for n in model if n not in masks or not torch.equal(model[n], masks[n])]
        if wrong or (round_index > 0 and set(model) != set(masks)):
            raise ValueError(f"{source} is at round {round_index}, but the checkpoint's model holds other masks")
        self._to_install = {n: masks[n] for n in model}  # (at round 0: masks the model had before the search)
        point = state_dict["rewind"]
        run.rewind_point = RewindPoint.from_state_dict(point, source=source).bind(run.model) if point else None
        run.rewind_extra = state_dict["rewind_extra"]
        run.initial = state_dict["initial"]
        run.history = copy.deepcopy(state_dict["history"])
        if run.history:
            run.history[-1].pop("stopped", None)  # the search goes on (the rounds decide again)
        self._round, self._recorded = round_index, int(state_dict["recorded"])
        self._round_start_step = int(state_dict["round_start_step"])
        self._done = self._recorded >= 0 and run.stop_reason(self._recorded) is not None
        self._loaded = True
        if self._fit_started:  # (strategies that restore checkpoints after setup)
            self._install_resumed()

    def _install_resumed(self) -> None:
        run, masks = self._active(), self._to_install
        source = f"{run.s.strategy_name} round {self._round} (resumed)"
        for name, (module, tensor_name) in zip(run.s.names, run.s.pairs, strict=True):
            if name in masks:
                FixedMask.apply(module, tensor_name, masks[name], source=source)
        self._to_install = {}
