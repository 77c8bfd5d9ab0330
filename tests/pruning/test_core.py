"""Tests for LotteryContainer, MaskedTensor, compact_hooks and the transactional attach."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from torch_lottery import (
    GlobalMagnitude,
    LotteryMagnitude,
    RandomPermutation,
    RewindPoint,
    SignPreservingSupermask,
    compact_hooks,
    global_magnitude,
    lottery_magnitude,
    random_permutation,
    sign_preserving_supermask,
)
from torch_lottery._layout import _PrunedWeight as MaskedTensor
from torch_lottery.pruning import LotteryContainer


def make_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 3))


def weights(net):
    return [(net[0], "weight"), (net[2], "weight"), (net[4], "weight")]


def train_step(net, seed=0, lr=0.1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 6, generator=g)
    net.zero_grad()
    net(x).pow(2).sum().backward()
    with torch.no_grad():
        for p in net.parameters():
            p.sub_(lr * p.grad)


def assert_same_model(a, b, x):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key
    assert torch.equal(a(x), b(x))


def tensors_in(obj, seen=None):
    """Every tensor (or RewindPoint/Module/Generator) reachable through attributes and containers of ``obj``."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, (torch.Tensor, RewindPoint, nn.Module, torch.Generator)):
        return [obj]
    found = []
    if isinstance(obj, dict):
        for v in obj.values():
            found += tensors_in(v, seen)
    elif isinstance(obj, (list, tuple, set)):
        for v in obj:
            found += tensors_in(v, seen)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        for v in vars(obj).values():
            found += tensors_in(v, seen)
    return found


# --------------------------------------------------------------------------- deepcopy / pickle / state_dict

PRUNERS = {
    "lottery_magnitude": lambda net, init: [lottery_magnitude(m, n, 0.4) for m, n in weights(net)],
    "lottery_magnitude_rewind": lambda net, init: [
        lottery_magnitude(m, n, 0.4, rewind_point=init) for m, n in weights(net)
    ],
    "supermask": lambda net, init: [sign_preserving_supermask(m, n, 0.3, rewind_point=init) for m, n in weights(net)],
    "global_magnitude": lambda net, init: global_magnitude(weights(net), 0.5, rewind_point=init),
    "global_apply": lambda net, init: [GlobalMagnitude.apply(m, n, amount=0.3) for m, n in weights(net)],
    "permutation": lambda net, init: [
        (lottery_magnitude(m, n, 0.5), random_permutation(m, n, seed=i)) for i, (m, n) in enumerate(weights(net))
    ],
    "bias": lambda net, init: [LotteryMagnitude.apply(m, "bias", 0.3) for m, _ in weights(net)],
}


@pytest.mark.parametrize("pruner", list(PRUNERS))
@pytest.mark.parametrize("when", ["right_after", "after_forward_backward", "after_rounds"])
def test_deepcopy_works(pruner, when):
    net = make_net(0)
    init = RewindPoint.capture(net)
    train_step(net, seed=1)
    PRUNERS[pruner](net, init)
    if when == "after_forward_backward":
        train_step(net, seed=2)
        net(torch.randn(2, 6)).sum().backward()  # leave a graph in the computed weights
    elif when == "after_rounds":
        for r in range(3):
            train_step(net, seed=10 + r)
            PRUNERS[pruner](net, init)
        net(torch.randn(2, 6)).sum().backward()
    clone = copy.deepcopy(net)
    x = torch.randn(3, 6)
    assert_same_model(clone, net, x)
    # independent copy
    with torch.no_grad():
        for p in clone.parameters():
            p.add_(1.0)
    assert not torch.equal(clone(x), net(x))
    # the copy can keep pruning
    lottery_magnitude(clone[0], "weight", 0.1)


@pytest.mark.parametrize("stock", ["l1_unstructured", "random_unstructured", "ln_structured", "identity"])
def test_deepcopy_right_after_stock_method_applied_into_our_container(stock):
    net = make_net(0)
    lottery_magnitude(net[0], "weight", 0.3)
    torch.manual_seed(0)
    {
        "l1_unstructured": lambda: prune.l1_unstructured(net[0], "weight", 0.3),
        "random_unstructured": lambda: prune.random_unstructured(net[0], "weight", 0.3),
        "ln_structured": lambda: prune.ln_structured(net[0], "weight", 0.25, n=2, dim=0),
        "identity": lambda: prune.identity(net[0], "weight"),
    }[stock]()
    hook = next(iter(net[0]._forward_pre_hooks.values()))
    assert isinstance(hook, LotteryContainer)
    assert len(hook) == 2
    clone = copy.deepcopy(net)  # no forward in between
    assert_same_model(clone, net, torch.randn(2, 6))


@pytest.mark.parametrize("stock", ["l1_unstructured", "random_unstructured", "ln_structured"])
def test_deepcopy_after_mixing_stock_then_training(stock):
    net = make_net(0)
    lottery_magnitude(net[0], "weight", 0.3)
    torch.manual_seed(0)
    if stock == "l1_unstructured":
        prune.l1_unstructured(net[0], "weight", 0.3)
    elif stock == "random_unstructured":
        prune.random_unstructured(net[0], "weight", 0.3)
    else:
        prune.ln_structured(net[0], "weight", 0.25, n=2, dim=0)
    lottery_magnitude(net[0], "weight", 0.2)
    train_step(net, seed=3)
    net(torch.randn(2, 6)).sum().backward()
    clone = copy.deepcopy(net)
    assert_same_model(clone, net, torch.randn(2, 6))
    assert torch.equal(clone[0].weight_mask, net[0].weight_mask)
    assert torch.equal(clone[0].weight_orig, net[0].weight_orig)


def test_pickle_round_trip():
    net = make_net(1)
    init = RewindPoint.capture(net)
    train_step(net)
    for m, n in weights(net):
        lottery_magnitude(m, n, 0.5, rewind_point=init)
    prune.l1_unstructured(net[2], "weight", 0.2)
    net(torch.randn(2, 6)).sum().backward()
    loaded = pickle.loads(pickle.dumps(net))
    x = torch.randn(3, 6)
    assert_same_model(loaded, net, x)
    hook = next(iter(loaded[2]._forward_pre_hooks.values()))
    assert isinstance(hook, LotteryContainer)
    assert [type(m) for m in hook] == [LotteryMagnitude, prune.L1Unstructured]
    # torch.save / torch.load of the whole module as well
    buffer = io.BytesIO()
    torch.save(net, buffer)
    buffer.seek(0)
    loaded2 = torch.load(buffer, weights_only=False)
    assert_same_model(loaded2, net, x)


def test_state_dict_loads_into_model_pruned_the_same_way():
    net = make_net(2)
    init = RewindPoint.capture(net)
    train_step(net)
    global_magnitude(weights(net), 0.5, rewind_point=init)
    lottery_magnitude(net[4], "weight", 0.3)
    train_step(net, seed=5)
    state = net.state_dict()
    assert {"0.weight_orig", "0.weight_mask", "4.weight_orig", "4.weight_mask"} <= set(state)
    assert "0.weight" not in state

    other = make_net(7)
    global_magnitude(weights(other), 0.5)
    lottery_magnitude(other[4], "weight", 0.3)
    result = other.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    x = torch.randn(4, 6)
    assert torch.equal(other(x), net(x))
    for (a, _), (b, _) in zip(weights(net), weights(other), strict=True):
        assert torch.equal(a.weight_mask, b.weight_mask)
        assert torch.equal(b.weight, b.weight_mask * b.weight_orig)


def test_state_dict_through_a_file(tmp_path):
    net = make_net(3)
    for m, n in weights(net):
        lottery_magnitude(m, n, 0.6)
    path = tmp_path / "ticket.pt"
    torch.save(net.state_dict(), path)
    other = make_net(4)
    for m, n in weights(other):
        lottery_magnitude(m, n, 0.6)
    other.load_state_dict(torch.load(path, weights_only=True), strict=True)
    x = torch.randn(2, 6)
    assert torch.equal(other(x), net(x))


# --------------------------------------------------------------------------- compact_hooks


def stock_three_rounds(seed=0):
    net = make_net(seed)
    params = weights(net)
    for _ in range(3):
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=0.2)
    return net


def test_compact_hooks_after_stock_global_rounds():
    net = stock_three_rounds()
    x = torch.randn(3, 6)
    masks = [m.weight_mask.clone() for m, _ in weights(net)]
    origs = [m.weight_orig.detach().clone() for m, _ in weights(net)]
    out = net(x)
    stock_hook = next(iter(net[0]._forward_pre_hooks.values()))
    assert isinstance(stock_hook, prune.PruningContainer) and not isinstance(stock_hook, LotteryContainer)
    assert all(isinstance(m.mask, torch.Tensor) for m in stock_hook)  # stock keeps one copy per round

    assert compact_hooks(net) == 3
    for (m, _), mask, orig in zip(weights(net), masks, origs, strict=True):
        assert torch.equal(m.weight_mask, mask)
        assert torch.equal(m.weight_orig, orig)
        hooks = [h for h in m._forward_pre_hooks.values() if isinstance(h, prune.BasePruningMethod)]
        assert len(hooks) == 1
        hook = hooks[0]
        assert isinstance(hook, LotteryContainer)
        assert len(hook) == 3
        assert all(isinstance(method, prune.CustomFromMask) for method in hook)
        assert all(method.mask is None for method in hook)
        assert tensors_in(hook) == []
        assert isinstance(m.weight, MaskedTensor)
        assert torch.equal(m.weight, mask * orig)
    assert torch.equal(net(x), out)

    net(x).sum().backward()
    clone = copy.deepcopy(net)
    assert_same_model(clone, net, x)
    assert compact_hooks(net) == 0  # idempotent


def test_compact_hooks_single_stock_method_and_unpruned_model():
    net = make_net(1)
    assert compact_hooks(net) == 0
    prune.l1_unstructured(net[0], "weight", 0.5)
    prune.random_unstructured(net[2], "bias", 2)
    mask0 = net[0].weight_mask.clone()
    assert compact_hooks(net) == 2
    assert isinstance(next(iter(net[0]._forward_pre_hooks.values())), LotteryContainer)
    assert isinstance(next(iter(net[2]._forward_pre_hooks.values())), LotteryContainer)
    assert torch.equal(net[0].weight_mask, mask0)
    assert int(net[2].bias_mask.sum()) == 3
    # further rounds (ours and stock) keep working after compaction
    lottery_magnitude(net[0], "weight", 0.5)
    prune.l1_unstructured(net[0], "weight", 1)
    assert int(net[0].weight_mask.sum()) == 24 - 12 - 1
    assert bool((net[0].weight_mask <= mask0).all())
    hook = next(iter(net[0]._forward_pre_hooks.values()))
    assert [type(m) for m in hook] == [prune.L1Unstructured, LotteryMagnitude, prune.L1Unstructured]
    net(torch.randn(1, 6)).sum().backward()
    copy.deepcopy(net)


def test_compact_hooks_rejects_non_module():
    with pytest.raises(TypeError, match="model"):
        compact_hooks([nn.Linear(2, 2)])


def test_compact_then_remove_gives_plain_parameter():
    net = stock_three_rounds(2)
    compact_hooks(net)
    expected = (net[0].weight_mask * net[0].weight_orig).detach().clone()
    prune.remove(net[0], "weight")
    assert type(net[0].weight) is nn.Parameter
    assert torch.equal(net[0].weight, expected)


def test_ten_rounds_keep_one_mask_and_no_tensors_in_hook():
    net = make_net(5)
    init = RewindPoint.capture(net)
    layer = net[2]
    for r in range(10):
        train_step(net, seed=r)
        lottery_magnitude(
            layer, "weight", 0.1, rewind_point=init if r % 2 else layer.weight_orig.detach().clone() if r else None
        )
    assert [n for n, _ in layer.named_buffers()] == ["weight_mask"]
    assert sorted(n for n, _ in layer.named_parameters()) == ["bias", "weight_orig"]
    hooks = list(layer._forward_pre_hooks.values())
    assert len(hooks) == 1
    hook = hooks[0]
    assert isinstance(hook, LotteryContainer) and len(hook) == 10
    assert all(isinstance(method, LotteryMagnitude) for method in hook)
    for method in hook:
        assert tensors_in(method) == [], f"{method!r} holds {tensors_in(method)}"
        assert method.rewind_point is None
    expected = 40
    for _ in range(10):
        expected -= round(0.1 * expected)
    assert int(layer.weight_mask.sum()) == expected
    pickle.dumps(net)


@pytest.mark.parametrize("method", ["supermask", "global_magnitude", "global_apply", "permutation"])
def test_other_methods_hold_no_tensors_after_rounds(method):
    net = make_net(6)
    init = RewindPoint.capture(net)
    for r in range(3):
        train_step(net, seed=r)
        if method == "supermask":
            SignPreservingSupermask.apply(net[0], "weight", 0.2, rewind_point=init)
        elif method == "global_magnitude":
            global_magnitude(weights(net), 0.2, rewind_point=init)
        elif method == "global_apply":
            GlobalMagnitude.apply(net[0], "weight", amount=0.2, rewind_point=init, criterion="movement")
        else:
            lottery_magnitude(net[0], "weight", 0.2)
            RandomPermutation.apply(net[0], "weight", generator=torch.Generator().manual_seed(r))
    hook = next(iter(net[0]._forward_pre_hooks.values()))
    assert isinstance(hook, LotteryContainer)
    for m in hook:
        assert tensors_in(m) == [], f"{m!r} holds {tensors_in(m)}"
    assert [n for n, _ in net[0].named_buffers()] == ["weight_mask"]


# --------------------------------------------------------------------------- MaskedTensor and the computed weight


def test_computed_weight_is_masked_tensor_that_behaves_like_a_tensor():
    torch.manual_seed(0)
    layer = nn.Linear(4, 3)
    lottery_magnitude(layer, "weight", 0.5)
    w = layer.weight
    assert isinstance(w, MaskedTensor)
    assert isinstance(w, torch.Tensor)
    assert w.grad_fn is not None  # attached to weight_orig
    doubled = w * 2
    assert type(doubled) is torch.Tensor
    assert type(w + 1) is torch.Tensor
    assert type(torch.matmul(torch.ones(2, 4), w.T)) is torch.Tensor
    assert torch.equal(doubled, 2 * layer.weight_mask * layer.weight_orig)


def test_gradients_flow_to_orig_and_are_masked():
    torch.manual_seed(0)
    layer = nn.Linear(5, 4)
    lottery_magnitude(layer, "weight", 0.5)
    layer(torch.randn(3, 5)).sum().backward()
    grad = layer.weight_orig.grad
    assert grad is not None
    assert bool((grad[layer.weight_mask == 0] == 0).all())
    assert bool((grad[layer.weight_mask == 1] != 0).any())


def test_masked_tensor_deepcopy_and_pickle_give_plain_detached_tensors():
    torch.manual_seed(0)
    layer = nn.Linear(4, 3)
    lottery_magnitude(layer, "weight", 0.5)
    layer(torch.randn(2, 4))
    w = layer.weight
    assert isinstance(w, MaskedTensor) and w.requires_grad
    c = copy.deepcopy(w)
    assert type(c) is torch.Tensor
    assert not c.requires_grad
    assert torch.equal(c, w.detach())
    assert c.data_ptr() != w.data_ptr()
    p = pickle.loads(pickle.dumps(w))
    assert type(p) is torch.Tensor
    assert torch.equal(p, w.detach())


def test_forward_recomputes_weight_after_orig_changes():
    torch.manual_seed(0)
    layer = nn.Linear(4, 3)
    lottery_magnitude(layer, "weight", 0.5)
    with torch.no_grad():
        layer.weight_orig.add_(1.0)
    x = torch.randn(2, 4)
    out = layer(x)
    assert torch.equal(layer.weight, layer.weight_mask * layer.weight_orig)
    assert torch.allclose(out, x @ (layer.weight_mask * layer.weight_orig).T + layer.bias)


@pytest.mark.parametrize("how", ["lottery", "stock"])
def test_restore_recomputes_weight_without_forward(how):
    net = make_net(8)
    init = RewindPoint.capture(net)
    train_step(net, seed=1)
    if how == "lottery":
        lottery_magnitude(net[0], "weight", 0.5)
    else:
        prune.l1_unstructured(net[0], "weight", 0.5)
    trained_weight = net[0].weight.detach().clone()
    init.restore(net)
    assert torch.equal(net[0].weight_orig, init["0.weight"])
    assert torch.equal(net[0].weight, net[0].weight_mask * init["0.weight"])
    assert not torch.equal(net[0].weight, trained_weight)
    assert torch.equal(net[2].weight, init["2.weight"])  # unpruned tensor rewound too
    if how == "lottery":
        net(torch.randn(1, 6)).sum().backward()
        copy.deepcopy(net)


def test_stock_method_on_top_appends_to_our_container():
    layer = nn.Linear(6, 6)
    lottery_magnitude(layer, "weight", 0.3)
    container = next(iter(layer._forward_pre_hooks.values()))
    prune.l1_unstructured(layer, "weight", 0.3)
    hooks = [h for h in layer._forward_pre_hooks.values() if isinstance(h, prune.BasePruningMethod)]
    assert hooks == [container]
    assert isinstance(container, prune.PruningContainer)
    assert [type(m) for m in container] == [LotteryMagnitude, prune.L1Unstructured]
    assert int(layer.weight_mask.sum()) == 36 - 11 - 8


# --------------------------------------------------------------------------- attach is transactional (private helper)


class _Exploding(LotteryMagnitude):
    """A method whose mask computation fails after validation passed."""

    def compute_mask(self, t, default_mask):
        raise RuntimeError("boom")


@pytest.mark.parametrize("round_", ["first", "second"])
def test_attach_rolls_back_on_failure_in_compute_mask(round_):
    from torch_lottery.pruning._core import attach

    torch.manual_seed(0)
    layer = nn.Linear(4, 4)
    if round_ == "second":
        lottery_magnitude(layer, "weight", 0.5)
        layer(torch.randn(1, 4))
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    params = [n for n, _ in layer.named_parameters()]
    hooks = list(layer._forward_pre_hooks.items())
    lengths = [len(h) for _, h in hooks]
    method = _Exploding(0.5, rewind_point=torch.zeros(4, 4))
    with pytest.raises(RuntimeError, match="boom"):
        attach(layer, "weight", method)
    assert [n for n, _ in layer.named_parameters()] == params
    assert list(layer._forward_pre_hooks.items()) == hooks
    assert [len(h) for _, h in hooks] == lengths
    for k, v in layer.state_dict().items():
        assert torch.equal(v, state[k])
    assert method.rewind_point is None  # released
    # still prunable
    lottery_magnitude(layer, "weight", 2)
