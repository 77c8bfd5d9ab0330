"""Invariants of the built-in ``imp`` strategy (IterativeMagnitude), called directly on PruneContexts."""

from __future__ import annotations

import json
import math

import pytest
import torch

from torch_lottery import get_strategy
from torch_lottery.strategies import IterativeMagnitude

import helpers

SHAPES = ((100, 100), (30, 50))


def _newly_pruned_and_kept(context, new, name):
    old = context.masks[name].bool()
    magnitude = context.weights[name].abs()
    return magnitude[old & ~new[name]], magnitude[new[name]]


def test_registered_as_imp():
    assert get_strategy("imp") is IterativeMagnitude
    assert IterativeMagnitude.max_rounds is None
    assert IterativeMagnitude.may_grow is False
    s = IterativeMagnitude()
    assert (s.rate, s.scope, s.rate_multipliers, s.min_remaining, s.criterion, s.rewind_iteration) == (
        0.2,
        "local",
        {},
        1,
        "large_final",
        0,
    )


def test_local_rate_prunes_round_of_rate_times_survivors_per_tensor_each_round():
    strategy = IterativeMagnitude(rate=0.2)
    context = helpers.build_context(helpers.random_weights(*SHAPES))
    for _ in range(6):
        new = strategy.prune(context)
        pruned = helpers.check_masks(context, new)
        for name in context.names:
            surviving = int(context.masks[name].sum())
            assert pruned[name] == round(0.2 * surviving)
            gone, kept = _newly_pruned_and_kept(context, new, name)
            assert gone.max() <= kept.min(), "imp must prune the smallest surviving magnitudes"
        context = helpers.next_context(context, new)
    # six rounds of 20%: 0.8 ** 6 of 10000 is about 2621
    assert int(context.masks["0.weight"].sum()) == pytest.approx(10000 * 0.8**6, abs=3)


def test_prune_does_not_modify_the_context_and_accepts_float_masks():
    weights = helpers.random_weights((20, 20))
    float_mask = (torch.rand(20, 20, generator=torch.Generator().manual_seed(3)) > 0.3).float()
    context = helpers.build_context(weights, masks=[float_mask])
    before_w = context.weights["0.weight"].clone()
    before_m = context.masks["0.weight"].clone()
    new = IterativeMagnitude(rate=0.5).prune(context)
    pruned = helpers.check_masks(context, new)
    assert pruned["0.weight"] == round(0.5 * int(float_mask.sum()))
    assert torch.equal(context.weights["0.weight"], before_w)
    assert torch.equal(context.masks["0.weight"], before_m)


def test_rate_zero_prunes_nothing():
    context = helpers.build_context(helpers.random_weights(*SHAPES))
    new = IterativeMagnitude(rate=0.0).prune(context)
    assert helpers.check_masks(context, new) == {n: 0 for n in context.names}


def test_global_scope_prunes_the_pool_at_the_rate_with_one_threshold():
    # the second tensor is three times smaller: one global threshold prunes it much harder than 20%
    # (min_remaining=0: no per-tensor floor interferes with the single threshold)
    context = helpers.build_context(helpers.random_weights(*SHAPES, scales=[1.0, 0.3]))
    strategy = IterativeMagnitude(rate=0.2, scope="global", min_remaining=0)
    for round_index in range(4):
        new = strategy.prune(context)
        pruned = helpers.check_masks(context, new)
        pooled = sum(int(context.masks[n].sum()) for n in context.names)
        assert sum(pruned.values()) == round(0.2 * pooled)
        gone = torch.cat([_newly_pruned_and_kept(context, new, n)[0] for n in context.names])
        kept = torch.cat([_newly_pruned_and_kept(context, new, n)[1] for n in context.names])
        assert gone.max() <= kept.min(), "global scope must use one threshold over the pool"
        if round_index == 0:
            assert pruned["1.weight"] > 0.4 * 1500  # far more than the local 20%
            assert pruned["0.weight"] < 0.2 * 10000
        context = helpers.next_context(context, new)


@pytest.mark.parametrize("scope", ["local", "global"])
def test_rate_multipliers_scale_the_rate_of_their_tensor(scope):
    weights = helpers.random_weights((100, 100), (20, 50), (10, 10), (40, 40), (10, 30))
    multipliers = {"1.weight": 0.5, "2.weight": 0.0, "4.weight": 2.0}
    strategy = IterativeMagnitude(rate=0.2, scope=scope, rate_multipliers=multipliers)
    context = helpers.build_context(weights)
    for _ in range(3):
        new = strategy.prune(context)
        pruned = helpers.check_masks(context, new)
        surviving = {n: int(context.masks[n].sum()) for n in context.names}
        assert pruned["1.weight"] == round(0.1 * surviving["1.weight"])
        assert pruned["4.weight"] == round(0.4 * surviving["4.weight"])
        assert pruned["2.weight"] == 0
        assert torch.equal(new["2.weight"], context.masks["2.weight"])
        if scope == "local":
            assert pruned["0.weight"] == round(0.2 * surviving["0.weight"])
            assert pruned["3.weight"] == round(0.2 * surviving["3.weight"])
        else:  # the tensors without a multiplier form the pool
            assert pruned["0.weight"] + pruned["3.weight"] == round(
                0.2 * (surviving["0.weight"] + surviving["3.weight"])
            )
        for name in ("1.weight", "4.weight"):  # a multiplied tensor is pruned by its own magnitudes
            gone, kept = _newly_pruned_and_kept(context, new, name)
            assert gone.max() <= kept.min()
        context = helpers.next_context(context, new)


def test_multiplier_of_one_joins_the_pool():
    context = helpers.build_context(helpers.random_weights(*SHAPES, scales=[1.0, 0.1]))
    plain = IterativeMagnitude(rate=0.2, scope="global").prune(context)
    explicit = IterativeMagnitude(rate=0.2, scope="global", rate_multipliers={"1.weight": 1.0}).prune(context)
    for name in context.names:
        assert torch.equal(plain[name], explicit[name])


@pytest.mark.parametrize("min_remaining, survivors", [(0, []), (1, [3]), (2, [2, 3]), (3, [1, 2, 3])])
def test_min_remaining_protects_a_tiny_tensor_in_the_global_pool(min_remaining, survivors):
    big = helpers.random_weights((50, 50))[0].abs() + 0.01
    tiny = torch.tensor([[1e-4, 2e-4, 3e-4, 4e-4]])  # below every weight of the pool
    context = helpers.build_context([big, tiny])
    new = IterativeMagnitude(rate=0.5, scope="global", min_remaining=min_remaining).prune(context)
    pruned = helpers.check_masks(context, new)
    assert sum(pruned.values()) == round(0.5 * 2504)
    assert new["1.weight"][0].nonzero().flatten().tolist() == survivors  # its largest entries survive


@pytest.mark.parametrize("scope", ["local", "global"])
def test_min_remaining_is_a_floor_rounds_stop_pruning_instead_of_failing(scope):
    """The floor holds: once only ``min_remaining`` entries are left, a round prunes nothing more.

    The docs: "Every tensor keeps at least min_remaining surviving entries" and find_ticket
    "stops ... when a round prunes nothing". A high rate must therefore settle at the floor.
    """
    weights = helpers.random_weights((1, 16), (1, 4))
    strategy = IterativeMagnitude(rate=0.8, scope=scope, min_remaining=1)
    context = helpers.build_context(weights)
    for _ in range(5):
        new = strategy.prune(context)
        helpers.check_masks(context, new)
        for name in context.names:
            assert int(new[name].sum()) >= 1
        context = helpers.next_context(context, new)
    assert [int(context.masks[n].sum()) for n in context.names] == [1, 1]


def test_min_remaining_floor_limits_a_local_round():
    context = helpers.build_context([torch.tensor([[0.1, -0.2, 0.3, -0.4]])])
    new = IterativeMagnitude(rate=0.5, min_remaining=3).prune(context)  # 2 of 4 asked, 1 allowed
    helpers.check_masks(context, new)
    assert new["0.weight"].tolist() == [[False, True, True, True]]


@pytest.mark.parametrize(
    "criterion, pruned_by",
    [
        ("large_final", lambda w, r: w.abs()),
        ("small_final", lambda w, r: -w.abs()),
        ("large_init", lambda w, r: r.abs()),
        ("magnitude_increase", lambda w, r: w.abs() - r.abs()),
        ("movement", lambda w, r: (w - r).abs()),
    ],
)
def test_criterion_chooses_the_scores(criterion, pruned_by):
    w, r = helpers.random_weights((40, 25), (40, 25), seed=5)
    context = helpers.build_context([w], rewind={"0.weight": r})
    new = IterativeMagnitude(rate=0.3, criterion=criterion).prune(context)
    pruned = helpers.check_masks(context, new)
    assert pruned["0.weight"] == 300
    scores = pruned_by(w, r)
    expected = torch.ones(1000, dtype=torch.bool)
    expected[scores.flatten().argsort()[:300]] = False
    assert torch.equal(new["0.weight"].flatten(), expected)


def test_large_init_prunes_by_the_rewind_point_not_the_trained_weights():
    w = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    r = torch.tensor([[4.0, 3.0, 2.0, 1.0]])
    context = helpers.build_context([w], rewind=[r])
    assert IterativeMagnitude(rate=0.5, criterion="large_init").prune(context)["0.weight"].tolist() == [
        [True, True, False, False]
    ]
    assert IterativeMagnitude(rate=0.5).prune(context)["0.weight"].tolist() == [[False, False, True, True]]


@pytest.mark.parametrize("rewind", [None, {}])
def test_criterion_needing_the_rewind_point_without_one_raises(rewind):
    context = helpers.build_context(helpers.random_weights((4, 4)), rewind=rewind)
    with pytest.raises(ValueError, match="large_init"):
        IterativeMagnitude(criterion="large_init").prune(context)


def test_nan_weights_are_refused():
    w = helpers.random_weights((4, 4))[0]
    w[1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        IterativeMagnitude(rate=0.5).prune(helpers.build_context([w]))


@pytest.mark.parametrize(
    "rate, error",
    [
        (1.0, ValueError),
        (-0.1, ValueError),
        (1.5, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        ("x", TypeError),
        (None, TypeError),
        (True, TypeError),
    ],
)
def test_bad_rate_is_refused(rate, error):
    with pytest.raises(error, match="rate"):
        IterativeMagnitude(rate=rate)


@pytest.mark.parametrize("criterion", ["largest", None, 3, "LARGE_FINAL"])
def test_bad_criterion_is_refused(criterion):
    with pytest.raises(ValueError, match="criterion"):
        IterativeMagnitude(criterion=criterion)


def test_multiplier_times_rate_above_one_is_refused():
    IterativeMagnitude(rate=0.5, rate_multipliers={"a": 2.0})  # exactly 1 is fine
    with pytest.raises(ValueError, match="rate_multipliers"):
        IterativeMagnitude(rate=0.5, rate_multipliers={"a": 2.5})


def test_infinite_multiplier_is_refused_even_at_rate_zero():
    """multiplier * rate must stay in [0, 1]; inf * 0 is NaN, not a rate (it prunes the whole tensor)."""
    with pytest.raises(ValueError, match="rate_multipliers"):
        IterativeMagnitude(rate=0.0, rate_multipliers={"0.weight": math.inf})


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"rate": 0.35, "scope": "global"},
        {"rate": 0.2, "rate_multipliers": {"fc3.weight": 0.5, "fc1.weight": 0}, "min_remaining": 4},
        {"criterion": "large_init", "rewind_iteration": 500},
    ],
)
def test_options_round_trip_and_are_json(options):
    s = IterativeMagnitude(**options)
    recorded = s.options()
    assert json.loads(json.dumps(recorded)) == recorded
    assert set(recorded) == {
        "rate",
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
    assert repr(s).startswith("IterativeMagnitude(") and "rate=" in repr(s)
