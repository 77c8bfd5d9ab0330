"""The experiment runner behind ``torch-lottery run``: IMP and its controls on real data sets.

Data sets are preloaded tensors on the target device and batches are drawn by
indexing (no per-sample transforms, no ``DataLoader``). For every replicate the
runner finds a ticket with :func:`torch_lottery.find_ticket` (strategy ``imp`` by
default, or any registered strategy: pruning at initialization, early-bird, the
training-time families) and, for every round's mask, trains the chosen controls:

- ``reinit``: same mask, fresh initialization (Frankle & Carbin 2019);
- ``permute``: mask shuffled within each tensor, fresh init (Morcos et al. 2019);
- ``random_pruning``: its own run of the ``random`` strategy at the same per-round rates
  (``imp`` only: the strategy with per-round rates);
- ``sign_reinit``: same mask, fresh magnitudes with the rewind point's signs (Zhou et al. 2019);
- ``supermask``: Zhou et al.'s ``large_final_same_sign`` mask at the same per-layer sparsity,
  signed-constant weights, evaluated *without training* (strategies with a dense run only).

Without chosen controls a run takes :func:`default_controls`, the ones that fit its strategy.

Each training records the test accuracy at its end and at the early-stopping
iteration (minimum validation loss), which the LTH paper reports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from .._validation import check_bool, check_choice, check_names, check_nonneg_int, check_path, describe
from ..driver.context import round_seed
from ..driver.find import find_ticket
from ..driver.ticket import Ticket
from ..loggers import LOG_FILES, _summary_writer, loggers_for
from ..plugins.hookspecs import hookimpl
from ..plugins.manager import get_strategy
from ..pruning.magnitude import sign_preserving_supermask
from ..pruning.permutation import random_permutation
from ..pruning.utils import get_mask, named_prunable_parameters, prunable_parameters
from ..rewinding.baselines import random_reinit, sign_preserving_reinit
from ..rewinding.point import RewindPoint
from ..training import sparse_training
from .progress import bar

if TYPE_CHECKING:
    from .resume import ReplicateState, RunState

#: Strategies whose options are IMP's (per-round rates): the paper's setup and ``random_pruning`` fit them.
RATED = ("imp",)
#: The controls a run can train next to the winning ticket.
CONTROLS = ("reinit", "permute", "random_pruning", "sign_reinit", "supermask")
#: When a strategy prunes (its ``when``) if it has no dense run to rewind into: ``supermask`` does not fit it.
NO_DENSE_RUN = ("at_init", "during_training")
#: Every kind of result: the winning ticket and the controls.
KINDS = ("ticket",) + CONTROLS
OPTIMIZERS = ("adam", "sgd")
METRICS = ("test_accuracy", "test_accuracy_at_early_stop", "early_stop_iteration", "test_loss")


@dataclasses.dataclass
class RunConfig:
    """Settings of one ``torch-lottery run`` (None means: the data set's or model's default).

    Args:
        dataset: one of :data:`torch_lottery.experiments.data.DATASETS`.
        model: a name of :data:`torch_lottery.experiments.models.MODELS` or ``torchvision:<name>``.
        rounds: pruning rounds after the dense run.
        epochs: training epochs per round.
        batch_size: training batch size; default (for every training and IMP setting
            below): the LTH paper's setup for the model.
        optimizer: one of :data:`OPTIMIZERS`.
        lr: learning rate.
        momentum: SGD momentum.
        weight_decay: weight decay.
        rate: IMP's pruning rate per round.
        scope: IMP's ``"local"`` or ``"global"`` pooling.
        output_rate: the output layer's rate (e.g. half of ``rate``).
        rewind_iteration: the iteration the ticket rewinds to.
        strategy: the registered strategy that finds the ticket (default ``"imp"``).
        strategy_options: its options; for ``imp`` they go over the paper's setup, for
            any other strategy they are its options as given (validated by it). A
            strategy that takes ``total_steps`` (the training-time families) gets
            the run's length in steps unless it is given.
        controls: which of :data:`CONTROLS` to run.
        replicates: independent runs (seeds ``seed``, ``seed + 1``, ...).
        seed: the first seed.
        device: ``"cpu"`` or ``"cuda"`` (the data stay resident there).
        data_root: where the torchvision data sets are.
        download: whether to download them.
        validation: training examples held out for early stopping.
        evals_per_epoch: validation evaluations per epoch (for the early-stopping iteration).
        progress: show progress bars.
        log: loggers of :data:`torch_lottery.loggers.LOG_FILES` (``"jsonl"``, ``"csv"``,
            ``"tensorboard"``) that get every ``find_ticket`` call's records, tagged with
            ``replicate``, ``seed`` and ``kind``; they write into ``run_experiment``'s ``log_dir``.
    """

    dataset: str = "mnist1d"
    model: str = "lenet300100"
    rounds: int = 15
    epochs: int | None = None
    batch_size: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    rate: float | None = None
    scope: str | None = None
    output_rate: float | None = None
    rewind_iteration: int | None = None
    strategy: str = "imp"
    strategy_options: dict[str, Any] | None = None
    controls: tuple[str, ...] = ("reinit", "random_pruning")
    replicates: int = 2
    seed: int = 0
    device: str = "cpu"
    data_root: str | None = None
    download: bool = False
    validation: int | None = None
    evals_per_epoch: int = 1
    progress: bool = True
    log: tuple[str, ...] = ()

    def check(self) -> None:
        """Validate every field, raising ``TypeError``/``ValueError`` naming it."""
        from .data import DATASETS

        check_choice(self.dataset, DATASETS, "dataset")
        if not isinstance(self.model, str) or not self.model:
            raise TypeError(f"model must be a model name, got {describe(self.model)}")
        check_nonneg_int(self.rounds, "rounds")
        for name in ("epochs", "batch_size", "rewind_iteration", "validation"):
            value = getattr(self, name)
            if value is not None:
                check_nonneg_int(value, name)
        for name in ("epochs", "batch_size"):
            if getattr(self, name) == 0:
                raise ValueError(f"{name}=0 must be at least 1")
        if self.optimizer is not None:
            check_choice(self.optimizer, OPTIMIZERS, "optimizer")
        for name in ("lr", "momentum", "weight_decay", "rate", "output_rate"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0
            ):
                raise ValueError(f"{name}={value!r} must be a finite number >= 0")
        for name in ("rate", "output_rate"):
            value = getattr(self, name)
            if value is not None and value >= 1:
                raise ValueError(f"{name}={value} must be below 1")
        if self.scope is not None:
            check_choice(self.scope, ("local", "global"), "scope")
        check_names(self.controls, "controls", CONTROLS)
        check_names(self.log, "log", LOG_FILES)
        if "tensorboard" in self.log:
            _summary_writer()  # ImportError (saying what to install) before anything runs
        check_bool(self.download, "download")
        check_bool(self.progress, "progress")
        if self.data_root is not None:
            check_path(self.data_root, "data_root")
        from ..plugins.manager import get_strategy

        if not isinstance(self.strategy, str):
            raise TypeError(f"strategy must be a registered strategy name, got {describe(self.strategy)}")
        factory = get_strategy(self.strategy)  # StrategyError (naming the known ones) on an unknown name
        if self.strategy_options is not None and not isinstance(self.strategy_options, dict):
            raise TypeError(f"strategy_options must be a dict, got {describe(self.strategy_options)}")
        rated = self.strategy in RATED
        if "random_pruning" in self.controls and not rated:
            raise ValueError(
                f"controls='random_pruning' repeats the per-round rates of {sorted(RATED)}; strategy "
                f"{self.strategy!r} has none: use 'permute' (the ticket's per-layer density, positions at random)"
            )
        when = getattr(factory, "when", "between_rounds")
        if "supermask" in self.controls and when in NO_DENSE_RUN:
            raise ValueError(
                f"controls='supermask' masks the dense run's trained weights; strategy {self.strategy!r} "
                f"(when={when!r}) has no dense run: use 'reinit', 'permute' or 'sign_reinit'"
            )
        if not rated and any(getattr(self, n) is not None for n in ("rate", "scope", "output_rate")):
            given = [n for n in ("rate", "scope", "output_rate") if getattr(self, n) is not None]
            raise ValueError(
                f"{', '.join(given)} set IMP's rates; strategy {self.strategy!r} takes its options "
                "through strategy_options"
            )
        if self.strategy_options:
            self.check_strategy_options()
        check_nonneg_int(self.replicates, "replicates")
        if self.replicates == 0:
            raise ValueError("replicates=0 must be at least 1")
        check_nonneg_int(self.seed, "seed")
        check_nonneg_int(self.evals_per_epoch, "evals_per_epoch")
        if not isinstance(self.device, str):
            raise TypeError(f"device must be a str such as 'cpu' or 'cuda', got {describe(self.device)}")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device={self.device!r} is not cpu or cuda")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device={self.device!r} but CUDA is not available on this machine")

    def check_strategy_options(self, label: Callable[[str], str] | None = None) -> None:
        """Build the strategy with ``strategy_options`` once: its own checks, for a run of any length.

        Args:
            label (callable): ``label(key)`` names option ``key`` in errors (default
                ``strategy_options['key']``; the command line says ``--strategy-option key``).

        Raises:
            StrategyError: if the strategy is not registered (listing the names that are).
            TypeError: for an option the strategy does not take, naming it and the options it takes.
            TypeError, ValueError: for a value the strategy refuses: its own message, after the
                option it blames (when one option alone is at fault).

        Examples:
            >>> RunConfig(strategy="snip", strategy_options={"remaining": 0.2}).check_strategy_options()
            >>> RunConfig(strategy="snip", strategy_options={"remaining": 2.0}).check_strategy_options()
            Traceback (most recent call last):
            ...
            ValueError: strategy_options['remaining']=2.0: remaining=2.0 must be in (0, 1]
        """
        from ..driver.settings import _resolve_strategy

        name = label or (lambda key: f"strategy_options[{key!r}]")
        factory = get_strategy(self.strategy)
        given = dict(self.strategy_options or {})
        options = self._options_for(factory, steps=10**12)
        try:
            accepted: Mapping[str, inspect.Parameter] | None = inspect.signature(factory).parameters
        except (TypeError, ValueError):
            accepted = None
        if accepted is not None and not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
            takes = [k for k, p in accepted.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
            for key, value in given.items():
                if key not in takes:
                    raise TypeError(
                        f"{name(key)}={describe(value)}: strategy {self.strategy!r} has no option {key!r} "
                        f"(its options: {', '.join(takes) or 'none'})"
                    )
        try:
            _resolve_strategy(self.strategy, options)
        except (TypeError, ValueError):
            extra = {k: v for k, v in options.items() if k not in given}  # filled in, e.g. total_steps
            if _builds(factory, extra):  # with its defaults it builds: blame the option that fails on its own
                for key, value in given.items():
                    try:
                        factory(**extra, **{key: value})
                    except (TypeError, ValueError) as alone:
                        raise type(alone)(f"{name(key)}={describe(value)}: {alone}") from None
            raise

    def _options_for(self, factory: Any, steps: int) -> dict[str, Any]:
        """The options a non-IMP strategy gets: ``strategy_options``, plus ``total_steps`` if it takes one."""
        options = dict(self.strategy_options or {})
        accepted: Mapping[str, Any]
        try:
            accepted = inspect.signature(factory).parameters
        except (TypeError, ValueError):
            accepted = {}
        if "total_steps" in accepted and "total_steps" not in options:
            options["total_steps"] = steps
        return options

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a JSON-serializable dict."""
        out = dataclasses.asdict(self)
        out["controls"] = list(self.controls)
        out["log"] = list(self.log)
        return out


def _builds(factory: Any, options: dict[str, Any]) -> bool:
    try:
        factory(**options)
    except (TypeError, ValueError):
        return False
    return True


def default_controls(strategy: str) -> tuple[str, ...]:
    """Return the controls that fit ``strategy`` when none are chosen.

    ``imp``: ``reinit`` and ``random_pruning``, the LTH paper's. Any other strategy
    has no per-round rates for ``random_pruning`` to repeat, so ``permute`` (the
    ticket's per-layer density, positions at random) takes its place beside
    ``reinit``: Frankle et al. 2021's sanity checks for pruning at initialization,
    and the static random mask at the same density that training-time methods are
    measured against. (``sign_reinit`` fits every strategy and ``supermask`` those
    with a dense run; they are there to be chosen.)

    Args:
        strategy (str): a registered strategy name.

    Returns:
        tuple: control names of :data:`CONTROLS`.

    Raises:
        StrategyError: if ``strategy`` is not registered (listing the names that are).

    Examples:
        >>> default_controls("imp")
        ('reinit', 'random_pruning')
        >>> default_controls("snip")
        ('reinit', 'permute')
    """
    get_strategy(strategy)
    return ("reinit", "random_pruning") if strategy in RATED else ("reinit", "permute")


@dataclasses.dataclass
class Setup:
    """Resolved training and pruning settings of a run."""

    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    momentum: float
    weight_decay: float
    strategy_options: dict[str, Any]


DATASET_EPOCHS = {"mnist1d": 30, "mnist": 5, "fashion-mnist": 5, "cifar10": 20}
DATASET_VALIDATION = {"mnist1d": 500, "mnist": 5000, "fashion-mnist": 5000, "cifar10": 5000}


def resolve_setup(config: RunConfig, model: nn.Module) -> Setup:
    """Merge the paper's setup for the model with the explicit settings of ``config``."""
    from .models import PAPER_SETUPS, output_layer_name, paper_strategy_options

    paper = PAPER_SETUPS.get(config.model, {})
    options = paper_strategy_options(config.model, model)
    if config.strategy not in RATED:  # another family: its own options, as given
        options = {}
    else:
        options.update(config.strategy_options or {})
    if config.rate is not None:
        options["rate"] = config.rate  # the multipliers keep the paper's per-layer ratios
    if config.scope is not None:
        options["scope"] = config.scope
    if config.output_rate is not None:
        rate = options.get("rate", 0.2)
        options.setdefault("rate_multipliers", {})[output_layer_name(model)] = (
            config.output_rate / rate if rate else 0.0
        )
    if config.rewind_iteration is not None:
        options["rewind_iteration"] = config.rewind_iteration
    return Setup(
        epochs=config.epochs if config.epochs is not None else DATASET_EPOCHS.get(config.dataset, 10),
        batch_size=config.batch_size or paper.get("batch_size", 60),
        optimizer=config.optimizer or paper.get("optimizer", "adam"),
        lr=config.lr if config.lr is not None else paper.get("lr", 1.2e-3),
        momentum=config.momentum if config.momentum is not None else paper.get("momentum", 0.9),
        weight_decay=config.weight_decay if config.weight_decay is not None else paper.get("weight_decay", 0.0),
        strategy_options=options,
    )


class Trainer:
    """Train and evaluate a model on preloaded tensors (one object per run)."""

    def __init__(self, data, setup: Setup, evals_per_epoch: int, progress: bool) -> None:
        self.data = data
        self.setup = setup
        self.evals_per_epoch = max(1, evals_per_epoch)
        self.progress = progress

    def _optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        s = self.setup
        if s.optimizer == "sgd":
            return torch.optim.SGD(model.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
        return torch.optim.Adam(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)

    @torch.no_grad()
    def _loss_accuracy(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        was_training = model.training
        model.eval()
        loss = correct = 0.0
        for start in range(0, len(x), 4096):
            out = model(x[start : start + 4096])
            loss += float(nn.functional.cross_entropy(out, y[start : start + 4096], reduction="sum"))
            correct += float((out.argmax(1) == y[start : start + 4096]).sum())
        model.train(was_training)
        return loss / max(len(x), 1), correct / max(len(x), 1)

    def scoring_data(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The training set as batches in order (views, no copies): ``data`` for strategies that score with it."""
        x, y, size = self.data.train_x, self.data.train_y, self.setup.batch_size
        return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Return the test loss and accuracy."""
        loss, accuracy = self._loss_accuracy(model, self.data.test_x, self.data.test_y)
        return {"test_loss": loss, "test_accuracy": accuracy}

    def steps(self) -> int:
        """Return the optimizer steps of one training run (epochs times batches per epoch)."""
        return self.setup.epochs * math.ceil(len(self.data.train_x) / self.setup.batch_size)

    def train(
        self,
        model: nn.Module,
        context=None,
        title: str = "train",
        optimizer: torch.optim.Optimizer | None = None,
    ) -> dict[str, Any]:
        """Train ``model`` for the configured epochs; track the early-stopping iteration.

        A fresh optimizer per call, unless ``optimizer`` (one that lives across the
        run, e.g. for a strategy that moves masks while training) is given; the
        driver then counts its steps, so ``context.step()`` is not called.
        """
        counted = optimizer is not None
        # A fresh optimizer over masks that stay fixed: the ticket trains through its survivors
        # (sparse_training chooses per tensor; dense early rounds stay on the masked path).
        fast = not counted and (context is None or not context.reads_weights)
        with sparse_training(model) if fast else contextlib.nullcontext():
            return self._train(model, context, title, optimizer or self._optimizer(model), counted)

    def _train(
        self, model: nn.Module, context: Any, title: str, optimizer: torch.optim.Optimizer, counted: bool
    ) -> dict[str, Any]:
        from .data import batches

        s, d = self.setup, self.data
        generator = torch.Generator(device="cpu").manual_seed(int(torch.randint(0, 2**62, (1,))))
        per_epoch = math.ceil(len(d.train_x) / s.batch_size)
        eval_points = {max(1, round(per_epoch * (i + 1) / self.evals_per_epoch)) for i in range(self.evals_per_epoch)}
        best = {"val_loss": math.inf, "iteration": 0, "test_accuracy": float("nan")}
        iteration = 0
        model.train()
        with bar(self.progress, total=s.epochs, desc=title, unit="epoch", leave=False) as epochs:
            for _ in range(s.epochs):
                for step, (xb, yb) in enumerate(batches(d.train_x, d.train_y, s.batch_size, generator), start=1):
                    optimizer.zero_grad(set_to_none=True)
                    loss = nn.functional.cross_entropy(model(xb), yb)
                    loss.backward()
                    optimizer.step()
                    iteration += 1
                    if context is not None and not counted:
                        context.step()
                    if step in eval_points and len(d.val_x):
                        val_loss, _ = self._loss_accuracy(model, d.val_x, d.val_y)
                        if val_loss < best["val_loss"]:
                            best = {
                                "val_loss": val_loss,
                                "iteration": iteration,
                                "test_accuracy": self.evaluate(model)["test_accuracy"],
                            }
                epochs.update()
                epochs.set_postfix_str(f"loss {loss.item():.3f}")
        return {
            "train_loss": loss.item(),
            "iterations": iteration,
            "early_stop_iteration": best["iteration"],
            "val_loss_min": best["val_loss"] if math.isfinite(best["val_loss"]) else None,
            "test_accuracy_at_early_stop": best["test_accuracy"],
        }


class _Recorder:
    """Observer plugin: keeps each round's masks and the dense run's trained weights.

    ``keep(round_index, recorded)``, if given, gets what each round recorded (a resumable run
    keeps it in its state); :meth:`restore` takes back what an earlier process kept.
    """

    def __init__(self, on_round: Callable[[], None] | None = None, keep: Callable[[int, dict], None] | None = None):
        self.masks: dict[int, dict[str, torch.Tensor]] = {}
        #: the remaining fraction of every prunable tensor at the end of each round (round 0 too)
        self.layers: dict[int, dict[str, float]] = {}
        self.dense: dict[str, torch.Tensor] | None = None
        self.on_round = on_round
        self.keep = keep

    def restore(self, rounds: Mapping[int, Mapping[str, Any]]) -> None:
        """Take back the rounds an earlier process recorded (``{round: what keep got}``), where this one did not."""
        for round_index, recorded in rounds.items():
            if round_index not in self.layers:
                self.layers[round_index] = dict(recorded["layers"])
                if round_index == 0:
                    self.dense = dict(recorded["dense"])
                else:
                    self.masks[round_index] = dict(recorded["masks"])

    @hookimpl
    def torch_lottery_round_end(self, round_index, model):
        self.layers[round_index] = {
            q: float(mask.count_nonzero()) / max(mask.numel(), 1)
            for q, m, n in named_prunable_parameters(model)
            for mask in (get_mask(m, n),)
        }
        if round_index == 0:
            self.dense = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:  # the masks the round ended with (a training-time strategy moves them while it trains)
            self.masks[round_index] = {q: get_mask(m, n).bool().clone() for q, m, n in named_prunable_parameters(model)}
        if self.keep is not None:
            kept = {"dense": self.dense} if round_index == 0 else {"masks": self.masks[round_index]}
            self.keep(round_index, {"layers": self.layers[round_index], **kept})
        if self.on_round is not None:
            self.on_round()


def _record(kind: str, round_index: int, remaining: float, metrics: dict[str, Any]) -> dict[str, Any]:
    return {"kind": kind, "round": round_index, "remaining": remaining, **{m: metrics.get(m) for m in METRICS}}


def _strategy_history(ticket: Ticket, kind: str) -> list[dict[str, Any]]:
    return [_record(kind, r["round"], r["remaining"], r["metrics"]) for r in ticket.history]


def run_replicate(
    config: RunConfig,
    data,
    seed: int,
    build: Callable[[], nn.Module],
    loggers: Sequence[Any] = (),
    state: ReplicateState | None = None,
) -> list[dict[str, Any]]:
    """Run IMP and the controls for one seed; return one record per (kind, round).

    ``loggers`` observe every ``find_ticket`` call, tagged with ``replicate``, ``seed`` and ``kind``.
    With ``state`` (a resumable ``torch-lottery run``) the ticket and random pruning
    resume from their checkpoint folders and finished control trainings are not trained again.
    """
    torch.manual_seed(seed)
    model = build()
    setup = resolve_setup(config, model)
    trainer = Trainer(data, setup, config.evals_per_epoch, config.progress)
    factory = get_strategy(config.strategy)
    options = _ticket_options(config, setup, factory, trainer)
    once = getattr(factory, "when", "between_rounds") == "during_training" or getattr(factory, "needs_optimizer", False)
    optimizer = trainer._optimizer(model) if once else None  # one optimizer the driver sees (it resets regrown state)
    rounds_total = 1 if getattr(factory, "when", "") == "during_training" else config.rounds
    records: list[dict[str, Any]] = []
    tags = {"replicate": seed - config.seed, "seed": seed}
    with bar(config.progress, total=rounds_total + 1, desc=f"seed {seed}: ticket", unit="round") as rounds:
        recorder = _Recorder(rounds.update, keep=state.keep_round if state is not None else None)
        ticket = find_ticket(
            model,
            lambda m, c: trainer.train(m, c, "ticket", optimizer=optimizer),
            trainer.evaluate,
            strategy=config.strategy,
            strategy_options=options,
            data=trainer.scoring_data(),
            loss=nn.functional.cross_entropy,
            rounds=rounds_total,
            optimizer=optimizer,
            seed=seed,
            plugins=[recorder, *(log.with_tags(**tags, kind="ticket") for log in loggers)],
            checkpoint_dir=state.ticket_dir if state is not None else None,
        )
    if state is not None:  # the rounds an earlier, interrupted process recorded
        recorder.restore(state.recorded())
    for record in _strategy_history(ticket, "ticket"):  # with the remaining fraction of each tensor
        layers = recorder.layers.get(record["round"])
        records.append(record if layers is None else {**record, "layers": layers})

    if "random_pruning" in config.controls:
        options = {k: v for k, v in setup.strategy_options.items() if k != "criterion"}
        torch.manual_seed(seed)
        with bar(config.progress, total=config.rounds + 1, desc=f"seed {seed}: random pruning", unit="round") as rounds:
            other = find_ticket(
                build(),
                lambda m, c: trainer.train(m, c, "random pruning"),
                trainer.evaluate,
                strategy="random",
                strategy_options=options,
                data=trainer.scoring_data(),
                loss=nn.functional.cross_entropy,
                rounds=config.rounds,
                seed=seed,
                plugins=[_Recorder(rounds.update), *(log.with_tags(**tags, kind="random_pruning") for log in loggers)],
                checkpoint_dir=state.random_pruning_dir if state is not None else None,
            )
        records += [r for r in _strategy_history(other, "random_pruning") if r["round"] > 0]

    trained = [c for c in ("reinit", "permute", "sign_reinit", "supermask") if c in config.controls]
    if not trained:
        return records
    remaining = {r["round"]: r["remaining"] for r in ticket.history}
    with bar(
        config.progress, total=len(recorder.masks) * len(trained), desc=f"seed {seed}: controls", unit="model"
    ) as controls:
        for round_index, masks in sorted(recorder.masks.items()):
            for control in trained:
                done = state.control(control, round_index) if state is not None else None
                if done is not None:  # trained by an earlier, interrupted process
                    records.append(done)
                    controls.update()
                    continue
                control_seed = round_seed(seed, round_index, KINDS.index(control))
                torch.manual_seed(control_seed)
                generator = torch.Generator().manual_seed(control_seed)
                net = build()
                if control == "supermask":
                    net.load_state_dict(cast(dict[str, torch.Tensor], recorder.dense))  # set at round 0
                    metrics = _supermask(net, masks, ticket.rewind, trainer)
                else:
                    Ticket(masks, ticket.rewind).apply(net)
                    pairs = prunable_parameters(net)
                    if control == "permute":
                        for module, name in pairs:
                            random_permutation(module, name, generator=generator)
                    if control in ("reinit", "permute"):
                        random_reinit(net, pairs, generator=generator)
                    else:
                        sign_preserving_reinit(
                            net, RewindPoint(dict(ticket.rewind.items())), pairs, generator=generator
                        )
                    metrics = trainer.train(net, title=control)
                    metrics.update(trainer.evaluate(net))
                records.append(_record(control, round_index, remaining[round_index], metrics))
                if state is not None:
                    state.save_control(records[-1])
                controls.update()
    return records


def _ticket_options(config: RunConfig, setup: Setup, factory: Any, trainer: Trainer) -> dict[str, Any]:
    """The options the ticket's strategy gets: the paper's setup (``imp``), or its own plus the run length."""
    return setup.strategy_options if config.strategy in RATED else config._options_for(factory, trainer.steps())


def versions() -> dict[str, str]:
    """Return the versions a result depends on: torch-lottery, torch, torchvision (if installed), Python, platform.

    Examples:
        >>> sorted(versions())[:3]
        ['platform', 'python', 'torch']
    """
    import platform
    from importlib import metadata

    from .. import __version__

    out = {"torch-lottery": __version__, "torch": torch.__version__}
    try:
        out["torchvision"] = metadata.version("torchvision")
    except metadata.PackageNotFoundError:
        pass
    out.update(python=platform.python_version(), platform=platform.platform())
    return out


def strategy_record(config: RunConfig, setup: Setup, trainer: Trainer) -> dict[str, Any]:
    """Return what results.json says about the strategy: its name, resolved options and where it comes from.

    ``options`` are the strategy's own, defaults filled in (its ``options()``), as
    the ticket records them; ``plugin``, ``distribution`` and ``version`` are
    those of ``torch-lottery strategies``.
    """
    from ..driver.settings import _resolve_strategy
    from ..plugins.manager import strategy_entries

    factory = get_strategy(config.strategy)
    _, instance = _resolve_strategy(config.strategy, _ticket_options(config, setup, factory, trainer))
    options = instance.options() if callable(getattr(instance, "options", None)) else {}
    entry = next((e for e in strategy_entries() if config.strategy in (e.name, e.qualified_name)), None)
    return {
        "name": config.strategy,
        "options": json.loads(json.dumps(options, default=repr)),  # JSON all the way down
        "plugin": entry.plugin if entry else None,
        "distribution": entry.distribution if entry else None,
        "version": entry.version if entry else None,
    }


def _supermask(net: nn.Module, masks, rewind: RewindPoint, trainer: Trainer) -> dict[str, Any]:
    """Zhou et al.'s supermask at the ticket's per-tensor sparsity, signed constants, no training.

    ``net`` holds the dense run's trained weights; the mask keeps the largest of the
    weights whose trained sign equals their rewind-point sign.
    """
    named = named_prunable_parameters(net)
    prunable = {q for q, _, _ in named}
    RewindPoint({k: v for k, v in rewind.items() if k not in prunable}, model=net).restore()
    point = RewindPoint({k: v for k, v in rewind.items() if k in prunable}, model=net)
    for qualified, module, name in named:
        pruned = int(masks[qualified].numel() - masks[qualified].count_nonzero())
        sign_preserving_supermask(module, name, amount=pruned, rewind_point=point, values="signed_constant")
    metrics = trainer.evaluate(net)
    return {**metrics, "early_stop_iteration": 0, "test_accuracy_at_early_stop": metrics["test_accuracy"]}


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Aggregate replicate records into mean, spread and range per (kind, round)."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["kind"], record["round"]), []).append(record)
    rows = []
    for (kind, round_index), group in sorted(groups.items(), key=lambda kv: (KINDS.index(kv[0][0]), kv[0][1])):
        row: dict[str, Any] = {
            "kind": kind,
            "round": round_index,
            "n": len(group),
            "remaining": statistics.fmean(r["remaining"] for r in group),
        }
        for metric in METRICS:
            values = [float(r[metric]) for r in group if r.get(metric) is not None and not math.isnan(float(r[metric]))]
            row[f"{metric}_mean"] = statistics.fmean(values) if values else None
            row[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0 if values else None
            row[f"{metric}_min"] = min(values) if values else None
            row[f"{metric}_max"] = max(values) if values else None
        rows.append(row)
    return rows


def run_experiment(
    config: RunConfig, log_dir: str | os.PathLike | None = None, state: RunState | None = None
) -> dict[str, Any]:
    """Run ``config`` (all replicates) and return its result.

    The result: ``config`` (the settings), ``setup`` (the resolved training setup),
    ``strategy`` (:func:`strategy_record`), ``versions`` (:func:`versions`), ``data``
    (the data set's sizes), ``records`` (one per kind, round and seed; the ticket's
    carry ``layers``, the remaining fraction of each prunable tensor), ``summary``
    (:func:`summarize`) and ``seconds``. ``log_dir``: where the loggers of
    ``config.log`` write (needed when it names any). ``state`` (see
    :mod:`torch_lottery.experiments.resume`) keeps every finished training, so that
    a run interrupted at any point continues where it stopped.
    """
    from .data import load_dataset
    from .models import build_model

    config.check()
    loggers = []
    if config.log:  # every path checked before anything runs
        if log_dir is None:
            raise ValueError(f"log={list(config.log)} needs log_dir=<folder> for the log files")
        loggers = loggers_for(config.log, log_dir)
    started = time.perf_counter()
    validation = config.validation if config.validation is not None else DATASET_VALIDATION.get(config.dataset, 5000)
    data = load_dataset(
        config.dataset, root=config.data_root, download=config.download, validation=validation, seed=config.seed
    ).to(config.device)

    def build() -> nn.Module:
        return build_model(config.model, data.input_shape, data.num_classes).to(config.device)

    torch.manual_seed(config.seed)
    resolved = resolve_setup(config, build())
    setup = dataclasses.asdict(resolved)
    strategy = strategy_record(config, resolved, Trainer(data, resolved, config.evals_per_epoch, False))
    if state is not None:
        state.begin()  # data and model are ready: the run really starts
    records: list[dict[str, Any]] = []
    try:
        for replicate in range(config.replicates):
            seed = config.seed + replicate
            done = state.finished(seed) if state is not None else None  # (a replicate an earlier process finished)
            if done is None:
                replicate_state = state.replicate(seed) if state is not None else None
                done = run_replicate(config, data, seed, build, loggers, replicate_state)
                if state is not None:
                    state.finish(seed, done)
            records += done
    finally:
        for logger in loggers:
            logger.close()
    return {
        "config": config.to_dict(),
        "setup": setup,
        "strategy": strategy,
        "versions": versions(),
        "data": {
            "name": data.name,
            "train": len(data.train_x),
            "validation": len(data.val_x),
            "test": len(data.test_x),
            "input_shape": list(data.input_shape),
            "classes": data.num_classes,
        },
        "records": records,
        "summary": summarize(records),
        "seconds": round(time.perf_counter() - started, 2),
    }
