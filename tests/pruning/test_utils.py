"""Tests for prunable_parameters, named_prunable_parameters, get_mask, remaining and sparsity_report."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import torch_lottery as tl
from torch_lottery import (
    get_mask,
    global_magnitude,
    lottery_magnitude,
    named_prunable_parameters,
    prunable_parameters,
    remaining,
    sparsity_report,
)


def names(model, include_bias=False):
    return [q for q, _, _ in named_prunable_parameters(model, include_bias=include_bias)]


# --------------------------------------------------------------------------- which tensors


def test_linear_and_conv():
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2), nn.LayerNorm(2)
    )
    assert names(net) == ["0.weight", "4.weight"]
    assert names(net, include_bias=True) == ["0.weight", "0.bias", "4.weight", "4.bias"]
    pairs = prunable_parameters(net)
    assert pairs == [(net[0], "weight"), (net[4], "weight")]
    assert all(p[0] is q[1] and p[1] == q[2] for p, q in zip(pairs, named_prunable_parameters(net), strict=True))


def test_conv_variants_and_bilinear():
    net = nn.Sequential(nn.Conv1d(2, 3, 3), nn.Conv3d(3, 2, 1), nn.ConvTranspose2d(2, 2, 2), nn.Bilinear(2, 3, 4))
    assert names(net) == ["0.weight", "1.weight", "2.weight", "3.weight"]


def test_no_bias_layers_skip_missing_bias():
    net = nn.Sequential(nn.Linear(3, 3, bias=False), nn.Conv2d(1, 1, 1, bias=False))
    assert names(net, include_bias=True) == ["0.weight", "1.weight"]


def test_embedding():
    net = nn.ModuleDict({"emb": nn.Embedding(10, 4), "bag": nn.EmbeddingBag(5, 3), "head": nn.Linear(4, 2)})
    assert names(net) == ["emb.weight", "bag.weight", "head.weight"]
    # embeddings have no bias
    assert names(net, include_bias=True) == ["emb.weight", "bag.weight", "head.weight", "head.bias"]


def test_lstm_weights_and_biases():
    lstm = nn.LSTM(3, 4, num_layers=2)
    assert set(names(lstm)) == {"weight_ih_l0", "weight_hh_l0", "weight_ih_l1", "weight_hh_l1"}
    with_bias = names(lstm, include_bias=True)
    assert set(with_bias) == {
        "weight_ih_l0",
        "weight_hh_l0",
        "weight_ih_l1",
        "weight_hh_l1",
        "bias_ih_l0",
        "bias_hh_l0",
        "bias_ih_l1",
        "bias_hh_l1",
    }
    assert len(with_bias) == 8


def test_bidirectional_gru_and_nested_rnn():
    net = nn.Sequential(nn.GRU(2, 3, bidirectional=True, bias=False))
    assert set(names(net)) == {"0.weight_ih_l0", "0.weight_hh_l0", "0.weight_ih_l0_reverse", "0.weight_hh_l0_reverse"}
    assert set(names(net, include_bias=True)) == set(names(net))


def test_multihead_attention_packed_projection():
    net = nn.Sequential(nn.MultiheadAttention(4, 2))
    assert names(net) == ["0.in_proj_weight", "0.out_proj.weight"]
    assert names(net, include_bias=True) == [
        "0.in_proj_weight",
        "0.in_proj_bias",
        "0.out_proj.weight",
        "0.out_proj.bias",
    ]
    (_, module, name), (_, out_module, out_name) = named_prunable_parameters(net)
    assert module is net[0] and name == "in_proj_weight"
    assert out_module is net[0].out_proj and out_name == "weight"


def test_multihead_attention_separate_projections_and_bias_kv():
    mha = nn.MultiheadAttention(4, 2, kdim=3, vdim=5, add_bias_kv=True)
    assert names(mha) == ["q_proj_weight", "k_proj_weight", "v_proj_weight", "out_proj.weight"]
    assert names(mha, include_bias=True) == [
        "q_proj_weight",
        "k_proj_weight",
        "v_proj_weight",
        "in_proj_bias",
        "bias_k",
        "bias_v",
        "out_proj.weight",
        "out_proj.bias",
    ]


def test_model_with_no_prunable_tensors():
    net = nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3), nn.LayerNorm(3))
    assert prunable_parameters(net) == []
    assert named_prunable_parameters(net, include_bias=True) == []
    report = sparsity_report(net)
    assert report == {"overall": {"remaining": 0, "total": 0, "fraction": 1.0}}


def test_pruned_tensors_listed_under_base_name():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2), nn.LSTM(2, 2))
    before = names(net, include_bias=True)
    lottery_magnitude(net[0], "weight", 0.5)
    prune.l1_unstructured(net[2], "bias", 1)
    prune.random_unstructured(net[3], "weight_hh_l0", 0.5)
    after = names(net, include_bias=True)
    assert after == before
    assert not any(q.endswith(("_orig", "_mask")) for q in after)
    pairs = prunable_parameters(net, include_bias=True)
    assert (net[0], "weight") in pairs and (net[2], "bias") in pairs and (net[3], "weight_hh_l0") in pairs


def test_prunable_parameters_feed_stock_global_unstructured():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 3))
    params = prunable_parameters(net)
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=0.5)
    assert remaining(params) == (21, 18 + 24)  # round(0.5 * 42) = 21 pruned
    assert prunable_parameters(net) == params


@pytest.mark.parametrize("bad", [None, "net", [nn.Linear(2, 2)]])
def test_named_prunable_parameters_rejects_non_module(bad):
    with pytest.raises(TypeError, match="model"):
        named_prunable_parameters(bad)
    with pytest.raises(TypeError, match="model"):
        prunable_parameters(bad)


# --------------------------------------------------------------------------- get_mask, remaining, sparsity_report


def test_get_mask_unpruned_and_pruned():
    torch.manual_seed(0)
    layer = nn.Linear(5, 4)
    mask = get_mask(layer, "weight")
    assert torch.equal(mask, torch.ones(4, 5))
    assert mask.dtype == layer.weight.dtype
    assert not prune.is_pruned(layer)  # reading a mask does not prune
    lottery_magnitude(layer, "weight", 0.25)
    assert get_mask(layer, "weight") is layer.weight_mask
    assert int(get_mask(layer, "weight").sum()) == 15
    assert torch.equal(get_mask(layer, "bias"), torch.ones(4))


def test_get_mask_after_stock_pruning():
    layer = nn.Linear(3, 3)
    prune.random_unstructured(layer, "weight", 4)
    assert get_mask(layer, "weight") is layer.weight_mask
    assert int(get_mask(layer, "weight").sum()) == 5


def test_remaining_counts_survivors_and_totals():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 5))
    params = prunable_parameters(net)
    assert remaining(params) == (150, 150)
    global_magnitude(params, 0.2)
    assert remaining(params) == (120, 150)
    lottery_magnitude(net[2], "weight", 10)
    alive, total = remaining(params)
    assert total == 150
    assert alive == int(net[0].weight_mask.sum() + net[2].weight_mask.sum()) == 110
    assert remaining([]) == (0, 0)
    assert remaining([(net[0], "bias")]) == (10, 10)


def test_sparsity_report():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 4))
    report = sparsity_report(net)
    assert set(report) == {"0.weight", "2.weight", "overall"}
    assert report["0.weight"] == {"remaining": 100, "total": 100, "fraction": 1.0}
    lottery_magnitude(net[0], "weight", 0.3)
    lottery_magnitude(net[2], "weight", 0.5)
    report = sparsity_report(net)
    assert report["0.weight"] == {"remaining": 70, "total": 100, "fraction": 0.7}
    assert report["2.weight"] == {"remaining": 20, "total": 40, "fraction": 0.5}
    assert report["overall"]["remaining"] == 90
    assert report["overall"]["total"] == 140
    assert report["overall"]["fraction"] == pytest.approx(90 / 140)
    with_bias = sparsity_report(net, include_bias=True)
    assert set(with_bias) == {"0.weight", "0.bias", "2.weight", "2.bias", "overall"}
    assert with_bias["overall"] == {"remaining": 104, "total": 154, "fraction": pytest.approx(104 / 154)}


def test_sparsity_report_counts_nonzero_mask_entries():
    layer = nn.Sequential(nn.Linear(4, 2))
    prune.custom_from_mask(layer[0], "weight", torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]))
    assert sparsity_report(layer)["0.weight"] == {"remaining": 3, "total": 8, "fraction": 0.375}


def test_held_bytes_counts_each_storage_once_and_names_a_bad_model():
    net = nn.Linear(100, 10, bias=False)
    assert tl.pruning.held_bytes(net) == 4000
    net.alias = net.weight.detach()  # same storage as the parameter: not counted again
    assert tl.pruning.held_bytes(net) == 4000
    net.other = torch.zeros(10)
    assert tl.pruning.held_bytes(net) == 4040
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got"):
        tl.pruning.held_bytes("net")
