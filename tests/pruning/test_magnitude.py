"""Tests for LotteryMagnitude / lottery_magnitude and SignPreservingSupermask / sign_preserving_supermask."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from torch_lottery import (
    LotteryMagnitude,
    RewindPoint,
    SignPreservingSupermask,
    lottery_magnitude,
    sign_preserving_supermask,
)
from torch_lottery.pruning import CRITERIA, LotteryContainer

from helpers import Holder, assert_unchanged, randn, small_net, snapshot

# --------------------------------------------------------------------------- helpers


def perturb(model, seed=1, scale=0.5):
    """Stand-in for training: add deterministic noise to every parameter (``_orig`` when pruned)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


def sgd_step(model, x, lr=0.5):
    """One real gradient step (pruned tensors get masked gradients through the hook)."""
    model.zero_grad()
    model(x).pow(2).sum().backward()
    with torch.no_grad():
        for p in model.parameters():
            p.sub_(lr * p.grad)


def stock_l1_rounds(t, amounts):
    holder = Holder(t)
    for a in amounts:
        prune.l1_unstructured(holder, "weight", amount=a)
    return holder.weight_mask


def ours_rounds(t, amounts, fn=lottery_magnitude):
    holder = Holder(t)
    for a in amounts:
        fn(holder, "weight", a)
    return holder


def reference_prune(scores: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """Prune the ``k`` lowest ``scores`` among entries where ``mask`` is 1 (no ties expected)."""
    s = scores.detach().double().reshape(-1).clone()
    s[mask.reshape(-1) == 0] = math.inf
    out = mask.detach().clone().reshape(-1)
    out[torch.argsort(s)[:k]] = 0
    return out.view_as(mask)


# --------------------------------------------------------------------------- equality with stock L1Unstructured

# Hand-picked: every shape (1-D to 5-D), every kind of round list (a float, 0.0, 1.0, an int, int 0,
# several rounds of floats, ints and floats mixed) and both entry points. Random shapes, amounts and
# round counts against stock are tests/properties/test_pruning_properties.py's job.
STOCK_L1_CASES = [
    ((13,), [0.3], "functional"),
    ((6, 7), [0.0], "functional"),
    ((4, 3, 3, 2), [1.0], "functional"),
    ((2, 3, 2, 2, 2), [0.5, 0.5], "functional"),
    ((13,), [0.2, 0.2, 0.2], "functional"),
    ((6, 7), [3], "functional"),
    ((4, 3, 3, 2), [0], "functional"),
    ((2, 3, 2, 2, 2), [2, 0.25, 1], "functional"),
    ((6, 7), [0.35, 4, 0.1, 0.7], "functional"),
    ((13,), [0.35, 4, 0.1, 0.7], "classmethod"),
    ((6, 7), [0], "classmethod"),
    ((4, 3, 3, 2), [2, 0.25, 1], "classmethod"),
    ((2, 3, 2, 2, 2), [1.0], "classmethod"),
]


@pytest.mark.parametrize("shape, amounts, api", STOCK_L1_CASES)
def test_masks_equal_stock_l1_unstructured(shape, amounts, api):
    t = randn(*shape, seed=sum(shape))
    fn = lottery_magnitude if api == "functional" else LotteryMagnitude.apply
    ours = ours_rounds(t, amounts, fn)
    expected = stock_l1_rounds(t, amounts)
    assert ours.weight_mask.shape == t.shape
    assert ours.weight_mask.dtype == torch.bool  # stock's is float; ours holds the same 0/1 in 1 byte
    assert torch.equal(ours.weight_mask, expected.bool())
    # without a rewind point the weights are not touched
    assert torch.equal(ours.weight_orig, t)
    assert torch.equal(ours.weight, expected * t)


@pytest.mark.parametrize("seed", range(5))
def test_masks_equal_stock_l1_with_importance_scores(seed):
    t = randn(8, 5, seed=seed)
    scores = randn(8, 5, seed=seed + 100)
    ours = Holder(t)
    stock = Holder(t)
    lottery_magnitude(ours, "weight", 0.4, importance_scores=scores)
    prune.l1_unstructured(stock, "weight", 0.4, importance_scores=scores)
    assert torch.equal(ours.weight_mask, stock.weight_mask)
    lottery_magnitude(ours, "weight", 5, importance_scores=scores)
    prune.l1_unstructured(stock, "weight", 5, importance_scores=scores)
    assert torch.equal(ours.weight_mask, stock.weight_mask)


def _three_layer(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))


@pytest.mark.parametrize("amounts", [[0.3], [0.2, 0.2, 0.2], [10, 0.5], [0.0, 1], [0.9, 3]])
def test_global_unstructured_with_lottery_magnitude_equals_stock(amounts):
    ours = _three_layer(3)
    stock = _three_layer(3)
    ours_params = [(ours[0], "weight"), (ours[2], "weight"), (ours[4], "weight"), (ours[4], "bias")]
    stock_params = [(stock[0], "weight"), (stock[2], "weight"), (stock[4], "weight"), (stock[4], "bias")]
    for amount in amounts:
        prune.global_unstructured(ours_params, pruning_method=LotteryMagnitude, amount=amount)
        prune.global_unstructured(stock_params, pruning_method=prune.L1Unstructured, amount=amount)
        for (m1, n1), (m2, n2) in zip(ours_params, stock_params, strict=True):
            assert torch.equal(getattr(m1, n1 + "_mask"), getattr(m2, n2 + "_mask"))
            assert torch.equal(getattr(m1, n1 + "_orig"), getattr(m2, n2 + "_orig"))
    x = torch.randn(2, 6)
    assert torch.equal(ours(x), stock(x))


def test_two_rounds_of_20_percent_leave_64_percent():
    layer = Holder(randn(100, 100, seed=7))
    lottery_magnitude(layer, "weight", 0.2)
    assert int(layer.weight_mask.sum()) == 8000
    lottery_magnitude(layer, "weight", 0.2)
    assert int(layer.weight_mask.sum()) == 6400
    lottery_magnitude(layer, "weight", 0.2)
    assert int(layer.weight_mask.sum()) == 5120


def test_compounding_with_rewinding_on_linear():
    layer = nn.Linear(100, 100)
    init = layer.weight.detach().clone()
    for expected in (8000, 6400):
        perturb(layer, seed=expected)
        lottery_magnitude(layer, "weight", amount=0.2, rewind_point=init)
        assert int(layer.weight_mask.sum()) == expected
        assert torch.equal(layer.weight_orig, init)


def test_masks_only_shrink_and_layout_is_stock():
    torch.manual_seed(0)
    layer = nn.Linear(12, 9)
    previous = torch.ones_like(layer.weight)
    for amount in (0.3, 4, 0.5, 0.0, 0.25):
        lottery_magnitude(layer, "weight", amount)
        mask = layer.weight_mask
        assert mask.shape == layer.weight_orig.shape == (9, 12)
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        assert bool((mask <= previous).all()), "a pruned entry came back to life"
        previous = mask.clone()
        assert isinstance(layer.weight_orig, nn.Parameter)
        assert "weight_orig" in dict(layer.named_parameters())
        assert "weight" not in dict(layer.named_parameters())
        assert "weight_mask" in dict(layer.named_buffers())
        assert "weight_mask" not in dict(layer.named_parameters())
        assert prune.is_pruned(layer)
        hooks = [h for h in layer._forward_pre_hooks.values() if isinstance(h, prune.BasePruningMethod)]
        assert len(hooks) == 1 and isinstance(hooks[0], LotteryContainer)
        assert isinstance(hooks[0][-1], LotteryMagnitude)
        assert torch.equal(layer.weight, layer.weight_mask * layer.weight_orig)
    assert int(previous.sum()) == 108 - 32 - 4 - 36 - 0 - 9


def test_returns_module_and_method():
    layer = nn.Linear(4, 4)
    assert lottery_magnitude(layer, "weight", 0.5) is layer
    method = LotteryMagnitude.apply(layer, "weight", 0.5)
    assert isinstance(method, LotteryMagnitude)
    assert method.amount == 0.5


def test_bias_and_forward_use_mask():
    torch.manual_seed(0)
    layer = nn.Linear(3, 6)
    lottery_magnitude(layer, "bias", 2)
    assert int(layer.bias_mask.sum()) == 4
    x = torch.randn(2, 3)
    expected = x @ layer.weight.T + layer.bias_orig * layer.bias_mask
    assert torch.allclose(layer(x), expected)


# --------------------------------------------------------------------------- mixing with stock methods

STOCK = {
    "l1_unstructured": lambda m: prune.l1_unstructured(m, "weight", amount=0.3),
    "random_unstructured": lambda m: prune.random_unstructured(m, "weight", amount=0.3),
    "ln_structured": lambda m: prune.ln_structured(m, "weight", amount=0.25, n=2, dim=0),
}


@pytest.mark.parametrize("stock_name", list(STOCK))
@pytest.mark.parametrize("order", ["stock_first", "ours_first"])
def test_mix_with_stock_methods_then_remove(stock_name, order):
    torch.manual_seed(0)
    layer = nn.Linear(8, 8)
    stock = STOCK[stock_name]
    steps = (
        [stock, lambda m: lottery_magnitude(m, "weight", 0.3), stock]
        if order == "stock_first"
        else [lambda m: lottery_magnitude(m, "weight", 0.3), stock, lambda m: lottery_magnitude(m, "weight", 0.3)]
    )
    previous = torch.ones(8, 8)
    for i, step in enumerate(steps):
        before_orig = layer.weight_orig.detach().clone() if i else layer.weight.detach().clone()
        step(layer)
        mask = layer.weight_mask
        assert bool((mask <= previous).all())
        assert int(mask.sum()) < int(previous.sum())
        assert torch.equal(layer.weight_orig, before_orig)
        assert prune.is_pruned(layer)
        hooks = [h for h in layer._forward_pre_hooks.values() if isinstance(h, prune.BasePruningMethod)]
        assert len(hooks) == 1
        previous = mask.clone()
    hook = next(iter(layer._forward_pre_hooks.values()))
    assert isinstance(hook, LotteryContainer)
    assert len(hook) == 3
    x = torch.randn(3, 8)
    out = layer(x)
    assert torch.allclose(out, x @ (layer.weight_mask * layer.weight_orig).T + layer.bias)
    expected = (layer.weight_mask * layer.weight_orig).detach().clone()
    prune.remove(layer, "weight")
    assert type(layer.weight) is nn.Parameter
    assert torch.equal(layer.weight, expected)
    assert "weight_orig" not in dict(layer.named_parameters())
    assert "weight_mask" not in dict(layer.named_buffers())
    assert not prune.is_pruned(layer)
    assert torch.allclose(layer(x), out)


def test_lottery_on_top_of_stock_l1_equals_stock_twice():
    t = randn(9, 9, seed=3)
    ours = Holder(t)
    prune.l1_unstructured(ours, "weight", 0.3)
    lottery_magnitude(ours, "weight", 0.4)
    assert torch.equal(ours.weight_mask, stock_l1_rounds(t, [0.3, 0.4]))
    prune.l1_unstructured(ours, "weight", 5)
    lottery_magnitude(ours, "weight", 0.5)
    assert torch.equal(ours.weight_mask, stock_l1_rounds(t, [0.3, 0.4, 5, 0.5]))


def test_lottery_on_top_of_structured_prunes_only_survivors():
    torch.manual_seed(0)
    layer = nn.Linear(6, 6)
    prune.ln_structured(layer, "weight", amount=2, n=1, dim=0)
    base = layer.weight_mask.clone()
    assert int(base.sum()) == 24
    lottery_magnitude(layer, "weight", 6)
    assert int(layer.weight_mask.sum()) == 18
    expected = reference_prune(layer.weight_orig.abs(), base, 6)
    assert torch.equal(layer.weight_mask, expected)


# --------------------------------------------------------------------------- rewinding


def test_rewind_with_tensor_after_training_step():
    torch.manual_seed(0)
    layer = nn.Linear(10, 8)
    init = layer.weight.detach().clone()
    sgd_step(layer, torch.randn(4, 10))
    trained = layer.weight.detach().clone()
    assert not torch.equal(trained, init)
    lottery_magnitude(layer, "weight", 0.5, rewind_point=init)
    expected_mask = stock_l1_rounds(trained, [0.5])
    assert torch.equal(layer.weight_mask, expected_mask)  # mask from the trained weights
    kept = layer.weight_mask.bool()
    assert torch.equal(layer.weight_orig[kept], init[kept])  # bit-identical survivors
    assert torch.equal(layer.weight_orig, init)
    assert torch.equal(layer.weight, layer.weight_mask * init)
    assert isinstance(layer.weight_orig, nn.Parameter)


def test_rewind_with_rewind_point_iterative_rounds():
    net = small_net(0)
    init = RewindPoint.capture(net)
    x = torch.randn(6, 5)
    previous = torch.ones(4, 5)
    for round_ in range(3):
        sgd_step(net, x, lr=0.1)
        trained = net[0].weight_orig.detach().clone() if round_ else net[0].weight.detach().clone()
        assert not torch.equal(trained, init["0.weight"])
        LotteryMagnitude.apply(net[0], "weight", 0.3, rewind_point=init)
        k = round(0.3 * int(previous.sum()))
        # the mask comes from the trained values of the survivors
        assert torch.equal(net[0].weight_mask, reference_prune(trained.abs(), previous, k))
        assert torch.equal(net[0].weight_orig, init["0.weight"])
        assert torch.equal(net[0].weight, net[0].weight_mask * init["0.weight"])
        previous = net[0].weight_mask.clone()
    assert int(net[0].weight_mask.sum()) == 20 - 6 - 4 - 3
    # the other layer was never touched by the rewind
    assert not prune.is_pruned(net[2])


def test_rewind_false_leaves_weights_alone():
    torch.manual_seed(0)
    layer = nn.Linear(6, 6)
    init = layer.weight.detach().clone()
    perturb(layer)
    trained = layer.weight.detach().clone()
    lottery_magnitude(layer, "weight", 0.5, rewind_point=init, rewind=False)
    assert torch.equal(layer.weight_orig, trained)
    assert torch.equal(layer.weight_mask, stock_l1_rounds(trained, [0.5]))
    # rewind=False still lets a criterion use the rewind point
    lottery_magnitude(layer, "weight", 0.5, criterion="large_init", rewind_point=init, rewind=False)
    assert torch.equal(layer.weight_orig, trained)
    survivors_before = stock_l1_rounds(trained, [0.5])
    assert torch.equal(layer.weight_mask, reference_prune(init.abs(), survivors_before, 9))


def test_rewind_point_in_stock_global_unstructured_rewinds_whole_pool():
    net = _three_layer(0)
    init = RewindPoint.capture(net)
    reference = _three_layer(0)
    params = [(net[0], "weight"), (net[2], "weight"), (net[4], "weight")]
    ref_params = [(reference[0], "weight"), (reference[2], "weight"), (reference[4], "weight")]
    x = torch.randn(2, 6)
    for round_ in range(2):
        perturb(net, seed=10 + round_)
        with torch.no_grad():
            for (m, n), (rm, rn) in zip(params, ref_params, strict=True):
                src = getattr(m, n + "_orig") if round_ else getattr(m, n)
                dst = getattr(rm, rn + "_orig") if round_ else getattr(rm, rn)
                dst.copy_(src)
        # stock global_unstructured ranks the computed module.<name>, which a forward refreshes
        net(x)
        reference(x)
        prune.global_unstructured(params, pruning_method=LotteryMagnitude, amount=0.3, rewind_point=init.select(params))
        prune.global_unstructured(ref_params, pruning_method=prune.L1Unstructured, amount=0.3)
        for (m, n), (rm, rn), key in zip(params, ref_params, ["0.weight", "2.weight", "4.weight"], strict=True):
            assert torch.equal(getattr(m, n + "_mask"), getattr(rm, rn + "_mask"))
            assert torch.equal(getattr(m, n + "_orig"), init[key])
            assert torch.equal(getattr(m, n), getattr(m, n + "_mask") * init[key])
    total = sum(getattr(m, n + "_mask").numel() for m, n in params)
    surviving = sum(int(getattr(m, n + "_mask").sum()) for m, n in params)
    first = total - round(0.3 * total)
    assert surviving == first - round(0.3 * first)


def test_rewind_point_in_global_unstructured_without_select_same_order_works():
    net = _three_layer(1)
    init = RewindPoint.capture(net)
    perturb(net)
    params = [(net[0], "weight"), (net[2], "weight"), (net[4], "weight")]
    prune.global_unstructured(params, pruning_method=LotteryMagnitude, amount=0.5, rewind_point=init)
    for (m, _), key in zip(params, ["0.weight", "2.weight", "4.weight"], strict=True):
        assert torch.equal(m.weight_orig, init[key])


def test_rewind_point_needs_no_select_and_works_in_any_order():
    net = _three_layer(2)
    init = RewindPoint.capture(net)
    perturb(net)
    twin = copy.deepcopy(net)
    params = [(net[4], "weight"), (net[2], "weight"), (net[0], "weight")]
    prune.global_unstructured(params, pruning_method=LotteryMagnitude, amount=0.3, rewind_point=init)
    twin_params = [(twin[0], "weight"), (twin[2], "weight"), (twin[4], "weight")]
    prune.global_unstructured(
        twin_params,
        pruning_method=LotteryMagnitude,
        amount=0.3,
        rewind_point=RewindPoint(dict(init.items()), model=twin).select(twin_params),
    )
    for i in (0, 2, 4):
        assert torch.equal(net[i].weight_mask, twin[i].weight_mask)
        assert torch.equal(net[i].weight_orig, init[f"{i}.weight"])
        assert torch.equal(net[i].bias, twin[i].bias)  # only the pruned tensors are rewound


def test_rewind_point_covering_fewer_tensors_raises_and_leaves_model():
    net = _three_layer(2)
    init = RewindPoint.capture(net)
    perturb(net)
    params = [(net[0], "weight"), (net[2], "weight")]
    before = snapshot(net)
    with pytest.raises(ValueError, match="rewind_point"):
        prune.global_unstructured(
            params, pruning_method=LotteryMagnitude, amount=0.3, rewind_point=init.select(params[:1])
        )
    assert_unchanged(net, before)


def test_rewind_point_of_other_tensors_of_the_same_size_raises_and_leaves_model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4))
    init = RewindPoint.capture(net)
    perturb(net)
    params = [(net[0], "weight"), (net[1], "weight")]
    other = [(net[1], "weight"), (net[2], "weight")]  # not the pool: same total size
    before = snapshot(net)
    with pytest.raises(ValueError, match="rewind_point"):
        prune.global_unstructured(params, pruning_method=LotteryMagnitude, amount=0.5, rewind_point=init.select(other))
    assert_unchanged(net, before)


def test_tensor_rewind_point_in_global_unstructured_is_refused():
    net = _three_layer(2)
    params = [(net[0], "weight"), (net[2], "weight")]
    before = snapshot(net)
    with pytest.raises(TypeError, match="rewind_point"):
        prune.global_unstructured(
            params, pruning_method=LotteryMagnitude, amount=0.3, rewind_point=net[0].weight.detach().clone()
        )
    assert_unchanged(net, before)


def test_criterion_without_rewind_point_in_global_unstructured_raises():
    net = _three_layer(2)
    params = [(net[0], "weight"), (net[2], "weight")]
    before = snapshot(net)
    with pytest.raises(ValueError, match=r"criterion='large_init'.*rewind_point"):
        prune.global_unstructured(params, pruning_method=LotteryMagnitude, amount=0.3, criterion="large_init")
    assert_unchanged(net, before)


def test_rewind_point_from_another_model_in_global_unstructured_raises():
    net = _three_layer(2)
    other = _three_layer(3)
    init = RewindPoint.capture(other)
    params = [(net[0], "weight"), (net[2], "weight"), (net[4], "weight")]
    before = snapshot(net)
    with pytest.raises(ValueError, match="rewind_point"):
        prune.global_unstructured(params, pruning_method=LotteryMagnitude, amount=0.3, rewind_point=init)
    assert_unchanged(net, before)


# --------------------------------------------------------------------------- criteria by hand

FINAL = [0.5, -2.0, 1.0, 3.0, -0.1, 0.8, -1.5, 0.05]
INIT = [0.3, -0.5, -2.0, 2.9, 0.7, 0.6, -1.6, 0.04]
# scores (low = pruned first), amount=3:
#   large_final          |f|      -> 0.5 2 1 3 0.1 0.8 1.5 0.05        prune 7, 4, 0
#   small_final          -|f|     -> prunes the 3 largest |f|          prune 3, 1, 6
#   large_init           |i|      -> 0.3 0.5 2 2.9 0.7 0.6 1.6 0.04    prune 7, 0, 1
#   magnitude_increase   |f|-|i|  -> .2 1.5 -1 .1 -.6 .2 -.1 .01       prune 2, 4, 6
#   movement             |f-i|    -> .2 1.5 3 .1 .8 .2 .1 .01          prune 7, 3, 6
#   large_final_same_sign: 2 and 4 flipped sign (pruned first), then |f| -> prune 2, 4, 7
EXPECTED_MASKS = {
    "large_final": [0, 1, 1, 1, 0, 1, 1, 0],
    "small_final": [1, 0, 1, 0, 1, 1, 0, 1],
    "large_init": [0, 0, 1, 1, 1, 1, 1, 0],
    "magnitude_increase": [1, 1, 0, 1, 0, 1, 0, 1],
    "movement": [1, 1, 1, 0, 1, 1, 0, 0],
    "large_final_same_sign": [1, 1, 0, 1, 0, 1, 1, 0],
}


def test_criteria_constant_lists_all_six():
    assert set(CRITERIA) == set(EXPECTED_MASKS)
    assert len(CRITERIA) == 6


@pytest.mark.parametrize("criterion", sorted(EXPECTED_MASKS))
@pytest.mark.parametrize("rewind", [True, False])
def test_criterion_masks_by_hand(criterion, rewind):
    holder = Holder(torch.tensor(FINAL))
    init = torch.tensor(INIT)
    lottery_magnitude(holder, "weight", 3, criterion=criterion, rewind_point=init, rewind=rewind)
    assert holder.weight_mask.tolist() == EXPECTED_MASKS[criterion]
    assert torch.equal(holder.weight_orig, init if rewind else torch.tensor(FINAL))


@pytest.mark.parametrize("criterion", ["large_final", "small_final"])
def test_criteria_without_rewind_point(criterion):
    holder = Holder(torch.tensor(FINAL))
    lottery_magnitude(holder, "weight", 0.375, criterion=criterion)  # round(0.375 * 8) = 3
    assert holder.weight_mask.tolist() == EXPECTED_MASKS[criterion]
    assert torch.equal(holder.weight_orig, torch.tensor(FINAL))


@pytest.mark.parametrize("criterion", sorted(EXPECTED_MASKS))
def test_criterion_masks_by_hand_with_rewind_point_object(criterion):
    holder = Holder(torch.tensor(INIT))
    init = RewindPoint.capture(holder, parameters=[(holder, "weight")])
    with torch.no_grad():
        holder.weight.copy_(torch.tensor(FINAL))
    LotteryMagnitude.apply(holder, "weight", 3, criterion=criterion, rewind_point=init)
    assert holder.weight_mask.tolist() == EXPECTED_MASKS[criterion]
    assert torch.equal(holder.weight_orig, torch.tensor(INIT))


def _criterion_reference(criterion, final, initial):
    if criterion == "large_final":
        return final.abs()
    if criterion == "small_final":
        return -final.abs()
    if criterion == "large_init":
        return initial.abs()
    if criterion == "magnitude_increase":
        return final.abs() - initial.abs()
    if criterion == "movement":
        return (final - initial).abs()
    same_sign = torch.sign(final) * torch.sign(initial) > 0
    return torch.where(same_sign, final.abs(), torch.full_like(final, -1.0))


@pytest.mark.parametrize("criterion", CRITERIA)
@pytest.mark.parametrize("seed", [0, 1])
def test_criteria_on_second_round_align_rewind_values_with_survivors(criterion, seed):
    init = randn(7, 6, seed=seed)
    trained = init + 0.8 * randn(7, 6, seed=seed + 50)
    holder = Holder(trained)
    torch.manual_seed(seed)
    prune.random_unstructured(holder, "weight", 0.4)  # an irregular earlier mask
    base = holder.weight_mask.clone()
    lottery_magnitude(holder, "weight", 0.5, criterion=criterion, rewind_point=init)
    surviving = int(base.sum())
    k = round(0.5 * surviving)
    scores = _criterion_reference(criterion, trained, init)
    if criterion == "large_final_same_sign":
        # many -1 ties: check the contract instead of one order
        mask = holder.weight_mask
        assert int(mask.sum()) == surviving - k
        assert bool((mask <= base).all())
        flipped = (torch.sign(trained) * torch.sign(init) <= 0) & base.bool()
        n_flipped = int(flipped.sum())
        if n_flipped <= k:
            assert not bool(mask[flipped].any())
        else:
            assert not bool(mask[~flipped & base.bool()].eq(0).any())
    else:
        assert torch.equal(holder.weight_mask, reference_prune(scores, base, k))
    assert torch.equal(holder.weight_orig, init)


@pytest.mark.parametrize("criterion", ["large_init", "movement", "magnitude_increase"])
def test_criteria_in_stock_global_unstructured_second_round(criterion):
    net = _three_layer(4)
    init = RewindPoint.capture(net)
    params = [(net[0], "weight"), (net[2], "weight"), (net[4], "weight")]
    torch.manual_seed(11)
    prune.global_unstructured(params, pruning_method=prune.RandomUnstructured, amount=0.3)
    perturb(net, seed=5)
    net(torch.randn(2, 6))  # refresh the computed weights that stock global_unstructured ranks
    base = torch.cat([m.weight_mask.reshape(-1) for m, _ in params])
    final = torch.cat([m.weight_orig.detach().reshape(-1) for m, _ in params])
    initial = torch.cat([init[k].reshape(-1) for k in ["0.weight", "2.weight", "4.weight"]])
    prune.global_unstructured(
        params, pruning_method=LotteryMagnitude, amount=0.4, criterion=criterion, rewind_point=init.select(params)
    )
    k = round(0.4 * int(base.sum()))
    expected = reference_prune(_criterion_reference(criterion, final, initial), base, k)
    got = torch.cat([m.weight_mask.reshape(-1) for m, _ in params])
    assert torch.equal(got, expected)
    for (m, _), key in zip(params, ["0.weight", "2.weight", "4.weight"], strict=True):
        assert torch.equal(m.weight_orig, init[key])


# --------------------------------------------------------------------------- sign-preserving supermask


# Hand-picked (seed, amount): fewer, as many and more sign flips than ``amount`` asks to prune
# (seed 0: 7 flips, seed 4: 29, seed 5: 10, seed 2: 21, seed 9: 15), for a float and an int amount.
SUPERMASK_CASES = [
    pytest.param(0, 0.1, id="flips<k"),
    pytest.param(2, 0.5, id="flips<k-half"),
    pytest.param(9, 0.5, id="flips<k-half-b"),
    pytest.param(5, 0.1, id="flips==k"),
    pytest.param(0, 7, id="flips==k-int"),
    pytest.param(4, 0.1, id="flips>k"),
    pytest.param(4, 7, id="flips>k-int"),
    pytest.param(1, 7, id="flips>k-int-b"),
]


@pytest.mark.parametrize("seed, amount", SUPERMASK_CASES)
def test_supermask_survivors_keep_their_sign(seed, amount):
    init = randn(10, 10, seed=seed)
    noise_scale = 0.3 + 0.1 * (seed % 5)
    trained = init + noise_scale * randn(10, 10, seed=seed + 1000)
    layer = Holder(init)
    point = RewindPoint.capture(layer, parameters=[(layer, "weight")])
    with torch.no_grad():
        layer.weight.copy_(trained)
    sign_preserving_supermask(layer, "weight", amount, rewind_point=point)
    mask = layer.weight_mask.bool()
    flipped = torch.sign(trained) != torch.sign(init)
    assert bool((torch.sign(trained[mask]) == torch.sign(init[mask])).all())
    assert not bool(mask[flipped].any()), "a sign-flipped entry survived"
    k = amount if isinstance(amount, int) else round(amount * 100)
    pruned = int((~mask).sum())
    assert pruned >= k
    assert pruned == max(k, int(flipped.sum()))
    # the extra entries pruned (beyond the flipped ones) are the smallest same-sign magnitudes
    kept_same = trained.abs()[mask]
    pruned_same = trained.abs()[~mask & ~flipped]
    if pruned_same.numel() and kept_same.numel():
        assert float(pruned_same.max()) <= float(kept_same.min())
    assert torch.equal(layer.weight_orig[mask], init[mask])
    assert torch.equal(layer.weight_orig, init)
    assert torch.equal(layer.weight, layer.weight_mask * init)


def test_supermask_with_few_flips_prunes_exactly_amount_by_hand():
    holder = Holder(torch.tensor(FINAL))
    init = torch.tensor(INIT)
    # two entries (2 and 4) flipped sign
    SignPreservingSupermask.apply(holder, "weight", 1, rewind_point=init)
    assert holder.weight_mask.tolist() == [1, 1, 0, 1, 0, 1, 1, 1]
    holder = Holder(torch.tensor(FINAL))
    sign_preserving_supermask(holder, "weight", 4, rewind_point=init)
    assert holder.weight_mask.tolist() == [0, 1, 0, 1, 0, 1, 1, 0]


def test_supermask_signed_constant_values():
    init = randn(6, 5, seed=3)
    trained = init + 0.4 * randn(6, 5, seed=4)
    layer = Holder(trained)
    sign_preserving_supermask(layer, "weight", 0.3, rewind_point=init, values="signed_constant")
    std = init.std()
    expected = torch.sign(init) * std
    assert torch.allclose(layer.weight_orig, expected, rtol=0, atol=1e-7)
    kept = layer.weight_mask.bool()
    assert torch.allclose(layer.weight_orig[kept].abs(), std.expand(int(kept.sum())), rtol=0, atol=1e-7)
    assert bool((torch.sign(layer.weight_orig[kept]) == torch.sign(init[kept])).all())
    assert torch.equal(layer.weight, layer.weight_mask * layer.weight_orig)


def test_supermask_network_evaluates_without_training():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    init = RewindPoint.capture(net)
    perturb(net, seed=3, scale=0.3)
    for layer in (net[0], net[2]):
        sign_preserving_supermask(layer, "weight", 0.4, rewind_point=init)
    dense = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():
        for i, key in ((0, "0.weight"), (2, "2.weight")):
            dense[i].weight.copy_(net[i].weight_mask * init[key])
            dense[i].bias.copy_(net[i].bias)
    x = torch.randn(5, 6)
    assert torch.equal(net(x), dense(x))
    for i in (0, 2):
        assert int(net[i].weight_mask.sum()) <= net[i].weight_mask.numel() - round(0.4 * net[i].weight_mask.numel())


def test_supermask_in_stock_global_unstructured():
    net = _three_layer(5)
    init = RewindPoint.capture(net)
    perturb(net, seed=9, scale=0.4)
    params = [(net[0], "weight"), (net[2], "weight"), (net[4], "weight")]
    names = ["0.weight", "2.weight", "4.weight"]
    trained = {k: getattr(m, n).detach().clone() for (m, n), k in zip(params, names, strict=True)}
    prune.global_unstructured(
        params, pruning_method=SignPreservingSupermask, amount=0.2, rewind_point=init.select(params)
    )
    for (m, _), key in zip(params, trained, strict=True):
        kept = m.weight_mask.bool()
        assert bool((torch.sign(trained[key][kept]) == torch.sign(init[key][kept])).all())
        assert torch.equal(m.weight_orig, init[key])


def test_supermask_needs_rewind_point_and_valid_values():
    layer = nn.Linear(4, 4)
    before = snapshot(layer)
    with pytest.raises(ValueError, match="rewind_point"):
        sign_preserving_supermask(layer, "weight", 0.5, rewind_point=None)
    with pytest.raises(ValueError, match="values"):
        sign_preserving_supermask(layer, "weight", 0.5, rewind_point=layer.weight.detach().clone(), values="ones")
    with pytest.raises(ValueError, match="amount"):
        sign_preserving_supermask(layer, "weight", 2.0, rewind_point=layer.weight.detach().clone())
    with pytest.raises(ValueError, match="rewind_point"):
        sign_preserving_supermask(layer, "weight", 0.5, rewind_point=torch.zeros(3, 3))
    assert_unchanged(layer, before)


# --------------------------------------------------------------------------- bad input leaves the model unchanged


_OTHER_MODEL = small_net(9)  # kept alive: a RewindPoint only holds a weak reference to its model


def _other_model_point():
    return RewindPoint.capture(_OTHER_MODEL)


BAD_INPUTS = [
    # id, kwargs factory (net -> kwargs), exception, match
    ("amount_negative", lambda net: dict(amount=-1), ValueError, r"amount=-1"),
    ("amount_above_one", lambda net: dict(amount=1.5), ValueError, r"amount=1\.5"),
    ("amount_nan", lambda net: dict(amount=float("nan")), ValueError, r"amount=nan"),
    ("amount_str", lambda net: dict(amount="x"), TypeError, r"amount.*'x'"),
    ("amount_bool", lambda net: dict(amount=True), TypeError, r"amount.*True"),
    ("amount_none", lambda net: dict(amount=None), TypeError, r"amount.*None"),
    ("criterion_unknown", lambda net: dict(amount=0.2, criterion="biggest"), ValueError, r"criterion='biggest'"),
    ("criterion_not_str", lambda net: dict(amount=0.2, criterion=3), ValueError, r"criterion=3"),
    (
        "criterion_needs_rewind",
        lambda net: dict(amount=0.2, criterion="movement"),
        ValueError,
        r"criterion='movement'.*rewind_point",
    ),
    (
        "rewind_point_shape",
        lambda net: dict(amount=0.2, rewind_point=torch.zeros(5, 4)),
        ValueError,
        r"rewind_point.*\(5, 4\)",
    ),
    ("rewind_point_type", lambda net: dict(amount=0.2, rewind_point=[1.0, 2.0]), TypeError, r"rewind_point"),
    (
        "rewind_point_dict",
        lambda net: dict(amount=0.2, rewind_point={"0.weight": torch.zeros(4, 5)}),
        TypeError,
        r"rewind_point",
    ),
    (
        "rewind_point_other_model",
        lambda net: dict(amount=0.2, rewind_point=_other_model_point()),
        ValueError,
        r"rewind_point",
    ),
    (
        "rewind_point_unbound",
        lambda net: dict(amount=0.2, rewind_point=RewindPoint({"0.weight": torch.zeros(4, 5)})),
        ValueError,
        r"rewind_point.*not bound",
    ),
    ("rewind_not_bool", lambda net: dict(amount=0.2, rewind_point=torch.zeros(4, 5), rewind=1), TypeError, r"rewind"),
    (
        "importance_scores_shape",
        lambda net: dict(amount=0.2, importance_scores=torch.ones(5, 4)),
        ValueError,
        r"importance_scores.*\(5, 4\)",
    ),
    (
        "importance_scores_type",
        lambda net: dict(amount=0.2, importance_scores=[[1.0]]),
        TypeError,
        r"importance_scores",
    ),
    (
        "importance_scores_nan",
        lambda net: dict(amount=0.2, importance_scores=torch.full((4, 5), float("nan"))),
        ValueError,
        r"importance_scores.*NaN",
    ),
]


def _prepare(round_):
    net = small_net(0)
    if round_ == "second":
        lottery_magnitude(net[0], "weight", 0.5)  # 10 of 20 survive
        net(torch.randn(2, 5))  # a forward, so the computed weight carries a graph
    return net


@pytest.mark.parametrize("round_", ["first", "second"])
@pytest.mark.parametrize("api", ["functional", "classmethod"])
@pytest.mark.parametrize("case_id,make_kwargs,exc,match", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_raises_and_leaves_model_unchanged(round_, api, case_id, make_kwargs, exc, match):
    net = _prepare(round_)
    kwargs = make_kwargs(net)
    before = snapshot(net)
    fn = lottery_magnitude if api == "functional" else LotteryMagnitude.apply
    with pytest.raises(exc, match=match):
        fn(net[0], "weight", **kwargs)
    assert_unchanged(net, before)
    # the model still works and can still be pruned
    lottery_magnitude(net[0], "weight", 2)
    assert int(net[0].weight_mask.sum()) == (18 if round_ == "first" else 8)


@pytest.mark.parametrize("round_,amount,surviving", [("first", 21, 20), ("second", 11, 10), ("second", 20, 10)])
def test_int_amount_larger_than_surviving_count(round_, amount, surviving):
    net = _prepare(round_)
    before = snapshot(net)
    with pytest.raises(ValueError, match=rf"amount={amount}.*\({surviving}\)"):
        lottery_magnitude(net[0], "weight", amount)
    assert_unchanged(net, before)
    # exactly the surviving count is fine
    lottery_magnitude(net[0], "weight", surviving)
    assert int(net[0].weight_mask.sum()) == 0


@pytest.mark.parametrize("round_", ["first", "second"])
def test_nan_weights_raise_and_leave_model_unchanged(round_):
    net = _prepare(round_)
    with torch.no_grad():
        if round_ == "first":
            net[0].weight[1, 2] = float("nan")
        else:
            kept = net[0].weight_mask.bool()
            idx = kept.nonzero()[0]
            net[0].weight_orig[idx[0], idx[1]] = float("nan")
            net(torch.randn(2, 5))
    before = snapshot(net)
    with pytest.raises(ValueError, match="NaN"):
        lottery_magnitude(net[0], "weight", 0.3)
    assert_unchanged(net, before)


@pytest.mark.parametrize("round_", ["first", "second"])
def test_supermask_bad_input_leaves_model_unchanged(round_):
    net = _prepare(round_)
    before = snapshot(net)
    good_point = torch.zeros(4, 5)
    with pytest.raises(ValueError, match="rewind_point"):
        sign_preserving_supermask(net[0], "weight", 0.2, rewind_point=None)
    with pytest.raises(ValueError, match="values='x'"):
        sign_preserving_supermask(net[0], "weight", 0.2, rewind_point=good_point, values="x")
    with pytest.raises(TypeError, match="amount"):
        SignPreservingSupermask.apply(net[0], "weight", "x", rewind_point=good_point)
    with pytest.raises(ValueError, match="rewind_point"):
        sign_preserving_supermask(net[0], "weight", 0.2, rewind_point=torch.zeros(5, 4))
    with pytest.raises(ValueError, match="rewind_point"):
        sign_preserving_supermask(net[0], "weight", 0.2, rewind_point=_other_model_point())
    with pytest.raises(ValueError, match="amount=25"):
        sign_preserving_supermask(net[0], "weight", 25, rewind_point=good_point)
    assert_unchanged(net, before)


@pytest.mark.parametrize(
    "name,exc,match",
    [
        ("weights", ValueError, r"name='weights'"),
        ("weight_mask", ValueError, r"name='weight_mask'"),
        (3, TypeError, r"name"),
    ],
)
def test_bad_name_raises(name, exc, match):
    net = small_net(0)
    before = snapshot(net)
    with pytest.raises(exc, match=match):
        lottery_magnitude(net[0], name, 0.2)
    assert_unchanged(net, before)


def test_not_a_module_raises():
    with pytest.raises(TypeError, match="module"):
        lottery_magnitude(torch.zeros(3), "weight", 0.2)
