"""``find_ticket``: the ticket-finding driver around the user's own training loop.

A thin front: :class:`~torch_lottery.driver.settings.Settings` checks every argument,
:class:`~torch_lottery.driver.run.Run` runs the phases (see those modules), and
``checkpoint_dir`` is created, locked and cleaned up around the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from ..strategies.base import Strategy
from ._sync import RunSync
from .instability import AutoRewind
from .progress import progress_bar
from .run import Run, directory, registered
from .settings import EvalFn, Settings, TrainFn
from .ticket import Ticket


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
    retrain: str = "rewind",
    control: str | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    seed: int = 0,
    plugins: Iterable[Any] = (),
    distributed: bool | None = None,
    data: Iterable[Any] | None = None,
    loss: Any = None,
    rewind_iteration: int | str | AutoRewind | None = None,
    progress: bool = False,
) -> Ticket:
    """Find a lottery ticket with your own training loop: train, prune, reset, repeat.

    Round 0 trains the dense model (capturing the rewind point at the strategy's
    ``rewind_iteration``); each later round asks the strategy for new masks,
    installs them, resets the weights as ``retrain`` says and trains again. A
    strategy that prunes at initialization (``when = "at_init"``, e.g.
    ``synflow``) skips the dense run: round 1 prunes the initial weights and
    trains the ticket. Stops after ``rounds`` pruning rounds, once
    ``target_remaining`` is reached, after the strategy's own ``max_rounds``, or
    when a round prunes nothing. Every argument is checked, and the strategy's
    ``validate`` run, before anything trains.

    Before each round torch's and Python's global RNGs (and NumPy's, if
    installed) are seeded from ``seed`` and the round, so two runs with the same
    seed are identical and a resumed run matches an uninterrupted one. Under
    ``torch.distributed`` call it on every rank with the same arguments: rank 0
    decides and writes files (see ``docs/distributed.md``).

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
            position and the model's buffers to the rewind iteration (needs
            ``optimizer``; goes with ``retrain="rewind"``).
        retrain (str): how each round after the first starts. ``"rewind"``
            (default): the weights (every parameter) go back to the rewind point.
            ``"lr_rewind"`` (Renda et al. 2020): the trained weights are kept and
            the learning-rate schedule is replayed from the rewind iteration
            (the driver rewinds ``scheduler=`` and the optimizer's rates and
            clears its state; needs ``scheduler=`` for ``rewind_iteration > 0``).
            ``"finetune"``: weights, optimizer and scheduler carry on.
            ``context.retrain`` tells your ``train`` which it is.
        control (str, optional): a control of Frankle et al. 2021, with any
            strategy: ``"shuffle"`` (each mask's entries permuted at random within
            its tensor), ``"invert"`` (a score-based strategy prunes its highest
            scores) or ``"reinit"`` (the pruned tensors get fresh random values
            instead of the reset).
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
        data (iterable, optional): batches ``(inputs, targets)`` (a list, a
            ``DataLoader``: re-iterable) that strategies scoring with data use
            (``snip``, ``grasp``; ``synflow`` takes its input shape from it).
        loss (callable, optional): ``loss(output, targets)``, for strategies that
            compute gradients.
        rewind_iteration (int, "auto" or AutoRewind, optional): the iteration of
            the dense run the survivors are reset to (default: the strategy's
            ``rewind_iteration`` option; set it in one place). ``"auto"`` picks the
            earliest *stable* iteration (Frankle et al. 2020): after the dense
            run, two copies are trained from each candidate iteration with other
            seeds, and the first candidate whose error barrier between them is at
            most 2% is taken; the barriers are recorded in ``history[0]
            ["instability"]`` and the pick in ``history[0]["rewind_iteration"]``.
            Needs ``data=`` (its classification error) or an
            :class:`AutoRewind` with ``error=``; see ``docs/instability.md``.
        progress (bool): show a progress bar on stderr (a widget in a notebook):
            the rounds, with the surviving weights, and the steps of the current
            round. Needs tqdm (without it: a warning, and the run goes on);
            under ``torch.distributed`` rank 0 shows it. Default False: nothing printed.

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
    settings = Settings.from_arguments(
        model,
        train,
        evaluate,
        strategy=strategy,
        strategy_options=strategy_options,
        rounds=rounds,
        target_remaining=target_remaining,
        parameters=parameters,
        optimizer=optimizer,
        scheduler=scheduler,
        rewind_state=rewind_state,
        retrain=retrain,
        control=control,
        checkpoint_dir=checkpoint_dir,
        seed=seed,
        plugins=plugins,
        distributed=distributed,
        data=data,
        loss=loss,
        rewind_iteration=rewind_iteration,
        progress=progress,
    )
    wrapper = settings.wrapper
    group = wrapper.process_group if isinstance(wrapper, nn.parallel.DistributedDataParallel) else None
    sync = RunSync(group, enabled=settings.distributed is not False)
    with progress_bar(settings.progress and sync.writer, settings.rounds) as bar:
        observers = settings.plugins if bar is None else (*settings.plugins, bar)
        with registered(observers), directory(settings.checkpoint_dir, sync):
            return Run(settings, sync, bar).run()
