"""torch_lottery/pruning/_select.py: the sort-free selection and the one planner, against stock and a sort."""

import copy
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import prune

from torch_lottery import LotteryMagnitude, global_magnitude
from torch_lottery.pruning import _select


def pool_keep(scores, eligible, amount, min_remaining, on_floor="raise", checked=False):
    """Keep-masks of one threshold over ``scores`` (``eligible``: bool or None).

    ``checked`` goes through the planner (which refuses NaN and infinite scores);
    otherwise the selection itself (``plan_group``), which ranks infinities too.
    """
    pool = _select._Pool([_select._Source(s, eligible=e) for s, e in zip(scores, eligible, strict=True)])
    if checked:
        plans = _select.plan(
            pool,
            amount,
            labels=[f"scores[{i}]" for i in range(len(scores))],
            min_remaining=min_remaining,
            on_floor=on_floor,
        )
    else:
        group = _select.plan_group(pool, list(range(len(scores))), amount, min_remaining, on_floor)
        plans = [group[i] for i in range(len(scores))]
    return [
        pool.write(i, p, torch.empty(s.shape if e is None else e.shape, dtype=torch.bool))
        for i, (p, s, e) in enumerate(zip(plans, scores, eligible, strict=True))
    ]


def bottom_k(scores, k):
    """A bool mask over 1-D ``scores``, False at the ``k`` lowest (ties: lower index first)."""
    return pool_keep([scores], [None], k, 0)[0]


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


# Hand-picked (seed, shapes, amount), three rounds each; random pools against the sort reference are
# test_property_matches_sort_reference's and tests/properties/'s job. The edges: amount 0.0 and 1.0
# (then rounds with nothing left), an int amount that runs out (13 of 35: the third round is skipped),
# every shape, pools with tied magnitudes (the two larger models) and one where stock's topk breaks
# the ties differently from us in round 3 (seed 1, the largest model, 13).
STOCK_GLOBAL_CASES = [
    pytest.param(0, SHAPES[0], 0.2, id="one-0.2"),
    pytest.param(0, SHAPES[0], 0.0, id="one-0.0"),
    pytest.param(0, SHAPES[0], 1.0, id="one-1.0"),
    pytest.param(0, SHAPES[0], 13, id="one-13-runs-out"),
    pytest.param(1, SHAPES[0], 0.97, id="one-0.97"),
    pytest.param(1, SHAPES[0], 13, id="one-13-runs-out-b"),
    pytest.param(0, SHAPES[1], 0.5, id="three-0.5"),
    pytest.param(0, SHAPES[1], 1.0, id="three-1.0"),
    pytest.param(1, SHAPES[1], 0.97, id="three-0.97"),
    pytest.param(1, SHAPES[1], 0.0, id="three-0.0"),
    pytest.param(1, SHAPES[1], 13, id="three-13"),
    pytest.param(0, SHAPES[2], 0.2, id="two-large-0.2-ties"),
    pytest.param(0, SHAPES[2], 13, id="two-large-13-ties"),
    pytest.param(1, SHAPES[2], 0.97, id="two-large-0.97-ties"),
    pytest.param(1, SHAPES[2], 1.0, id="two-large-1.0"),
    pytest.param(0, SHAPES[3], 0.2, id="largest-0.2-ties"),
    pytest.param(0, SHAPES[3], 0.97, id="largest-0.97-ties"),
    pytest.param(0, SHAPES[3], 1.0, id="largest-1.0"),
    pytest.param(1, SHAPES[3], 0.0, id="largest-0.0-ties"),
    pytest.param(1, SHAPES[3], 13, id="largest-13-stock-breaks-ties-differently"),
]


@pytest.mark.parametrize("seed, shapes, amount", STOCK_GLOBAL_CASES)
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
        scores = [m.weight_orig.detach().abs()[e] for m, e in zip(b, before, strict=True)]
        k = amount if isinstance(amount, int) else round(amount * sum(int(e.sum()) for e in before))
        for m, e, exp in zip(b, before, reference_keep(scores, k), strict=True):
            assert torch.equal(m.weight_mask.bool()[e], exp)
        prune.global_unstructured([(m, "weight") for m in c], pruning_method=LotteryMagnitude, amount=amount)
        survivors = (
            torch.cat([m.weight_orig.abs()[m.weight_mask.bool()] for m in b]) if hasattr(b[0], "weight_orig") else None
        )
        ties = survivors is not None and survivors.unique().numel() < survivors.numel()
        assert sum(int(x.weight_mask.sum()) for x in a) == sum(int(y.weight_mask.sum()) for y in b)
        for x, y, z in zip(a, b, c, strict=True):
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
            m.weight.copy_(
                torch.randint(-3, 4, m.weight.shape).float() if values == "integers" else torch.full_like(m.weight, 0.5)
            )
    stock, ours, again = copy.deepcopy(net), copy.deepcopy(net), copy.deepcopy(net)
    prune.global_unstructured([(m, "weight") for m in stock], pruning_method=prune.L1Unstructured, amount=0.3)
    global_magnitude([(m, "weight") for m in ours], amount=0.3, min_remaining=0)
    global_magnitude([(m, "weight") for m in again], amount=0.3, min_remaining=0)
    assert sum(int(m.weight_mask.sum()) for m in stock) == sum(int(m.weight_mask.sum()) for m in ours)
    for x, y in zip(ours, again, strict=True):
        assert torch.equal(x.weight_mask, y.weight_mask)
    expected = reference_keep([m.weight.abs() for m in net], round(0.3 * sum(m.weight.numel() for m in net)))
    for m, e in zip(ours, expected, strict=True):
        assert torch.equal(m.weight_mask.bool().reshape(-1), e)


def test_all_equal_prunes_lowest_flat_indices_first():
    scores = [torch.ones(50_000), torch.ones(40_000)]  # above the direct-kthvalue size: radix path
    keeps = pool_keep(scores, [torch.ones(50_000, dtype=torch.bool), torch.ones(40_000, dtype=torch.bool)], 60_000, 0)
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
        for got, exp in zip(keeps, reference_keep(scores, k), strict=True):
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


def test_one_counting_pass_gathers_the_bracket_when_it_holds_the_kth_score(monkeypatch):
    """The pool is read once to count and gather when the pivots bracket the k-th score (the usual case)."""
    calls = []
    original = _select._Pool._gather
    monkeypatch.setattr(_select._Pool, "_gather", lambda self, *a: calls.append(a) or original(self, *a))
    torch.manual_seed(4)
    scores = [torch.randn(200_000).abs(), torch.randn(100_000).abs()]
    keeps = pool_keep(scores, [None, None], 0.3, 1)
    pool = torch.cat(scores)
    threshold = torch.kthvalue(pool, 90_000).values
    assert torch.equal(torch.cat(keeps), pool > threshold)
    assert calls == []


def test_nan_is_refused_naming_the_tensor():
    with pytest.raises(
        ValueError, match=r"scores\[0\] contains NaN values \(shape \(70000,\); e.g. nan at flat index 0\)"
    ):
        pool_keep([torch.full((70_000,), float("nan")), torch.ones(30_000)], [None, None], 0.5, 0, checked=True)


def test_min_remaining_and_rate_multipliers():
    torch.manual_seed(4)
    net = nn.Sequential(nn.Linear(300, 200), nn.ReLU(), nn.Linear(200, 100), nn.ReLU(), nn.Linear(100, 3))
    with torch.no_grad():
        net[4].weight.mul_(1e-3)  # would be pruned away without the floor
    global_magnitude([(net[0], "weight"), (net[2], "weight"), (net[4], "weight")], amount=0.9, min_remaining=20)
    assert int(net[4].weight_mask.sum()) == 20
    assert sum(int(net[i].weight_mask.sum()) for i in (0, 2, 4)) == 80_300 - round(0.9 * 80_300)
    net2 = nn.Sequential(nn.Linear(300, 200), nn.ReLU(), nn.Linear(200, 3))
    global_magnitude(
        [(net2[0], "weight"), (net2[2], "weight")], amount=0.4, rate_multipliers={(net2[2], "weight"): 0.5}
    )
    assert int(net2[2].weight_mask.sum()) == 600 - 120
    assert int(net2[0].weight_mask.sum()) == 60_000 - 24_000


@settings(max_examples=80, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 3000), min_size=1, max_size=5),
    frac=st.floats(0, 1),
    values=st.sampled_from(["normal", "ties", "signed"]),
    seed=st.integers(0, 2**16),
    small=st.booleans(),
)
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
    for got, exp in zip(keeps, reference_keep(scores, k), strict=True):
        assert torch.equal(got, exp)
    again = pool_keep(scores, [None] * len(sizes), k, 0)
    for a, b in zip(keeps, again, strict=True):
        assert torch.equal(a, b)


# -- the sampled-pivot selection under forced small knobs -------------------------------
# Small chunks, samples and limits make tiny pools take every path of _Pool.threshold:
# several chunks per tensor, bracket misses (no margin), refinement rounds, the gather of
# whatever is left after the last round, and ties at a pivot.
KNOBS = [
    {"_CHUNK": 7, "_SMALL": 4, "_SAMPLE": 16, "_SIGMAS": 0.0, "_ROUNDS": 6},
    {"_CHUNK": 64, "_SMALL": 8, "_SAMPLE": 4, "_SIGMAS": 1.0, "_ROUNDS": 1},
    {"_CHUNK": 1000, "_SMALL": 16, "_SAMPLE": 256, "_SIGMAS": 4.0, "_ROUNDS": 3},
]


@pytest.fixture(params=range(len(KNOBS)), ids=["misses", "one-round", "defaults-small"])
def knobs(request, monkeypatch):
    for name, value in KNOBS[request.param].items():
        monkeypatch.setattr(_select, name, value)
    return KNOBS[request.param]


def reference_eligible(scores, eligible, k):
    """Sort-based reference over the surviving entries only (ties: lower tensor, lower flat index first)."""
    flat = torch.cat([s.reshape(-1).double() for s in scores])
    alive = torch.cat(
        [
            torch.ones(s.numel(), dtype=torch.bool) if e is None else e.reshape(-1)
            for s, e in zip(scores, eligible, strict=True)
        ]
    )
    index = alive.nonzero().reshape(-1)
    keep = alive.clone()
    if k > 0:
        keep[index[torch.sort(flat[index], stable=True).indices[:k]]] = False
    return list(torch.split(keep, [s.numel() for s in scores]))


def random_scores(kind, sizes, dtype, g):
    out = []
    for n in sizes:
        if kind == "normal":
            s = torch.randn(n, generator=g, dtype=dtype).abs()
        elif kind == "integers":  # heavy ties
            s = torch.randint(-3, 4, (n,), generator=g).to(dtype)
        elif kind == "negative":
            s = -torch.rand(n, generator=g, dtype=dtype) * 5
            s[: n // 7] = -0.0
        else:  # infinities and zeros among normal values
            s = torch.randn(n, generator=g, dtype=dtype)
            s[torch.rand(n, generator=g) < 0.1] = float("inf")
            s[torch.rand(n, generator=g) < 0.1] = -float("inf")
            s[torch.rand(n, generator=g) < 0.1] = 0.0
        out.append(s)
    return out


@pytest.mark.parametrize("kind", ["normal", "integers", "negative", "infinities"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forced_paths_match_reference(knobs, kind, dtype):
    rng = random.Random(f"{kind}{dtype}")
    g = torch.Generator().manual_seed(7)
    for _ in range(12):
        sizes = [rng.choice([0, 1, 9, 200, 700]) for _ in range(rng.randint(1, 4))]
        scores = random_scores(kind, sizes, dtype, g)
        eligible = [None if rng.random() < 0.5 else torch.rand(n, generator=g) < rng.random() for n in sizes]
        for s, e in zip(scores, eligible, strict=True):  # NaN where the entry is already pruned must be ignored
            if e is not None and rng.random() < 0.5:
                s[~e] = float("nan")
        alive = sum(s.numel() if e is None else int(e.sum()) for s, e in zip(scores, eligible, strict=True))
        for k in sorted({0, min(1, alive), alive // 3, alive // 2, max(alive - 1, 0), alive}):
            keeps = pool_keep(scores, eligible, k, 0)
            for got, exp in zip(keeps, reference_eligible(scores, eligible, k), strict=True):
                assert torch.equal(got.reshape(-1), exp)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_models_over_rounds_match_stock_and_reference(knobs, ties, dtype):
    """global_magnitude and LotteryMagnitude in stock global_unstructured, round after round, chunked."""
    torch.manual_seed(3)
    net = nn.ModuleList([nn.Linear(i, o, bias=False).to(dtype) for i, o in [(30, 20), (20, 10), (17, 3)]])
    if ties:
        with torch.no_grad():
            for m in net:
                m.weight.copy_(torch.randint(-3, 4, m.weight.shape).to(dtype))
    stock, ours, lottery = copy.deepcopy(net), copy.deepcopy(net), copy.deepcopy(net)
    pairs = lambda model: [(m, "weight") for m in model]  # noqa: E731
    for amount in (0.3, 17, 0.5, 0.25):
        before = [getattr(m, "weight_mask", torch.ones_like(m.weight)).bool() for m in ours]
        prune.global_unstructured(pairs(stock), pruning_method=prune.L1Unstructured, amount=amount)
        global_magnitude(pairs(ours), amount=amount, min_remaining=0)
        prune.global_unstructured(pairs(lottery), pruning_method=LotteryMagnitude, amount=amount)
        k = amount if isinstance(amount, int) else round(amount * sum(int(e.sum()) for e in before))
        expected = reference_eligible([m.weight_orig.detach().abs() for m in ours], before, k)
        for s, o, lm, exp in zip(stock, ours, lottery, expected, strict=True):
            assert o.weight_mask.dtype == lm.weight_mask.dtype == torch.bool  # ours: 1 byte an entry
            assert s.weight_mask.dtype == dtype  # stock's: float
            assert torch.equal(o.weight_mask.reshape(-1), exp)
            assert torch.equal(lm.weight_mask, o.weight_mask)
            assert torch.equal(o.weight, o.weight_orig * o.weight_mask.to(dtype))
            if not ties:  # stock's topk breaks ties arbitrarily
                assert torch.equal(s.weight_mask.bool(), o.weight_mask)
        assert sum(int(m.weight_mask.sum()) for m in stock) == sum(int(m.weight_mask.sum()) for m in ours)


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors is a no-op")
def test_importance_scores_and_empty_tensor_match_stock(knobs):
    torch.manual_seed(5)
    net = nn.ModuleList([nn.Linear(40, 30), nn.Linear(0, 4), nn.Linear(30, 9)])
    stock = copy.deepcopy(net)
    g = torch.Generator().manual_seed(1)
    for amount in (0.4, 0.4):
        scores = [torch.randn(m.weight.shape, generator=g) for m in net]
        global_magnitude(
            [(m, "weight") for m in net],
            amount,
            min_remaining=0,
            importance_scores={(m, "weight"): s for m, s in zip(net, scores, strict=True)},
        )
        prune.global_unstructured(
            [(m, "weight") for m in stock],
            pruning_method=prune.L1Unstructured,
            amount=amount,
            importance_scores={(m, "weight"): s for m, s in zip(stock, scores, strict=True)},
        )
        for a, b in zip(net, stock, strict=True):
            assert torch.equal(a.weight_mask, b.weight_mask)
    assert net[1].weight_mask.numel() == 0


def test_large_pool_multi_pass_matches_stock():
    """Over the direct-rank size (65536 entries): the sampled pivots, counting and gather passes."""
    torch.manual_seed(6)
    net = nn.ModuleList(
        [nn.Linear(300, 200, bias=False), nn.Linear(200, 150, bias=False), nn.Linear(150, 10, bias=False)]
    )
    assert sum(m.weight.numel() for m in net) > _select._SMALL
    stock, ours, lottery = copy.deepcopy(net), copy.deepcopy(net), copy.deepcopy(net)
    for amount in (0.2, 0.2, 0.6):
        prune.global_unstructured([(m, "weight") for m in stock], pruning_method=prune.L1Unstructured, amount=amount)
        global_magnitude([(m, "weight") for m in ours], amount=amount, min_remaining=0)
        prune.global_unstructured([(m, "weight") for m in lottery], pruning_method=LotteryMagnitude, amount=amount)
        for a, b, c in zip(stock, ours, lottery, strict=True):
            assert torch.equal(a.weight_mask, b.weight_mask)
            assert torch.equal(a.weight_mask, c.weight_mask)


def test_large_pool_with_ties_at_the_threshold():
    """Heavy ties over 65536 entries: the k-th score equals a pivot; lower flat index pruned first."""
    g = torch.Generator().manual_seed(8)
    scores = [torch.randint(0, 5, (n,), generator=g).float() for n in (90_000, 0, 40_000, 1)]
    total = sum(s.numel() for s in scores)
    for k in (1, 17_999, 26_001, total // 2, total - 1):
        keeps = pool_keep(scores, [None] * len(scores), k, 0)
        for got, exp in zip(keeps, reference_keep(scores, k), strict=True):
            assert torch.equal(got, exp)


def test_no_pool_sized_concatenation(monkeypatch):
    """The pool is never concatenated: every torch.cat stays far below the pool's size."""
    sizes = []
    real_cat = torch.cat

    def recording_cat(tensors, *args, **kwargs):
        out = real_cat(tensors, *args, **kwargs)
        sizes.append(out.numel())
        return out

    monkeypatch.setattr(torch, "cat", recording_cat)
    torch.manual_seed(9)
    net = nn.ModuleList([nn.Linear(500, 400), nn.Linear(400, 300)])
    global_magnitude([(m, "weight") for m in net], amount=0.3)
    total = sum(m.weight.numel() for m in net)
    assert sum(int(m.weight_mask.sum()) for m in net) == total - round(0.3 * total)
    assert sizes and max(sizes) < total // 8


def test_nan_in_a_later_chunk_raises_before_any_change(monkeypatch):
    monkeypatch.setattr(_select, "_CHUNK", 1000)
    torch.manual_seed(10)
    net = nn.ModuleList([nn.Linear(300, 300), nn.Linear(300, 10)])
    with torch.no_grad():
        net[0].weight[250, 7] = float("nan")  # flat index 75_007: the 76th chunk
    state = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match="NaN"):
        global_magnitude([(m, "weight") for m in net], amount=0.3)
    assert list(net.state_dict()) == list(state)
    assert all(
        torch.equal(
            net.state_dict()[k],
            v,
        )
        or torch.isnan(v).any()
        for k, v in state.items()
    )
    assert not hasattr(net[0], "weight_mask")


@pytest.mark.parametrize("criterion", ["movement", "large_final_same_sign", "small_final", "magnitude_increase"])
def test_criteria_chunked_match_reference(knobs, criterion):
    from torch_lottery import RewindPoint
    from torch_lottery.pruning._select import criterion_scores

    torch.manual_seed(11)
    net = nn.ModuleList([nn.Linear(30, 20, bias=False), nn.Linear(20, 7, bias=False)])
    init = RewindPoint.capture(net)
    for _ in range(2):
        with torch.no_grad():
            for m in net.parameters():
                m.add_(torch.randn(m.shape) * 0.3)  # stand-in for training
        before = [getattr(m, "weight_mask", torch.ones_like(m.weight)).bool() for m in net]
        final = [(m.weight_orig if hasattr(m, "weight_orig") else m.weight).detach().clone() for m in net]
        initial = [init[f"{i}.weight"] for i in range(len(net))]
        global_magnitude(
            [(m, "weight") for m in net],
            amount=0.4,
            criterion=criterion,
            rewind_point=init,
            rewind=False,
            min_remaining=0,
        )
        k = round(0.4 * sum(int(e.sum()) for e in before))
        scores = [criterion_scores(criterion, f, i) for f, i in zip(final, initial, strict=True)]
        expected = reference_eligible(scores, before, k)
        for m, exp in zip(net, expected, strict=True):
            assert torch.equal(m.weight_mask.bool().reshape(-1), exp)


# --------------------------------------------------------------------------- one planner behind every front end
def _floor_net():
    torch.manual_seed(11)
    return nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3), nn.ReLU(), nn.Linear(3, 2))


NAMES = ["0.weight", "2.weight", "4.weight"]


def _by_global_magnitude(amount, min_remaining, on_floor, multipliers=None):
    from torch_lottery import global_magnitude

    net = _floor_net()
    global_magnitude(net, amount, min_remaining=min_remaining, on_floor=on_floor, rate_multipliers=multipliers)
    return [net.get_submodule(n.split(".")[0]).weight_mask.bool() for n in NAMES]


def _by_stock_global(amount, min_remaining, on_floor, multipliers=None):
    from torch_lottery import GlobalMagnitude

    net = _floor_net()
    prune.global_unstructured(
        [(net[i], "weight") for i in (0, 2, 4)],
        pruning_method=GlobalMagnitude,
        amount=amount,
        min_remaining=min_remaining,
        on_floor=on_floor,
    )
    return [net[i].weight_mask.bool() for i in (0, 2, 4)]


def _by_imp(amount, min_remaining, on_floor, multipliers=None):
    from torch_lottery import PruneContext, get_strategy

    net = _floor_net()
    strategy = get_strategy("imp")(
        rate=amount, scope="global", min_remaining=min_remaining, on_floor=on_floor, rate_multipliers=multipliers
    )
    context = PruneContext(
        net,
        tuple(NAMES),
        {n: net.get_parameter(n).detach() for n in NAMES},
        {n: torch.ones_like(net.get_parameter(n), dtype=torch.bool) for n in NAMES},
        None,
        1,
        torch.Generator().manual_seed(0),
    )
    masks = strategy.prune(context)
    return [masks[n] for n in NAMES]


FRONT_ENDS = {"stock-global": _by_stock_global, "imp": _by_imp}


@pytest.mark.parametrize("amount, min_remaining", [(0.5, 1), (0.95, 2), (0.99, 3), (0.3, 0)])
@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_floors_clamp_the_same_way_in_every_front_end(front_end, amount, min_remaining):
    reference = _by_global_magnitude(amount, min_remaining, "clamp")
    masks = FRONT_ENDS[front_end](amount, min_remaining, "clamp")
    assert [torch.equal(a, b) for a, b in zip(masks, reference, strict=True)] == [True] * 3
    assert all(int(m.sum()) >= min(min_remaining, m.numel()) for m in reference)


@pytest.mark.parametrize("front_end", [_by_global_magnitude, *FRONT_ENDS.values()])
def test_floors_raise_the_same_way_in_every_front_end(front_end):
    # 80 + 24 + 6 weights, 0.99 of them is 109; floors of 3 leave 101 prunable
    with pytest.raises(
        ValueError,
        match=r"^amount=0.99 would prune 109 of 110 surviving entries, but "
        r"min_remaining=3 per tensor leaves only 101 prunable \(on_floor=",
    ):
        front_end(0.99, 3, "raise")


def test_rate_multipliers_mean_the_same_in_global_magnitude_and_the_strategies():
    ours, imp = (f(0.4, 1, "clamp", multipliers={"4.weight": 0.5}) for f in (_by_global_magnitude, _by_imp))
    assert [torch.equal(a, b) for a, b in zip(imp, ours, strict=True)] == [True] * 3
    assert int(imp[2].sum()) == 6 - round(6 * 0.2)


def test_every_front_end_selects_through_the_one_planner(monkeypatch):
    calls = []
    real = _select.plan_group
    monkeypatch.setattr(_select, "plan_group", lambda *a, **k: calls.append(1) or real(*a, **k))
    fronts = [
        lambda: _by_global_magnitude(0.5, 1, "clamp"),
        lambda: _by_stock_global(0.5, 1, "clamp"),
        lambda: _by_imp(0.5, 1, "clamp"),
        lambda: LotteryMagnitude.apply(_floor_net()[0], "weight", amount=0.5),
        lambda: prune.global_unstructured([(_floor_net()[0], "weight")], pruning_method=LotteryMagnitude, amount=0.5),
    ]
    for front in fronts:
        before = len(calls)
        front()
        assert len(calls) > before
