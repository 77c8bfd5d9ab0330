"""Dynamic sparse training: ERK, the cosine schedule, ``rigl``, ``set`` and ``sparse_momentum``."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import torch_lottery as tl
from torch_lottery.strategies import SET, DynamicSparse, RigL, SparseMomentum, StepContext, erk_densities
from torch_lottery.testing import check_prune, make_context

X = torch.randn(32, 6, generator=torch.Generator().manual_seed(3))
Y = torch.randint(0, 3, (32,), generator=torch.Generator().manual_seed(4))
DATA = [(X[:16], Y[:16]), (X[16:], Y[16:])]
STRATEGIES = [SparseMomentum, RigL, SET]


def sum_squares(output, target):
    return ((output - target) ** 2).sum()


def step_context(model, names, iteration, optimizer=None, data=None, loss=None):
    """The StepContext the driver hands ``update`` at ``iteration`` (the tensors are ``<name>.weight``)."""
    pairs = [(model.get_submodule(n.rsplit(".", 1)[0]), "weight") for n in names]
    return StepContext(model, tuple(names), pairs, 1, iteration, 1, None, lambda reason: None, optimizer, data, loss)


def counts(masks):
    return {n: int(m.sum()) for n, m in masks.items()}


# -- ERK and uniform -------------------------------------------------------------------------
def test_erk_matches_a_hand_computation():
    # shapes (3, 4) and (2, 3): ERK quotas eps * (3 + 4) and eps * (2 + 3), eps = 9 / 12 (target round(0.5 * 18) = 9):
    # 5.25 and 3.75; floors 5 + 3 = 8, the one left goes to the larger remainder (0.75): 5 and 4 weights
    assert erk_densities([(3, 4), (2, 3)], 0.5) == [5 / 12, 4 / 6]
    # a conv (co, ci, kh, kw) counts its kernel dims: (4, 2, 3, 3) sums to 12, a Linear (3, 8) to 11;
    # target round(0.25 * 96) = 24, eps = 24 / 23: quotas 12.52 and 11.48 -> 12 + 11, the last one to the conv
    assert erk_densities([(4, 2, 3, 3), (3, 8)], 0.25) == [13 / 72, 11 / 24]


def test_erk_makes_a_tensor_dense_when_its_density_would_exceed_one_and_resolves_the_rest():
    # target round(0.5 * 34) = 17; eps = 17 / (10 + 10 + 3): the (1, 2) tensor would get 3 * 17 / 23 = 2.2 > 2 weights,
    # so it is dense (2) and the other two share 15 by 10 : 10, i.e. 7.5 each: 8 (the earlier tensor) and 7
    assert erk_densities([(8, 2), (2, 8), (1, 2)], 0.5) == [8 / 16, 7 / 16, 1.0]


def test_erk_counts_are_the_formulas_quotas_rounded():
    shapes = [(64, 32), (32, 16), (10, 32)]  # none capped: densities about 0.15, 0.29 and 0.41
    sizes = [math.prod(s) for s in shapes]
    eps = round(0.2 * sum(sizes)) / sum(sum(s) for s in shapes)  # density_l = eps * sum(dims) / prod(dims)
    for d, s, n in zip(erk_densities(shapes, 0.2), shapes, sizes, strict=True):
        assert abs(round(d * n) - eps * sum(s)) < 1


def test_uniform_gives_every_tensor_the_density_with_the_total_exact():
    assert erk_densities([(3, 4), (2, 3)], 0.5, distribution="uniform") == [0.5, 0.5]
    # target round(0.3 * 18) = 5; quotas 3.6 and 1.8 -> floors 3 + 1, the last one to the larger remainder (0.8)
    assert erk_densities([(3, 4), (2, 3)], 0.3, distribution="uniform") == [3 / 12, 2 / 6]


@pytest.mark.parametrize("distribution", ["erk", "uniform"])
def test_the_total_is_exactly_round_density_times_total(distribution):
    shapes = [(7, 5), (3, 3, 2, 2), (11,), (5, 13)]
    total = sum(math.prod(s) for s in shapes)
    for density in (0.013, 0.1, 0.37, 0.5, 0.9, 0.999, 1.0):
        densities = erk_densities(shapes, density, distribution)
        kept = [round(d * math.prod(s)) for d, s in zip(densities, shapes, strict=True)]
        assert sum(kept) == round(density * total)
        assert all(0 <= d <= 1 for d in densities)


@pytest.mark.parametrize(
    ("shapes", "density", "distribution", "error", "match"),
    [
        ("ab", 0.5, "erk", TypeError, "shapes must be"),
        ([(0, 3)], 0.5, "erk", ValueError, r"shapes\[0\]"),
        ([], 0.5, "erk", ValueError, "shapes is empty"),
        ([(2, 3)], 0.0, "erk", ValueError, "density=0.0"),
        ([(2, 3)], "0.5", "erk", TypeError, "density"),
        ([(2, 3)], 0.5, "er", ValueError, "distribution='er'"),
    ],
)
def test_erk_densities_refuses_bad_input(shapes, density, distribution, error, match):
    with pytest.raises(error, match=match):
        erk_densities(shapes, density, distribution)


def test_starting_masks_have_the_allocated_counts_and_the_driver_accepts_them():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2), nn.ReLU(), nn.Linear(2, 1))
    for cls in STRATEGIES:
        masks = check_prune(cls(total_steps=10, every=5, density=0.5), make_context(net))
        assert counts(masks) == {"0.weight": 8, "2.weight": 7, "4.weight": 2}  # the capped ERK case above
        uniform = check_prune(cls(total_steps=10, density=0.3, distribution="uniform", every=5), make_context(net))
        assert sum(counts(uniform).values()) == round(0.3 * 34)


def test_starting_masks_are_random_and_reproducible_from_the_seed():
    net = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 4))
    strategy = RigL(total_steps=10, every=5, density=0.4)
    a, b = (check_prune(strategy, make_context(net, seed=3)) for _ in range(2))
    other = check_prune(strategy, make_context(net, seed=4))
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert any(not torch.equal(a[n], other[n]) for n in a)


def test_a_tied_tensor_gets_one_mask_and_counts_once():
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    net[2].weight = net[0].weight
    # check_prune refuses different masks for the names of one tied tensor
    masks = check_prune(SET(total_steps=10, every=5, density=0.5), make_context(net))
    assert counts(masks) == {"0.weight": 8, "2.weight": 8}  # half of the one 16-weight tensor


# -- the schedule --------------------------------------------------------------------------------
def test_the_cosine_schedule_matches_hand_values():
    rigl = RigL(total_steps=100, drop_fraction=0.3)
    half = math.sqrt(2) / 2
    expected = {
        0: 0.3,
        25: 0.15 * (1 + half),
        50: 0.15,
        75: 0.15 * (1 - half),
        99: 0.15 * (1 + math.cos(0.99 * math.pi)),
    }
    for step, value in expected.items():
        assert rigl.drop_fraction_at(step) == pytest.approx(value, rel=1e-12, abs=1e-15)
    assert rigl.drop_fraction_at(100) == rigl.drop_fraction_at(250) == 0.0
    with pytest.raises(ValueError, match="step=-1"):
        rigl.drop_fraction_at(-1)


def test_each_strategy_has_its_papers_drop_fraction_by_default():
    assert {cls.__name__: cls(total_steps=5, every=5).drop_fraction for cls in STRATEGIES} == {
        "SparseMomentum": 0.5,
        "RigL": 0.3,
        "SET": 0.3,
    }


def test_no_update_from_total_steps_on():
    model = pruned_linear()
    strategy = SET(total_steps=10, every=5, drop_fraction=1.0)
    strategy.prune(make_context(model))
    assert strategy.update(step_context(model, ["0.weight"], 10)) is None
    assert strategy.update(step_context(model, ["0.weight"], 5)) is not None


# -- RigL ----------------------------------------------------------------------------------------
def pruned_linear():
    """Linear(3 -> 2) in float64, survivors 0.5, -0.1, 0.3, -2.0 at (0,0) (0,1) (1,0) (1,2); the rest pruned."""
    model = nn.Sequential(nn.Linear(3, 2, bias=False)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.5, -0.1, 7.0], [0.3, 9.0, -2.0]], dtype=torch.float64))
    tl.fixed_mask(model[0], "weight", torch.tensor([[1, 1, 0], [1, 0, 1]]))
    return model


def test_rigl_grows_where_the_hand_computed_dense_gradient_is_largest():
    model = pruned_linear()
    x = torch.tensor([[1.0, 2.0, -1.0]], dtype=torch.float64)
    t = torch.tensor([[0.5, -1.0]], dtype=torch.float64)
    # by hand: the masked weights W = [[0.5, -0.1, 0], [0.3, 0, -2]]; y = W x = (0.3, 2.3); r = y - t = (-0.2, 3.3);
    # d sum(r^2) / dW = 2 r x^T, pruned entries included
    w = torch.tensor([[0.5, -0.1, 0.0], [0.3, 0.0, -2.0]], dtype=torch.float64)
    r = w @ x[0] - t[0]
    gradient = 2 * torch.outer(r, x[0])
    rigl = RigL(total_steps=10, every=1, drop_fraction=0.5)  # f(0) = 0.5: each tensor drops 2 of its 4
    new = rigl.update(step_context(model, ["0.weight"], 0, data=[(x, t)], loss=sum_squares))["0.weight"]
    kept = {(0, 0), (1, 2)}  # the two largest |w| of 0.5, -0.1, 0.3, -2.0
    candidates = [(i, j) for i in range(2) for j in range(3) if (i, j) not in kept]  # just dropped ones included
    grown = sorted(candidates, key=lambda e: -abs(float(gradient[e])))[:2]
    assert set(grown) == {(1, 1), (1, 0)}  # |13.2| and |6.6|: (1, 0), just dropped, is regrown (it simply stays)
    expected = torch.zeros(2, 3, dtype=torch.bool)
    for e in kept | set(grown):
        expected[e] = True
    assert torch.equal(new, expected)


def test_rigl_keeps_each_tensors_count():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    rigl = RigL(total_steps=100, every=10, density=0.3)
    masks = rigl.prune(make_context(model))
    for mask, module in zip(masks.values(), (model[0], model[2]), strict=True):
        tl.fixed_mask(module, "weight", mask)
    new = rigl.update(step_context(model, ["0.weight", "2.weight"], 10, data=DATA, loss=nn.functional.cross_entropy))
    assert counts(new) == counts(masks)
    assert any(not torch.equal(new[n], masks[n]) for n in new)


# -- SET -----------------------------------------------------------------------------------------
def set_model():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(20, 20, bias=False))
    mask = torch.rand(20, 20, generator=torch.Generator().manual_seed(5)) < 0.3
    tl.fixed_mask(model[0], "weight", mask)
    return model, mask


def set_update(model, seed):
    strategy = SET(total_steps=10, every=1, drop_fraction=0.6)
    strategy.prune(make_context(model, seed=seed))  # seeds the strategy's generator from the run's
    return strategy.update(step_context(model, ["0.weight"], 0))["0.weight"]


def test_set_regrowth_is_reproducible_by_seed():
    model, _ = set_model()
    assert torch.equal(set_update(model, 1), set_update(model, 1))
    assert not torch.equal(set_update(model, 1), set_update(model, 2))


def test_set_keeps_the_largest_survivors_and_grows_only_among_the_others():
    model, mask = set_model()
    new = set_update(model, 1)
    alive = int(mask.sum())
    drop = math.floor(0.6 * alive)
    magnitude = model[0].weight_orig.detach().abs().flatten()
    survivors = sorted(mask.flatten().nonzero().flatten().tolist(), key=lambda i: -float(magnitude[i]))
    kept = survivors[: alive - drop]
    assert int(new.sum()) == alive
    assert bool(new.flatten()[kept].all())  # no kept entry is ever "grown" over (or lost)
    grown = (new & ~mask).flatten().nonzero().flatten().tolist()
    assert grown and not set(grown) & set(kept)
    assert len(grown) + len(set(new.flatten().nonzero().flatten().tolist()) & set(survivors[alive - drop :])) == drop


# -- sparse momentum -----------------------------------------------------------------------------
def momentum_model():
    """A: Linear(4 -> 2), survivors 4 of 8; B: Linear(2 -> 2), all 4 alive. float64."""
    model = nn.Sequential(nn.Linear(4, 2, bias=False), nn.Linear(2, 2, bias=False)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[4.0, -1.0, 0.5, 0.5], [3.0, 0.5, -2.0, 0.5]], dtype=torch.float64))
        model[1].weight.copy_(torch.tensor([[1.0, -4.0], [3.0, 2.0]], dtype=torch.float64))
    tl.fixed_mask(model[0], "weight", torch.tensor([[1, 1, 0, 0], [1, 0, 1, 0]]))
    tl.fixed_mask(model[1], "weight", torch.ones(2, 2))
    return model


def mask_of(shape, entries):
    out = torch.zeros(shape, dtype=torch.bool)
    for entry in entries:
        out[entry] = True
    return out


@pytest.mark.parametrize(
    ("momentum_a", "momentum_b", "grown_a", "grown_b"),
    [
        # f(0) = 0.5: A drops 2 of its 4 survivors (-1 at (0,1), -2 at (1,2); 4 and 3 stay), B 2 of 4 (1 and 2 go):
        # 4 to regrow. Mean |momentum| over the survivors before the drop: A 3, B 1 -> shares 3/4 and 1/4: A regrows
        # 3 (its largest |momentum| not kept: 3 at (0,1) and (1,2), 0.9 at (0,3)), B 1 (a tie of 1s: the later entry)
        ([[3.0, 3.0, 0.2, 0.9], [3.0, 0.1, 3.0, 0.7]], [[1.0, 1.0], [1.0, 1.0]], [(0, 1), (1, 2), (0, 3)], [(1, 1)]),
        # A 1, B 9 -> B's share 9/10 * 4 = 3.6 exceeds its room (the 2 not kept): B regrows 2, A the other 2
        ([[1.0, 1.0, 0.2, 0.9], [1.0, 0.1, 1.0, 0.7]], [[9.0, 9.0], [9.0, 9.0]], [(0, 1), (1, 2)], [(0, 0), (1, 1)]),
    ],
)
def test_sparse_momentum_redistributes_by_mean_momentum_against_a_hand_computation(
    momentum_a, momentum_b, grown_a, grown_b
):
    model = momentum_model()
    strategy = SparseMomentum(total_steps=10, every=1, drop_fraction=0.5)
    context = step_context(model, ["0.weight", "1.weight"], 0)
    strategy.begin(context)
    strategy.momentum_buffers["0.weight"].copy_(torch.tensor(momentum_a))
    strategy.momentum_buffers["1.weight"].copy_(torch.tensor(momentum_b))
    new = strategy.update(context)
    strategy.end(context)
    assert torch.equal(new["0.weight"], mask_of((2, 4), [(0, 0), (1, 0), *grown_a]))
    assert torch.equal(new["1.weight"], mask_of((2, 2), [(0, 1), (1, 0), *grown_b]))
    assert sum(counts(new).values()) == 8  # the total is exact


def test_sparse_momentum_keeps_a_momentum_of_dense_gradients_by_hand():
    model = pruned_linear()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x = torch.tensor([[1.0, 2.0, -1.0]], dtype=torch.float64)
    t = torch.tensor([[0.5, -1.0]], dtype=torch.float64)
    mask = model[0].weight_mask.clone()
    strategy = SparseMomentum(total_steps=10, every=5, momentum=0.9)
    context = step_context(model, ["0.weight"], 0, optimizer=optimizer)
    strategy.begin(context)
    assert len(model[0]._forward_hooks) == 1
    w = (model[0].weight_orig * mask).detach().clone()
    hand = []
    for _ in range(2):
        g = 2 * torch.outer(w @ x[0] - t[0], x[0])  # the dense gradient, pruned entries included
        hand.append(g)
        optimizer.zero_grad()
        sum_squares(model(x), t).backward()
        # what the optimizer sees is masked ...
        assert torch.allclose(model[0].weight_orig.grad, g * mask, rtol=1e-12, atol=1e-12)
        optimizer.step()
        strategy.on_step(context)
        w = w - 0.05 * g * mask
    expected = 0.9 * hand[0] + hand[1]  # ... the strategy's momentum is not
    assert torch.allclose(strategy.momentum_buffers["0.weight"], expected, rtol=1e-12, atol=1e-12)
    assert bool((expected[mask == 0] != 0).all())
    strategy.end(context)
    assert len(model[0]._forward_hooks) == 0 and strategy.momentum_buffers == {}


def test_sparse_momentum_removes_its_hooks_when_training_raises():
    model = small_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    seen = []

    def train(model, context):
        for _ in range(2):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(X), Y).backward()
            optimizer.step()
        seen.append(sum(len(m._forward_hooks) for m in model.modules()))
        raise RuntimeError("the loop broke")

    options = {"total_steps": 10, "every": 5, "density": 0.3}
    with pytest.raises(RuntimeError, match="the loop broke"):
        tl.find_ticket(model, train, strategy="sparse_momentum", strategy_options=options, optimizer=optimizer)
    assert seen == [2]  # hooked while training ...
    assert all(len(m._forward_hooks) == 0 for m in model.modules())  # ... and not after


# -- end to end ----------------------------------------------------------------------------------
def small_mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))


def watched(cls):
    class Watched(cls):
        """Records the starting masks and every update's masks before and after."""

        def prune(self, context):
            self.start = super().prune(context)
            self.log = []
            return self.start

        def update(self, context):
            old = context.masks()
            new = super().update(context)
            self.log.append((context.iteration, old, new))
            return new

    return Watched


def run_with_checks(cls, seed=0, steps=12, tie=False):
    model = small_mlp()
    if tie:
        model = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 3))
        model[2].weight = model[0].weight
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    strategy = watched(cls)(total_steps=steps, every=3, density=0.3)
    checks = []

    def train(model, context):
        modules = {n: model.get_submodule(n.rsplit(".", 1)[0]) for n in strategy.start}
        for step in range(1, steps + 1):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(X), Y).backward()
            optimizer.step()  # an update runs right after the step of every 3rd
            if strategy.log and strategy.log[-1][0] == step and strategy.log[-1][2] is not None:
                _, old, new = strategy.log[-1]
                for name, module in modules.items():
                    grown = new[name] & ~old[name]
                    buffer = optimizer.state[module.weight_orig]["momentum_buffer"]
                    checks.append(
                        (
                            int(grown.sum()),
                            float(module.weight_orig.detach()[grown].abs().sum()),
                            float(buffer[grown].abs().sum()),
                            torch.equal(module.weight_mask.bool(), new[name]),
                        )
                    )

    ticket = tl.find_ticket(
        model, train, strategy=strategy, optimizer=optimizer, data=DATA, loss=nn.functional.cross_entropy, seed=seed
    )
    return ticket, strategy, checks


@pytest.mark.parametrize("cls", STRATEGIES, ids=lambda c: c.__name__)
def test_a_run_keeps_the_density_exact_and_moves_the_masks(cls):
    ticket, strategy, checks = run_with_checks(cls)
    target = round(0.3 * (6 * 16 + 16 * 3))
    assert sum(counts(strategy.start).values()) == target
    assert [step for step, _, _ in strategy.log] == [3, 6, 9, 12]
    for step, old, new in strategy.log[:3]:  # f(12) = 0: the last update moves nothing
        assert sum(counts(old).values()) == sum(counts(new).values()) == target, step
        if cls is not SparseMomentum:  # per-tensor counts fixed
            assert counts(new) == counts(old)
    assert strategy.log[-1][2] is None
    assert sum(counts(ticket.masks).values()) == target
    assert any(not torch.equal(ticket.masks[n], strategy.start[n]) for n in ticket.masks)  # the masks moved
    # right after each update: the mask installed, the regrown weights and their momentum zero
    assert sum(grown for grown, _, _, _ in checks) > 0
    assert all(weight == 0.0 and momentum == 0.0 and installed for _, weight, momentum, installed in checks)
    assert [r["round"] for r in ticket.history] == [0, 1]
    assert ticket.history[-1]["stopped"] == "rounds=1 reached"


def test_a_sparse_momentum_run_with_a_tied_tensor_keeps_one_mask():
    ticket, strategy, _ = run_with_checks(SparseMomentum, tie=True)
    assert torch.equal(ticket.masks["0.weight"], ticket.masks["2.weight"])
    assert ticket.history[-1]["remaining_weights"] == round(0.3 * (36 + 18))  # the tied tensor counts once


def test_two_runs_with_the_same_seed_give_the_same_masks():
    first, _, _ = run_with_checks(SET, seed=11)
    second, _, _ = run_with_checks(SET, seed=11)
    other, _, _ = run_with_checks(SET, seed=12)
    assert all(torch.equal(first.masks[n], second.masks[n]) for n in first.masks)
    assert any(not torch.equal(first.masks[n], other.masks[n]) for n in first.masks)


@pytest.mark.parametrize("name", ["rigl", "set", "sparse_momentum"])
def test_a_run_by_name_trains_once_and_stops_at_rounds_one(name):
    model = small_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def train(model, context):
        for _ in range(6):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(X), Y).backward()
            optimizer.step()

    ticket = tl.find_ticket(
        model,
        train,
        strategy=name,
        strategy_options={"total_steps": 6, "every": 2, "density": 0.25},
        optimizer=optimizer,
        data=DATA,
        loss=nn.functional.cross_entropy,
    )
    assert ticket.history[-1]["stopped"] == "rounds=1 reached"
    assert ticket.history[-1]["remaining_weights"] == round(0.25 * 144)
    assert ticket.history[-1]["metrics"]["iterations"] == 6


# -- bad options ---------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", STRATEGIES, ids=lambda c: c.__name__)
@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({}, ValueError, "needs total_steps"),
        ({"total_steps": 0}, ValueError, "total_steps=0 must be >= 1"),
        ({"total_steps": "10"}, TypeError, "total_steps must be an int, got '10'"),
        ({"total_steps": 2.5}, TypeError, "total_steps must be an int, got 2.5"),
        ({"total_steps": 10, "density": 0}, ValueError, r"density=0 must be in \(0, 1\]"),
        ({"total_steps": 10, "density": 1.5}, ValueError, r"density=1.5 must be in \(0, 1\]"),
        ({"total_steps": 10, "density": "0.1"}, TypeError, "density must be a number, got '0.1'"),
        ({"total_steps": 10, "every": 0}, ValueError, "every=0 must be >= 1"),
        ({"total_steps": 10, "every": 20}, ValueError, "every=20 exceeds total_steps=10"),
        ({"total_steps": 10, "every": 5, "drop_fraction": 1.5}, ValueError, r"drop_fraction=1.5 must be in \[0, 1\]"),
        ({"total_steps": 10, "every": 5, "drop_fraction": True}, TypeError, "drop_fraction must be a number, got True"),
        ({"total_steps": 10, "every": 5, "distribution": "er"}, ValueError, "distribution='er' is not one of erk"),
    ],
)
def test_bad_options_raise_naming_option_and_value(cls, options, error, match):
    with pytest.raises(error, match=match):
        cls(**options)


def test_bad_momentum_is_refused():
    with pytest.raises(ValueError, match=r"momentum=1.0 must be in \[0, 1\)"):
        SparseMomentum(total_steps=10, every=5, momentum=1.0)
    with pytest.raises(TypeError, match="momentum must be a number, got None"):
        SparseMomentum(total_steps=10, every=5, momentum=None)


def test_bad_options_through_find_ticket_leave_the_model_unpruned():
    model = small_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for options, match in [
        ({"total_steps": 5, "every": 5, "density": 2.0}, "density=2.0"),
        ({"total_steps": 5, "every": 5, "density": 0.001}, r"density=0.001 keeps round\(0.001 \* 144\) = 0"),
        ({"every": 5}, "needs total_steps"),
    ]:
        with pytest.raises(ValueError, match=match):
            tl.find_ticket(model, lambda m, c: None, strategy="set", strategy_options=options, optimizer=optimizer)
    with pytest.raises(ValueError, match="pass optimizer="):
        tl.find_ticket(model, lambda m, c: None, strategy="set", strategy_options={"total_steps": 5, "every": 5})
    with pytest.raises(ValueError, match="pass data="):
        tl.find_ticket(
            model,
            lambda m, c: None,
            strategy="rigl",
            strategy_options={"total_steps": 5, "every": 5},
            optimizer=optimizer,
        )
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_the_base_class_is_the_during_training_seam():
    assert issubclass(RigL, DynamicSparse)
    assert (DynamicSparse.when, DynamicSparse.needs_optimizer, DynamicSparse.max_rounds) == ("during_training", True, 1)
    assert RigL(total_steps=5, every=5).options() == {
        "total_steps": 5,
        "density": 0.1,
        "every": 5,
        "drop_fraction": 0.3,
        "distribution": "erk",
    }
    with pytest.raises(RuntimeError, match="call prune first"):
        SET(total_steps=5, every=5).update(step_context(pruned_linear(), ["0.weight"], 0))
