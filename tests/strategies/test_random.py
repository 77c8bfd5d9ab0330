"""Invariants of the built-in ``random`` strategy (RandomPruning): imp's sparsity, random choice."""

from __future__ import annotations

import json

import pytest
import torch

from torch_lottery import get_strategy
from torch_lottery.strategies import IterativeMagnitude, RandomPruning

import helpers

SHAPES = ((100, 100), (30, 50))


def test_registered_as_random():
    assert get_strategy("random") is RandomPruning
    assert RandomPruning.max_rounds is None
    assert RandomPruning.may_grow is False
    s = RandomPruning()
    assert (s.rate, s.scope, s.rate_multipliers, s.min_remaining, s.rewind_iteration) == (0.2, "local", {}, 1, 0)


@pytest.mark.parametrize(
    "options",
    [
        {"rate": 0.2},
        {"rate": 0.5, "scope": "global"},
        {"rate": 0.2, "rate_multipliers": {"1.weight": 0.5, "2.weight": 0.0}},
        {"rate": 0.3, "scope": "global", "rate_multipliers": {"2.weight": 2.0}},
    ],
)
def test_same_counts_as_imp_for_the_same_options(options):
    weights = helpers.random_weights((100, 100), (20, 50), (10, 10), (40, 40))
    rand_ctx = imp_ctx = helpers.build_context(weights)
    rand, imp = RandomPruning(**options), IterativeMagnitude(**options)
    multiplied = set(options.get("rate_multipliers", {}))
    for round_index in range(4):
        rand_new, imp_new = rand.prune(rand_ctx), imp.prune(imp_ctx)
        rand_pruned, imp_pruned = helpers.check_masks(rand_ctx, rand_new), helpers.check_masks(imp_ctx, imp_new)
        if options.get("scope", "local") == "local":
            assert rand_pruned == imp_pruned
        else:  # same total over the pool, and the same count for every multiplied tensor
            pooled = [n for n in rand_ctx.names if n not in multiplied]
            assert sum(rand_pruned[n] for n in pooled) == sum(imp_pruned[n] for n in pooled)
            for n in multiplied:
                assert rand_pruned[n] == imp_pruned[n]
        rand_ctx = helpers.next_context(rand_ctx, rand_new, seed=round_index + 1)
        imp_ctx = helpers.next_context(imp_ctx, imp_new)


def test_local_rate_prunes_round_of_rate_times_survivors():
    context = helpers.build_context(helpers.random_weights(*SHAPES))
    for round_index in range(5):
        new = RandomPruning(rate=0.2).prune(context)
        pruned = helpers.check_masks(context, new)
        for name in context.names:
            assert pruned[name] == round(0.2 * int(context.masks[name].sum()))
        context = helpers.next_context(context, new, seed=round_index + 1)


def test_reproducible_from_the_generator_and_independent_of_the_global_rng():
    weights = helpers.random_weights(*SHAPES)
    torch.manual_seed(1)
    first = RandomPruning(rate=0.3).prune(helpers.build_context(weights, seed=42))
    torch.manual_seed(2)
    torch.rand(10)
    second = RandomPruning(rate=0.3).prune(helpers.build_context(weights, seed=42))
    for name in first:
        assert torch.equal(first[name], second[name])


def test_another_seed_gives_another_mask():
    weights = helpers.random_weights(*SHAPES)
    a = RandomPruning(rate=0.3).prune(helpers.build_context(weights, seed=0))
    b = RandomPruning(rate=0.3).prune(helpers.build_context(weights, seed=1))
    for name in a:
        assert int(a[name].sum()) == int(b[name].sum())
        assert not torch.equal(a[name], b[name])


def test_draws_from_the_context_generator():
    context = helpers.build_context(helpers.random_weights(*SHAPES), seed=3)
    a = RandomPruning(rate=0.3).prune(context)
    b = RandomPruning(rate=0.3).prune(context)  # the generator has advanced
    assert not torch.equal(a["0.weight"], b["0.weight"])


def test_choice_ignores_the_weights():
    """Same generator state, completely different weights: the same entries go."""
    a = RandomPruning(rate=0.4).prune(helpers.build_context(helpers.random_weights(*SHAPES, seed=1), seed=9))
    b = RandomPruning(rate=0.4).prune(helpers.build_context(helpers.random_weights(*SHAPES, seed=2), seed=9))
    for name in a:
        assert torch.equal(a[name], b[name])


def test_not_magnitude_ordered_and_roughly_uniform():
    # weights and generator from different seeds (randn and rand of one seed are correlated)
    context = helpers.build_context(helpers.random_weights((100, 100), seed=0), seed=9)
    new = RandomPruning(rate=0.2).prune(context)
    magnitude = context.weights["0.weight"].abs()
    mask = new["0.weight"]
    assert magnitude[~mask].max() > magnitude[mask].min()
    # about 20% of the largest half and of the smallest half go (magnitude pruning: 0% and 40%)
    large = magnitude >= magnitude.median()
    assert 0.15 < float((~mask & large).sum()) / float(large.sum()) < 0.25
    assert 0.15 < float((~mask & ~large).sum()) / float((~large).sum()) < 0.25


def test_pruned_entries_stay_pruned_over_rounds():
    context = helpers.build_context(helpers.random_weights(*SHAPES))
    history = []
    for round_index in range(4):
        new = RandomPruning(rate=0.5, scope="global").prune(context)
        helpers.check_masks(context, new)
        history.append(new)
        context = helpers.next_context(context, new, seed=round_index + 1)
    for earlier, later in zip(history, history[1:], strict=False):
        for name in earlier:
            assert not (later[name] & ~earlier[name]).any()


def test_min_remaining_protects_a_tiny_tensor_in_the_global_pool():
    context = helpers.build_context(helpers.random_weights((50, 50), (1, 3)))
    for round_index in range(6):
        new = RandomPruning(rate=0.5, scope="global", min_remaining=2).prune(context)
        helpers.check_masks(context, new)
        assert int(new["1.weight"].sum()) >= 2
        context = helpers.next_context(context, new, seed=round_index + 1)


@pytest.mark.parametrize(
    "rate, error",
    [
        (1.0, ValueError),
        (-0.1, ValueError),
        (float("nan"), ValueError),
        ("x", TypeError),
        (True, TypeError),
    ],
)
def test_bad_rate_is_refused(rate, error):
    with pytest.raises(error, match="rate"):
        RandomPruning(rate=rate)


def test_criterion_is_not_an_option():
    with pytest.raises(TypeError):
        RandomPruning(criterion="large_final")


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"rate": 0.6, "scope": "global", "min_remaining": 0},
        {"rate_multipliers": {"head.weight": 0.5}, "rewind_iteration": 3},
    ],
)
def test_options_round_trip_and_are_json(options):
    s = RandomPruning(**options)
    recorded = s.options()
    assert json.loads(json.dumps(recorded)) == recorded
    assert set(recorded) == {"rate", "scope", "rate_multipliers", "min_remaining", "on_floor", "rewind_iteration"}
    for key, value in options.items():
        assert recorded[key] == value
    assert type(s)(**recorded).options() == recorded
