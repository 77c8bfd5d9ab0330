"""One test per hook of torch_lottery.plugins.hookspecs, plus the ``plugins=`` lifetime."""

from __future__ import annotations

import copy
import inspect

import pytest
import torch

import torch_lottery as tl
from torch_lottery import Strategy, find_ticket, hookimpl
from torch_lottery.plugins import hookspecs
from torch_lottery.plugins.manager import get_plugin_manager, get_strategy, list_strategies, strategy_entries
from torch_lottery.strategies import IterativeMagnitude

HOOKS = (
    "torch_lottery_register_strategies",
    "torch_lottery_round_start",
    "torch_lottery_after_prune",
    "torch_lottery_after_rewind",
    "torch_lottery_round_end",
)
PRUNED = ("0.weight", "2.weight")  # the prunable weights of the tiny model


# -- helpers ---------------------------------------------------------------------------------------
def _masks(model):
    buffers = dict(model.named_buffers())
    return {n: buffers[n + "_mask"].bool().clone() for n in PRUNED if n + "_mask" in buffers}


def _orig(model, qualified):
    """The stored (unmasked) values of a parameter: ``<name>_orig`` once pruned."""
    params = dict(model.named_parameters())
    return params.get(qualified + "_orig", params.get(qualified))


def _remaining(masks):
    return sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())


def _run(model, train, via, observers, register_plugin, **kwargs):
    """Run imp for 2 rounds with ``observers`` registered either per run or globally."""
    kwargs.setdefault("strategy", "imp")
    kwargs.setdefault("rounds", 2)
    if via == "plugins":
        ticket = find_ticket(model, train, plugins=observers, **kwargs)
        pm = get_plugin_manager()
        for observer in observers:
            assert not pm.is_registered(observer), "a plugins= plugin must be unregistered after the run"
        return ticket
    for observer in observers:
        register_plugin(observer)
    return find_ticket(model, train, **kwargs)


class RoundIndexOnly:
    """Implements every event hook with just ``round_index`` (a subset of the arguments)."""

    def __init__(self):
        self.calls = []

    @hookimpl
    def torch_lottery_round_start(self, round_index):
        self.calls.append(("round_start", round_index))

    @hookimpl
    def torch_lottery_after_prune(self, round_index):
        self.calls.append(("after_prune", round_index))

    @hookimpl
    def torch_lottery_after_rewind(self, round_index):
        self.calls.append(("after_rewind", round_index))

    @hookimpl
    def torch_lottery_round_end(self, round_index):
        self.calls.append(("round_end", round_index))

    def of(self, hook):
        return [r for h, r in self.calls if h == hook]


# -- the hooks ---------------------------------------------------------------------------------------
def test_hookspecs_declares_the_five_hooks_and_the_manager_registers_their_specs():
    declared = sorted(n for n, f in vars(hookspecs).items() if n.startswith("torch_lottery_") and inspect.isfunction(f))
    assert declared == sorted(HOOKS)
    pm = get_plugin_manager()
    for name in HOOKS:
        assert getattr(pm.hook, name).spec is not None, name


# -- torch_lottery_register_strategies --------------------------------------------------------------
class DropOnePerRound(Strategy):
    """Prune the first surviving entry of every tensor, each round."""

    def prune(self, context):
        out = {}
        for name in context.names:
            mask = context.masks[name].clone().reshape(-1)
            alive = mask.nonzero()
            if len(alive):
                mask[alive[0]] = False
            out[name] = mask.reshape(context.masks[name].shape)
        return out


class ToyPlugin:
    @hookimpl
    def torch_lottery_register_strategies(self, register):
        register("toy_drop_one", DropOnePerRound)


def make_drop_one(**options):
    """A plain factory function is a valid strategy too (any callable returning an object with prune)."""
    return DropOnePerRound(**options)


class FactoryPlugin:
    @hookimpl
    def torch_lottery_register_strategies(self, register):
        register("toy_factory", make_drop_one)


def test_torch_lottery_register_strategies(register_plugin, tiny_model, train_fn):
    assert "toy_drop_one" not in list_strategies()
    register_plugin(ToyPlugin(), name="toy_plugin")
    register_plugin(FactoryPlugin(), name="factory_plugin")

    assert {"toy_drop_one", "toy_factory", "imp", "one_shot", "random"} <= set(list_strategies())
    assert get_strategy("toy_drop_one") is DropOnePerRound
    assert get_strategy("toy_factory") is make_drop_one
    entries = {e.name: e for e in strategy_entries()}
    assert entries["toy_drop_one"].plugin == "toy_plugin"
    assert entries["toy_drop_one"].strategy is DropOnePerRound
    assert entries["toy_factory"].plugin == "factory_plugin"
    assert entries["imp"].plugin == "torch_lottery.strategies.imp"
    assert [e.name for e in strategy_entries()] == sorted(entries)

    # the registered name works end to end in the driver
    ticket = find_ticket(tiny_model, train_fn, strategy="toy_drop_one", rounds=2)
    assert ticket.config["strategy"] == "toy_drop_one"
    assert ticket.total_weights - ticket.remaining_weights == 2 * len(PRUNED)

    # unregistering the plugin removes its strategy again
    get_plugin_manager().unregister(name="toy_plugin")
    assert "toy_drop_one" not in list_strategies()
    with pytest.raises(tl.StrategyError, match="toy_drop_one"):
        get_strategy("toy_drop_one")


# -- torch_lottery_round_start ----------------------------------------------------------------------
@pytest.mark.parametrize("via", ["plugins", "manager"])
def test_torch_lottery_round_start(via, register_plugin, tiny_model, train_fn):
    class Observer:
        def __init__(self):
            self.calls = []

        @hookimpl
        def torch_lottery_round_start(self, round_index, model, strategy, remaining):
            self.calls.append(
                {
                    "round_index": round_index,
                    "model": model,
                    "strategy": strategy,
                    "remaining": remaining,
                    "masks": _masks(model),
                }
            )

    observer, subset = Observer(), RoundIndexOnly()
    strategy = IterativeMagnitude(rate=0.5)
    ticket = _run(tiny_model, train_fn, via, [observer, subset], register_plugin, strategy=strategy)

    assert [c["round_index"] for c in observer.calls] == [0, 1, 2]
    assert subset.of("round_start") == [0, 1, 2]
    for call in observer.calls:
        assert call["model"] is tiny_model
        assert call["strategy"] is strategy
    # round 0: nothing is pruned yet
    assert observer.calls[0]["masks"] == {}
    assert observer.calls[0]["remaining"] == 1.0
    # later rounds start before pruning: remaining is the previous round's figure and the model's masks
    for call in observer.calls[1:]:
        r = call["round_index"]
        assert call["remaining"] == pytest.approx(ticket.history[r - 1]["remaining"])
        if call["masks"]:
            assert call["remaining"] == pytest.approx(_remaining(call["masks"]))
    assert observer.calls[1]["remaining"] == 1.0
    assert observer.calls[2]["remaining"] < 1.0


def test_torch_lottery_round_start_gets_the_named_strategy_instance(register_plugin, tiny_model, train_fn):
    seen = []

    class Observer:
        @hookimpl
        def torch_lottery_round_start(self, strategy):
            seen.append(strategy)

    _run(tiny_model, train_fn, "plugins", [Observer()], register_plugin, strategy_options={"rate": 0.3})
    assert len(seen) == 3 and all(s is seen[0] for s in seen)
    assert isinstance(seen[0], IterativeMagnitude) and seen[0].rate == 0.3


# -- torch_lottery_after_prune ----------------------------------------------------------------------
@pytest.mark.parametrize("via", ["plugins", "manager"])
def test_torch_lottery_after_prune(via, register_plugin, tiny_model, train_fn):
    trained = []  # the weights at the end of each round's training

    def train(model, context):
        result = train_fn(model, context)
        trained.append({n: _orig(model, n).detach().clone() for n in PRUNED})
        return result

    class Observer:
        def __init__(self):
            self.calls = []

        @hookimpl
        def torch_lottery_after_prune(self, round_index, model, masks, remaining):
            self.calls.append(
                {
                    "round_index": round_index,
                    "model": model,
                    "remaining": remaining,
                    "masks": {n: m.clone() for n, m in masks.items()},
                    "buffers": _masks(model),
                    "orig": {n: _orig(model, n).detach().clone() for n in PRUNED},
                    "trained_so_far": len(trained),
                }
            )
            for mask in masks.values():  # masks are read only: scribbling on them changes nothing
                mask.zero_()

    observer, subset = Observer(), RoundIndexOnly()
    ticket = _run(tiny_model, train, via, [observer, subset], register_plugin, strategy_options={"rate": 0.5})

    assert [c["round_index"] for c in observer.calls] == [1, 2]
    assert subset.of("after_prune") == [1, 2]
    for call in observer.calls:
        r = call["round_index"]
        assert call["model"] is tiny_model
        assert set(call["masks"]) == set(PRUNED)
        for n in PRUNED:
            assert call["masks"][n].dtype == torch.bool
            # the masks handed over are the ones installed on the model at that moment
            assert torch.equal(call["buffers"][n], call["masks"][n])
        assert call["remaining"] == pytest.approx(_remaining(call["buffers"]))
        assert call["remaining"] == pytest.approx(ticket.history[r]["remaining"])
        # before the rewind: the model still holds the weights trained in the previous round
        assert call["trained_so_far"] == r
        for n in PRUNED:
            assert torch.equal(call["orig"][n], trained[r - 1][n])
    assert observer.calls[0]["remaining"] == pytest.approx(0.5, abs=0.02)
    assert observer.calls[1]["remaining"] == pytest.approx(0.25, abs=0.02)
    # zeroing the handed-over masks did not touch the model nor the ticket
    for n in PRUNED:
        assert ticket.masks[n].any()


def test_torch_lottery_after_prune_masks_equal_the_model_buffers(register_plugin, tiny_model, train_fn):
    calls = []

    class Observer:
        @hookimpl
        def torch_lottery_after_prune(self, model, masks):
            calls.append(({n: m.clone() for n, m in masks.items()}, _masks(model)))

    ticket = _run(tiny_model, train_fn, "manager", [Observer()], register_plugin)
    assert len(calls) == 2
    for given, installed in calls:
        assert set(given) == set(installed) == set(PRUNED)
        for n in PRUNED:
            assert torch.equal(given[n], installed[n])
    for n in PRUNED:  # the last round's masks are the ticket's
        assert torch.equal(calls[-1][0][n], ticket.masks[n].bool())
    # masks only shrink from round to round
    for n in PRUNED:
        assert not (calls[1][0][n] & ~calls[0][0][n]).any()
        assert calls[1][0][n].sum() < calls[0][0][n].sum()


# -- torch_lottery_after_rewind ---------------------------------------------------------------------
@pytest.mark.parametrize("via", ["plugins", "manager"])
def test_torch_lottery_after_rewind(via, register_plugin, tiny_model, train_fn):
    initial = {n: p.detach().clone() for n, p in tiny_model.named_parameters()}

    class Observer:
        def __init__(self):
            self.calls = []

        @hookimpl
        def torch_lottery_after_rewind(self, round_index, model, rewind_point):
            self.calls.append(
                {
                    "round_index": round_index,
                    "model": model,
                    "rewind_point": rewind_point,
                    "params": {n: p.detach().clone() for n, p in model.named_parameters()},
                    "weights": {n: _orig(model, n).detach().clone() for n in PRUNED},
                    "effective": {n: model.get_submodule(n.split(".")[0]).weight.detach().clone() for n in PRUNED},
                    "masks": _masks(model),
                    "rewound": {n: rewind_point[n].clone() for n in rewind_point},
                }
            )

    observer, subset = Observer(), RoundIndexOnly()
    ticket = _run(tiny_model, train_fn, via, [observer, subset], register_plugin)

    assert [c["round_index"] for c in observer.calls] == [1, 2]
    assert subset.of("after_rewind") == [1, 2]
    # order of events within a round: prune, then rewind, then train
    assert subset.calls == [
        ("round_start", 0),
        ("round_end", 0),
        ("round_start", 1),
        ("after_prune", 1),
        ("after_rewind", 1),
        ("round_end", 1),
        ("round_start", 2),
        ("after_prune", 2),
        ("after_rewind", 2),
        ("round_end", 2),
    ]
    for call in observer.calls:
        point = call["rewind_point"]
        assert call["model"] is tiny_model
        assert isinstance(point, tl.RewindPoint)
        assert point.iteration == 0
        for n in PRUNED:
            # the model's stored weights are exactly the rewind point's values, masked by the new mask
            assert torch.equal(call["weights"][n], call["rewound"][n])
            assert torch.equal(call["weights"][n], initial[n])
            assert torch.equal(call["effective"][n], call["rewound"][n] * call["masks"][n])
            assert call["masks"][n].sum() < call["masks"][n].numel()
        for bias in ("0.bias", "2.bias"):  # unpruned parameters are rewound too
            assert torch.equal(call["params"][bias], call["rewound"][bias])
            assert torch.equal(call["params"][bias], initial[bias])
    for n in PRUNED:
        assert torch.equal(ticket.rewind[n], initial[n])


# -- torch_lottery_round_end ------------------------------------------------------------------------
@pytest.mark.parametrize("via", ["plugins", "manager"])
def test_torch_lottery_round_end(via, register_plugin, tiny_model, train_fn):
    trained = []

    def train(model, context):
        result = train_fn(model, context)
        trained.append({n: p.detach().clone() for n, p in model.named_parameters()})
        return result

    class Observer:
        def __init__(self):
            self.calls = []

        @hookimpl
        def torch_lottery_round_end(self, round_index, model, record):
            self.calls.append(
                {
                    "round_index": round_index,
                    "model": model,
                    "record": copy.deepcopy(record),
                    "params": {n: p.detach().clone() for n, p in model.named_parameters()},
                }
            )
            record["remaining"] = -1.0  # the hook gets a copy: this must not reach Ticket.history
            record["metrics"]["loss"] = "tampered"

    observer, subset = Observer(), RoundIndexOnly()
    ticket = _run(tiny_model, train, via, [observer, subset], register_plugin)

    assert [c["round_index"] for c in observer.calls] == [0, 1, 2]
    assert subset.of("round_end") == [0, 1, 2]
    assert len(ticket.history) == 3
    for call in observer.calls:
        r = call["round_index"]
        assert call["model"] is tiny_model
        assert call["record"] == ticket.history[r]
        assert call["record"]["round"] == r
        assert set(call["record"]) >= {
            "round",
            "remaining",
            "remaining_weights",
            "total_weights",
            "per_tensor",
            "metrics",
            "seconds",
        }
        assert isinstance(call["record"]["metrics"]["loss"], float)
        assert call["record"]["metrics"]["iterations"] == 3
        # the model is the one trained in this round
        for n, value in trained[r].items():
            assert torch.equal(call["params"][n], value)
    assert all(h["remaining"] > 0 for h in ticket.history)
    assert all(isinstance(h["metrics"]["loss"], float) for h in ticket.history)
    remaining = [c["record"]["remaining"] for c in observer.calls]
    assert remaining[0] == 1.0 and remaining[0] > remaining[1] > remaining[2]


# -- the lifetime of plugins= -------------------------------------------------------------------------
def test_plugins_argument_registers_for_one_run_only(tiny_model, train_fn):
    observer = RoundIndexOnly()
    find_ticket(tiny_model, train_fn, rounds=1, plugins=[observer])
    assert observer.of("round_end") == [0, 1]
    assert not get_plugin_manager().is_registered(observer)
    torch.manual_seed(0)
    other = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    find_ticket(other, train_fn, rounds=1)
    assert observer.of("round_end") == [0, 1], "an unregistered plugin must not see later runs"


@pytest.mark.parametrize("failing_round", [0, 1])
def test_plugins_argument_unregistered_when_train_raises(failing_round, tiny_model, train_fn):
    observer = RoundIndexOnly()

    def train(model, context):
        if context.round_index == failing_round:
            raise RuntimeError("training blew up")
        return train_fn(model, context)

    with pytest.raises(RuntimeError, match="training blew up"):
        find_ticket(tiny_model, train, rounds=2, plugins=[observer])
    assert not get_plugin_manager().is_registered(observer)
    assert observer.of("round_start") == list(range(failing_round + 1))
    assert observer.of("round_end") == list(range(failing_round))


def test_plugins_argument_leaves_a_globally_registered_plugin_registered(register_plugin, tiny_model, train_fn):
    """Passing a plugin the caller registered for good must not unregister it (it may fail, but not that)."""
    observer = register_plugin(RoundIndexOnly(), name="my_logger")
    try:
        find_ticket(tiny_model, train_fn, rounds=1, plugins=[observer])
    except ValueError:
        pass  # refusing the double registration is acceptable
    assert get_plugin_manager().is_registered(observer), (
        "find_ticket(plugins=[p]) unregistered a plugin that was registered before the run"
    )
