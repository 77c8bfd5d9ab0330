"""targeted_dropout / remove_targeted_dropout / targeted_set (Gomez et al. 2019): what is targeted, what is dropped."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import torch_lottery as tl
from torch_lottery._validation import count_to_prune
from torch_lottery.pruning.targeted_dropout import has_targeted_dropout, targeted_set
from torch_lottery.strategies.base import keep_top

W = torch.tensor(
    [
        [0.5, -0.1, 0.3, 2.0],
        [1.0, 1.0, -4.0, 0.2],  # a tie: the lower index is targeted first
        [-3.0, 0.05, 0.05, 7.0],
    ],
    dtype=torch.float64,
)


def linear(weight: torch.Tensor = W, bias: bool = True) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias, dtype=weight.dtype)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias:
            layer.bias.copy_(torch.arange(weight.shape[0], dtype=weight.dtype) / 10)
    return layer


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def watch(module: nn.Module) -> list[torch.Tensor]:
    """Record ``module.weight`` as the forward reads it (a pre-hook that runs after targeted dropout's)."""
    seen: list[torch.Tensor] = []
    module.register_forward_pre_hook(lambda m, args: seen.append(m.weight.detach().clone()))
    return seen


def state(module: nn.Module) -> dict:
    """Everything targeted dropout must leave as it was: state_dict, parameters, hooks, instance attributes."""
    return {
        "state": {k: v.detach().clone() for k, v in module.state_dict().items()},
        "parameters": [id(p) for p in module.parameters()],
        "pre_hooks": list(module._forward_pre_hooks.items()),
        "hooks": list(module._forward_hooks.items()),
        "always": dict(module._forward_hooks_always_called),
        "attributes": sorted(module.__dict__),
    }


def assert_same_state(a: dict, b: dict) -> None:
    assert a["state"].keys() == b["state"].keys()
    assert all(torch.equal(a["state"][k], b["state"][k]) for k in a["state"])
    assert a["parameters"] == b["parameters"]
    assert a["pre_hooks"] == b["pre_hooks"] and a["hooks"] == b["hooks"] and a["always"] == b["always"]
    assert a["attributes"] == b["attributes"]


# -- the targeted set, by hand ---------------------------------------------------------------
@pytest.mark.parametrize(
    "targ_rate, expected",
    [
        # 4 weights per unit: round(4 * targ_rate) targeted, smallest |w| first, ties to the lower index
        (0.5, [[0, 1, 1, 0], [1, 0, 0, 1], [0, 1, 1, 0]]),
        (0.25, [[0, 1, 0, 0], [0, 0, 0, 1], [0, 1, 0, 0]]),
        (0.625, [[0, 1, 1, 0], [1, 0, 0, 1], [0, 1, 1, 0]]),  # round(2.5) = 2: halves go to the even count
        (0.875, [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]]),  # round(3.5) = 4
        (0.0, [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]),
    ],
)
def test_weight_kind_targets_the_smallest_weights_of_each_unit(targ_rate, expected):
    assert targeted_set(W, targ_rate).int().tolist() == expected


def test_weight_kind_ranks_only_the_survivors_of_a_pruned_tensor():
    mask = torch.tensor([[1, 0, 0, 1], [1, 1, 1, 0], [0, 0, 0, 0]])
    # row 0: survivors 0.5, 2.0 -> round(1.0) = 1: 0.5; row 1: 1.0, 1.0, -4.0 -> round(1.5) = 2: both 1.0s;
    # row 2: no survivor, nothing targeted
    assert targeted_set(W, 0.5, mask=mask).int().tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]]


UNITS = torch.tensor([[3.0, 4.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 2.0], [1.0, 9.0, 0.0]], dtype=torch.float64)


def test_unit_kind_targets_the_units_of_smallest_norm():
    # norms 5, 1, 2, sqrt(82): round(0.5 * 4) = 2 units, units 1 and 2
    assert targeted_set(UNITS, 0.5, kind="unit").int().tolist() == [[0, 0, 0], [1, 1, 1], [1, 1, 1], [0, 0, 0]]
    assert targeted_set(UNITS, 0.25, kind="unit").int().tolist() == [[0, 0, 0], [1, 1, 1], [0, 0, 0], [0, 0, 0]]


def test_unit_kind_on_a_pruned_tensor_ranks_the_norms_of_the_survivors():
    mask = torch.tensor([[1, 1, 1], [0, 0, 0], [1, 1, 1], [1, 0, 1]])
    # unit 1 is gone; norms of the survivors: 5, 2, 1 (unit 3 lost its 9) -> round(1.5) = 2 units: 3 and 2,
    # and only their surviving entries are targeted
    expected = [[0, 0, 0], [0, 0, 0], [1, 1, 1], [1, 0, 1]]
    assert targeted_set(UNITS, 0.5, kind="unit", mask=mask).int().tolist() == expected


def test_the_counts_and_ties_are_those_of_count_to_prune_and_keep_top():
    generator = seeded(5)
    weight = (torch.randn(7, 9, generator=generator, dtype=torch.float64) * 2).round() / 2  # many ties
    mask = torch.rand(7, 9, generator=generator) < 0.7
    for targ_rate in (0.1, 0.3, 0.5, 0.55, 0.9):
        got = targeted_set(weight, targ_rate, mask=mask)
        for row in range(7):
            alive = int(mask[row].sum())
            kept = keep_top(weight[row].abs(), alive - count_to_prune(targ_rate, alive), eligible=mask[row])
            assert torch.equal(got[row], mask[row] & ~kept)


# -- what a training forward drops ------------------------------------------------------------
def test_drop_rate_one_drops_exactly_the_targeted_set_and_nothing_else():
    for kind, weight in (("weight", W), ("unit", UNITS)):
        layer = tl.targeted_dropout(linear(weight), "weight", 1.0, 0.5, kind=kind)
        seen = watch(layer)
        layer(torch.ones(2, weight.shape[1], dtype=weight.dtype))
        assert torch.equal(seen[0] == 0, targeted_set(weight, 0.5, kind=kind) | (weight == 0))
        assert torch.equal(seen[0][seen[0] != 0], weight[seen[0] != 0])  # the kept weights are not rescaled


def test_the_drops_are_one_uniform_draw_per_entry_or_per_unit_from_the_generator():
    weight = torch.randn(5, 6, generator=seeded(1), dtype=torch.float64)
    for kind, shape in (("weight", (5, 6)), ("unit", (5,))):
        layer = tl.targeted_dropout(linear(weight), "weight", 0.5, 0.6, kind=kind, generator=seeded(7))
        seen = watch(layer)
        layer(torch.ones(1, 6, dtype=torch.float64))
        draws = torch.rand(shape, generator=seeded(7)) < 0.5
        expected = targeted_set(weight, 0.6, kind=kind) & (draws if kind == "weight" else draws[:, None])
        assert torch.equal(seen[0] == 0, expected)


@pytest.mark.parametrize("kind", ["weight", "unit"])
def test_over_many_forwards_only_targeted_entries_are_dropped_at_about_drop_rate(kind):
    weight = torch.randn(6, 8, generator=seeded(2), dtype=torch.float64)
    layer = tl.targeted_dropout(linear(weight), "weight", 0.3, 0.5, kind=kind, generator=seeded(3))
    seen = watch(layer)
    x = torch.ones(1, 8, dtype=torch.float64)
    forwards = 2000
    with torch.no_grad():
        for _ in range(forwards):
            layer(x)
    dropped = torch.stack(seen) == 0
    targeted = targeted_set(weight, 0.5, kind=kind)
    assert not dropped[:, ~targeted].any()  # never outside the targeted set
    rate = dropped[:, targeted].double().mean(dim=0)  # per targeted entry
    # a fixed generator: deterministic; the bounds are over 5 standard deviations wide
    assert float(rate.mean()) == pytest.approx(0.3, abs=0.02)
    assert float((rate - 0.3).abs().max()) < 0.06
    if kind == "unit":  # a unit goes whole
        per_unit = dropped.reshape(forwards, 6, 8)
        assert torch.equal(per_unit.all(dim=2), per_unit.any(dim=2))


def test_a_convolution_targets_per_output_channel():
    conv = nn.Conv2d(2, 3, 2, dtype=torch.float64)
    weight = conv.weight.detach().clone()
    targeted = targeted_set(weight, 0.5)
    assert targeted.shape == weight.shape
    assert targeted.reshape(3, -1).sum(dim=1).tolist() == [4, 4, 4]
    tl.targeted_dropout(conv, "weight", 1.0, 0.5, kind="unit")
    seen = watch(conv)
    conv(torch.ones(1, 2, 3, 3, dtype=torch.float64))
    assert (seen[0] == 0).reshape(3, -1).all(dim=1).tolist() == targeted_set(weight, 0.5, kind="unit")[
        :, 0, 0, 0
    ].tolist()
    assert int((seen[0] == 0).reshape(3, -1).all(dim=1).sum()) == count_to_prune(0.5, 3)


def test_gradient_is_zero_at_dropped_entries_and_flows_through_kept_ones():
    weight = torch.randn(4, 5, generator=seeded(4), dtype=torch.float64)
    layer = tl.targeted_dropout(linear(weight), "weight", 0.5, 0.6, generator=seeded(0))
    seen = watch(layer)
    x = torch.randn(3, 5, generator=seeded(9), dtype=torch.float64)
    (layer(x) ** 2).sum().backward()
    dropped = seen[0] == 0
    assert dropped.any() and (~dropped).any()
    assert torch.equal(layer.weight.grad[dropped], torch.zeros(int(dropped.sum()), dtype=torch.float64))
    manual = weight.clone().requires_grad_()
    (nn.functional.linear(x, manual.masked_fill(dropped, 0), layer.bias.detach()) ** 2).sum().backward()
    assert torch.allclose(layer.weight.grad, manual.grad * ~dropped)


def test_eval_mode_is_exactly_the_undropped_module():
    layer = tl.targeted_dropout(linear(), "weight", 1.0, 0.75)
    x = torch.randn(5, 4, generator=seeded(1), dtype=torch.float64)
    layer.eval()
    assert torch.equal(layer(x), nn.functional.linear(x, W, layer.bias))
    layer.train()
    assert not torch.equal(layer(x), nn.functional.linear(x, W, layer.bias))  # training mode does drop


@pytest.mark.parametrize("drop_rate, targ_rate", [(0.0, 0.5), (0.5, 0.0)])
def test_nothing_to_drop_leaves_training_outputs_as_they_were(drop_rate, targ_rate):
    layer = tl.targeted_dropout(linear(), "weight", drop_rate, targ_rate)
    x = torch.randn(5, 4, generator=seeded(1), dtype=torch.float64)
    assert torch.equal(layer(x), nn.functional.linear(x, W, layer.bias))


def test_the_generator_makes_the_drops_reproducible_and_the_default_is_the_global_rng():
    x = torch.randn(5, 4, generator=seeded(1), dtype=torch.float64)
    a = tl.targeted_dropout(linear(), "weight", 0.5, 0.5, generator=seeded(3))
    b = tl.targeted_dropout(linear(), "weight", 0.5, 0.5, generator=seeded(3))
    assert all(torch.equal(a(x), b(x)) for _ in range(5))
    c, d = (tl.targeted_dropout(linear(), "weight", 0.5, 0.5) for _ in range(2))
    torch.manual_seed(11)
    first = [c(x) for _ in range(5)]
    torch.manual_seed(11)
    assert all(torch.equal(f, d(x)) for f in first)


# -- the module stays clean -----------------------------------------------------------------
def test_state_dict_parameters_and_attributes_never_change_and_removal_restores_everything():
    layer = linear()
    layer.register_forward_hook(lambda m, args, out: None)  # a hook of the user's, kept through it all
    before = state(layer)
    x = torch.randn(2, 4, dtype=torch.float64)
    expected = layer(x)
    assert tl.targeted_dropout(layer, "weight", 0.5, 0.5) is layer
    inside = []
    layer.register_forward_pre_hook(lambda m, args: inside.append(sorted(m.state_dict())))
    layer(x).sum().backward()
    assert inside == [["bias", "weight"]]
    assert type(layer.weight) is nn.Parameter and "weight" not in layer.__dict__
    assert has_targeted_dropout(layer, "weight")
    assert tl.remove_targeted_dropout(layer, "weight") is layer
    assert not has_targeted_dropout(layer, "weight")
    layer._forward_pre_hooks.popitem()  # the recording hook of this test
    assert_same_state(state(layer), before)
    assert torch.equal(layer(x), expected)


class Boom(nn.Linear):
    def forward(self, x):
        self.weight.sum()
        raise RuntimeError("boom")


@pytest.mark.parametrize("pruned", [False, True])
def test_an_exception_inside_forward_leaves_the_module_clean(pruned):
    layer = Boom(4, 3, dtype=torch.float64)
    if pruned:
        tl.lottery_magnitude(layer, "weight", 0.5)
    tl.targeted_dropout(layer, "weight", 1.0, 0.5)
    before = state(layer)
    undropped = layer.weight.detach().clone()
    with pytest.raises(RuntimeError, match="boom"):
        layer(torch.ones(1, 4, dtype=torch.float64))
    assert_same_state(state(layer), before)
    assert torch.equal(layer.weight.detach(), undropped)


def test_an_exception_in_a_later_pre_hook_leaves_the_module_clean():
    layer = tl.targeted_dropout(linear(), "weight", 1.0, 0.5)

    def fail(module, args):
        raise ValueError("later hook")

    layer.register_forward_pre_hook(fail)
    with pytest.raises(ValueError, match="later hook"):
        layer(torch.ones(1, 4, dtype=torch.float64))
    assert "weight" not in layer.__dict__ and type(layer.weight) is nn.Parameter


@pytest.mark.parametrize("how", ["stock", "torch_lottery"])
@pytest.mark.parametrize("kind", ["weight", "unit"])
def test_on_an_already_pruned_tensor_it_ranks_the_survivors_and_pruned_entries_stay_zero(how, kind):
    weight = torch.randn(6, 8, generator=seeded(6), dtype=torch.float64)
    layer = linear(weight)
    if how == "stock":
        prune.l1_unstructured(layer, "weight", amount=0.4)
    else:
        tl.lottery_magnitude(layer, "weight", 0.4)
    mask = layer.weight_mask.clone()
    before = state(layer)
    tl.targeted_dropout(layer, "weight", 1.0, 0.5, kind=kind)
    seen = watch(layer)
    x = torch.randn(2, 8, dtype=torch.float64)
    layer(x)
    targeted = targeted_set(weight, 0.5, kind=kind, mask=mask)
    assert torch.equal(seen[0] == 0, targeted | (mask == 0))
    assert torch.equal(layer.weight_mask, mask)
    assert torch.equal(layer.weight.detach(), weight * mask)  # the undropped product, after the forward
    layer._forward_pre_hooks.popitem()
    tl.remove_targeted_dropout(layer, "weight")
    assert_same_state(state(layer), before)
    assert torch.equal(layer(x), nn.functional.linear(x, weight * mask, layer.bias))


def test_a_tensor_pruned_after_the_dropout_was_installed_is_refused_at_its_next_training_forward():
    layer = tl.targeted_dropout(linear(), "weight", 0.5, 0.5)
    prune.l1_unstructured(layer, "weight", amount=0.5)
    with pytest.raises(RuntimeError, match=r"Linear.weight was pruned after targeted dropout.*remove_targeted"):
        layer(torch.ones(1, 4, dtype=torch.float64))
    assert torch.equal(layer.weight.detach(), W * layer.weight_mask)  # left clean
    tl.remove_targeted_dropout(layer, "weight")
    tl.targeted_dropout(layer, "weight", 0.5, 0.5)
    layer(torch.ones(1, 4, dtype=torch.float64))  # installed after pruning: fine


# -- copies ----------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_copies_keep_the_dropout_with_a_copy_of_the_generator(how):
    layer = tl.lottery_magnitude(nn.Linear(6, 4), "weight", 0.25)
    tl.targeted_dropout(layer, "weight", 0.5, 0.5, generator=seeded(2))
    x = torch.randn(3, 6)
    layer(x).sum().backward()  # a graph is held: copies must still work
    twin = copy.deepcopy(layer) if how == "deepcopy" else pickle.loads(pickle.dumps(layer))
    assert has_targeted_dropout(twin, "weight")
    assert all(torch.equal(layer(x), twin(x)) for _ in range(4))  # the same future drops
    tl.remove_targeted_dropout(twin, "weight")
    assert has_targeted_dropout(layer, "weight")
    assert not twin._forward_hooks and not twin._forward_hooks_always_called
    assert torch.equal(twin.eval()(x), layer.eval()(x))


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"module": "layer"}, TypeError, "module must be a torch.nn.Module"),
        ({"name": "nope"}, ValueError, "name='nope' is not a parameter of Linear"),
        ({"name": 3}, TypeError, "name must be a str"),
        ({"drop_rate": 1.5}, ValueError, r"drop_rate=1.5 must be in \[0, 1\]"),
        ({"drop_rate": -0.1}, ValueError, r"drop_rate=-0.1 must be in \[0, 1\]"),
        ({"drop_rate": "half"}, TypeError, "drop_rate must be a number"),
        ({"drop_rate": True}, TypeError, "drop_rate must be a number"),
        ({"targ_rate": 2}, ValueError, r"targ_rate=2 must be in \[0, 1\]"),
        ({"targ_rate": float("nan")}, ValueError, "targ_rate=nan must be finite"),
        ({"kind": "units"}, ValueError, "kind='units' is not one of weight, unit"),
        ({"generator": 3}, TypeError, "generator must be a torch.Generator"),
    ],
)
def test_bad_input_raises_naming_the_argument_and_changes_nothing(kwargs, error, words):
    layer = linear()
    before = state(layer)
    arguments = {"module": layer, "name": "weight", "drop_rate": 0.5, "targ_rate": 0.5, **kwargs}
    with pytest.raises(error, match=words):
        tl.targeted_dropout(**arguments)
    assert_same_state(state(layer), before)


def test_applying_twice_is_refused_and_keeps_the_first():
    layer = tl.targeted_dropout(linear(), "weight", 0.5, 0.5)
    before = state(layer)
    with pytest.raises(ValueError, match=r"Linear.weight already has targeted dropout.*remove_targeted_dropout"):
        tl.targeted_dropout(layer, "weight", 0.1, 0.1)
    assert_same_state(state(layer), before)


def test_tensors_whose_module_never_reads_them_in_forward_are_refused():
    with pytest.raises(ValueError, match="LSTM.weight_ih_l0: LSTM reads a cached list"):
        tl.targeted_dropout(nn.LSTM(3, 2), "weight_ih_l0", 0.5, 0.5)
    attention = nn.MultiheadAttention(4, 2)
    with pytest.raises(ValueError, match="out_proj of an nn.MultiheadAttention"):
        tl.targeted_dropout(attention.out_proj, "weight", 0.5, 0.5)
    holder = nn.Module()
    holder.scale = nn.Parameter(torch.tensor(2.0))
    with pytest.raises(ValueError, match="Module.scale is a scalar"):
        tl.targeted_dropout(holder, "scale", 0.5, 0.5)
    assert not attention.out_proj._forward_pre_hooks and not holder._forward_pre_hooks


def test_attention_in_projection_is_dropped_in_training():
    attention = nn.MultiheadAttention(4, 2, dtype=torch.float64)
    tl.targeted_dropout(attention, "in_proj_weight", 1.0, 0.5)
    x = torch.randn(3, 1, 4, dtype=torch.float64)
    trained, _ = attention(x, x, x)
    attention.eval()
    plain, _ = attention(x, x, x)
    tl.remove_targeted_dropout(attention, "in_proj_weight")
    assert torch.equal(attention(x, x, x)[0], plain)
    assert not torch.equal(trained, plain)


def test_removing_what_is_not_there_names_module_and_tensor():
    with pytest.raises(ValueError, match=r"Linear.weight has no targeted dropout to remove"):
        tl.remove_targeted_dropout(linear(), "weight")
    with pytest.raises(TypeError, match="module must be a torch.nn.Module"):
        tl.remove_targeted_dropout(None, "weight")
    with pytest.raises(TypeError, match="name must be a str"):
        tl.remove_targeted_dropout(linear(), 0)


@pytest.mark.parametrize(
    "args, error, words",
    [
        ((W, 1.2), ValueError, "targ_rate=1.2"),
        ((W, 0.5, "all"), ValueError, "kind='all'"),
        ((W, 0.5, "weight", torch.ones(2, 2)), ValueError, "mask must be a tensor of weight's shape"),
        (([1.0, 2.0], 0.5), TypeError, "weight must be a Tensor"),
        ((torch.tensor(1.0), 0.5), ValueError, "weight is a scalar"),
    ],
)
def test_targeted_set_checks_its_arguments(args, error, words):
    with pytest.raises(error, match=words):
        targeted_set(*args)
