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


def expected_bytes(model: nn.Module) -> int:
    """Parameters once, plus a mask and a computed tensor per pruned weight: the stock layout, no copies."""
    weights = sum(m.weight.numel() * m.weight.element_size() for m, _ in pairs(model))
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return params + 2 * weights


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


FLAT = {
    "lottery_magnitude": local_lottery,
    "global_magnitude": global_ours,
    "stock global_unstructured(LotteryMagnitude) + compact_hooks": stock_global_lottery_compacted,
    "stock l1_unstructured + compact_hooks": stock_local_l1_compacted,
    "stock global L1 x rounds, then compact_hooks": stock_global_l1_compacted_once,
    "find_ticket imp": driver,
}


@pytest.mark.parametrize("how", list(FLAT))
def test_bytes_after_ten_rounds_equal_bytes_after_one(how):
    one, ten = mlp(), mlp()
    FLAT[how](one, 1)
    FLAT[how](ten, 10)
    assert tl.pruning.held_bytes(one) == tl.pruning.held_bytes(ten) == expected_bytes(one)
    for module, _ in pairs(ten):  # the rounds really pruned
        assert int(module.weight_mask.sum()) < int(module.weight_mask.numel() * 0.8**5)


def test_stock_global_rounds_without_compaction_grow():
    """The failure the tests above guard against: stock keeps one mask copy per round in its hooks."""
    one, ten = mlp(), mlp()
    for model, rounds in ((one, 1), (ten, 10)):
        for _ in range(rounds):
            prune.global_unstructured(pairs(model), pruning_method=prune.L1Unstructured, amount=0.2)
    weights = sum(m.weight_mask.numel() * 4 for m, _ in pairs(one))
    assert tl.pruning.held_bytes(one) == expected_bytes(one) + weights  # + the pool mask of the one round
    assert tl.pruning.held_bytes(ten) == expected_bytes(ten) + 10 * weights
    tl.compact_hooks(ten)
    assert tl.pruning.held_bytes(ten) == expected_bytes(ten)


def test_counter_sees_tensors_held_by_hooks():
    """held_bytes must see a tensor that only a hook's method holds (otherwise it could not fail)."""
    model = mlp()
    tl.lottery_magnitude(model[0], "weight", amount=0.2)
    base = tl.pruning.held_bytes(model)
    hook = next(iter(model[0]._forward_pre_hooks.values()))
    hook[-1].stash = {"kept": [torch.zeros(1000)]}
    assert tl.pruning.held_bytes(model) == base + 4000
