"""torch_lottery.testing: the context of a run without the driver, and the driver's checks of a strategy's masks."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import torch_lottery as tl
from torch_lottery.strategies import IterativeMagnitude
from torch_lottery.testing import check_prune, make_context

from helpers import assert_state_equal, small_net, state_of

X = torch.randn(16, 5, generator=torch.Generator().manual_seed(3))
Y = torch.randn(16, 3, generator=torch.Generator().manual_seed(4))
DATA = [(X[:8], Y[:8]), (X[8:], Y[8:])]


def _train(model, context):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for inputs, targets in DATA:
        optimizer.zero_grad()
        nn.functional.mse_loss(model(inputs), targets).backward()
        optimizer.step()
        context.step()


class Recorder(tl.Strategy):
    """Drop the first survivor of every tensor; keep what the driver handed over in each round."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def prune(self, context):
        self.seen.append(
            {
                "context": context,
                "model": copy.deepcopy(context.model),
                "generator": context.generator.get_state().clone(),
                "weights": {n: w.clone() for n, w in context.weights.items()},
                "masks": {n: m.clone() for n, m in context.masks.items()},
            }
        )
        out = {}
        for name in context.names:
            mask = context.masks[name].clone().reshape(-1)
            mask[mask.nonzero()[0]] = False
            out[name] = mask.reshape(context.masks[name].shape)
        return out


class Revive(tl.Strategy):
    """Return all-True masks (revives every pruned entry)."""

    def prune(self, context):
        return {n: torch.ones_like(m) for n, m in context.masks.items()}


# -- make_context is the driver's context ------------------------------------------------------------
def test_make_context_matches_what_the_driver_hands_a_strategy():
    recorder = Recorder()
    loss = nn.functional.mse_loss
    tl.find_ticket(small_net(), _train, strategy=recorder, rounds=2, seed=7, data=DATA, loss=loss, control="reinit")
    assert len(recorder.seen) == 2
    for round_index, seen in enumerate(recorder.seen, start=1):
        driver = seen["context"]
        model = seen["model"]  # the model as it was when the driver asked for masks
        before = state_of(model)
        mine = make_context(
            model,
            rewind=dict(driver.rewind),
            round_index=round_index,
            seed=7,
            rounds=2,
            data=DATA,
            loss=loss,
            control="reinit",
        )
        assert_state_equal(model, before)  # make_context changed nothing
        assert mine.names == driver.names == ("0.weight", "2.weight")
        for name in driver.names:
            assert torch.equal(mine.weights[name], seen["weights"][name])
            assert torch.equal(mine.masks[name], seen["masks"][name]) and mine.masks[name].dtype == torch.bool
            assert torch.equal(mine.rewind[name], driver.rewind[name])
        assert set(mine.rewind) == set(driver.rewind)
        assert torch.equal(mine.generator.get_state(), seen["generator"])  # the same random stream
        assert (mine.round_index, mine.rounds, mine.target_remaining, mine.control) == (
            driver.round_index,
            driver.rounds,
            driver.target_remaining,
            driver.control,
        )
        assert mine.data is DATA and mine.loss is loss and mine.device == driver.device
    assert not recorder.seen[0]["masks"]["0.weight"].logical_not().any()  # round 1: dense
    assert recorder.seen[1]["masks"]["0.weight"].logical_not().sum() == 1  # round 2: the model's installed mask


def test_make_context_defaults_and_seed():
    net = small_net()
    context = make_context(net)
    assert context.names == ("0.weight", "2.weight")  # every prunable weight, no biases
    assert (context.round_index, context.rewind, context.initial, context.data, context.loss) == (
        1,
        None,
        None,
        None,
        None,
    )
    assert all(m.all() and m.dtype == torch.bool for m in context.masks.values())
    draw = torch.rand(3, generator=context.generator)
    assert torch.equal(draw, torch.rand(3, generator=make_context(net).generator))  # reproducible
    assert not torch.equal(draw, torch.rand(3, generator=make_context(net, seed=1).generator))
    assert not torch.equal(draw, torch.rand(3, generator=make_context(net, round_index=2).generator))


def test_make_context_rewind_keeps_the_pruned_names_only():
    net = small_net()
    point = tl.RewindPoint.capture(net)  # every parameter, biases too
    assert {"0.bias", "2.bias"} <= set(point)
    context = make_context(net, rewind=point)
    assert set(context.rewind) == {"0.weight", "2.weight"}  # as the driver hands it over
    assert torch.equal(context.rewind["2.weight"], point["2.weight"])
    assert set(make_context(net, rewind={"2.weight": point["2.weight"]}).rewind) == {"2.weight"}


def test_make_context_resolves_parameters_like_the_driver():
    net = small_net()
    assert make_context(net, parameters=["2.weight"]).names == ("2.weight",)
    assert make_context(net, parameters=[(net[0], "bias")]).names == ("0.bias",)
    with pytest.raises(ValueError, match="not a parameter"):
        make_context(net, parameters=["3.weight"])

    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(6, 4)
            self.out = nn.Linear(4, 6, bias=False)
            self.out.weight = self.embed.weight

    tied = Tied()
    context = make_context(tied, parameters=["embed.weight"])
    assert context.names == ("embed.weight", "out.weight")  # a tied tensor brings its other names
    assert context.weights["embed.weight"] is context.weights["out.weight"]


# -- masks ---------------------------------------------------------------------------------------
def test_make_context_masks_override_without_touching_the_model():
    net = small_net()
    prune.random_unstructured(net[2], "weight", amount=0.5)
    before = state_of(net)
    installed = net[2].weight_mask.bool()
    given = torch.zeros(4, 5)
    given[0] = 1.0  # 0/1 floats are masks too
    context = make_context(net, masks={"0.weight": given})
    assert_state_equal(net, before)
    assert not hasattr(net[0], "weight_mask")  # the model is not pruned by it
    assert context.masks["0.weight"].dtype == torch.bool
    assert torch.equal(context.masks["0.weight"], given.bool())
    assert torch.equal(context.masks["2.weight"], installed)  # the others: the model's own masks
    given.zero_()  # the context holds a copy
    assert context.masks["0.weight"][0].all()
    assert torch.equal(context.weights["2.weight"], net[2].weight_orig.detach())  # the trainable values


@pytest.mark.parametrize(
    "masks, error, words",
    [
        ({"9.weight": torch.ones(4, 5, dtype=torch.bool)}, ValueError, ("9.weight", "not among")),
        ({"0.weight": torch.ones(5, 4, dtype=torch.bool)}, ValueError, ("shape", "(5, 4)")),
        ({"0.weight": torch.full((4, 5), 0.5)}, ValueError, ("0 and 1",)),
        ({"0.weight": [[1] * 5] * 4}, TypeError, ("Tensor",)),
        ([("0.weight", torch.ones(4, 5))], TypeError, ("dict",)),
    ],
)
def test_make_context_refuses_bad_masks(masks, error, words):
    with pytest.raises(error) as info:
        make_context(small_net(), masks=masks)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize(
    "options, error, word",
    [
        ({"round_index": 0}, ValueError, "round_index"),
        ({"seed": 1.5}, TypeError, "seed"),
        ({"rounds": -1}, ValueError, "rounds"),
        ({"target_remaining": 1.0}, ValueError, "target_remaining"),
        ({"control": "bogus"}, ValueError, "control"),
        ({"data": iter(DATA)}, TypeError, "re-iterable"),
        ({"loss": 3}, TypeError, "loss"),
        ({"rewind": [1, 2]}, TypeError, "rewind"),
    ],
)
def test_make_context_checks_its_arguments(options, error, word):
    with pytest.raises(error, match=word):
        make_context(small_net(), **options)


def test_gradients_of_a_made_context_leave_the_model_alone():
    net = small_net()
    before = state_of(net)
    context = make_context(net, data=DATA, loss=nn.functional.mse_loss)
    grads = context.gradients(batches=None)
    assert set(grads) == {"0.weight", "2.weight"} and grads["0.weight"].abs().sum() > 0
    assert_state_equal(net, before)
    assert all(p.grad is None for p in net.parameters())


# -- check_prune -------------------------------------------------------------------------------------
def test_check_prune_returns_the_checked_masks():
    net = small_net()
    masks = check_prune(IterativeMagnitude(rate=0.5), make_context(net))
    assert set(masks) == {"0.weight", "2.weight"}
    assert all(m.dtype == torch.bool for m in masks.values())
    assert [int(m.sum()) for m in masks.values()] == [10, 6]
    again = check_prune(IterativeMagnitude(rate=0.5), make_context(net, masks=masks))
    assert all(not (again[n] & ~masks[n]).any() for n in masks)  # shrinks from the given masks
    assert [int(m.sum()) for m in again.values()] == [5, 3]


class Returns(tl.Strategy):
    def __init__(self, make):
        super().__init__()
        self.make = make

    def prune(self, context):
        return self.make(context)


@pytest.mark.parametrize(
    "make, error, words",
    [
        (lambda c: [c.masks[n] for n in c.names], TypeError, ("not a dict",)),
        (lambda c: {"0.weight": c.masks["0.weight"]}, ValueError, ("no mask", "2.weight")),
        (lambda c: {n: m.t() for n, m in c.masks.items()}, ValueError, ("shape", "0.weight", "(4, 5)")),
        (lambda c: {n: torch.full(m.shape, 2.0) for n, m in c.masks.items()}, ValueError, ("0 and 1",)),
    ],
)
def test_check_prune_refuses_what_the_driver_refuses(make, error, words):
    with pytest.raises(error) as info:
        check_prune(Returns(make), make_context(small_net()))
    for word in (*words, "Returns"):
        assert word in str(info.value)


def test_check_prune_allows_growing_only_with_may_grow():
    net = small_net()
    half = {"0.weight": torch.rand(4, 5, generator=torch.Generator().manual_seed(0)) > 0.5}
    with pytest.raises(ValueError, match="revived pruned entries of '0.weight'"):
        check_prune(Revive(), make_context(net, masks=half))

    class Grow(Revive):
        may_grow = True

    masks = check_prune(Grow(), make_context(net, masks=half))
    assert masks["0.weight"].all()


def test_check_prune_wants_one_mask_for_a_tied_tensor():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(6, 4)
            self.out = nn.Linear(4, 6, bias=False)
            self.out.weight = self.embed.weight

    def different(context):
        masks = {n: m.clone() for n, m in context.masks.items()}
        masks["out.weight"][0, 0] = False
        return masks

    context = make_context(Tied(), parameters=["embed.weight"])
    with pytest.raises(ValueError, match="one tied tensor"):
        check_prune(Returns(different), context)
    assert set(check_prune(IterativeMagnitude(rate=0.5), context)) == {"embed.weight", "out.weight"}


@pytest.mark.parametrize("scribble", ["weights", "masks", "mode", "buffer"])
def test_check_prune_catches_a_strategy_that_changes_the_model_or_the_context(scribble):
    net = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Linear(4, 3))
    prune.identity(net[0], "weight")  # a mask buffer on the model that context.masks shares

    def bad(context):
        if scribble == "weights":
            context.weights["0.weight"].mul_(2)
        elif scribble == "masks":
            context.masks["2.weight"][0, 0] = False
        elif scribble == "mode":
            context.model.eval()
        else:
            context.model[1].running_mean.add_(1)
        return {n: m.clone() for n, m in context.masks.items()}

    with pytest.raises(ValueError, match="'Returns' changed") as info:
        check_prune(Returns(bad), make_context(net))
    assert "must leave the model" in str(info.value)
    check_prune(IterativeMagnitude(), make_context(net))  # a well-behaved strategy passes


def test_check_prune_refuses_what_is_not_a_strategy_or_a_context():
    with pytest.raises(TypeError, match="prune"):
        check_prune(object(), make_context(small_net()))
    with pytest.raises(TypeError, match="PruneContext"):
        check_prune(IterativeMagnitude(), {"names": ()})
