"""torch_lottery/_layout.py and the layout rules every route shares: tied weights, empty and complex tensors."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import torch_lottery as tl
from torch_lottery import _layout

import helpers


class Tied(nn.Module):
    """A language-model shape: the output layer shares the embedding's weight."""

    def __init__(self, vocab: int = 12, width: int = 6) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, width)
        self.mid = nn.Linear(width, width)
        self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, tokens):
        return self.head(torch.relu(self.mid(self.emb(tokens))))


TOKENS = torch.arange(12).reshape(3, 4)


def tied_model(seed: int = 0) -> Tied:
    torch.manual_seed(seed)
    return Tied()


def assert_still_tied(model: Tied) -> None:
    assert _layout.original(model.emb, "weight") is _layout.original(model.head, "weight")
    assert torch.equal(tl.get_mask(model.emb, "weight"), tl.get_mask(model.head, "weight"))
    model(TOKENS)
    assert torch.equal(model.emb.weight, model.head.weight)


# --------------------------------------------------------------------------- names
def test_named_tensors_strip_orig_and_list_a_tied_weight_at_each_name():
    model = tied_model()
    tl.lottery_magnitude(model.mid, "weight", amount=0.5)
    names = [q for q, _, _ in _layout.named_tensors(model)]
    assert names == ["emb.weight", "mid.bias", "mid.weight", "head.weight"]
    assert [q for q, _, _ in _layout.pruned_tensors(model)] == ["mid.weight"]
    assert _layout.aliases([(model.emb, "weight"), (model.mid, "weight"), (model.head, "weight")]) == [0, 1, 0]
    assert _layout.resolve(model, "mid.weight") == (model.mid, "weight")
    assert _layout.resolve(model, "mid.weight_orig") is None and _layout.resolve(model, "nope.weight") is None


def test_a_shared_module_is_listed_once():
    layer = nn.Linear(3, 3)
    model = nn.Sequential(layer, nn.ReLU(), layer)
    assert [q for q, _, _ in tl.named_prunable_parameters(model)] == ["0.weight"]


# --------------------------------------------------------------------------- tied weights: one mask, still tied
TIED_ROUTES = {
    "global_magnitude-model": lambda m: tl.global_magnitude(m, amount=0.5),
    "global_magnitude-pairs": lambda m: tl.global_magnitude(tl.prunable_parameters(m), amount=0.5),
    "stock-global-LotteryMagnitude": lambda m: prune.global_unstructured(
        tl.prunable_parameters(m), pruning_method=tl.LotteryMagnitude, amount=0.5
    ),
}


@pytest.mark.parametrize("route", TIED_ROUTES)
def test_a_tied_weight_gets_one_mask_and_stays_tied(route):
    model = tied_model()
    for _ in range(3):  # round after round, with training in between
        TIED_ROUTES[route](model)
        assert_still_tied(model)
        helpers.train_steps(model, TOKENS, steps=2, lr=0.1)
        assert_still_tied(model)
    # the pool counts the tied tensor once: 72 + 36 distinct weights, halved three times (108, 54, 27 -> 13)
    assert int(tl.get_mask(model.emb, "weight").sum()) + int(tl.get_mask(model.mid, "weight").sum()) == 13
    twin = copy.deepcopy(model)
    assert twin.emb.weight_orig is twin.head.weight_orig  # deepcopy keeps the tie


@pytest.mark.parametrize("scope", ["local", "global"])
def test_find_ticket_gives_a_tied_weight_one_mask(scope):
    def train(model, context):
        helpers.train_steps(model, TOKENS, steps=3, lr=0.1, seed=context.round_index)

    model = tied_model()
    ticket = tl.find_ticket(model, train, strategy_options={"rate": 0.3, "scope": scope}, rounds=3)
    assert {"emb.weight", "head.weight"} <= set(ticket.masks)
    assert torch.equal(ticket.masks["emb.weight"], ticket.masks["head.weight"])
    assert_still_tied(model)
    fresh = tied_model(1)
    ticket.apply(fresh)
    assert_still_tied(fresh)
    # a tied tensor counts once in the totals
    assert ticket.history[0]["total_weights"] == 72 + 36


def test_find_ticket_prunes_every_name_of_a_tied_weight_listed_once():
    def train(model, context):
        helpers.train_steps(model, TOKENS, steps=2, lr=0.1)

    model = tied_model()
    ticket = tl.find_ticket(model, train, parameters=["head.weight"], rounds=2)
    assert sorted(ticket.masks) == ["emb.weight", "head.weight"]
    assert_still_tied(model)


def test_a_strategy_that_splits_a_tied_weight_is_refused():
    class Split(tl.Strategy):
        def prune(self, context):
            masks = {n: m.clone() for n, m in context.masks.items()}
            masks["head.weight"].view(-1)[0] = False
            return masks

    with pytest.raises(ValueError, match="different masks for 'emb.weight' and 'head.weight'.*tied"):
        tl.find_ticket(tied_model(), lambda m, c: None, strategy=Split(), rounds=1)


# --------------------------------------------------------------------------- empty, complex and bool tensors
@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors is a no-op")
def test_tensors_without_entries_are_skipped():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 0), nn.Linear(0, 3), nn.Linear(3, 2))
    assert [q for q, _, _ in tl.named_prunable_parameters(model)] == ["0.weight", "3.weight"]
    tl.global_magnitude(model, amount=0.5)
    ticket = tl.find_ticket(nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 0)), lambda m, c: None, rounds=2)
    assert sorted(ticket.masks) == ["0.weight"]
    with pytest.raises(ValueError, match="no prunable parameters with entries"):
        tl.find_ticket(nn.Sequential(nn.Linear(4, 0)), lambda m, c: None, parameters=["0.weight"], rounds=1)


@pytest.mark.parametrize("dtype", [torch.complex64, torch.bool, torch.int64])
def test_complex_bool_and_integer_weights_are_refused_naming_the_dtype(dtype):
    layer = nn.Linear(3, 3)
    layer.weight = nn.Parameter(torch.zeros(3, 3, dtype=dtype), requires_grad=False)
    model = nn.Sequential(layer)
    before = helpers.snapshot(model)
    calls = [
        lambda: tl.lottery_magnitude(layer, "weight", amount=0.5),
        lambda: tl.global_magnitude([(layer, "weight")], amount=0.5),
        lambda: prune.global_unstructured([(layer, "weight")], pruning_method=tl.LotteryMagnitude, amount=0.5),
        lambda: tl.fixed_mask(layer, "weight", torch.ones(3, 3)),
        lambda: tl.find_ticket(model, lambda m, c: None, parameters=["0.weight"], rounds=1),
    ]
    for call in calls:
        with pytest.raises(TypeError, match=rf"Linear.weight has dtype {dtype}: torch-lottery prunes real floating"):
            call()
        helpers.assert_unchanged(model, before)


def test_a_sparse_mask_is_refused():
    layer = nn.Linear(3, 3)
    with pytest.raises(ValueError, match="mask has layout torch.sparse_coo"):
        tl.fixed_mask(layer, "weight", torch.eye(3).to_sparse())
    with pytest.raises(ValueError, match=r"masks\['0.weight'\] has layout"):
        tl.Ticket({"0.weight": torch.eye(3).to_sparse()}, {})
    assert "weight_mask" not in layer._buffers


def test_snapshot_copies_parameters_and_buffers_and_load_snapshot_puts_them_back():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    prune.l1_unstructured(model[0], "weight", amount=0.5)
    state = _layout.snapshot(model)
    assert set(state) == {
        "0.weight",
        "0.bias",
        "1.weight",
        "1.bias",
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
    }
    assert torch.equal(state["0.weight"], model[0].weight_orig) and state["0.weight"] is not model[0].weight_orig
    mask = model[0].weight_mask.clone()
    with torch.no_grad():
        model[0].weight_orig.add_(1.0)
        model[1].running_mean.add_(2.0)
    _layout.load_snapshot(model, state)
    assert torch.equal(model[0].weight_orig, state["0.weight"]) and torch.equal(model[0].weight_mask, mask)
    assert torch.equal(model[0].weight, state["0.weight"] * mask)  # module.weight recomputed
    assert torch.equal(model[1].running_mean, torch.zeros(4))
    assert set(_layout.snapshot(model, parameters=False)) == {
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
    }


def test_substitute_mask_uses_the_callers_mask_keeps_its_graph_and_leaves_the_buffer_alone():
    torch.manual_seed(0)
    layer = nn.Linear(3, 2).double()
    tl.fixed_mask(layer, "weight", torch.tensor([[1, 0, 1], [0, 1, 1]]))
    buffer = layer.weight_mask.clone()
    soft = torch.tensor([[0.2, 0.9, -0.4], [1.5, 0.0, 0.3]], dtype=torch.float64, requires_grad=True)
    _layout.substitute_mask(layer, "weight", soft)
    assert torch.equal(layer.weight, soft.detach() * layer.weight_orig.detach())
    assert type(layer.weight) is _layout._PrunedWeight  # deep-copyable while it carries the graph
    copy.deepcopy(layer)
    x = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    out = nn.functional.linear(x, layer.weight, layer.bias)
    out.sum().backward()
    # d sum / d soft[i, j] = x[j] * orig[i, j]; d sum / d orig[i, j] = x[j] * soft[i, j]
    assert torch.allclose(soft.grad, x.expand(2, 3) * layer.weight_orig.detach(), rtol=0, atol=1e-15)
    assert torch.allclose(layer.weight_orig.grad, x.expand(2, 3) * soft.detach(), rtol=0, atol=1e-15)
    assert torch.equal(layer.weight_mask, buffer)
    _layout.refresh(layer, "weight")  # the buffer's product is back
    assert torch.equal(layer.weight, layer.weight_orig.detach() * buffer)
    with pytest.raises(ValueError, match=r"mask has shape \(3,\) but Linear.weight has \(2, 3\)"):
        _layout.substitute_mask(layer, "weight", torch.ones(3))
    with pytest.raises(ValueError, match="Linear.bias is not pruned: there is no bias_orig to mask"):
        _layout.substitute_mask(layer, "bias", torch.ones(2))
