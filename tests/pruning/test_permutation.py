"""Tests for RandomPermutation / random_permutation."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from torch_lottery import RandomPermutation, lottery_magnitude, random_permutation
from torch_lottery.pruning import LotteryContainer


def pruned_layer(seed=0, amount=0.6, shape=(8, 10)):
    torch.manual_seed(seed)
    layer = nn.Linear(shape[1], shape[0])
    lottery_magnitude(layer, "weight", amount)
    return layer


def test_survivor_count_unchanged_and_positions_change():
    layer = pruned_layer()
    before = layer.weight_mask.clone()
    orig = layer.weight_orig.detach().clone()
    out = random_permutation(layer, "weight", seed=0)
    assert out is layer
    after = layer.weight_mask
    assert after.shape == before.shape
    assert int(after.sum()) == int(before.sum()) == 32
    assert set(after.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(after, before)
    # the weights are untouched; the computed weight follows the new mask
    assert torch.equal(layer.weight_orig, orig)
    assert torch.equal(layer.weight, after * orig)
    hook = next(iter(layer._forward_pre_hooks.values()))
    assert isinstance(hook, LotteryContainer)
    assert isinstance(hook[-1], RandomPermutation)
    assert len(hook) == 2


@pytest.mark.parametrize("shape", [(13,), (4, 6), (3, 2, 3, 3)])
def test_per_tensor_count_kept_for_several_shapes(shape):
    holder = nn.Module()
    holder.weight = nn.Parameter(torch.randn(*shape, generator=torch.Generator().manual_seed(1)))
    prune.random_unstructured(holder, "weight", amount=0.5)
    count = int(holder.weight_mask.sum())
    for seed in range(5):
        random_permutation(holder, "weight", seed=seed)
        assert int(holder.weight_mask.sum()) == count
        assert holder.weight_mask.shape == torch.Size(shape)


def test_per_tensor_counts_kept_in_a_model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4))
    params = [(net[0], "weight"), (net[2], "weight")]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=0.5)
    counts = [int(m.weight_mask.sum()) for m, _ in params]
    for i, (m, n) in enumerate(params):
        random_permutation(m, n, seed=i)
    assert [int(m.weight_mask.sum()) for m, _ in params] == counts


def test_same_seed_same_mask_and_different_seeds_differ():
    masks = []
    for seed in (0, 0, 1, 2):
        layer = pruned_layer()
        random_permutation(layer, "weight", seed=seed)
        masks.append(layer.weight_mask.clone())
    assert torch.equal(masks[0], masks[1])
    assert not torch.equal(masks[0], masks[2])
    assert not torch.equal(masks[0], masks[3])
    assert not torch.equal(masks[2], masks[3])


def test_generator_in_same_state_gives_same_mask():
    g = torch.Generator().manual_seed(123)
    state = g.get_state()
    a, b = pruned_layer(), pruned_layer()
    RandomPermutation.apply(a, "weight", generator=g)
    g2 = torch.Generator()
    g2.set_state(state)
    RandomPermutation.apply(b, "weight", generator=g2)
    assert torch.equal(a.weight_mask, b.weight_mask)
    # the generator advanced: a second draw differs
    c = pruned_layer()
    RandomPermutation.apply(c, "weight", generator=g)
    assert not torch.equal(c.weight_mask, a.weight_mask)


def test_seed_equals_generator_seeded_the_same():
    a, b = pruned_layer(), pruned_layer()
    random_permutation(a, "weight", seed=7)
    random_permutation(b, "weight", generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.weight_mask, b.weight_mask)


def test_global_rng_used_without_seed_or_generator():
    a, b = pruned_layer(), pruned_layer()
    torch.manual_seed(5)
    random_permutation(a, "weight")
    torch.manual_seed(5)
    random_permutation(b, "weight")
    assert torch.equal(a.weight_mask, b.weight_mask)


@pytest.mark.parametrize("stock", ["l1_unstructured", "random_unstructured", "ln_structured", "global"])
def test_works_on_tensor_pruned_by_stock(stock):
    torch.manual_seed(0)
    layer = nn.Linear(8, 6)
    if stock == "l1_unstructured":
        prune.l1_unstructured(layer, "weight", 0.5)
    elif stock == "random_unstructured":
        prune.random_unstructured(layer, "weight", 0.5)
    elif stock == "ln_structured":
        prune.ln_structured(layer, "weight", 0.5, n=2, dim=0)
    else:
        prune.global_unstructured([(layer, "weight")], pruning_method=prune.L1Unstructured, amount=0.5)
    before = layer.weight_mask.clone()
    random_permutation(layer, "weight", seed=3)
    assert int(layer.weight_mask.sum()) == int(before.sum())
    assert not torch.equal(layer.weight_mask, before)
    hooks = [h for h in layer._forward_pre_hooks.values() if isinstance(h, prune.BasePruningMethod)]
    assert len(hooks) == 1 and isinstance(hooks[0], LotteryContainer)
    assert isinstance(hooks[0][-1], RandomPermutation)
    x = torch.randn(2, 8)
    assert torch.allclose(layer(x), x @ (layer.weight_mask * layer.weight_orig).T + layer.bias)
    copy.deepcopy(layer)
    # still a stock-compatible layout
    w = (layer.weight_mask * layer.weight_orig).detach().clone()
    prune.remove(layer, "weight")
    assert torch.equal(layer.weight, w)


def test_unpruned_tensor_gets_all_ones_mask():
    torch.manual_seed(0)
    layer = nn.Linear(4, 3)
    w = layer.weight.detach().clone()
    random_permutation(layer, "weight", seed=0)
    assert prune.is_pruned(layer)
    assert torch.equal(layer.weight_mask, torch.ones(3, 4))
    assert torch.equal(layer.weight_orig, w)
    assert torch.equal(layer.weight, w)


def test_permuted_mask_can_revive_entries_and_stock_rounds_continue():
    layer = pruned_layer(amount=0.9)
    before = layer.weight_mask.clone()
    random_permutation(layer, "weight", seed=1)
    revived = (layer.weight_mask == 1) & (before == 0)
    assert bool(revived.any())
    prune.l1_unstructured(layer, "weight", 2)
    assert int(layer.weight_mask.sum()) == 6


def test_generator_and_seed_together_raise_value_error():
    layer = pruned_layer()
    mask = layer.weight_mask.clone()
    hooks = list(layer._forward_pre_hooks.values())
    with pytest.raises(ValueError, match="generator.*seed"):
        random_permutation(layer, "weight", generator=torch.Generator(), seed=1)
    assert torch.equal(layer.weight_mask, mask)
    assert list(layer._forward_pre_hooks.values()) == hooks
    assert len(hooks[0]) == 1


@pytest.mark.parametrize("seed", ["1", 1.0, True, [1]])
def test_bad_seed_type_raises_type_error(seed):
    layer = pruned_layer()
    mask = layer.weight_mask.clone()
    with pytest.raises(TypeError, match="seed"):
        random_permutation(layer, "weight", seed=seed)
    assert torch.equal(layer.weight_mask, mask)
    assert len(next(iter(layer._forward_pre_hooks.values()))) == 1


@pytest.mark.parametrize("generator", [1, "g", object()])
def test_bad_generator_type_raises_type_error(generator):
    layer = nn.Linear(3, 3)
    with pytest.raises(TypeError, match="generator"):
        random_permutation(layer, "weight", generator=generator)
    assert not prune.is_pruned(layer)
    assert "weight" in dict(layer.named_parameters())


def test_bad_name_raises():
    layer = nn.Linear(3, 3)
    with pytest.raises(ValueError, match="name='w'"):
        random_permutation(layer, "w", seed=0)
    assert not prune.is_pruned(layer)


def test_hook_holds_no_generator_after_apply():
    g = torch.Generator().manual_seed(0)
    layer = pruned_layer()
    RandomPermutation.apply(layer, "weight", generator=g)
    hook = next(iter(layer._forward_pre_hooks.values()))
    assert hook[-1].generator is None
    assert not any(isinstance(v, (torch.Tensor, torch.Generator)) for m in hook for v in vars(m).values())
    copy.deepcopy(layer)
