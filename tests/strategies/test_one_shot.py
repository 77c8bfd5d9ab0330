"""Invariants of the built-in ``one_shot`` strategy (OneShotMagnitude)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from torch_lottery import find_ticket, get_strategy
from torch_lottery.strategies import OneShotMagnitude

import helpers

# sizes whose targets round(remaining * total) are never a .5 tie
SHAPES = ((100, 100), (30, 50), (7, 13))


def test_registered_as_one_shot_with_one_round():
    assert get_strategy("one_shot") is OneShotMagnitude
    assert OneShotMagnitude.max_rounds == 1
    assert OneShotMagnitude(remaining=0.1).max_rounds == 1
    assert OneShotMagnitude.may_grow is False
    s = OneShotMagnitude()
    assert (s.remaining, s.scope, s.rate_multipliers, s.min_remaining, s.criterion, s.rewind_iteration) == (
        0.2,
        "local",
        {},
        1,
        "large_final",
        0,
    )


@pytest.mark.parametrize("remaining", [0.1, 0.2, 0.37, 0.8])
def test_local_reaches_the_target_of_each_tensor_in_one_call(remaining):
    context = helpers.build_context(helpers.random_weights(*SHAPES))
    new = OneShotMagnitude(remaining=remaining).prune(context)
    helpers.check_masks(context, new)
    for name in context.names:
        total = context.masks[name].numel()
        assert int(new[name].sum()) == round(remaining * total)
        magnitude = context.weights[name].abs()
        assert magnitude[~new[name]].max() <= magnitude[new[name]].min()


def test_local_target_counts_the_total_not_the_survivors():
    weights = helpers.random_weights((100, 100), (30, 50))
    generator = torch.Generator().manual_seed(7)
    masks = [torch.rand(w.shape, generator=generator) > 0.5 for w in weights]  # about half already pruned
    context = helpers.build_context(weights, masks=masks)
    new = OneShotMagnitude(remaining=0.1).prune(context)
    helpers.check_masks(context, new)
    assert int(new["0.weight"].sum()) == 1000
    assert int(new["1.weight"].sum()) == 150
    for name in context.names:
        magnitude = context.weights[name].abs()
        gone = context.masks[name] & ~new[name]
        assert magnitude[gone].max() <= magnitude[new[name]].min()


def test_already_sparser_than_the_target_prunes_nothing():
    weights = helpers.random_weights((20, 20))
    mask = torch.zeros(20, 20, dtype=torch.bool)
    mask[0, :10] = True  # 10 of 400 survive: sparser than remaining=0.5
    context = helpers.build_context(weights, masks=[mask])
    new = OneShotMagnitude(remaining=0.5).prune(context)
    assert helpers.check_masks(context, new) == {"0.weight": 0}


def test_remaining_one_prunes_nothing():
    context = helpers.build_context(helpers.random_weights(*SHAPES))
    new = OneShotMagnitude(remaining=1.0).prune(context)
    assert helpers.check_masks(context, new) == {n: 0 for n in context.names}


@pytest.mark.parametrize("remaining", [0.1, 0.25, 0.6])
def test_global_reaches_the_target_over_the_pool_with_one_threshold(remaining):
    context = helpers.build_context(helpers.random_weights(*SHAPES, scales=[1.0, 0.3, 2.0]))
    new = OneShotMagnitude(remaining=remaining, scope="global", min_remaining=0).prune(context)
    helpers.check_masks(context, new)
    total = sum(context.masks[n].numel() for n in context.names)
    assert sum(int(new[n].sum()) for n in context.names) == round(remaining * total)
    gone = torch.cat([context.weights[n].abs()[~new[n]] for n in context.names])
    kept = torch.cat([context.weights[n].abs()[new[n]] for n in context.names])
    assert gone.max() <= kept.min()
    # one threshold: the small-scale tensor ends sparser than the pool, the large-scale one denser
    fractions = {n: int(new[n].sum()) / new[n].numel() for n in context.names}
    assert fractions["1.weight"] < remaining < fractions["2.weight"]


def test_rate_multipliers_scale_the_fraction_pruned():
    weights = helpers.random_weights((100, 100), (20, 50), (10, 10))
    strategy = OneShotMagnitude(remaining=0.1, rate_multipliers={"1.weight": 0.5, "2.weight": 0.0})
    context = helpers.build_context(weights)
    new = strategy.prune(context)
    pruned = helpers.check_masks(context, new)
    assert int(new["0.weight"].sum()) == 1000
    assert pruned["1.weight"] == round((1 - 0.1) * 0.5 * 1000)
    assert pruned["2.weight"] == 0


def test_min_remaining_protects_a_tiny_tensor_in_the_global_pool():
    big = helpers.random_weights((50, 50))[0].abs() + 0.01
    tiny = torch.tensor([[1e-4, 2e-4, 3e-4, 4e-4]])
    context = helpers.build_context([big, tiny])
    new = OneShotMagnitude(remaining=0.2, scope="global", min_remaining=2).prune(context)
    helpers.check_masks(context, new)
    assert new["1.weight"].tolist() == [[False, False, True, True]]
    assert int(new["0.weight"].sum()) + 2 == round(0.2 * 2504)


def test_min_remaining_floor_holds_when_the_local_target_is_below_it():
    """A 10-entry tensor at remaining=0.01 would keep round(0.1) = 0; the floor keeps one instead."""
    context = helpers.build_context([helpers.random_weights((1, 10))[0], helpers.random_weights((50, 50))[0]])
    new = OneShotMagnitude(remaining=0.01).prune(context)
    helpers.check_masks(context, new)
    assert int(new["0.weight"].sum()) == 1
    assert int(new["1.weight"].sum()) == 25


def test_criterion_large_init_uses_the_rewind_point():
    w = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    r = torch.tensor([[4.0, -3.0, 2.0, -1.0]])
    context = helpers.build_context([w], rewind=[r])
    assert OneShotMagnitude(remaining=0.5, criterion="large_init").prune(context)["0.weight"].tolist() == [
        [True, True, False, False]
    ]
    assert OneShotMagnitude(remaining=0.5).prune(context)["0.weight"].tolist() == [[False, False, True, True]]
    with pytest.raises(ValueError, match="large_init"):
        OneShotMagnitude(criterion="large_init").prune(helpers.build_context([w]))


def test_driver_stops_after_the_single_round():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
    ticket = find_ticket(model, lambda m, c: None, strategy="one_shot", strategy_options={"remaining": 0.25})
    assert len(ticket.history) == 2
    assert ticket.remaining_weights == round(0.25 * 64) + round(0.25 * 16)


@pytest.mark.parametrize(
    "remaining, error",
    [
        (0.0, ValueError),
        (-0.1, ValueError),
        (1.5, ValueError),
        (float("nan"), ValueError),
        ("x", TypeError),
        (None, TypeError),
        (True, TypeError),
    ],
)
def test_bad_remaining_is_refused(remaining, error):
    with pytest.raises(error, match="remaining"):
        OneShotMagnitude(remaining=remaining)


def test_multiplier_beyond_the_fraction_pruned_is_refused():
    OneShotMagnitude(remaining=0.5, rate_multipliers={"a": 2.0})
    with pytest.raises(ValueError, match="rate_multipliers"):
        OneShotMagnitude(remaining=0.5, rate_multipliers={"a": 2.5})


def test_rate_option_is_not_accepted():
    with pytest.raises(TypeError):
        OneShotMagnitude(rate=0.2)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"remaining": 0.05, "scope": "global"},
        {"remaining": 0.5, "rate_multipliers": {"out.weight": 0.5}, "min_remaining": 3, "criterion": "movement"},
        {"rewind_iteration": 10},
    ],
)
def test_options_round_trip_and_are_json(options):
    s = OneShotMagnitude(**options)
    recorded = s.options()
    assert json.loads(json.dumps(recorded)) == recorded
    assert set(recorded) == {
        "remaining",
        "scope",
        "rate_multipliers",
        "min_remaining",
        "on_floor",
        "criterion",
        "rewind_iteration",
    }
    for key, value in options.items():
        assert recorded[key] == value
    assert type(s)(**recorded).options() == recorded
