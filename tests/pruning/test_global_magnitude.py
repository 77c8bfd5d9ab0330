"""Tests for GlobalMagnitude / global_magnitude."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from torch_lottery import GlobalMagnitude, LotteryMagnitude, RewindPoint, global_magnitude, lottery_magnitude
from torch_lottery.pruning import LotteryContainer

from helpers import assert_unchanged, orig_of, snapshot

# --------------------------------------------------------------------------- helpers


def net3(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 4))


def weights(net):
    return [(net[0], "weight"), (net[2], "weight"), (net[4], "weight")]


def perturb(model, seed=1, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


def mask_of(module, name="weight"):
    return getattr(module, name + "_mask")


def assert_untouched(module, value):
    """``module.weight`` is still a plain, unpruned parameter equal to ``value``."""
    assert isinstance(module._parameters.get("weight"), nn.Parameter)
    assert "weight_orig" not in module._parameters
    assert "weight_mask" not in module._buffers
    assert not any(isinstance(h, prune.BasePruningMethod) for h in module._forward_pre_hooks.values())
    assert torch.equal(module.weight, value)


def pool_masks(params):
    return torch.cat([mask_of(m, n).reshape(-1) for m, n in params])


def surviving(params):
    return sum(int(mask_of(m, n).sum()) for m, n in params)


# --------------------------------------------------------------------------- equality with stock


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("amounts", [[0.3], [0.2, 0.2, 0.2], [15, 0.5], [0.0, 40, 0.25], [0.9]])
@pytest.mark.parametrize("min_remaining", [0, 1])
def test_masks_equal_stock_global_l1(seed, amounts, min_remaining):
    ours, stock = net3(seed), net3(seed)
    for amount in amounts:
        global_magnitude(weights(ours), amount, min_remaining=min_remaining)
        prune.global_unstructured(weights(stock), pruning_method=prune.L1Unstructured, amount=amount)
    # only compare where the floor does not bind in the stock result
    stock_counts = [int(mask_of(m).sum()) for m, _ in weights(stock)]
    if min_remaining == 0 or min(stock_counts) >= min_remaining:
        for (m1, _), (m2, _) in zip(weights(ours), weights(stock), strict=True):
            assert torch.equal(mask_of(m1), mask_of(m2))
            assert torch.equal(m1.weight_orig, m2.weight_orig)
        x = torch.randn(3, 10)
        assert torch.equal(ours(x), stock(x))
    assert surviving(weights(ours)) == sum(stock_counts)


def test_masks_equal_stock_with_importance_scores():
    ours, stock = net3(4), net3(4)
    g = torch.Generator().manual_seed(0)
    for _ in range(2):
        scores_ours = {(m, n): torch.randn(orig_of(m).shape, generator=g) for m, n in weights(ours)}
        pairs = zip(weights(ours), weights(stock), strict=True)
        scores_stock = {(m2, n2): scores_ours[(m1, n1)] for (m1, n1), (m2, n2) in pairs}
        global_magnitude(weights(ours), 0.3, importance_scores=scores_ours, min_remaining=0)
        prune.global_unstructured(
            weights(stock), pruning_method=prune.L1Unstructured, amount=0.3, importance_scores=scores_stock
        )
        for (m1, _), (m2, _) in zip(weights(ours), weights(stock), strict=True):
            assert torch.equal(mask_of(m1), mask_of(m2))


def test_on_top_of_stock_global_rounds_equals_stock():
    ours, stock = net3(5), net3(5)
    prune.global_unstructured(weights(ours), pruning_method=prune.L1Unstructured, amount=0.3)
    prune.global_unstructured(weights(stock), pruning_method=prune.L1Unstructured, amount=0.3)
    global_magnitude(weights(ours), 0.4)
    prune.global_unstructured(weights(stock), pruning_method=prune.L1Unstructured, amount=0.4)
    prune.global_unstructured(weights(ours), pruning_method=prune.L1Unstructured, amount=0.2)
    prune.global_unstructured(weights(stock), pruning_method=prune.L1Unstructured, amount=0.2)
    for (m1, _), (m2, _) in zip(weights(ours), weights(stock), strict=True):
        assert torch.equal(mask_of(m1), mask_of(m2))


# --------------------------------------------------------------------------- ties


def tied_net(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4))
    with torch.no_grad():
        for m in (net[0], net[2]):
            m.weight.copy_(torch.randint(-2, 3, m.weight.shape).float())
    return net


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("amount", [0.3, 0.5, 7, 0.8])
def test_ties_survivor_count_as_stock_and_deterministic(seed, amount):
    params_of = lambda n: [(n[0], "weight"), (n[2], "weight")]  # noqa: E731
    a, b, stock = tied_net(seed), tied_net(seed), tied_net(seed)
    global_magnitude(params_of(a), amount, min_remaining=0)
    global_magnitude(params_of(b), amount, min_remaining=0)
    prune.global_unstructured(params_of(stock), pruning_method=prune.L1Unstructured, amount=amount)
    assert surviving(params_of(a)) == surviving(params_of(stock))
    assert torch.equal(pool_masks(params_of(a)), pool_masks(params_of(b)))
    # one threshold: nothing pruned is larger than anything kept
    flat_w = torch.cat([m.weight_orig.detach().abs().reshape(-1) for m, _ in params_of(a)])
    flat_m = pool_masks(params_of(a)).bool()
    if flat_m.any() and (~flat_m).any():
        assert float(flat_w[~flat_m].max()) <= float(flat_w[flat_m].min())
    # at the threshold the lower pool index is pruned first
    if (~flat_m).any() and flat_m.any():
        threshold = float(flat_w[~flat_m].max())
        at = (flat_w == threshold).nonzero().reshape(-1)
        pruned_at = [int(i) for i in at if not flat_m[i]]
        kept_at = [int(i) for i in at if flat_m[i]]
        if kept_at and pruned_at:
            assert max(pruned_at) < min(kept_at)


def test_all_equal_weights_lower_index_pruned_first():
    a, b = nn.Linear(3, 2), nn.Linear(2, 2)
    with torch.no_grad():
        a.weight.fill_(-1.0)
        b.weight.fill_(1.0)
    global_magnitude([(a, "weight"), (b, "weight")], 5)
    assert a.weight_mask.reshape(-1).tolist() == [0, 0, 0, 0, 0, 1]
    assert b.weight_mask.reshape(-1).tolist() == [1, 1, 1, 1]
    global_magnitude([(a, "weight"), (b, "weight")], 2, min_remaining=0)
    assert a.weight_mask.reshape(-1).tolist() == [0, 0, 0, 0, 0, 0]
    assert b.weight_mask.reshape(-1).tolist() == [0, 1, 1, 1]


def test_ties_single_tensor_lower_index_first():
    layer = nn.Linear(5, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[2.0, 1.0, -1.0, 1.0, 3.0], [-1.0, 2.0, 1.0, -2.0, 1.0]]))
    GlobalMagnitude.apply(layer, "weight", amount=3)
    # six entries tie at |w| = 1 (flat indices 1, 2, 3, 5, 7, 9); the three lowest go
    assert layer.weight_mask.reshape(-1).tolist() == [1, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    lottery = nn.Linear(5, 2)
    with torch.no_grad():
        lottery.weight.copy_(layer.weight_orig)
    lottery_magnitude(lottery, "weight", 3)
    assert torch.equal(lottery.weight_mask, layer.weight_mask)


# --------------------------------------------------------------------------- rate multipliers, exclusion, floors


def lth_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(20, 10), nn.ReLU(), nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 4))


@pytest.mark.parametrize("key", ["pair", "module"])
def test_rate_multiplier_half_rate_output_layer(key):
    net = lth_net(0)
    params = weights(net)
    out = net[4]
    multipliers = {(out, "weight"): 0.5} if key == "pair" else {out: 0.5}
    pool = params[:2]
    pool_surviving, out_surviving = 300, 40
    for _ in range(3):
        global_magnitude(params, 0.2, rate_multipliers=multipliers)
        expected_out = out_surviving - int(round(0.2 * 0.5 * out_surviving))
        expected_pool = pool_surviving - int(round(0.2 * pool_surviving))
        assert int(out.weight_mask.sum()) == expected_out
        assert surviving(pool) == expected_pool
        out_surviving, pool_surviving = expected_out, expected_pool
        # pooled layers share one threshold
        w = torch.cat([m.weight_orig.detach().abs().reshape(-1) for m, _ in pool])
        k = pool_masks(pool).bool()
        assert float(w[~k].max()) <= float(w[k].min())
        # the output layer is pruned on its own by magnitude
        wo, ko = out.weight_orig.detach().abs().reshape(-1), out.weight_mask.reshape(-1).bool()
        assert float(wo[~ko].max()) <= float(wo[ko].min())
        hook = next(iter(out._forward_pre_hooks.values()))
        assert isinstance(hook, LotteryContainer)
        assert isinstance(hook[-1], GlobalMagnitude)
        assert hook[-1].amount == pytest.approx(0.1)
        pool_hook = next(iter(net[0]._forward_pre_hooks.values()))
        assert pool_hook[-1].amount == 0.2
    assert (out_surviving, pool_surviving) == (40 - 4 - 4 - 3, 300 - 60 - 48 - 38)


def test_rate_multiplier_above_one():
    net = lth_net(1)
    global_magnitude(weights(net), 0.3, rate_multipliers={net[0]: 2.0})
    assert int(net[0].weight_mask.sum()) == 200 - 120
    assert surviving(weights(net)[1:]) == 140 - 42


@pytest.mark.parametrize("how", ["multiplier_zero_pair", "multiplier_zero_module", "exclude_pair", "exclude_module"])
def test_multiplier_zero_and_exclude_leave_tensor_untouched(how):
    net = lth_net(2)
    before = net[4].weight.detach().clone()
    kwargs = {
        "multiplier_zero_pair": dict(rate_multipliers={(net[4], "weight"): 0}),
        "multiplier_zero_module": dict(rate_multipliers={net[4]: 0.0}),
        "exclude_pair": dict(exclude=[(net[4], "weight")]),
        "exclude_module": dict(exclude=[net[4]]),
    }[how]
    global_magnitude(weights(net), 0.5, **kwargs)
    assert_untouched(net[4], before)
    assert surviving(weights(net)[:2]) == 150
    x = torch.randn(2, 20)
    net(x)  # still runs
    global_magnitude(weights(net), 0.5, **kwargs)
    assert_untouched(net[4], before)
    assert surviving(weights(net)[:2]) == 75


def tiny_and_big():
    torch.manual_seed(0)
    big, tiny = nn.Linear(10, 10), nn.Linear(2, 1)
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        big.weight.copy_((1 + torch.rand(10, 10, generator=g)) * torch.sign(torch.randn(10, 10, generator=g)))
        tiny.weight.copy_(torch.tensor([[1e-3, -2e-3]]))
    return big, tiny


@pytest.mark.parametrize("min_remaining,tiny_kept,big_kept", [(0, [0, 0], 51), (1, [0, 1], 50), (2, [1, 1], 49)])
def test_min_remaining_prevents_layer_collapse(min_remaining, tiny_kept, big_kept):
    big, tiny = tiny_and_big()
    params = [(big, "weight"), (tiny, "weight")]
    global_magnitude(params, 0.5, min_remaining=min_remaining)  # 51 of 102
    assert tiny.weight_mask.reshape(-1).tolist() == tiny_kept
    assert int(big.weight_mask.sum()) == big_kept
    assert surviving(params) == 102 - 51  # total pruned count preserved
    # big layer: its own pruned entries are its smallest
    w, k = big.weight_orig.detach().abs().reshape(-1), big.weight_mask.reshape(-1).bool()
    assert float(w[~k].max()) <= float(w[k].min())


def test_min_remaining_zero_equals_stock_layer_collapse():
    big, tiny = tiny_and_big()
    big2, tiny2 = copy.deepcopy(big), copy.deepcopy(tiny)
    global_magnitude([(big, "weight"), (tiny, "weight")], 0.5, min_remaining=0)
    prune.global_unstructured([(big2, "weight"), (tiny2, "weight")], pruning_method=prune.L1Unstructured, amount=0.5)
    assert torch.equal(big.weight_mask, big2.weight_mask)
    assert torch.equal(tiny.weight_mask, tiny2.weight_mask)
    assert int(tiny.weight_mask.sum()) == 0


def test_min_remaining_holds_over_rounds():
    big, tiny = tiny_and_big()
    params = [(big, "weight"), (tiny, "weight")]
    expected = 102
    for _ in range(5):
        global_magnitude(params, 0.5, min_remaining=1)
        expected -= round(0.5 * expected)
        assert surviving(params) == expected
        assert int(tiny.weight_mask.sum()) >= 1
        assert int(big.weight_mask.sum()) >= 1
    assert expected == 3
    with pytest.raises(ValueError, match="min_remaining=1 .*on_floor='clamp'"):
        global_magnitude(params, 0.5, min_remaining=1, on_floor="raise")  # would leave 1 entry for 2 tensors
    global_magnitude(params, 0.5, min_remaining=1)  # the default clamps: each tensor at its floor
    assert int(tiny.weight_mask.sum()) == int(big.weight_mask.sum()) == 1


@pytest.mark.parametrize("amount,min_remaining", [(1.0, 1), (101, 2), (99, 2), (0.99, 2)])
def test_infeasible_amount_with_min_remaining_raises_and_leaves_model(amount, min_remaining):
    big, tiny = tiny_and_big()
    holder = nn.ModuleList([big, tiny])
    before = snapshot(holder)
    with pytest.raises(ValueError, match=rf"min_remaining={min_remaining}"):
        global_magnitude([(big, "weight"), (tiny, "weight")], amount, min_remaining=min_remaining, on_floor="raise")
    assert_unchanged(holder, before)
    global_magnitude([(big, "weight"), (tiny, "weight")], amount, min_remaining=min_remaining)  # clamped
    assert int(big.weight_mask.sum()) == min_remaining and int(tiny.weight_mask.sum()) == min(min_remaining, 2)


def test_infeasible_alone_tensor_raises_after_pool_was_computed_and_leaves_model():
    net = lth_net(3)
    before = snapshot(net)
    with pytest.raises(ValueError, match=r"amount \* rate_multipliers\[Linear.weight\]=1.0 .*min_remaining"):
        # the pool (net[0], net[2]) is feasible; net[4] alone at 0.5 * 2.0 = 1.0 is not
        global_magnitude(weights(net), 0.5, rate_multipliers={net[4]: 2.0}, on_floor="raise")
    assert_unchanged(net, before)
    global_magnitude(weights(net), 0.5, rate_multipliers={net[4]: 2.0})  # clamped: net[4] keeps its floor
    assert int(net[4].weight_mask.sum()) == 1


# --------------------------------------------------------------------------- rewinding, criteria, rounds


def test_rewind_point_rewinds_every_tensor_including_excluded():
    net = lth_net(4)
    init = RewindPoint.capture(net)
    perturb(net)
    trained = copy.deepcopy(net)
    global_magnitude(weights(net), 0.3, rewind_point=init, exclude=[net[4]])
    global_magnitude(weights(trained), 0.3, exclude=[trained[4]])
    for (m, _), (t, _), key in zip(weights(net)[:2], weights(trained)[:2], ["0.weight", "2.weight"], strict=True):
        assert torch.equal(m.weight_mask, t.weight_mask)  # mask from the trained weights
        assert torch.equal(m.weight_orig, init[key])
        assert torch.equal(m.weight, m.weight_mask * init[key])
    assert_untouched(net[4], init["4.weight"])
    # biases are not part of the rewind point and stay trained
    assert torch.equal(net[0].bias, trained[0].bias)


def test_rewind_false_only_uses_rewind_point_for_criterion():
    net = lth_net(5)
    init = RewindPoint.capture(net, weights(net))
    perturb(net)
    trained = {k: orig_of(m).detach().clone() for (m, _), k in zip(weights(net), init.keys(), strict=True)}
    global_magnitude(weights(net), 0.4, criterion="large_init", rewind_point=init, rewind=False)
    flat_init = torch.cat([init[k].abs().reshape(-1) for k in init])
    keep = pool_masks(weights(net)).bool()
    assert int((~keep).sum()) == round(0.4 * 340)
    assert float(flat_init[~keep].max()) <= float(flat_init[keep].min())
    for (m, _), k in zip(weights(net), init.keys(), strict=True):
        assert torch.equal(m.weight_orig, trained[k])


@pytest.mark.parametrize("criterion", ["movement", "magnitude_increase", "small_final"])
def test_criteria_over_the_pool(criterion):
    net = lth_net(6)
    init = RewindPoint.capture(net, weights(net))
    perturb(net, scale=0.3)
    final = torch.cat([m.weight.detach().reshape(-1) for m, _ in weights(net)])
    initial = torch.cat([init[k].reshape(-1) for k in init])
    scores = {
        "movement": (final - initial).abs(),
        "magnitude_increase": final.abs() - initial.abs(),
        "small_final": -final.abs(),
    }[criterion]
    global_magnitude(weights(net), 0.25, criterion=criterion, rewind_point=init, min_remaining=0)
    keep = pool_masks(weights(net)).bool()
    expected = torch.ones(340, dtype=torch.bool)
    expected[torch.argsort(scores)[:85]] = False
    assert torch.equal(keep, expected)
    for (m, _), k in zip(weights(net), init.keys(), strict=True):
        assert torch.equal(m.weight_orig, init[k])


def test_compounding_over_rounds():
    torch.manual_seed(0)
    a, b = nn.Linear(100, 60), nn.Linear(100, 40)
    params = [(a, "weight"), (b, "weight")]
    global_magnitude(params, 0.2)
    assert surviving(params) == 8000
    global_magnitude(params, 0.2)
    assert surviving(params) == 6400
    global_magnitude(params, 0.2)
    assert surviving(params) == 5120
    for m, _ in params:
        hook = next(iter(m._forward_pre_hooks.values()))
        assert isinstance(hook, LotteryContainer) and len(hook) == 3
        assert all(isinstance(method, GlobalMagnitude) for method in hook)


def test_masks_only_shrink_and_layout():
    net = lth_net(7)
    previous = [torch.ones_like(m.weight) for m, _ in weights(net)]
    for amount in (0.2, 30, 0.5):
        perturb(net, seed=int(amount * 10))
        global_magnitude(weights(net), amount)
        for (m, _), prev in zip(weights(net), previous, strict=True):
            assert bool((m.weight_mask <= prev).all())
            assert isinstance(m.weight_orig, nn.Parameter)
            assert "weight_mask" in dict(m.named_buffers())
            assert prune.is_pruned(m)
            assert torch.equal(m.weight, m.weight_mask * m.weight_orig)
        previous = [m.weight_mask.clone() for m, _ in weights(net)]


def test_hook_is_lottery_container_with_global_magnitude_and_no_tensors():
    net = lth_net(8)
    prune.l1_unstructured(net[0], "weight", 0.1)  # a stock round first
    global_magnitude(weights(net), 0.3)
    for m, _ in weights(net):
        hooks = [h for h in m._forward_pre_hooks.values() if isinstance(h, prune.BasePruningMethod)]
        assert len(hooks) == 1
        hook = hooks[0]
        assert isinstance(hook, LotteryContainer)
        assert isinstance(hook[-1], GlobalMagnitude)
        assert hook[-1]._tensor_name == "weight"
        for method in hook:
            assert not any(isinstance(v, torch.Tensor) for v in vars(method).values())
    assert isinstance(next(iter(net[0]._forward_pre_hooks.values()))[0], prune.L1Unstructured)
    copy.deepcopy(net)


# --------------------------------------------------------------------------- GlobalMagnitude.apply


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("amounts", [[0.3], [0.2, 5, 0.5], [7, 7, 0.1]])
def test_apply_on_one_tensor_equals_lottery_magnitude(seed, amounts):
    torch.manual_seed(seed)
    a = nn.Linear(6, 5)
    b = copy.deepcopy(a)
    for amount in amounts:
        method = GlobalMagnitude.apply(a, "weight", amount=amount)
        assert isinstance(method, GlobalMagnitude)
        LotteryMagnitude.apply(b, "weight", amount=amount)
        assert torch.equal(a.weight_mask, b.weight_mask)
    hook = next(iter(a._forward_pre_hooks.values()))
    assert isinstance(hook, LotteryContainer) and len(hook) == len(amounts)


def test_apply_with_min_remaining():
    layer = nn.Linear(4, 4)
    before = snapshot(layer)
    with pytest.raises(ValueError, match="min_remaining=2"):
        GlobalMagnitude.apply(layer, "weight", amount=15, min_remaining=2, on_floor="raise")
    assert_unchanged(layer, before)
    GlobalMagnitude.apply(layer, "weight", amount=14, min_remaining=2)
    assert int(layer.weight_mask.sum()) == 2
    kept = layer.weight_mask.bool()
    w = layer.weight_orig.detach().abs()
    assert float(w[~kept].max()) <= float(w[kept].min())


def test_apply_with_rewind_point_and_criterion():
    final = torch.tensor([0.5, -2.0, 1.0, 3.0, -0.1, 0.8, -1.5, 0.05])
    init = torch.tensor([0.3, -0.5, -2.0, 2.9, 0.7, 0.6, -1.6, 0.04])
    holder = nn.Module()
    holder.weight = nn.Parameter(final.clone())
    GlobalMagnitude.apply(holder, "weight", amount=3, criterion="magnitude_increase", rewind_point=init)
    # |f| - |i| = .2 1.5 -1 .1 -.6 .2 -.1 .01 -> prune 2, 4, 6
    assert holder.weight_mask.tolist() == [1, 1, 0, 1, 0, 1, 0, 1]
    assert torch.equal(holder.weight_orig, init)
    GlobalMagnitude.apply(holder, "weight", amount=2, criterion="large_init", rewind_point=init)
    # survivors' |i|: 0.3 0.5 2.9 0.6 0.04 (indices 0 1 3 5 7) -> prune 7 and 0
    assert holder.weight_mask.tolist() == [0, 1, 0, 1, 0, 1, 0, 0]


# --------------------------------------------------------------------------- bad input


_OTHER = lth_net(99)


def _bad_cases(net):
    other = nn.Linear(3, 3)
    return [
        ("amount_negative", dict(amount=-1), ValueError, r"amount=-1"),
        ("amount_above_one", dict(amount=1.5), ValueError, r"amount=1\.5"),
        ("amount_str", dict(amount="x"), TypeError, r"amount.*'x'"),
        ("amount_bool", dict(amount=True), TypeError, r"amount.*True"),
        ("amount_too_large_int", dict(amount=341), ValueError, r"amount=341"),
        ("criterion_unknown", dict(amount=0.2, criterion="huge"), ValueError, r"criterion='huge'"),
        (
            "criterion_needs_rewind",
            dict(amount=0.2, criterion="large_init"),
            ValueError,
            r"criterion='large_init'.*rewind_point",
        ),
        ("min_remaining_negative", dict(amount=0.2, min_remaining=-1), ValueError, r"min_remaining=-1"),
        ("min_remaining_float", dict(amount=0.2, min_remaining=1.5), TypeError, r"min_remaining.*1\.5"),
        ("min_remaining_bool", dict(amount=0.2, min_remaining=True), TypeError, r"min_remaining"),
        ("rewind_not_bool", dict(amount=0.2, rewind="yes"), TypeError, r"rewind.*'yes'"),
        ("rewind_point_tensor", dict(amount=0.2, rewind_point=torch.zeros(3)), TypeError, r"rewind_point"),
        ("rewind_point_type", dict(amount=0.2, rewind_point=[1, 2]), TypeError, r"rewind_point"),
        (
            "rewind_point_other_model",
            dict(amount=0.2, rewind_point=RewindPoint.capture(_OTHER)),
            ValueError,
            r"rewind_point",
        ),
        (
            "rewind_point_missing_tensor",
            dict(amount=0.2, rewind_point=RewindPoint.capture(net).select([(net[0], "weight")])),
            ValueError,
            r"rewind_point",
        ),
        (
            "int_amount_with_multiplier",
            dict(amount=10, rate_multipliers={net[4]: 0.5}),
            ValueError,
            r"rate_multipliers.*amount=10",
        ),
        (
            "multiplier_negative",
            dict(amount=0.2, rate_multipliers={net[4]: -0.5}),
            ValueError,
            r"rate_multipliers.*-0\.5",
        ),
        (
            "multiplier_str",
            dict(amount=0.2, rate_multipliers={net[4]: "half"}),
            ValueError,
            r"rate_multipliers.*'half'",
        ),
        (
            "multiplier_too_big",
            dict(amount=0.6, rate_multipliers={net[4]: 2}),
            ValueError,
            r"amount=0\.6.*rate_multipliers",
        ),
        (
            "multiplier_key_not_in_parameters",
            dict(amount=0.2, rate_multipliers={(net[4], "bias"): 0.5}),
            ValueError,
            r"rate_multipliers",
        ),
        (
            "multiplier_module_not_in_parameters",
            dict(amount=0.2, rate_multipliers={other: 0.5}),
            ValueError,
            r"rate_multipliers",
        ),
        ("multipliers_not_dict", dict(amount=0.2, rate_multipliers=[0.5]), TypeError, r"rate_multipliers"),
        ("exclude_not_in_parameters", dict(amount=0.2, exclude=[other]), ValueError, r"exclude"),
        ("exclude_pair_not_in_parameters", dict(amount=0.2, exclude=[(net[0], "bias")]), ValueError, r"exclude"),
        ("exclude_module_not_iterable", dict(amount=0.2, exclude=net[0]), TypeError, r"exclude"),
        (
            "importance_scores_not_dict",
            dict(amount=0.2, importance_scores=torch.ones(3)),
            TypeError,
            r"importance_scores",
        ),
        (
            "importance_scores_key",
            dict(amount=0.2, importance_scores={(other, "weight"): torch.ones(3, 3)}),
            ValueError,
            r"importance_scores",
        ),
        (
            "importance_scores_shape",
            dict(amount=0.2, importance_scores={(net[2], "weight"): torch.ones(3, 3)}),
            ValueError,
            r"importance_scores.*\(3, 3\)",
        ),
        (
            "importance_scores_nan",
            dict(amount=0.2, importance_scores={(net[2], "weight"): torch.full((10, 10), float("nan"))}),
            ValueError,
            r"importance_scores.*NaN",
        ),
    ]


CASE_IDS = [c[0] for c in _bad_cases(lth_net(0))]


def _prepared(round_):
    net = lth_net(0)
    if round_ == "second":
        global_magnitude(weights(net), 0.5)
        net(torch.randn(2, 20))
    return net


@pytest.mark.parametrize("round_", ["first", "second"])
@pytest.mark.parametrize("case_id", CASE_IDS)
def test_bad_input_raises_and_leaves_model_unchanged(round_, case_id):
    net = _prepared(round_)
    (case,) = [c for c in _bad_cases(net) if c[0] == case_id]
    _, kwargs, exc, match = case
    if round_ == "second" and case_id == "amount_too_large_int":
        kwargs = dict(amount=171)
        match = r"amount=171"
    before = snapshot(net)
    with pytest.raises(exc, match=match):
        global_magnitude(weights(net), **kwargs)
    assert_unchanged(net, before)
    global_magnitude(weights(net), 10)
    assert surviving(weights(net)) == (330 if round_ == "first" else 160)


@pytest.mark.parametrize("round_", ["first", "second"])
def test_nan_weights_raise_and_leave_model_unchanged(round_):
    net = _prepared(round_)
    with torch.no_grad():
        orig_of(net[2])[0, 0] = float("nan")
        if round_ == "second":
            net[2].weight_mask[0, 0] = 1.0
        net(torch.randn(2, 20))
    before = snapshot(net)
    with pytest.raises(ValueError, match="NaN"):
        global_magnitude(weights(net), 0.2)
    assert_unchanged(net, before)


@pytest.mark.parametrize(
    "parameters,exc,match",
    [
        ([], ValueError, r"parameters is empty"),
        ("weight", TypeError, r"parameters"),
        (None, TypeError, r"parameters"),
        ([nn.Linear(2, 2)], TypeError, r"parameters"),
        ([(nn.Linear(2, 2), "weights")], ValueError, r"name='weights'"),
    ],
)
def test_bad_parameters(parameters, exc, match):
    with pytest.raises(exc, match=match):
        global_magnitude(parameters, 0.2)


def test_duplicate_pairs_raise_and_leave_model_unchanged():
    net = lth_net(0)
    before = snapshot(net)
    with pytest.raises(ValueError, match="twice"):
        global_magnitude([(net[0], "weight"), (net[2], "weight"), (net[0], "weight")], 0.2)
    assert_unchanged(net, before)


def test_apply_bad_input_leaves_model_unchanged():
    layer = nn.Linear(4, 4)
    GlobalMagnitude.apply(layer, "weight", amount=0.5)
    before = snapshot(layer)
    with pytest.raises(ValueError, match="amount=9"):
        GlobalMagnitude.apply(layer, "weight", amount=9)
    with pytest.raises(ValueError, match="criterion='movement'"):
        GlobalMagnitude.apply(layer, "weight", amount=0.2, criterion="movement")
    with pytest.raises(ValueError, match="rewind_point"):
        GlobalMagnitude.apply(layer, "weight", amount=0.2, rewind_point=torch.zeros(2, 2))
    with pytest.raises(ValueError, match="importance_scores"):
        GlobalMagnitude.apply(layer, "weight", amount=0.2, importance_scores=torch.zeros(2, 2))
    with pytest.raises(TypeError, match="min_remaining"):
        GlobalMagnitude.apply(layer, "weight", amount=0.2, min_remaining="1")
    assert_unchanged(layer, before)
    assert math.isclose(float(layer.weight_mask.sum()), 8.0)


# --------------------------------------------------------------------------- one key style everywhere
@pytest.mark.parametrize("key", ["qualified", "pair", "module"])
def test_options_are_keyed_by_qualified_name_pair_or_module(key):
    nets = [lth_net(8), lth_net(8)]
    keyed = {"qualified": "4.weight", "pair": (nets[0][4], "weight"), "module": nets[0][4]}[key]
    global_magnitude(
        nets[0],
        0.4,
        rate_multipliers={keyed: 0.5},
        exclude=[{"qualified": "2.weight", "pair": (nets[0][2], "weight"), "module": nets[0][2]}[key]],
    )
    global_magnitude(weights(nets[1]), 0.4, rate_multipliers={(nets[1][4], "weight"): 0.5}, exclude=[nets[1][2]])
    for a, b in zip(nets[0], nets[1], strict=True):
        if hasattr(a, "weight_mask") or hasattr(b, "weight_mask"):
            assert torch.equal(a.weight_mask, b.weight_mask)
    assert not hasattr(nets[0][2], "weight_mask")


def test_qualified_names_with_pairs_need_a_model():
    net = lth_net(9)
    before = snapshot(net)
    with pytest.raises(
        ValueError,
        match=r"rate_multipliers names '4.weight', a qualified name, but parameters are "
        r"\(module, name\) pairs: pass the model itself",
    ):
        global_magnitude(weights(net), 0.4, rate_multipliers={"4.weight": 0.5})
    assert_unchanged(net, before)
    # a rewind point bound to the model names the pairs too
    global_magnitude(weights(net), 0.4, rate_multipliers={"4.weight": 0.5}, rewind_point=RewindPoint.capture(net))
    assert int(net[4].weight_mask.sum()) == 40 - round(0.2 * 40)


def test_an_unknown_qualified_name_is_refused():
    net = lth_net(9)
    with pytest.raises(ValueError, match=r"exclude names '9.weight', which is not in parameters"):
        global_magnitude(net, 0.4, exclude=["9.weight"])
