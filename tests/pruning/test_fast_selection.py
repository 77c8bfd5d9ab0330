"""Exactness of the sort-free global selection against stock pruning and a sort-based reference."""

import copy

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn
from torch.nn.utils import prune

from torch_lottery import LotteryMagnitude, global_magnitude
from torch_lottery.pruning import _select
from torch_lottery.pruning._select import bottom_k
from torch_lottery.pruning.global_magnitude import pool_keep


def reference_keep(scores, k):
    """Sort-based reference: prune the k lowest; ties go to the lower flat index (stable sort)."""
    flat = torch.cat([s.reshape(-1).double() for s in scores])
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    if k > 0:
        order = torch.sort(flat, stable=True).indices
        keep[order[:k]] = False
    return list(torch.split(keep, [s.numel() for s in scores]))


def make_net(seed, shapes):
    torch.manual_seed(seed)
    return nn.ModuleList([nn.Linear(i, o, bias=False) for i, o in shapes])


SHAPES = [[(7, 5)], [(30, 20), (20, 10), (10, 3)], [(300, 200), (200, 100)], [(600, 400), (50, 40), (400, 3)]]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("shapes", SHAPES)
@pytest.mark.parametrize("amount", [0.2, 0.5, 0.97, 0.0, 1.0, 13])
def test_global_magnitude_equals_stock(seed, shapes, amount):
    a = make_net(seed, shapes)
    b = copy.deepcopy(a)
    c = copy.deepcopy(a)
    for _ in range(3):  # several rounds: amounts count the surviving entries
        total = sum(int(getattr(m, "weight_mask", torch.ones_like(m.weight)).sum()) for m in a)
        if isinstance(amount, int) and amount > total:
            break
        prune.global_unstructured([(m, "weight") for m in a], pruning_method=prune.L1Unstructured, amount=amount)
        before = [getattr(m, "weight_mask", torch.ones_like(m.weight)).bool() for m in b]
        global_magnitude([(m, "weight") for m in b], amount=amount, min_remaining=0)
        scores = [m.weight_orig.detach().abs()[e] for m, e in zip(b, before)]
        k = amount if isinstance(amount, int) else round(amount * sum(int(e.sum()) for e in before))
        for m, e, exp in zip(b, before, reference_keep(scores, k)):
            assert torch.equal(m.weight_mask.bool()[e], exp)
        prune.global_unstructured([(m, "weight") for m in c], pruning_method=LotteryMagnitude, amount=amount)
        survivors = torch.cat([m.weight_orig.abs()[m.weight_mask.bool()] for m in b]) if hasattr(b[0], "weight_orig") else None
        ties = survivors is not None and survivors.unique().numel() < survivors.numel()
        assert sum(int(x.weight_mask.sum()) for x in a) == sum(int(y.weight_mask.sum()) for y in b)
        for x, y, z in zip(a, b, c):
            assert torch.equal(y.weight_mask, z.weight_mask)
            if not ties:  # stock's topk breaks ties arbitrarily; we prune the lower flat index first
                assert torch.equal(x.weight_mask, y.weight_mask)


@pytest.mark.parametrize("values", ["integers", "equal"])
def test_ties_count_determinism_and_order(values):
    torch.manual_seed(0)
    shapes = [(40, 30), (30, 20), (20, 5)]
    net = nn.ModuleList([nn.Linear(i, o, bias=False) for i, o in shapes])
    with torch.no_grad():
        for m in net:
            m.weight.copy_(torch.randint(-3, 4, m.weight.shape).float() if values == "integers"
                           else torch.full_like(m.weight, 0.5))
    stock, ours, again = copy.deepcopy(net), copy.deepcopy(net), copy.deepcopy(net)
    prune.global_unstructured([(m, "weight") for m in stock], pruning_method=prune.L1Unstructured, amount=0.3)
    global_magnitude([(m, "weight") for m in ours], amount=0.3, min_remaining=0)
    global_magnitude([(m, "weight") for m in again], amount=0.3, min_remaining=0)
    assert sum(int(m.weight_mask.sum()) for m in stock) == sum(int(m.weight_mask.sum()) for m in ours)
    for x, y in zip(ours, again):
        assert torch.equal(x.weight_mask, y.weight_mask)
    expected = reference_keep([m.weight.abs() for m in net], round(0.3 * sum(m.weight.numel() for m in net)))
    for m, e in zip(ours, expected):
        assert torch.equal(m.weight_mask.bool().reshape(-1), e)


def test_all_equal_prunes_lowest_flat_indices_first():
    scores = [torch.ones(50_000), torch.ones(40_000)]  # above the direct-kthvalue size: radix path
    keeps = pool_keep(scores, [torch.ones(50_000, dtype=torch.bool), torch.ones(40_000, dtype=torch.bool)],
                      60_000, 0)
    assert not keeps[0].any()
    assert int((~keeps[1]).sum()) == 10_000 and not keeps[1][:10_000].any() and keeps[1][10_000:].all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["normal", "signed", "integers", "zeros"])
def test_large_pools_match_reference(dtype, kind):
    torch.manual_seed(1)
    sizes = [70_000, 1, 0, 50_000, 9_999]
    if kind == "normal":
        scores = [torch.randn(n, dtype=dtype).abs() for n in sizes]
    elif kind == "signed":
        scores = [torch.randn(n, dtype=dtype) * 10 for n in sizes]
        scores[0][:100] = -0.0
        scores[3][:100] = 0.0
    elif kind == "integers":
        scores = [torch.randint(-5, 6, (n,)).to(dtype) for n in sizes]
    else:
        scores = [torch.zeros(n, dtype=dtype) for n in sizes]
    total = sum(sizes)
    for k in (1, 17, total // 5, total // 2, total - 1):
        keeps = pool_keep(scores, [torch.ones(n, dtype=torch.bool) for n in sizes], k, 0)
        for got, exp in zip(keeps, reference_keep(scores, k)):
            assert torch.equal(got, exp)


def test_bottom_k_matches_topk_without_ties():
    torch.manual_seed(2)
    x = torch.randn(300_000)
    for k in (1, 1000, 150_000, 299_999):
        keep = bottom_k(x, k)
        expected = torch.ones_like(keep)
        expected[torch.topk(x, k, largest=False).indices] = False
        assert torch.equal(keep, expected)


def test_no_sort_or_topk(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("full sort/topk used")
    monkeypatch.setattr(torch, "sort", forbidden)
    monkeypatch.setattr(torch, "topk", forbidden)
    torch.manual_seed(3)
    scores = [torch.randn(200_000).abs(), torch.randn(100_000).abs()]
    keeps = pool_keep(scores, [None, None], 0.3, 1)
    assert sum(int(k.sum()) for k in keeps) == 300_000 - 90_000


def test_nan_message_unchanged():
    with pytest.raises(ValueError, match=r"contains NaN values \(shape \(100000,\)\)"):
        pool_keep([torch.full((70_000,), float("nan")), torch.ones(30_000)], [None, None], 0.5, 0)


def test_min_remaining_and_rate_multipliers():
    torch.manual_seed(4)
    net = nn.Sequential(nn.Linear(300, 200), nn.ReLU(), nn.Linear(200, 100), nn.ReLU(), nn.Linear(100, 3))
    with torch.no_grad():
        net[4].weight.mul_(1e-3)  # would be pruned away without the floor
    global_magnitude([(net[0], "weight"), (net[2], "weight"), (net[4], "weight")], amount=0.9, min_remaining=20)
    assert int(net[4].weight_mask.sum()) == 20
    assert sum(int(net[i].weight_mask.sum()) for i in (0, 2, 4)) == 80_300 - round(0.9 * 80_300)
    net2 = nn.Sequential(nn.Linear(300, 200), nn.ReLU(), nn.Linear(200, 3))
    global_magnitude([(net2[0], "weight"), (net2[2], "weight")], amount=0.4,
                     rate_multipliers={(net2[2], "weight"): 0.5})
    assert int(net2[2].weight_mask.sum()) == 600 - 120
    assert int(net2[0].weight_mask.sum()) == 60_000 - 24_000


@settings(max_examples=80, deadline=None)
@given(sizes=st.lists(st.integers(0, 3000), min_size=1, max_size=5),
       frac=st.floats(0, 1), values=st.sampled_from(["normal", "ties", "signed"]),
       seed=st.integers(0, 2**16), small=st.booleans())
def test_property_matches_sort_reference(sizes, frac, values, seed, small):
    saved = _select._SMALL
    if small:  # force the radix passes on small pools too
        _select._SMALL = 8
    try:
        check_against_reference(sizes, frac, values, seed)
    finally:
        _select._SMALL = saved


def check_against_reference(sizes, frac, values, seed):
    g = torch.Generator().manual_seed(seed)
    if values == "normal":
        scores = [torch.randn(n, generator=g).abs() for n in sizes]
    elif values == "ties":
        scores = [torch.randint(0, 4, (n,), generator=g).float() for n in sizes]
    else:
        scores = [torch.randn(n, generator=g) for n in sizes]
    total = sum(sizes)
    k = round(frac * total)
    keeps = pool_keep(scores, [torch.ones(n, dtype=torch.bool) for n in sizes], k, 0)
    for got, exp in zip(keeps, reference_keep(scores, k)):
        assert torch.equal(got, exp)
    again = pool_keep(scores, [None] * len(sizes), k, 0)
    for a, b in zip(keeps, again):
        assert torch.equal(a, b)
