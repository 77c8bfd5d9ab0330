"""The strategy interface (Strategy, PruneContext) and the option checks shared by the built-ins."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from torch_lottery import PruneContext, Strategy
from torch_lottery.strategies import IterativeMagnitude, OneShotMagnitude, RandomPruning

import helpers

POOL = pytest.mark.parametrize(
    "cls", [IterativeMagnitude, OneShotMagnitude, RandomPruning], ids=["imp", "one_shot", "random"]
)


class KeepAll(Strategy):
    def prune(self, context):
        return {n: context.masks[n].bool().clone() for n in context.names}


def test_strategy_is_abstract_and_a_minimal_subclass_works():
    with pytest.raises(TypeError):
        Strategy()

    class NoPrune(Strategy):
        pass

    with pytest.raises(TypeError):
        NoPrune()
    s = KeepAll()
    assert s.options() == {"rewind_iteration": 0}
    assert KeepAll(rewind_iteration=7).options() == {"rewind_iteration": 7}
    assert repr(KeepAll(rewind_iteration=7)) == "KeepAll(rewind_iteration=7)"
    assert Strategy.may_grow is False and Strategy.max_rounds is None
    context = helpers.build_context(helpers.random_weights((3, 3)))
    assert helpers.check_masks(context, s.prune(context)) == {"0.weight": 0}


@pytest.mark.parametrize(
    "value, error", [(-1, ValueError), (1.5, TypeError), ("3", TypeError), (True, TypeError), (None, TypeError)]
)
@pytest.mark.parametrize("cls", [KeepAll, IterativeMagnitude, OneShotMagnitude, RandomPruning])
def test_bad_rewind_iteration_is_refused(cls, value, error):
    with pytest.raises(error, match="rewind_iteration"):
        cls(rewind_iteration=value)


def test_prune_context_is_frozen_and_holds_what_the_driver_passes():
    context = helpers.build_context(helpers.random_weights((2, 3), (4, 2)), round_index=3)
    fields = dataclasses.fields(PruneContext)
    # the first seven, positional, as every earlier plugin and test builds them; the rest have defaults
    assert [f.name for f in fields[:7]] == ["model", "names", "weights", "masks", "rewind", "round_index", "generator"]
    assert [f.name for f in fields[7:]] == [
        "initial",
        "data",
        "loss",
        "device",
        "rounds",
        "target_remaining",
        "control",
    ]
    assert all(f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING for f in fields[7:])
    assert context.names == ("0.weight", "1.weight")
    assert context.round_index == 3
    assert isinstance(context.generator, torch.Generator)
    with pytest.raises(dataclasses.FrozenInstanceError):
        context.round_index = 4


@POOL
def test_masks_only_for_the_named_tensors(cls):
    """A context naming a subset of the tensors gets masks for that subset only."""
    full = helpers.build_context(helpers.random_weights((10, 10), (10, 10)))
    context = PruneContext(full.model, ("1.weight",), full.weights, full.masks, None, 1, torch.Generator())
    new = cls().prune(context)
    assert set(new) == {"1.weight"}
    assert helpers.check_masks(context, new)["1.weight"] > 0


@POOL
@pytest.mark.parametrize("scope", ["both", "LOCAL", None, 1])
def test_bad_scope_is_refused(cls, scope):
    with pytest.raises(ValueError, match="scope"):
        cls(scope=scope)


@POOL
@pytest.mark.parametrize(
    "multipliers, error",
    [
        ({"fc.weight": -0.5}, ValueError),
        ({"fc.weight": float("nan")}, ValueError),
        ({"fc.weight": "half"}, ValueError),
        ({"fc.weight": True}, ValueError),
        ({3: 0.5}, TypeError),
        ({("fc", "weight"): 0.5}, TypeError),
        ([("fc.weight", 0.5)], TypeError),
        (0.5, TypeError),
    ],
)
def test_bad_rate_multipliers_are_refused(cls, multipliers, error):
    with pytest.raises(error, match="rate_multipliers"):
        cls(rate_multipliers=multipliers)


@POOL
def test_unknown_multiplier_name_is_refused_at_prune_time(cls):
    strategy = cls(rate_multipliers={"classifier.weight": 0.5})  # fine until the tensors are known
    context = helpers.build_context(helpers.random_weights((4, 4), (4, 4)))
    with pytest.raises(ValueError, match=r"rate_multipliers.*classifier\.weight"):
        strategy.prune(context)


@POOL
@pytest.mark.parametrize(
    "value, error", [(-1, ValueError), (1.5, TypeError), ("2", TypeError), (True, TypeError), (None, TypeError)]
)
def test_bad_min_remaining_is_refused(cls, value, error):
    with pytest.raises(error, match="min_remaining"):
        cls(min_remaining=value)


@POOL
def test_none_multipliers_mean_none(cls):
    assert cls(rate_multipliers=None).rate_multipliers == {}
    assert cls(rate_multipliers={}).options()["rate_multipliers"] == {}


@POOL
def test_multipliers_are_copied_not_shared(cls):
    given = {"fc.weight": 0.5}
    s = cls(rate_multipliers=given)
    given["fc.weight"] = 0.0
    assert s.rate_multipliers == {"fc.weight": 0.5}
    s.options()["rate_multipliers"]["fc.weight"] = 0.0
    assert s.options()["rate_multipliers"] == {"fc.weight": 0.5}


@pytest.mark.parametrize(
    "strategy",
    [
        KeepAll(rewind_iteration=2),
        IterativeMagnitude(
            rate=0.3,
            scope="global",
            rate_multipliers={"a.weight": 0},
            min_remaining=5,
            criterion="large_final_same_sign",
            rewind_iteration=100,
        ),
        OneShotMagnitude(remaining=0.02, scope="global", rate_multipliers={"a.weight": 0.5}, criterion="small_final"),
        RandomPruning(rate=0.1, rate_multipliers={"b.weight": 3}, min_remaining=0),
    ],
    ids=["base", "imp", "one_shot", "random"],
)
def test_options_are_json_and_rebuild_an_equal_strategy(strategy):
    options = strategy.options()
    assert json.loads(json.dumps(options, allow_nan=False)) == options
    rebuilt = type(strategy)(**options)
    assert rebuilt.options() == options
    assert repr(rebuilt) == repr(strategy)


@POOL
def test_options_are_plain_python_numbers(cls):
    options = cls(rate_multipliers={"x.weight": 1}, min_remaining=2).options()
    assert type(options["rate_multipliers"]["x.weight"]) is float
    assert type(options["min_remaining"]) is int
    assert type(options["rewind_iteration"]) is int


def test_keep_top_keeps_exactly_k_of_the_eligible_breaking_ties_like_the_planner():
    from torch_lottery.strategies.base import keep_top

    scores = torch.tensor([[1.0, 3.0, 3.0], [0.0, 3.0, -1.0]], dtype=torch.float64)
    assert keep_top(scores, 2).tolist() == [[False, False, True], [False, True, False]]  # ties: lower index dropped
    eligible = torch.tensor([[True, False, False], [True, False, True]])
    assert keep_top(scores, 2, eligible).tolist() == [[True, False, False], [True, False, False]]
    assert int(keep_top(scores, 6).sum()) == 6 and not keep_top(scores, 0).any()
    with pytest.raises(ValueError, match="k=4"):
        keep_top(scores, 4, eligible)
    with pytest.raises(ValueError, match="NaN"):
        keep_top(torch.tensor([1.0, float("nan")]), 1)


def test_step_context_gradients_walk_through_a_list_of_batches():
    from torch import nn

    from torch_lottery.strategies import StepContext

    torch.manual_seed(0)
    model = nn.Linear(2, 1, bias=False).double()
    data = [
        (torch.full((1, 2), float(i + 1), dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64))
        for i in range(3)
    ]
    context = StepContext(
        model, ("weight",), [(model, "weight")], 1, 0, 1, None, lambda reason: None, None, data, nn.functional.mse_loss
    )
    w = model.weight.detach().clone()
    seen = [context.gradients()["weight"] for _ in range(4)]
    # by hand: loss (w.x)^2 on x = (i, i): gradient 2 (w.x) x = 2 * i^2 * (w1 + w2) * (1, 1)
    expected = [2 * i * i * float(w.sum()) * torch.ones(1, 2, dtype=torch.float64) for i in (1, 2, 3, 1)]
    for got, want in zip(seen, expected, strict=True):
        assert torch.allclose(got, want)
