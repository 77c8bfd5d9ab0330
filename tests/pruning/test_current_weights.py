"""Every route of pruning with this project ranks the *current* weights and leaves a deep-copyable model.

The usual order of a hand-written IMP loop is: train (ending on ``optimizer.step()``),
then prune, with no forward in between. Stock ``global_unstructured`` and stock
``apply`` rank ``getattr(module, name)``, which stock prune computes at the last
forward: one step stale. Each test trains after the last forward, computes the
expected mask from ``<name>_orig * <name>_mask`` with a sort, prunes through one
route, compares, and deep-copies the model right after pruning and again after a
forward/backward pass.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import torch_lottery as tl
from torch_lottery.pruning import LotteryContainer

import helpers

X = torch.randn(32, 1, 8, 8, generator=torch.Generator().manual_seed(5))


def cnn(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 20), nn.ReLU(), nn.Linear(20, 10))


def params_of(model):
    return tl.prunable_parameters(model)


def current(module, name="weight"):
    """What a correct ranking sees: ``<name>_orig * <name>_mask`` now (the unpruned parameter otherwise)."""
    orig = helpers.orig_of(module, name).detach()
    return orig * tl.get_mask(module, name)


def expected_global(params, amount):
    """The masks of pruning ``amount`` of the pool's survivors by current magnitude (sort reference)."""
    scores = torch.cat([current(m, n).abs().reshape(-1) for m, n in params])
    alive = torch.cat([tl.get_mask(m, n).bool().reshape(-1) for m, n in params])
    k = round(amount * int(alive.sum()))
    keep = alive.clone()
    order = torch.sort(scores.masked_fill(~alive, float("inf")), stable=True).indices
    keep[order[:k]] = False
    return list(
        torch.split(keep, [m.get_parameter(n + "_orig" if hasattr(m, n + "_orig") else n).numel() for m, n in params])
    )


def expected_local(module, amount, name="weight"):
    return expected_global([(module, name)], amount)[0]


def masks(params):
    return [tl.get_mask(m, n).bool().reshape(-1) for m, n in params]


def stale_entries(params, amount) -> int:
    """How many entries a ranking of the last forward's weights would get wrong (the bug this file guards)."""
    stale = torch.cat([m._last_forward[n].abs().reshape(-1) for m, n in params])
    alive = torch.cat([tl.get_mask(m, n).bool().reshape(-1) for m, n in params])
    keep = alive.clone()
    order = torch.sort(stale.masked_fill(~alive, float("inf")), stable=True).indices
    keep[order[: round(amount * int(alive.sum()))]] = False
    return int((keep != torch.cat(expected_global(params, amount))).sum())


def forward_backward(model):
    model(X).square().mean().backward()


def assert_deep_copyable(model):
    twin = copy.deepcopy(model)
    assert torch.equal(twin(X), model(X))


def trained_pruned_model(first_round):
    """A CNN pruned once by ``first_round(model)``, then trained 3 SGD steps with no forward after the last.

    Each pruned module keeps, as ``_last_forward``, the masked weights of the last forward (what a
    ranking of ``getattr(module, name)`` without torch-lottery's refresh would see).
    """
    model = cnn()
    first_round(model)
    optimizer = helpers.train_steps(model, X, steps=2, lr=0.5)
    optimizer.zero_grad()
    model(X).square().mean().backward()
    for module, name in params_of(model):
        module._last_forward = {name: current(module, name)}
    optimizer.step()
    return model


FIRST_ROUNDS = {
    "ours": lambda model: tl.global_magnitude(params_of(model), amount=0.3),
    "stock": lambda model: prune.global_unstructured(params_of(model), pruning_method=prune.L1Unstructured, amount=0.3),
}

GLOBAL_ROUTES = {
    "stock-global-LotteryMagnitude": lambda model, p, a: prune.global_unstructured(
        p, pruning_method=tl.LotteryMagnitude, amount=a
    ),
    "stock-global-LotteryMagnitude-rewind": lambda model, p, a: prune.global_unstructured(
        p, pruning_method=tl.LotteryMagnitude, amount=a, rewind_point=tl.RewindPoint.capture(model), rewind=False
    ),
    "stock-global-GlobalMagnitude": lambda model, p, a: prune.global_unstructured(
        p, pruning_method=tl.GlobalMagnitude, amount=a, min_remaining=0
    ),
    "global_magnitude": lambda model, p, a: tl.global_magnitude(p, amount=a, min_remaining=0),
    "global_magnitude-model": lambda model, p, a: tl.global_magnitude(model, amount=a, min_remaining=0),
}


@pytest.mark.parametrize("first", FIRST_ROUNDS)
@pytest.mark.parametrize("route", GLOBAL_ROUTES)
def test_global_routes_rank_the_current_weights(first, route):
    model = trained_pruned_model(FIRST_ROUNDS[first])
    params = params_of(model)
    if first == "ours":
        assert stale_entries(params, 0.25) > 0  # the stale ranking would be wrong here: the test can fail
    expected = expected_global(params, 0.25)
    GLOBAL_ROUTES[route](model, params, 0.25)
    assert [torch.equal(a, b) for a, b in zip(masks(params), expected, strict=True)] == [True] * len(params)
    assert_deep_copyable(model)  # right after pruning
    forward_backward(model)
    assert_deep_copyable(model)  # with the autograd graph of a backward pass


LOCAL_ROUTES = {
    "lottery_magnitude": lambda m, a: tl.lottery_magnitude(m, "weight", amount=a),
    "LotteryMagnitude.apply": lambda m, a: tl.LotteryMagnitude.apply(m, "weight", amount=a),
    "GlobalMagnitude.apply": lambda m, a: tl.GlobalMagnitude.apply(m, "weight", amount=a, min_remaining=0),
    "stock-l1_unstructured": lambda m, a: prune.l1_unstructured(m, "weight", amount=a),
    "stock-L1Unstructured.apply": lambda m, a: prune.L1Unstructured.apply(m, "weight", amount=a),
}


@pytest.mark.parametrize("route", LOCAL_ROUTES)
def test_local_routes_rank_the_current_weights(route):
    """Our methods, and stock methods on a model our methods pruned (stock reads getattr(module, name))."""
    model = trained_pruned_model(FIRST_ROUNDS["ours"])
    layer = model[3]
    assert stale_entries([(layer, "weight")], 0.4) > 0
    expected = expected_local(layer, 0.4)
    LOCAL_ROUTES[route](layer, 0.4)
    assert torch.equal(tl.get_mask(layer, "weight").bool().reshape(-1), expected)
    assert_deep_copyable(model)
    forward_backward(model)
    assert_deep_copyable(model)


def test_stock_global_with_a_stock_method_on_our_model_ranks_the_current_weights():
    model = trained_pruned_model(FIRST_ROUNDS["ours"])
    params = params_of(model)
    assert stale_entries(params, 0.25) > 0
    expected = expected_global(params, 0.25)
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=0.25)
    assert [torch.equal(a, b) for a, b in zip(masks(params), expected, strict=True)] == [True] * len(params)
    assert_deep_copyable(model)


def test_the_readme_line_on_a_fresh_model_leaves_our_hook_and_a_deep_copyable_model():
    model = cnn()
    params = params_of(model)
    prune.global_unstructured(params, pruning_method=tl.LotteryMagnitude, amount=0.2)
    assert all(isinstance(next(iter(m._forward_pre_hooks.values())), LotteryContainer) for m, _ in params)
    assert_deep_copyable(model)  # stock's CustomFromMask leaves a non-leaf tensor that deepcopy refuses
    forward_backward(model)
    assert_deep_copyable(model)
    before = tl.pruning.held_bytes(model)
    for _ in range(4):  # memory stays flat over rounds: no per-round mask copies in the hooks
        prune.global_unstructured(params, pruning_method=tl.LotteryMagnitude, amount=0.2)
    assert tl.pruning.held_bytes(model) == before


def test_an_optimizer_step_recomputes_the_masked_weight():
    model = cnn()
    tl.global_magnitude(params_of(model), amount=0.5)
    helpers.train_steps(model, X, steps=2, optimizer=torch.optim.Adam(model.parameters(), lr=0.1))
    for module, name in params_of(model):
        assert torch.equal(getattr(module, name), current(module, name))
        assert not getattr(module, name).requires_grad  # recomputed without a graph; the next forward adds it


def test_stock_global_with_our_method_and_importance_scores_uses_them():
    model = trained_pruned_model(FIRST_ROUNDS["ours"])
    params = params_of(model)
    scores = {
        p: torch.rand(helpers.orig_of(*p).shape, generator=torch.Generator().manual_seed(i))
        for i, p in enumerate(params)
    }
    alive = torch.cat([tl.get_mask(m, n).bool().reshape(-1) for m, n in params])
    flat = torch.cat([scores[p].reshape(-1) for p in params])
    keep = alive.clone()
    keep[torch.sort(flat.masked_fill(~alive, float("inf")), stable=True).indices[: round(0.3 * int(alive.sum()))]] = (
        False
    )
    prune.global_unstructured(params, pruning_method=tl.LotteryMagnitude, amount=0.3, importance_scores=scores)
    assert torch.equal(torch.cat(masks(params)), keep)


def test_global_magnitude_inside_stock_keeps_its_floor():
    model = cnn()
    params = params_of(model)
    prune.global_unstructured(params, pruning_method=tl.GlobalMagnitude, amount=0.999, min_remaining=3)
    assert [int(tl.get_mask(m, n).sum()) for m, n in params] == [3, 3, 3]
    with pytest.raises(ValueError, match="min_remaining=3"):
        prune.global_unstructured(
            params, pruning_method=tl.GlobalMagnitude, amount=0.5, min_remaining=3, on_floor="raise"
        )
