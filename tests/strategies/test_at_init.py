"""The pruning-at-initialization strategies (magnitude_init, snip, grasp, synflow) against hand computations."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

import torch_lottery as tl
from torch_lottery.strategies import grasp, magnitude_init, snip, synflow
from torch_lottery.strategies.context import build_context
from torch_lottery.strategies.grasp import GraSP
from torch_lottery.strategies.magnitude_init import MagnitudeInit
from torch_lottery.strategies.snip import SNIP
from torch_lottery.strategies.synflow import SynFlow

import helpers

CLASSES = [MagnitudeInit, SNIP, GraSP, SynFlow]
IDS = ["magnitude_init", "snip", "grasp", "synflow"]
LOSS = nn.functional.cross_entropy


# -- tiny float64 networks and the hand computations -------------------------------------------
def mlp(widths, seed=0, bias=False, act=nn.ReLU, kaiming=False) -> nn.Sequential:
    """A float64 MLP of Linear layers of the given widths, ``act`` between them."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=False):
        layer = nn.Linear(fan_in, fan_out, bias=bias).double()
        if kaiming:
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        layers += [layer, act()]
    return nn.Sequential(*layers[:-1])


def linears(model):
    """The qualified weight names and (module, "weight") pairs of ``model``'s Linear layers."""
    found = [(f"{i}.weight", m) for i, m in enumerate(model) if isinstance(m, nn.Linear)]
    return tuple(n for n, _ in found), [(m, "weight") for _, m in found]


def context_of(model, data=None, loss=None):
    names, pairs = linears(model)
    return build_context(model, names, pairs, data=data, loss=loss)


def batches(n_in, n_out, count, seed=0, size=12):
    generator = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(size, n_in, generator=generator, dtype=torch.float64), torch.randint(0, n_out, (size,)))
        for _ in range(count)
    ]


def top_k(scores: dict[str, torch.Tensor], remaining: float, alive=None) -> dict[str, torch.Tensor]:
    """Global top ``round(remaining * total)`` of ``scores`` among the ``alive`` entries, by hand (no ties)."""
    names = list(scores)
    total = sum(scores[n].numel() for n in names)
    alive = alive or {n: torch.ones_like(scores[n], dtype=torch.bool) for n in names}
    flat = torch.cat([torch.where(alive[n], scores[n], -torch.inf).reshape(-1) for n in names])
    k = round(remaining * total)
    keep = torch.zeros(total, dtype=torch.bool)
    keep[flat.topk(k).indices] = True
    assert flat.topk(k + 1).values[-1] < flat.topk(k).values[-1], "a tie at the threshold: pick other sizes"
    out, start = {}, 0
    for n in names:
        out[n] = keep[start : start + scores[n].numel()].reshape(scores[n].shape)
        start += scores[n].numel()
    return out


def same_masks(a, b) -> bool:
    return set(a) == set(b) and all(torch.equal(a[n], b[n]) for n in a)


def hand_weight_grads(model, data):
    """d(sum of the loss over ``data``)/dW of every Linear weight, by plain autograd on the model."""
    names, pairs = linears(model)
    weights = [m.weight for m, _ in pairs]
    total = sum(LOSS(model(x), y) for x, y in data)
    return dict(zip(names, torch.autograd.grad(total, weights), strict=True))


# -- identity, options, registration -------------------------------------------------------------
@pytest.mark.parametrize(
    "module, name, cls",
    [(magnitude_init, "magnitude_init", MagnitudeInit), (snip, "snip", SNIP), (grasp, "grasp", GraSP)]
    + [(synflow, "synflow", SynFlow)],
)
def test_each_module_is_a_plugin_registering_its_strategy(module, name, cls):
    registered = {}
    module.torch_lottery_register_strategies(register=registered.__setitem__)
    assert registered == {name: cls}
    assert cls.when == "at_init" and cls.max_rounds == 1 and cls.may_grow is False
    assert cls.needs_data is (cls in (SNIP, GraSP))
    s = cls()
    assert (s.remaining, s.scope, s.min_remaining, s.on_floor) == (0.1, "global", 1, "clamp")


@pytest.mark.parametrize(
    "strategy",
    [
        MagnitudeInit(remaining=0.3, scope="local", min_remaining=0, on_floor="raise"),
        SNIP(remaining=0.05, batches=3),
        GraSP(remaining=0.5, batches=2, scope="local"),
        SynFlow(remaining=0.01, iterations=7, input_shape=(3, 8, 8), min_remaining=2),
        SynFlow(),
    ],
    ids=repr,
)
def test_options_round_trip_through_json(strategy):
    options = strategy.options()
    assert type(strategy)(**options).options() == options
    assert type(strategy)(**json.loads(json.dumps(options))).options() == options
    assert "rewind_iteration" not in options and "rate_multipliers" not in options


def test_options_list_every_option():
    assert SNIP().options() == {
        "scope": "global",
        "min_remaining": 1,
        "on_floor": "clamp",
        "remaining": 0.1,
        "batches": 1,
    }
    assert GraSP().options() == SNIP().options()
    assert SynFlow(input_shape=[4]).options() == {**MagnitudeInit().options(), "iterations": 100, "input_shape": [4]}


@pytest.mark.parametrize(
    "cls, options, error, match",
    [
        (MagnitudeInit, {"remaining": 0.0}, ValueError, "remaining"),
        (SNIP, {"remaining": 1.5}, ValueError, "remaining"),
        (GraSP, {"remaining": "0.1"}, TypeError, "remaining"),
        (SynFlow, {"scope": "layer"}, ValueError, "scope"),
        (MagnitudeInit, {"min_remaining": -1}, ValueError, "min_remaining"),
        (SNIP, {"on_floor": "ignore"}, ValueError, "on_floor"),
        (SNIP, {"batches": 0}, ValueError, "batches"),
        (SNIP, {"batches": 1.5}, TypeError, "batches"),
        (GraSP, {"batches": True}, TypeError, "batches"),
        (GraSP, {"batches": -2}, ValueError, "batches"),
        (SynFlow, {"iterations": 0}, ValueError, "iterations"),
        (SynFlow, {"iterations": "100"}, TypeError, "iterations"),
        (SynFlow, {"input_shape": "32"}, TypeError, "input_shape"),
        (SynFlow, {"input_shape": 32}, TypeError, "input_shape"),
        (SynFlow, {"input_shape": (3, 0)}, ValueError, r"input_shape\[1\]"),
        (SynFlow, {"input_shape": (3.0,)}, TypeError, r"input_shape\[0\]"),
    ],
)
def test_bad_options_are_refused_naming_the_option(cls, options, error, match):
    with pytest.raises(error, match=match):
        cls(**options)


# -- each score, against a hand computation --------------------------------------------------------
def test_magnitude_init_keeps_the_top_initial_magnitudes_globally_and_locally():
    model = mlp([7, 9, 5], seed=3, bias=True)
    context = context_of(model)
    by_hand = {n: context.weights[n].abs() for n in context.names}
    assert same_masks(MagnitudeInit(remaining=0.3, min_remaining=0).prune(context), top_k(by_hand, 0.3))
    local = MagnitudeInit(remaining=0.3, scope="local", min_remaining=0).prune(context)
    assert same_masks(local, {n: top_k({n: by_hand[n]}, 0.3)[n] for n in context.names})
    assert not same_masks(local, top_k(by_hand, 0.3))  # the two scopes differ here: each check can fail


def test_snip_keeps_the_top_w_times_grad_over_the_given_batches():
    model = mlp([5, 8, 4], seed=1, bias=True, act=nn.Tanh)
    data = batches(5, 4, count=3, seed=1)
    context = context_of(model, data=data, loss=LOSS)
    grads = hand_weight_grads(model, data[:2])
    by_hand = {n: (m.weight * grads[n]).abs().detach() for n, (m, _) in zip(*linears(model), strict=True)}
    strategy = SNIP(remaining=0.3, batches=2, min_remaining=0)
    for name in context.names:
        torch.testing.assert_close(strategy.scores(context, name), by_hand[name], rtol=1e-12, atol=0)
    assert same_masks(strategy.prune(context), top_k(by_hand, 0.3))
    first_only = hand_weight_grads(model, data[:1])
    one_batch = {n: (m.weight * first_only[n]).abs().detach() for n, (m, _) in zip(*linears(model), strict=True)}
    assert not same_masks(top_k(one_batch, 0.3), top_k(by_hand, 0.3))  # so the batches count
    assert same_masks(SNIP(remaining=0.3, min_remaining=0).prune(context), top_k(one_batch, 0.3))


def hand_hg(model, data):
    """The Hessian-gradient product of the summed loss w.r.t. the Linear weights: double backward by hand."""
    names, pairs = linears(model)
    weights = [m.weight for m, _ in pairs]
    grads = torch.autograd.grad(sum(LOSS(model(x), y) for x, y in data), weights, create_graph=True)
    z = sum((g * g.detach()).sum() for g in grads)
    return dict(zip(names, torch.autograd.grad(z, weights), strict=True))


def test_grasp_removes_the_largest_minus_theta_hg_as_the_official_code_does():
    model = mlp([6, 7, 3], seed=2, bias=True, act=nn.Tanh)
    data = batches(6, 3, count=2, seed=2)
    context = context_of(model, data=data, loss=LOSS)
    hg = hand_hg(model, data)
    keep_score = {n: (m.weight * hg[n]).detach() for n, (m, _) in zip(*linears(model), strict=True)}
    strategy = GraSP(remaining=0.4, batches=2, min_remaining=0)
    for name in context.names:
        torch.testing.assert_close(strategy.scores(context, name), keep_score[name], rtol=1e-9, atol=1e-15)
    masks = strategy.prune(context)
    assert same_masks(masks, top_k(keep_score, 0.4))
    # the paper's S = -theta * Hg: the kept weights are the ones with the smallest S
    removal_score = {n: -s for n, s in keep_score.items()}
    flipped = top_k(removal_score, 0.4)
    assert not same_masks(masks, flipped)  # a GraSP with the sign flipped fails the check above
    kept = torch.cat([removal_score[n][masks[n]] for n in masks])
    gone = torch.cat([removal_score[n][~masks[n]] for n in masks])
    assert kept.max() < gone.min()
    assert bool((torch.cat([s.reshape(-1) for s in keep_score.values()]) < 0).any())  # a signed score, truly


def closed_form_synflow(w1, w2, m1, m2):
    """SynFlow scores of x -> W2 |.| W1 (bias-free) on an all-ones input: R = 1^T |W2| |W1| 1, masks applied."""
    a1, a2 = w1.abs() * m1, w2.abs() * m2
    score1 = a1 * a2.sum(0)[:, None]  # |W1[i,j]| * sum_k |W2[k,i]|
    score2 = a2 * a1.sum(1)[None, :]  # |W2[k,i]| * sum_j |W1[i,j]|
    return {"0.weight": score1, "2.weight": score2}


def test_synflow_one_iteration_keeps_the_top_closed_form_scores():
    model = mlp([9, 7, 5], seed=4)
    context = context_of(model)
    w1, w2 = model[0].weight.detach(), model[2].weight.detach()
    ones = torch.ones_like(w1, dtype=torch.bool), torch.ones_like(w2, dtype=torch.bool)
    by_hand = closed_form_synflow(w1, w2, *ones)
    strategy = SynFlow(remaining=0.2, iterations=1, input_shape=(9,), min_remaining=0)
    for name in context.names:
        torch.testing.assert_close(strategy.scores(context, name), by_hand[name], rtol=1e-12, atol=0)
    masks = strategy.prune(context)
    assert same_masks(masks, top_k(by_hand, 0.2))
    assert not same_masks(masks, top_k({n: context.weights[n].abs() for n in context.names}, 0.2))  # not |w|


def test_synflow_iterates_on_the_exponential_schedule_with_the_masks_applied_between():
    model = mlp([9, 7, 5], seed=5)
    context = context_of(model)
    w1, w2 = model[0].weight.detach(), model[2].weight.detach()
    remaining, n = 0.1, 4
    masks = {"0.weight": torch.ones_like(w1, dtype=torch.bool), "2.weight": torch.ones_like(w2, dtype=torch.bool)}
    for k in range(1, n + 1):  # after iteration k, remaining ** (k / n) of the weights survive
        masks = top_k(closed_form_synflow(w1, w2, masks["0.weight"], masks["2.weight"]), remaining ** (k / n), masks)
    got = SynFlow(remaining=remaining, iterations=n, input_shape=(9,), min_remaining=0).prune(context)
    assert same_masks(got, masks)
    one_shot = SynFlow(remaining=remaining, iterations=1, input_shape=(9,), min_remaining=0).prune(context)
    assert not same_masks(got, one_shot)  # iterating changes the answer here


def test_synflow_takes_the_input_shape_from_the_data_and_ignores_the_data_values():
    model = mlp([9, 7, 5], seed=4)
    data = batches(9, 5, count=1, seed=0)
    with_data = SynFlow(remaining=0.2, iterations=3).prune(context_of(model, data=data))
    with_shape = SynFlow(remaining=0.2, iterations=3, input_shape=[9]).prune(context_of(model))
    assert same_masks(with_data, with_shape)
    with pytest.raises(ValueError, match="input_shape.*data"):
        SynFlow().prune(context_of(model))


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_pruning_leaves_the_model_as_it_was(cls):
    model = mlp([6, 5, 3], seed=0, bias=True)
    model.add_module("3", nn.BatchNorm1d(3).double())
    model.train()
    before = helpers.snapshot(model)
    masks = cls(remaining=0.4).prune(context_of(model, data=batches(6, 3, count=1), loss=LOSS))
    helpers.assert_unchanged(model, before)
    assert sum(int(m.sum()) for m in masks.values()) == round(0.4 * (30 + 15))


# -- SynFlow's claim: no layer collapse at extreme sparsity ------------------------------------------
def connected(masks, names) -> bool:
    """Every layer keeps a weight and some path from an input to an output survives (M_L ... M_1 != 0)."""
    product = None
    for name in names:
        m = masks[name].double()
        product = m if product is None else m @ product
    return all(bool(masks[n].any()) for n in names) and bool(product.any())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_synflow_avoids_the_layer_collapse_of_one_shot_snip_and_magnitude(seed):
    """8 bias-free ReLU layers 32-64-...-64-10, kaiming init, 27 of 27264 weights kept (99.9% sparsity).

    Checked for seeds 0-11: SynFlow stays connected with about 3 weights per layer; one-shot SNIP
    always empties the first layer, magnitude at init (the first layer has the largest weights)
    always empties some layer.
    """
    model = mlp([32] + [64] * 7 + [10], seed=seed, kaiming=True)
    context = context_of(model, data=batches(32, 10, count=1, seed=seed, size=64), loss=LOSS)
    names = context.names
    flow = SynFlow(remaining=0.001, min_remaining=0).prune(context)
    assert connected(flow, names)
    assert sum(int(m.sum()) for m in flow.values()) == round(0.001 * 27264)
    for one_shot in (SNIP(remaining=0.001, min_remaining=0), MagnitudeInit(remaining=0.001, min_remaining=0)):
        masks = one_shot.prune(context)
        assert not all(bool(masks[n].any()) for n in names), one_shot
        assert not connected(masks, names)
    assert not connected(SynFlow(remaining=0.001, iterations=1, min_remaining=0).prune(context), names)


# -- in the driver -------------------------------------------------------------------------------
class Train:
    """A few SGD steps on the data; counts its calls."""

    def __init__(self, data):
        self.data, self.calls = data, 0

    def __call__(self, model, context):
        self.calls += 1
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for x, y in self.data:
            optimizer.zero_grad()
            LOSS(model(x), y).backward()
            optimizer.step()
            context.step()


def float_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))


DATA = [(torch.randn(8, 10, generator=torch.Generator().manual_seed(i)), torch.arange(8) % 4) for i in range(3)]


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_find_ticket_prunes_the_initial_weights_once_and_trains_the_ticket_once(cls):
    model = float_net()
    initial = copy.deepcopy(model)
    train, strategy = Train(DATA), cls(remaining=0.2, **({"iterations": 10} if cls is SynFlow else {}))
    ticket = tl.find_ticket(model, train, strategy=strategy, rounds=1, data=DATA, loss=LOSS)
    assert train.calls == 1
    total = 10 * 16 + 16 * 16 + 16 * 4
    assert ticket.total_weights == total and ticket.remaining_weights == round(0.2 * total)
    assert [r["round"] for r in ticket.history] == [0, 1]
    assert ticket.history[0]["metrics"]["iterations"] == 0 and ticket.history[0]["remaining"] == 1.0
    assert ticket.history[1]["metrics"]["iterations"] == len(DATA)
    expected = strategy.prune(context_of(initial, data=DATA, loss=LOSS))  # the masks of the initial weights
    assert same_masks(ticket.masks, expected)
    assert ticket.config["strategy_options"] == strategy.options()


def test_synflow_runs_without_data_given_an_input_shape():
    train = Train(DATA)
    ticket = tl.find_ticket(
        float_net(), train, strategy=SynFlow(remaining=0.3, iterations=5, input_shape=(10,)), rounds=1
    )
    assert train.calls == 1 and ticket.remaining == pytest.approx(0.3, abs=1 / 480)


@pytest.mark.parametrize(
    "strategy, match",
    [(SNIP(), "pass data="), (GraSP(), "pass data="), (SynFlow(), "input_shape.*data")],
    ids=["snip", "grasp", "synflow"],
)
def test_a_run_without_data_is_refused_before_anything_trains(strategy, match):
    train = Train(DATA)
    with pytest.raises(ValueError, match=match):
        tl.find_ticket(float_net(), train, strategy=strategy, rounds=1)
    assert train.calls == 0


@pytest.mark.parametrize("cls", [SNIP, GraSP], ids=["snip", "grasp"])
def test_a_run_without_loss_is_refused_naming_loss_before_anything_trains(cls):
    train = Train(DATA)
    with pytest.raises(ValueError, match="loss="):
        tl.find_ticket(float_net(), train, strategy=cls(), rounds=1, data=DATA)
    assert train.calls == 0
    with pytest.raises(ValueError, match="loss="):
        cls().prune(context_of(mlp([10, 4]), data=DATA))
