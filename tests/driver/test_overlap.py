"""mask_overlap: hand-computed counts and ratios on tiny masks, every kind of side, empty sets, the table, errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import torch_lottery as tl
from torch_lottery.driver import LayerOverlap, MaskOverlap

# a keeps 3 of 6 and 1 of 4; b keeps 4 of 6 and 1 of 4
A = {"0.weight": torch.tensor([[1, 1, 0], [0, 1, 0]]), "2.weight": torch.tensor([[1, 0], [0, 0]])}
B = {"0.weight": torch.tensor([[1, 0, 1], [0, 1, 1]]), "2.weight": torch.tensor([[0, 1], [0, 0]])}


def net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 2))


def pruned(masks: dict[str, torch.Tensor]) -> nn.Sequential:
    model = net()
    for name, mask in masks.items():
        tl.fixed_mask(model.get_submodule(name.split(".")[0]), "weight", mask)
    return model


def no_training(model, context):
    """A round's training that changes nothing: the tickets differ by their strategies alone."""


# --------------------------------------------------------------------------- figures
def test_hand_computed_counts_and_ratios():
    result = tl.mask_overlap(A, B)
    assert isinstance(result, MaskOverlap)
    assert list(result.layers) == ["0.weight", "2.weight"]
    first = result.layers["0.weight"]  # both keep (0, 0) and (1, 1); the union has 5 entries
    assert (first.total, first.kept_a, first.kept_b, first.kept_both, first.kept_either) == (6, 3, 4, 2, 5)
    assert first.iou == pytest.approx(2 / 5)
    assert first.a_in_b == pytest.approx(2 / 3)
    assert first.b_in_a == pytest.approx(2 / 4)
    assert (first.density_a, first.density_b) == (pytest.approx(3 / 6), pytest.approx(4 / 6))
    second = result.layers["2.weight"]  # disjoint
    assert (second.kept_both, second.kept_either, second.iou, second.a_in_b, second.b_in_a) == (0, 2, 0.0, 0.0, 0.0)
    assert result.only_a == result.only_b == []


def test_overall_sums_the_counts_so_every_entry_weighs_alike():
    overall = tl.mask_overlap(A, B).overall
    assert overall == LayerOverlap(total=10, kept_a=4, kept_b=5, kept_both=2)
    assert overall.iou == pytest.approx(2 / 7)  # not the mean of the per-tensor IoUs, (0.4 + 0) / 2
    assert (overall.a_in_b, overall.b_in_a) == (pytest.approx(2 / 4), pytest.approx(2 / 5))
    assert (overall.density_a, overall.density_b) == (pytest.approx(0.4), pytest.approx(0.5))


def test_the_comparison_is_symmetric():
    ab, ba = tl.mask_overlap(A, B), tl.mask_overlap(B, A)
    for name in A:
        assert ab.layers[name].iou == ba.layers[name].iou
        assert ab.layers[name].a_in_b == ba.layers[name].b_in_a
        assert ab.layers[name].density_a == ba.layers[name].density_b


def test_empty_sets():
    nothing = torch.zeros(2, 2)
    both_empty = tl.mask_overlap({"w": nothing}, {"w": nothing.bool()}).layers["w"]
    assert (both_empty.iou, both_empty.a_in_b, both_empty.b_in_a) == (1.0, 1.0, 1.0)  # the same, empty, set
    assert (both_empty.density_a, both_empty.density_b) == (0.0, 0.0)
    one_empty = tl.mask_overlap({"w": nothing}, {"w": torch.tensor([[1, 0], [0, 0]])}).layers["w"]
    assert (one_empty.iou, one_empty.a_in_b, one_empty.b_in_a) == (0.0, 1.0, 0.0)
    no_entries = tl.mask_overlap({"w": torch.ones(0, 3)}, {"w": torch.ones(0, 3)}).layers["w"]
    assert (no_entries.total, no_entries.iou, no_entries.density_a) == (0, 1.0, 1.0)


def test_a_set_against_itself_is_one_everywhere():
    result = tl.mask_overlap(A, A)
    for row in [*result.layers.values(), result.overall]:
        assert row.iou == row.a_in_b == row.b_in_a == 1.0
        assert row.kept_both == row.kept_either == row.kept_a


def test_a_layer_overlap_holds_every_figure_as_a_field_and_checks_its_counts():
    row = LayerOverlap(total=4, kept_a=2, kept_b=1, kept_both=1)
    assert dataclasses.asdict(row) == {
        "total": 4,
        "kept_a": 2,
        "kept_b": 1,
        "kept_both": 1,
        "kept_either": 2,
        "iou": 0.5,
        "a_in_b": 0.5,
        "b_in_a": 1.0,
        "density_a": 0.5,
        "density_b": 0.25,
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.iou = 0.9
    for counts in ((4, 5, 2, 1), (4, 1, 2, 2)):
        with pytest.raises(ValueError, match="contradict"):
            LayerOverlap(*counts)
    with pytest.raises(TypeError, match="kept_a must be an int, got 2.0"):
        LayerOverlap(4, 2.0, 2, 1)
    with pytest.raises(ValueError, match="total=-1"):
        LayerOverlap(-1, 0, 0, 0)


# --------------------------------------------------------------------------- kinds of sides
def test_a_ticket_a_dict_and_a_pruned_model_give_the_same_result():
    expected = tl.mask_overlap(A, B)
    ticket_b = tl.Ticket(B, {})
    for a in (A, tl.Ticket(A, {}), pruned(A)):
        for b in (B, ticket_b, pruned(B)):
            result = tl.mask_overlap(a, b)
            assert result.layers == expected.layers
            assert result.overall == expected.overall


def test_a_model_contributes_every_prunable_weight_and_every_pruned_tensor():
    model = pruned({"0.weight": A["0.weight"]})  # 2.weight stays unpruned: all of it kept
    prune.l1_unstructured(model[2], "bias", amount=1)  # a pruned bias (stock) is compared too
    result = tl.mask_overlap(model, {**A, "2.bias": torch.tensor([1, 1])}, layers="all")
    assert list(result.layers) == ["0.weight", "2.weight", "2.bias"]
    assert result.layers["2.weight"] == LayerOverlap(total=4, kept_a=4, kept_b=1, kept_both=1)
    assert result.layers["2.bias"] == LayerOverlap(total=2, kept_a=1, kept_b=2, kept_both=1)


def test_tickets_of_two_strategies_and_the_model_a_ticket_came_from():
    imp_model, random_model = net(), net()
    imp = tl.find_ticket(imp_model, no_training, strategy_options={"rate": 0.5}, rounds=1)
    drawn = tl.find_ticket(random_model, no_training, strategy="random", strategy_options={"rate": 0.5}, rounds=1)
    same = tl.mask_overlap(imp_model, imp)
    assert same.overall.iou == 1.0 and list(same.layers) == list(imp.masks)
    result = tl.mask_overlap(imp, drawn)
    assert result.overall.kept_a == imp.remaining_weights
    assert result.overall.kept_b == drawn.remaining_weights
    assert result.overall.total == imp.total_weights
    expected = sum(int((imp.masks[q] & drawn.masks[q]).sum()) for q in imp.masks)
    assert result.overall.kept_both == expected


# --------------------------------------------------------------------------- layers on one side only
def test_tensors_on_one_side_only_are_refused_by_default_naming_them():
    with pytest.raises(ValueError, match=r"only in a: 2\.weight; only in b: 3\.weight.*layers='common'"):
        tl.mask_overlap(A, {"0.weight": B["0.weight"], "3.weight": torch.ones(2)})


def test_layers_common_compares_the_shared_tensors_and_lists_the_others():
    result = tl.mask_overlap(A, {"0.weight": B["0.weight"], "3.weight": torch.ones(2)}, layers="common")
    assert list(result.layers) == ["0.weight"]
    assert result.overall == result.layers["0.weight"]
    assert (result.only_a, result.only_b) == (["2.weight"], ["3.weight"])
    lines = result.table().splitlines()
    assert lines[-2:] == ["only in a (not compared): 2.weight", "only in b (not compared): 3.weight"]


def test_nothing_to_compare_is_an_error():
    with pytest.raises(ValueError, match="none of them in common"):
        tl.mask_overlap({"x": torch.ones(2)}, {"y": torch.ones(2)}, layers="common")
    with pytest.raises(ValueError, match="nothing to compare"):
        tl.mask_overlap({}, tl.Ticket({}, {}))


def test_shapes_must_match():
    with pytest.raises(ValueError, match=r"'2\.weight' has shape \(2, 2\) in a but \(4,\) in b"):
        tl.mask_overlap(A, {**B, "2.weight": torch.ones(4)})


# --------------------------------------------------------------------------- table
def test_table():
    result = tl.mask_overlap(A, B)
    assert result.table() == "\n".join(
        [
            "tensor    entries  kept a  kept b  both    IoU  a in b  b in a  density a  density b",
            "0.weight        6       3       4     2  0.400   0.667   0.500      0.500      0.667",
            "2.weight        4       1       1     0  0.000   0.000   0.000      0.250      0.250",
            "overall        10       4       5     2  0.286   0.500   0.400      0.400      0.500",
        ]
    )
    assert str(result) == result.table()


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "a, b, kwargs, error, words",
    [
        ("ticket.pt", B, {}, TypeError, ["a must be a Ticket", "'ticket.pt'"]),
        (A, [B["0.weight"]], {}, TypeError, ["b must be a Ticket", "got [tensor("]),
        ({0: A["0.weight"]}, B, {}, TypeError, ["a must map qualified names", "0"]),
        (A, {"0.weight": [1, 0]}, {}, TypeError, ["b['0.weight'] must be a Tensor"]),
        (A, {**B, "0.weight": B["0.weight"] * 2}, {}, ValueError, ["b['0.weight'] must hold only 0 and 1"]),
        (A, B, {"layers": "some"}, ValueError, ["layers='some'", "all, common"]),
    ],
)
def test_bad_input(a, b, kwargs, error, words):
    with pytest.raises(error) as info:
        tl.mask_overlap(a, b, **kwargs)
    for word in words:
        assert word in str(info.value)


def test_a_models_non_binary_mask_is_refused_naming_it():
    model = pruned(A)
    model[0]._buffers["weight_mask"] = torch.full_like(model[0].weight_mask, 0.5, dtype=torch.float32)  # stock's kind
    with pytest.raises(ValueError, match=r"a's mask of '0\.weight' must hold only 0 and 1"):
        tl.mask_overlap(model, B)
