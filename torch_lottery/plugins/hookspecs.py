"""The hooks of torch-lottery: where plugins register strategies and observe ticket finding.

Markers are defined here once; ``hookimpl`` is re-exported at the package root::

    from torch_lottery import hookimpl

    @hookimpl
    def torch_lottery_register_strategies(register):
        register("my_strategy", MyStrategy)

Every hook is called with keyword arguments; an implementation may accept any
subset of them (pluggy passes only the ones it names).
"""

from __future__ import annotations

import pluggy

#: The project name of the plugin system and the entry-point group plugins use.
PROJECT = "torch_lottery"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def torch_lottery_register_strategies(register):
    """Register ticket-finding strategies by calling ``register(name, strategy)``.

    Args:
        register (callable): callback owned by torch-lottery. ``name`` is a non-empty str
            without ``":"``; a name a built-in also registers stays the
            built-in's, and every strategy is reachable as
            ``"<plugin>:<name>"`` too (see :func:`torch_lottery.get_strategy`).
            ``strategy`` is a :class:`torch_lottery.Strategy` subclass (or any
            callable that takes the strategy's options as keyword arguments and
            returns an object with a ``prune(context)`` method).
    """


@hookspec
def torch_lottery_round_start(round_index, model, strategy, remaining):
    """Observe the start of a round, before anything is pruned.

    Args:
        round_index (int): 0 for the dense training run, then 1, 2, ...
        model (nn.Module): the model (do not modify it).
        strategy (Strategy): the strategy instance of the run.
        remaining (float): fraction of prunable weights surviving now.
    """


@hookspec
def torch_lottery_after_prune(round_index, model, masks, remaining):
    """Observe the new masks, right after they are installed (before the rewind).

    Args:
        round_index (int): the round (>= 1; the dense round prunes nothing).
        model (nn.Module): the pruned model, still holding its trained weights.
        masks (dict[str, Tensor]): the new masks by qualified name (read only).
        remaining (float): fraction of prunable weights surviving now.
    """


@hookspec
def torch_lottery_after_rewind(round_index, model, rewind_point):
    """Observe the model right after its weights (and state) were rewound.

    Args:
        round_index (int): the round (>= 1).
        model (nn.Module): the pruned, rewound model, about to be trained.
        rewind_point (RewindPoint): the values it was rewound to.
    """


@hookspec
def torch_lottery_round_end(round_index, model, record):
    """Observe the end of a round, after training and evaluation.

    Args:
        round_index (int): the round.
        model (nn.Module): the trained model of this round.
        record (dict): the round's figures, as stored in ``Ticket.history``:
            ``round``, ``remaining`` (fraction), ``remaining_weights``,
            ``total_weights``, ``per_tensor`` ({name: fraction}), ``metrics``
            (what the user's train and evaluate returned), ``seconds``.
    """
