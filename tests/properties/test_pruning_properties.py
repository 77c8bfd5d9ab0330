"""Property-based tests of the pruning invariants over random shapes, amounts and round counts.

* masks only shrink, round after round (local, global, strategies);
* the surviving count after each round is what the amount implies: ``round(amount * s)``
  of the ``s`` survivors for a float (stock prune's rounding), the int itself for an int;
* global pooling of a single tensor gives the masks of local pruning (every entry point);
* a random permutation keeps each tensor's count of survivors.

Hypothesis runs a modest, derandomized number of examples (the same ones on every run).
"""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import prune

import torch_lottery as tl
from torch_lottery.strategies.base import PruneContext

from helpers import Holder

#: Examples per property (docs/reliability.md quotes it; tests/test_bad_input.py keeps them in sync).
EXAMPLES = 40
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

shapes = st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple)
values = st.sampled_from(["normal", "ties", "signed-ties"])


def tensor(shape, kind: str, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "normal":
        return torch.randn(shape, generator=g)
    t = torch.randint(0, 4, shape, generator=g).float()
    return t if kind == "ties" else t * (torch.randint(0, 2, shape, generator=g) * 2 - 1)


def draw_amount(data, surviving: int):
    """A float fraction, or an int count no larger than what survives."""
    return data.draw(st.one_of(st.floats(0.0, 1.0), st.integers(0, surviving)), label="amount")


def expected_count(amount, surviving: int) -> int:
    return amount if isinstance(amount, int) else int(round(amount * surviving))


def alive(module) -> torch.Tensor:
    return tl.get_mask(module, "weight").bool()


@PROPERTY
@given(shape=shapes, kind=values, seed=st.integers(0, 2**16), rounds=st.integers(1, 5), data=st.data())
def test_local_rounds_shrink_masks_by_exactly_the_amount(shape, kind, seed, rounds, data):
    holder, stock = Holder(tensor(shape, kind, seed)), Holder(tensor(shape, kind, seed))
    previous = alive(holder)
    for _ in range(rounds):
        surviving = int(previous.sum())
        amount = draw_amount(data, surviving)
        tl.lottery_magnitude(holder, "weight", amount)
        prune.l1_unstructured(stock, "weight", amount)
        mask = alive(holder)
        assert not bool((mask & ~previous).any()), "a pruned entry came back"
        assert int(mask.sum()) == surviving - expected_count(amount, surviving)
        if kind == "normal":  # no ties: exactly stock L1Unstructured's mask
            assert torch.equal(mask, alive(stock))
        previous = mask


@PROPERTY
@given(
    shapes_=st.lists(shapes, min_size=1, max_size=4),
    kind=values,
    seed=st.integers(0, 2**16),
    rounds=st.integers(1, 4),
    floor=st.integers(0, 3),
    data=st.data(),
)
def test_global_rounds_shrink_masks_by_the_amount_and_respect_floors(shapes_, kind, seed, rounds, floor, data):
    holders = [Holder(tensor(s, kind, seed + i)) for i, s in enumerate(shapes_)]
    params = [(h, "weight") for h in holders]
    previous = [alive(h) for h in holders]
    for _ in range(rounds):
        surviving = [int(p.sum()) for p in previous]
        total = sum(surviving)
        prunable = total - sum(min(floor, s) for s in surviving)
        amount = draw_amount(data, total)
        if expected_count(amount, total) > prunable:
            continue  # refused (tests/test_bad_input.py); here: what is allowed
        tl.global_magnitude(params, amount, min_remaining=floor)
        masks = [alive(h) for h in holders]
        for mask, before, s in zip(masks, previous, surviving, strict=True):
            assert not bool((mask & ~before).any()), "a pruned entry came back"
            assert int(mask.sum()) >= min(floor, s), "a tensor fell below its floor"
        assert sum(int(m.sum()) for m in masks) == total - expected_count(amount, total)
        previous = masks


@PROPERTY
@given(shape=shapes, kind=values, seed=st.integers(0, 2**16), rounds=st.integers(1, 4), data=st.data())
def test_global_and_local_pooling_agree_on_a_single_tensor(shape, kind, seed, rounds, data):
    weight = tensor(shape, kind, seed)
    local, pooled, method, stock_pool = (Holder(weight) for _ in range(4))
    for _ in range(rounds):
        surviving = int(alive(local).sum())
        amount = draw_amount(data, surviving)
        tl.lottery_magnitude(local, "weight", amount)
        tl.global_magnitude([(pooled, "weight")], amount, min_remaining=0)
        tl.GlobalMagnitude.apply(method, "weight", amount, min_remaining=0)
        prune.global_unstructured([(stock_pool, "weight")], pruning_method=tl.LotteryMagnitude, amount=amount)
        for other in (pooled, method, stock_pool):
            assert torch.equal(alive(other), alive(local))


@PROPERTY
@given(shape=shapes, kind=values, seed=st.integers(0, 2**16), rate=st.floats(0.0, 0.95), rounds=st.integers(1, 4))
def test_imp_strategy_local_and_global_agree_on_a_single_tensor_and_shrink(shape, kind, seed, rate, rounds):
    weight = tensor(shape, kind, seed)
    masks = {scope: torch.ones(shape, dtype=torch.bool) for scope in ("local", "global")}
    for round_index in range(1, rounds + 1):
        for scope in masks:
            strategy = tl.get_strategy("imp")(rate=rate, scope=scope, min_remaining=0)
            context = PruneContext(
                nn.Module(),
                ("w",),
                {"w": weight},
                {"w": masks[scope]},
                None,
                round_index,
                torch.Generator().manual_seed(0),
            )
            new = strategy.prune(context)["w"]
            surviving = int(masks[scope].sum())
            assert not bool((new & ~masks[scope]).any())
            assert int(new.sum()) == surviving - int(round(rate * surviving))
            masks[scope] = new
        assert torch.equal(masks["local"], masks["global"])


@PROPERTY
@given(
    shapes_=st.lists(shapes, min_size=1, max_size=3),
    seed=st.integers(0, 2**16),
    amount=st.floats(0.0, 1.0),
    permutation_seed=st.integers(0, 2**31),
)
def test_permutation_keeps_each_tensors_count(shapes_, seed, amount, permutation_seed):
    holders = [Holder(tensor(s, "normal", seed + i)) for i, s in enumerate(shapes_)]
    for h in holders:
        tl.lottery_magnitude(h, "weight", amount)
    counts = [int(alive(h).sum()) for h in holders]
    twins = [Holder(h.weight_orig.detach()) for h in holders]
    for h, t in zip(holders, twins, strict=True):
        tl.fixed_mask(t, "weight", alive(h))
        tl.random_permutation(h, "weight", seed=permutation_seed)
        tl.random_permutation(t, "weight", seed=permutation_seed)
    for h, t, count in zip(holders, twins, counts, strict=True):
        mask = tl.get_mask(h, "weight")
        assert bool(((mask == 0) | (mask == 1)).all()) and mask.shape == h.weight_orig.shape
        assert int(mask.sum()) == count
        assert torch.equal(mask, tl.get_mask(t, "weight"))  # the same seed, the same shuffle
