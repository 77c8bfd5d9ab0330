"""Memory held by a pruned model stays flat over rounds: one mask per tensor, whatever the number of rounds.

The bytes are counted, not measured: every tensor storage reachable from the model's
parameters, buffers, tensor attributes (the computed ``module.<name>``) and forward
pre-hooks (pruning methods, containers and whatever they hold, e.g. the ``mask`` of
stock ``CustomFromMask`` or a ``_mask`` of ours) is counted once.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import torch_lottery as tl


def mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 30), nn.ReLU(), nn.Linear(30, 5))


def pairs(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(model[i], "weight") for i in (0, 2, 4)]


def expected_bytes(model: nn.Module, mask_bytes: int = 1, trained: bool = False) -> int:
    """Parameters once, plus a mask and a computed tensor per pruned weight: the stock layout, no copies.

    ``mask_bytes`` per entry: 1 for the bool masks torch-lottery installs, 4 for stock's float32 ones.
    After a training forward (``trained``) a bool mask also has its float factor kept for the next
    training forwards (what stock's float mask is itself); pruning drops it again.
    """
    weights = sum(m.weight.numel() * m.weight.element_size() for m, _ in pairs(model))
    masks = sum(m.weight.numel() * mask_bytes for m, _ in pairs(model))
    factors = weights if trained and mask_bytes == 1 else 0
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return params + weights + masks + factors


def forward(model: nn.Module) -> None:
    model(torch.randn(4, 20)).sum().backward()  # a training step keeps graphs and grads around


def local_lottery(model, rounds):
    for _ in range(rounds):
        for module, name in pairs(model):
            tl.lottery_magnitude(module, name, amount=0.2)
        forward(model)


def global_ours(model, rounds):
    init = tl.RewindPoint.capture(model)
    for _ in range(rounds):
        tl.global_magnitude(pairs(model), amount=0.2, rewind_point=init)
        forward(model)


def stock_global_lottery_compacted(model, rounds):
    for _ in range(rounds):
        prune.global_unstructured(pairs(model), pruning_method=tl.LotteryMagnitude, amount=0.2)
        tl.compact_hooks(model)
        forward(model)


def stock_local_l1_compacted(model, rounds):
    for _ in range(rounds):
        for module, name in pairs(model):
            prune.l1_unstructured(module, name, amount=0.2)
        tl.compact_hooks(model)
        forward(model)


def stock_global_l1_compacted_once(model, rounds):
    for _ in range(rounds):
        prune.global_unstructured(pairs(model), pruning_method=prune.L1Unstructured, amount=0.2)
    tl.compact_hooks(model)  # compacting a model already pruned iteratively with stock methods
    forward(model)


def driver(model, rounds):
    def train(m, context):
        optimizer = torch.optim.SGD(m.parameters(), lr=0.01)
        for _ in range(2):
            optimizer.zero_grad()
            m(torch.randn(8, 20)).pow(2).mean().backward()
            optimizer.step()
            context.step()

    tl.find_ticket(
        model,
        train,
        strategy="imp",
        strategy_options={"rate": 0.2, "scope": "global"},
        rounds=rounds,
        parameters=[f"{i}.weight" for i in (0, 2, 4)],
    )


FLAT = {  # scenario: (rounds, bytes per mask entry)
    "lottery_magnitude": (local_lottery, 1),
    "global_magnitude": (global_ours, 1),
    "stock global_unstructured(LotteryMagnitude) + compact_hooks": (stock_global_lottery_compacted, 1),
    "stock l1_unstructured + compact_hooks": (stock_local_l1_compacted, 4),  # stock's float masks stay float
    "stock global L1 x rounds, then compact_hooks": (stock_global_l1_compacted_once, 4),
    "find_ticket imp": (driver, 1),
}


@pytest.mark.parametrize("how", list(FLAT))
def test_bytes_after_ten_rounds_equal_bytes_after_one(how):
    fn, mask_bytes = FLAT[how]
    one, ten = mlp(), mlp()
    fn(one, 1)
    fn(ten, 10)
    # every scenario ends with a training step (forward and backward)
    assert tl.pruning.held_bytes(one) == tl.pruning.held_bytes(ten) == expected_bytes(one, mask_bytes, trained=True)
    for module, _ in pairs(ten):
        assert module.weight_mask.element_size() == mask_bytes
    for module, _ in pairs(ten):  # the rounds really pruned
        assert int(module.weight_mask.sum()) < int(module.weight_mask.numel() * 0.8**5)


def test_stock_global_rounds_without_compaction_grow():
    """The failure the tests above guard against: stock keeps one mask copy per round in its hooks."""
    one, ten = mlp(), mlp()
    for model, rounds in ((one, 1), (ten, 10)):
        for _ in range(rounds):
            prune.global_unstructured(pairs(model), pruning_method=prune.L1Unstructured, amount=0.2)
    weights = sum(m.weight_mask.numel() * 4 for m, _ in pairs(one))
    assert tl.pruning.held_bytes(one) == expected_bytes(one, 4) + weights  # + the pool mask of the one round
    assert tl.pruning.held_bytes(ten) == expected_bytes(ten, 4) + 10 * weights
    tl.compact_hooks(ten)
    assert tl.pruning.held_bytes(ten) == expected_bytes(ten, 4)


def test_counter_sees_tensors_held_by_hooks():
    """held_bytes must see a tensor that only a hook's method holds (otherwise it could not fail)."""
    model = mlp()
    tl.lottery_magnitude(model[0], "weight", amount=0.2)
    base = tl.pruning.held_bytes(model)
    hook = next(iter(model[0]._forward_pre_hooks.values()))
    hook[-1].stash = {"kept": [torch.zeros(1000)]}
    assert tl.pruning.held_bytes(model) == base + 4000


def mask_bytes(model: nn.Module) -> int:
    return sum(m.weight_mask.numel() * m.weight_mask.element_size() for m, _ in pairs(model))


def test_global_magnitude_rounds_write_in_place_with_one_byte_masks():
    """After round 1 no mask or masked weight is allocated again: each round writes the same memory."""
    model = mlp()
    tl.global_magnitude(pairs(model), amount=0.2)
    numel = sum(m.weight.numel() for m, _ in pairs(model))
    where = [(m.weight_mask.data_ptr(), m.weight.data_ptr()) for m, _ in pairs(model)]
    survivors = []
    for _ in range(5):
        tl.global_magnitude(pairs(model), amount=0.2)
        assert mask_bytes(model) == numel  # 1 byte an entry, every round
        assert tl.pruning.held_bytes(model) == expected_bytes(model)
        assert [(m.weight_mask.data_ptr(), m.weight.data_ptr()) for m, _ in pairs(model)] == where
        survivors.append(sum(int(m.weight_mask.sum()) for m, _ in pairs(model)))
        for m, _ in pairs(model):
            assert m.weight_mask.dtype == torch.bool
            assert torch.equal(m.weight, m.weight_mask.float() * m.weight_orig)
    assert survivors == sorted(survivors, reverse=True) and survivors[-1] < survivors[0]


def test_a_mask_or_weight_someone_holds_is_left_as_it_was():
    """In-place writes are never seen: a kept mask (or .bool() of it, the same tensor) or weight keeps its values."""
    model = mlp()
    tl.global_magnitude(pairs(model), amount=0.3)
    layer = model[2]
    kept_mask, as_bool, view = layer.weight_mask, layer.weight_mask.bool(), model[4].weight_mask.view(-1)
    kept_weight = layer.weight
    copies = kept_mask.clone(), view.clone(), kept_weight.clone()
    tl.global_magnitude(pairs(model), amount=0.3)
    assert as_bool is kept_mask
    assert torch.equal(kept_mask, copies[0]) and torch.equal(view, copies[1]) and torch.equal(kept_weight, copies[2])
    assert layer.weight_mask is not kept_mask and model[4].weight_mask.data_ptr() != view.data_ptr()
    assert int(layer.weight_mask.sum()) < int(kept_mask.sum())
    assert layer.weight is not kept_weight
    assert torch.equal(layer.weight, layer.weight_mask.float() * layer.weight_orig)


def test_a_graph_that_saved_the_masked_weight_still_backpropagates():
    """A forward's graph holds module.weight: pruning before its backward must not write that weight in place."""
    model = mlp()
    tl.global_magnitude(pairs(model), amount=0.3)
    loss = model(torch.randn(4, 20)).sum()
    with torch.no_grad():
        tl.global_magnitude(pairs(model), amount=0.3)
    loss.backward()  # raises if a saved tensor was modified in place
    assert model[0].weight_orig.grad is not None


def test_the_training_factor_is_kept_between_forwards_and_dropped_by_pruning():
    """A training forward keeps a bool mask's float factor (no conversion per step); pruning drops it."""
    from torch_lottery import _layout

    model = mlp()
    tl.global_magnitude(pairs(model), amount=0.3)
    assert _layout.kept_factors(model[0]) == []
    assert tl.pruning.held_bytes(model) == expected_bytes(model)
    forward(model)
    factor = _layout.kept_factors(model[0])[0]
    assert factor.dtype == torch.float32 and torch.equal(factor, model[0].weight_mask.float())
    forward(model)
    assert _layout.kept_factors(model[0])[0] is factor  # the same tensor: not converted again
    assert tl.pruning.held_bytes(model) == expected_bytes(model, trained=True)
    tl.global_magnitude(pairs(model), amount=0.3)
    assert _layout.kept_factors(model[0]) == []  # pruning rounds never hold it
    assert tl.pruning.held_bytes(model) == expected_bytes(model)
    forward(model)
    for module, name in pairs(model):  # per-tensor pruning in grad mode neither
        tl.lottery_magnitude(module, name, amount=0.2)
        assert _layout.kept_factors(module) == [] and module.weight.grad_fn is not None  # stock's graph
    assert tl.pruning.held_bytes(model) == expected_bytes(model)


def test_the_training_factor_follows_writes_to_the_mask():
    """load_state_dict (or any in-place write) into the mask reaches the next training forward."""
    from torch_lottery import _layout

    model, other = mlp(0), mlp(1)
    for m in (model, other):
        tl.global_magnitude(pairs(m), amount=0.3)
    tl.global_magnitude(pairs(other), amount=0.5)
    forward(model)
    model.load_state_dict(other.state_dict())
    loss = model(torch.randn(4, 20)).sum()
    for (a, _), (b, _) in zip(pairs(model), pairs(other), strict=True):
        assert torch.equal(_layout.kept_factors(a)[0], b.weight_mask.float())
        assert torch.equal(a.weight, b.weight)
    held = _layout.kept_factors(model[0])[0]
    with torch.no_grad():
        model[0].weight_mask.zero_()  # a write while a graph holds the factor
    model(torch.randn(4, 20)).sum().backward()
    loss.backward()  # the first graph's factor was not overwritten
    assert not bool(held.eq(0).all()) and bool(_layout.kept_factors(model[0])[0].eq(0).all())
    assert torch.equal(model[0].weight, torch.zeros_like(model[0].weight))
