"""Baseline tickets: random reinit, sign-preserving reinit and signed constants keep the masks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from torch_lottery import (
    RewindPoint,
    lottery_magnitude,
    prunable_parameters,
    random_reinit,
    sign_preserving_reinit,
    signed_constant,
)
from torch_lottery.rewinding import default_init

from helpers import assert_state_equal, state_of

# Models are built under seed 0; reinit seeds differ from it, or the draw could repeat the init.
MODEL_SEED = 0


# --------------------------------------------------------------------------- helpers
class Net(nn.Module):
    def __init__(self, out: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.fc1 = nn.Linear(16, 12)
        self.fc2 = nn.Linear(12, out)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(torch.relu(self.conv(x)).flatten(1))))


NAMES = ["conv.weight", "fc1.weight", "fc2.weight"]


def make_net(out: int = 3, seed: int = MODEL_SEED) -> Net:
    torch.manual_seed(seed)
    return Net(out)


def pruned_net(out: int = 3):
    """A pruned net, its rewind point (the init) and its masks."""
    net = make_net(out)
    init = RewindPoint.capture(net)
    for module, name in prunable_parameters(net):
        lottery_magnitude(module, name, amount=0.5)
    return net, init


def split(qualified: str):
    prefix, _, name = qualified.rpartition(".")
    return prefix, name


def orig(model: nn.Module, qualified: str) -> torch.Tensor:
    prefix, name = split(qualified)
    module = model.get_submodule(prefix)
    value = module._parameters.get(name + "_orig")
    return (value if value is not None else module._parameters[name]).detach()


def mask(model: nn.Module, qualified: str) -> torch.Tensor:
    prefix, name = split(qualified)
    return model.get_submodule(prefix).get_buffer(name + "_mask")


def effective(model: nn.Module, qualified: str) -> torch.Tensor:
    prefix, name = split(qualified)
    return getattr(model.get_submodule(prefix), name).detach()


class MaskWatch:
    """Remembers each mask buffer, its values and its version counter (bumped by any in-place write)."""

    def __init__(self, model: nn.Module, names) -> None:
        self.model = model
        self.buffers = {q: mask(model, q) for q in names}
        self.values = {q: b.clone() for q, b in self.buffers.items()}
        self.versions = {q: b._version for q, b in self.buffers.items()}

    def assert_unchanged(self) -> None:
        for qualified, buffer in self.buffers.items():
            now = mask(self.model, qualified)
            assert now is buffer, f"{qualified}_mask was replaced"
            assert now._version == self.versions[qualified], f"{qualified}_mask was written"
            assert torch.equal(now, self.values[qualified])


def assert_refreshed(model: nn.Module, names) -> None:
    """module.<name> already holds mask * orig (no forward pass needed)."""
    for qualified in names:
        assert torch.equal(effective(model, qualified), mask(model, qualified) * orig(model, qualified))


# --------------------------------------------------------------------------- random_reinit
def test_random_reinit_keeps_masks_and_draws_new_values():
    net, init = pruned_net()
    watch = MaskWatch(net, NAMES)
    before = state_of(net)
    assert random_reinit(net, seed=123) is net
    watch.assert_unchanged()
    for qualified in NAMES:
        new = orig(net, qualified)
        assert int((new == init[qualified]).sum()) == 0, qualified
        assert new.shape == init[qualified].shape
    assert_refreshed(net, NAMES)
    after = net.state_dict()
    for key in ("conv.bias", "fc1.bias", "fc2.bias"):  # biases are not prunable weights
        assert torch.equal(after[key], before[key])


def test_random_reinit_forward_uses_the_new_values():
    net, _ = pruned_net()
    x = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    before = net(x)
    random_reinit(net, seed=5)
    after = net(x)
    assert not torch.equal(after, before)
    dense = make_net()
    dense.load_state_dict({k: v for k, v in _folded(net).items()})
    torch.testing.assert_close(after, dense(x), rtol=0, atol=0)


def _folded(model: nn.Module) -> dict[str, torch.Tensor]:
    state = model.state_dict()
    out = {}
    for key, value in state.items():
        if key.endswith("_mask"):
            continue
        out[key[:-5] if key.endswith("_orig") else key] = (
            value * state[key[:-5] + "_mask"] if key.endswith("_orig") else value
        )
    return out


def test_random_reinit_is_reproducible():
    a, _ = pruned_net()
    b, _ = pruned_net()
    c, _ = pruned_net()
    d, _ = pruned_net()
    random_reinit(a, seed=7)
    random_reinit(b, seed=7)
    random_reinit(c, seed=8)
    random_reinit(d, generator=torch.Generator().manual_seed(7))
    for qualified in NAMES:
        assert torch.equal(orig(a, qualified), orig(b, qualified))
        assert torch.equal(orig(a, qualified), orig(d, qualified))
        assert not torch.equal(orig(a, qualified), orig(c, qualified))


def test_random_reinit_without_seed_uses_the_global_rng():
    a, _ = pruned_net()
    b, _ = pruned_net()
    torch.manual_seed(99)
    random_reinit(a)
    torch.manual_seed(99)
    random_reinit(b)
    for qualified in NAMES:
        assert torch.equal(orig(a, qualified), orig(b, qualified))


def test_random_reinit_on_an_unpruned_model():
    net = make_net()
    weight = net.fc1.weight
    before = weight.detach().clone()
    random_reinit(net, seed=3)
    assert net.fc1.weight is weight and isinstance(weight, nn.Parameter)
    assert not torch.equal(weight.detach(), before)


def test_random_reinit_of_chosen_parameters_only():
    net, init = pruned_net()
    before = state_of(net)
    random_reinit(net, [(net.fc2, "weight"), (net.fc1, "bias")], seed=4)
    after = net.state_dict()
    changed = {k for k in before if not torch.equal(after[k], before[k])}
    assert changed == {"fc2.weight_orig", "fc1.bias"}
    assert abs(after["fc1.bias"]).max() <= 1 / math.sqrt(12)  # vectors: uniform in ±1/sqrt(n)


def test_random_reinit_calls_a_custom_init():
    net, _ = pruned_net()
    watch = MaskWatch(net, NAMES)
    seen = []

    def init(tensor):
        seen.append(tuple(tensor.shape))
        nn.init.constant_(tensor, 0.25)

    random_reinit(net, init=init)
    assert seen == [tuple(orig(net, q).shape) for q in NAMES]
    for qualified in NAMES:
        assert torch.equal(orig(net, qualified), torch.full_like(orig(net, qualified), 0.25))
    watch.assert_unchanged()
    assert_refreshed(net, NAMES)


def test_random_reinit_with_torch_init_function_is_seeded_by_the_global_rng():
    a, _ = pruned_net()
    b, _ = pruned_net()
    torch.manual_seed(11)
    random_reinit(a, init=nn.init.xavier_normal_)
    torch.manual_seed(11)
    random_reinit(b, init=nn.init.xavier_normal_)
    w = orig(a, "fc1.weight")
    assert torch.equal(w, orig(b, "fc1.weight"))
    assert abs(w.std().item() - math.sqrt(2 / (16 + 12))) < 0.1


def _uniform(bound):
    return ("uniform", bound)


def _normal(std):
    return ("normal", std)


DEFAULT_CASES = [
    # (id, module factory, tensor name, expected distribution) — as in PyTorch's reset_parameters.
    ("linear", lambda: nn.Linear(1000, 1000), "weight", _uniform(1 / math.sqrt(1000))),
    ("conv1d", lambda: nn.Conv1d(128, 64, 5), "weight", _uniform(1 / math.sqrt(128 * 5))),
    ("conv2d", lambda: nn.Conv2d(64, 32, 5), "weight", _uniform(1 / math.sqrt(64 * 25))),
    ("conv3d", lambda: nn.Conv3d(16, 16, 3), "weight", _uniform(1 / math.sqrt(16 * 27))),
    ("embedding", lambda: nn.Embedding(1000, 64), "weight", _normal(1.0)),
    ("lstm-ih", lambda: nn.LSTM(32, 256), "weight_ih_l0", _uniform(1 / math.sqrt(256))),
    ("lstm-hh", lambda: nn.LSTM(32, 256), "weight_hh_l0", _uniform(1 / math.sqrt(256))),
    ("gru-hh", lambda: nn.GRU(32, 100), "weight_hh_l0", _uniform(1 / math.sqrt(100))),
    ("mha-in_proj", lambda: nn.MultiheadAttention(64, 4), "in_proj_weight", _uniform(math.sqrt(6 / (64 + 3 * 64)))),
    ("mha-out_proj", lambda: nn.MultiheadAttention(64, 4), "out_proj.weight", _uniform(1 / math.sqrt(64))),
]


@pytest.mark.parametrize("make, qualified, expected", [c[1:] for c in DEFAULT_CASES], ids=[c[0] for c in DEFAULT_CASES])
def test_random_reinit_default_follows_pytorch_default_distribution(make, qualified, expected):
    torch.manual_seed(MODEL_SEED)
    module = make()
    prefix, name = split(qualified)
    sub = module.get_submodule(prefix)
    lottery_magnitude(sub, name, amount=0.3)
    before = orig(module, qualified).clone()
    random_reinit(module, seed=2024)
    w = orig(module, qualified)
    assert not torch.equal(w, before)
    kind, scale = expected
    n = w.numel()
    if kind == "uniform":
        expected_std = scale / math.sqrt(3)
        assert w.abs().max() <= scale * (1 + 1e-6)
        assert w.abs().max() >= scale * 0.98  # the whole range is used
        assert abs(w.std().item() - expected_std) < 0.03 * expected_std
        assert abs(w.mean().item()) < 5 * expected_std / math.sqrt(n)
    else:
        assert abs(w.std().item() - scale) < 0.03 * scale
        assert abs(w.mean().item()) < 5 * scale / math.sqrt(n)
        tail = (w.abs() > 2 * scale).float().mean().item()
        assert 0.035 < tail < 0.056  # P(|z| > 2) = 0.0455 for a normal, 0 for a uniform


def test_random_reinit_keeps_embedding_padding_row_zero():
    """PyTorch's Embedding.reset_parameters zeroes the padding_idx row; a reinit must too.

    The padding row never gets a gradient, so a nonzero value there would never be trained away.
    """
    torch.manual_seed(MODEL_SEED)
    emb = nn.Embedding(10, 4, padding_idx=0)
    assert torch.count_nonzero(emb.weight[0]) == 0
    random_reinit(emb, seed=1)
    assert torch.count_nonzero(emb.weight[0]) == 0
    assert torch.count_nonzero(emb.weight[1:]) == 36


def test_default_init_returns_a_fresh_tensor_and_leaves_the_module_alone():
    torch.manual_seed(MODEL_SEED)
    layer = nn.Linear(50, 40)
    before = layer.weight.detach().clone()
    fresh = default_init(layer, "weight", layer.weight, generator=torch.Generator().manual_seed(1))
    assert type(fresh) is torch.Tensor and not fresh.requires_grad
    assert fresh.shape == layer.weight.shape and fresh.dtype == layer.weight.dtype
    assert torch.equal(layer.weight, before)
    assert fresh.abs().max() <= 1 / math.sqrt(50)
    again = default_init(layer, "weight", layer.weight, generator=torch.Generator().manual_seed(1))
    assert torch.equal(fresh, again)
    double = default_init(layer, "weight", layer.weight.double())
    assert double.dtype == torch.float64


# --------------------------------------------------------------------------- sign_preserving_reinit
def test_sign_preserving_reinit_keeps_signs_and_masks_with_new_magnitudes():
    net, init = pruned_net()
    kept = {q: init[q].clone() for q in NAMES}
    watch = MaskWatch(net, NAMES)
    assert sign_preserving_reinit(net, init, seed=3) is net
    watch.assert_unchanged()
    for qualified in NAMES:
        new = orig(net, qualified)
        assert torch.equal(torch.sign(new), torch.sign(init[qualified])), qualified
        assert int((new.abs() == init[qualified].abs()).sum()) == 0, qualified
        assert torch.equal(init[qualified], kept[qualified])  # the rewind point is read only
    assert_refreshed(net, NAMES)
    assert init.model is net


def test_sign_preserving_reinit_magnitudes_follow_the_default_distribution():
    torch.manual_seed(MODEL_SEED)
    layer = nn.Linear(1000, 1000)
    init = RewindPoint.capture(layer)
    sign_preserving_reinit(layer, init, seed=5)
    w = layer.weight.detach()
    bound = 1 / math.sqrt(1000)
    assert w.abs().max() <= bound * (1 + 1e-6)
    # |U(-b, b)| is U(0, b): mean b/2.
    assert abs(w.abs().mean().item() - bound / 2) < 0.01 * bound


def test_sign_preserving_reinit_counts_zero_as_positive():
    layer = nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.0, -1.0, 2.0], [-0.0, 3.0, -4.0]]))
    init = RewindPoint.capture(layer)
    sign_preserving_reinit(layer, init, seed=0)
    expected = torch.tensor([[1.0, -1.0, 1.0], [1.0, 1.0, -1.0]])
    assert torch.equal(torch.sign(layer.weight.detach()), expected)


def test_sign_preserving_reinit_is_reproducible():
    a, init_a = pruned_net()
    b, init_b = pruned_net()
    c, init_c = pruned_net()
    sign_preserving_reinit(a, init_a, seed=1)
    sign_preserving_reinit(b, init_b, seed=1)
    sign_preserving_reinit(c, init_c, seed=2)
    for qualified in NAMES:
        assert torch.equal(orig(a, qualified), orig(b, qualified))
        assert not torch.equal(orig(a, qualified), orig(c, qualified))


def test_sign_preserving_reinit_with_custom_init():
    net, init = pruned_net()
    sign_preserving_reinit(net, init, init=lambda t: nn.init.constant_(t, -0.3))
    for qualified in NAMES:
        expected = torch.where(init[qualified] < 0, -0.3, 0.3)
        assert torch.equal(orig(net, qualified), expected)


def test_sign_preserving_reinit_with_an_unbound_or_foreign_point(tmp_path):
    """A loaded (unbound) point, or one bound to a twin model, works and keeps its binding."""
    net, init = pruned_net()
    path = tmp_path / "init.pt"
    init.save(path)
    loaded = RewindPoint.load(path)
    sign_preserving_reinit(net, loaded, seed=1)
    assert loaded.model is None
    for qualified in NAMES:
        assert torch.equal(torch.sign(orig(net, qualified)), torch.sign(init[qualified]))

    twin, twin_init = pruned_net()
    sign_preserving_reinit(twin, init, seed=1)
    assert init.model is net
    for qualified in NAMES:
        assert torch.equal(orig(twin, qualified), orig(net, qualified))


def test_sign_preserving_reinit_of_chosen_parameters_only():
    net, init = pruned_net()
    before = state_of(net)
    sign_preserving_reinit(net, init, [(net.fc1, "weight")], seed=2)
    after = net.state_dict()
    changed = {k for k in before if not torch.equal(after[k], before[k])}
    assert changed == {"fc1.weight_orig"}


# --------------------------------------------------------------------------- signed_constant
def test_signed_constant_is_sign_times_std_per_tensor():
    net, init = pruned_net()
    watch = MaskWatch(net, NAMES)
    with torch.no_grad():
        for module, name in prunable_parameters(net):
            getattr(module, name + "_orig").mul_(5.0)  # stand-in for training
    assert signed_constant(net, init) is net
    watch.assert_unchanged()
    for qualified in NAMES:
        w_i = init[qualified]
        expected = torch.sign(w_i) * w_i.std()
        torch.testing.assert_close(orig(net, qualified), expected, rtol=1e-6, atol=0)
        values = orig(net, qualified).abs().unique()
        assert values.numel() == 1  # one constant magnitude per tensor
    stds = {q: float(init[q].std()) for q in NAMES}
    assert len(set(stds.values())) == len(NAMES)  # per tensor, not one global constant
    assert_refreshed(net, NAMES)


def test_signed_constant_of_chosen_parameters_only():
    net, init = pruned_net()
    before = state_of(net)
    signed_constant(net, init, [(net.conv, "weight")])
    after = net.state_dict()
    changed = {k for k in before if not torch.equal(after[k], before[k])}
    assert changed == {"conv.weight_orig"}


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call",
    [
        lambda init: random_reinit("net"),
        lambda init: random_reinit(init),
        lambda init: sign_preserving_reinit([nn.Linear(2, 2)], init),
        lambda init: signed_constant(None, init),
    ],
    ids=["random-str", "random-point", "sign-list", "signed-none"],
)
def test_model_must_be_a_module(call):
    _, init = pruned_net()
    with pytest.raises(TypeError, match="model"):
        call(init)


@pytest.mark.parametrize(
    "call",
    [
        lambda net, point: sign_preserving_reinit(net, point, seed=0),
        lambda net, point: signed_constant(net, point),
    ],
    ids=["sign_preserving_reinit", "signed_constant"],
)
@pytest.mark.parametrize("other_out", [4, None], ids=["other-shape", "other-names"])
def test_rewind_point_of_another_architecture(call, other_out):
    net, _ = pruned_net()
    if other_out is None:
        other = nn.Sequential(nn.Linear(16, 12))
        point, words = RewindPoint.capture(other), "'0.weight'"
    else:
        point, words = RewindPoint.capture(make_net(out=other_out)), r"'fc2\.weight'.*shape"
    before = state_of(net)
    with pytest.raises(ValueError, match=words):
        call(net, point)
    assert_state_equal(net, before)


@pytest.mark.parametrize(
    "call",
    [
        lambda net, init: random_reinit(net, init=3),
        lambda net, init: random_reinit(net, init="xavier_uniform_"),
        lambda net, init: sign_preserving_reinit(net, init, init=torch.ones(2)),
    ],
)
def test_init_must_be_callable(call):
    net, init = pruned_net()
    before = state_of(net)
    with pytest.raises(TypeError, match="init"):
        call(net, init)
    assert_state_equal(net, before)


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda net, init: sign_preserving_reinit(net, None), ValueError, "rewind_point"),
        (lambda net, init: signed_constant(net, None), ValueError, "rewind_point"),
        (lambda net, init: sign_preserving_reinit(net, dict(init.items())), TypeError, "rewind_point"),
        (lambda net, init: signed_constant(net, init["fc1.weight"]), TypeError, "rewind_point"),
        (lambda net, init: random_reinit(net, seed=1, generator=torch.Generator()), ValueError, "seed"),
        (lambda net, init: random_reinit(net, seed="1"), TypeError, "seed"),
        (lambda net, init: random_reinit(net, generator=1), TypeError, "generator"),
        (lambda net, init: random_reinit(net, "fc1.weight"), TypeError, "parameters"),
        (lambda net, init: random_reinit(net, [net.fc1]), TypeError, "parameters"),
        (lambda net, init: random_reinit(net, [("fc1", "weight")]), TypeError, "parameters"),
        (
            lambda net, init: signed_constant(net, init.select(prunable_parameters(net)), [(net.fc1, "bias")]),
            ValueError,
            "fc1.bias",
        ),
    ],
)
def test_bad_arguments_change_nothing(call, error, words):
    net, init = pruned_net()
    before = state_of(net)
    with pytest.raises(error, match=words):
        call(net, init)
    assert_state_equal(net, before)


@pytest.mark.parametrize(
    "call",
    [
        lambda net, init, params: random_reinit(net, params, seed=0),
        lambda net, init, params: sign_preserving_reinit(net, init, params, seed=0),
    ],
    ids=["random_reinit", "sign_preserving_reinit"],
)
def test_unknown_parameter_name_is_a_value_error(call):
    """Like every other entry point, a (module, name) pair naming no parameter is a ValueError."""
    net, init = pruned_net()
    before = state_of(net)
    with pytest.raises(ValueError, match="nope"):
        call(net, init, [(net.fc1, "weight"), (net.fc2, "nope")])
    assert_state_equal(net, before)
