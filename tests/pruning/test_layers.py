"""Every layer type users prune works with torch-lottery's methods.

For each layer (and for a model holding all of them, pruned with one global
threshold) the pruned module must compute exactly what an unpruned copy with
weights set by hand to ``mask * orig`` computes, before and after training; the
gradients must reach ``<name>_orig``; pruned entries must stay zero; the forward
pass must never use stale weights; and deep copies and rewind points must work.

``nn.MultiheadAttention`` gets its own tests: attention never calls
``out_proj.forward`` and has a fused inference fast path (pytorch issue 69353).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from torch_lottery import (
    RewindPoint,
    global_magnitude,
    lottery_magnitude,
    named_prunable_parameters,
    prunable_parameters,
)

AMOUNT = 0.5

pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported:UserWarning")


# --------------------------------------------------------------------------- helpers
def effective_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of ``model`` with every pruned tensor folded to ``mask * orig``."""
    state = model.state_dict()
    out = {}
    for key, value in state.items():
        if key.endswith("_mask") and key[: -len("_mask")] + "_orig" in state:
            continue
        if key.endswith("_orig") and key[: -len("_orig")] + "_mask" in state:
            base = key[: -len("_orig")]
            out[base] = value * state[base + "_mask"]
        else:
            out[key] = value
    return out


def dense_reference(template: nn.Module, pruned: nn.Module) -> nn.Module:
    """An unpruned copy of ``template`` whose tensors are set by hand to those of ``pruned``."""
    dense = copy.deepcopy(template)
    dense.load_state_dict(effective_state_dict(pruned))
    assert not any(name.endswith(("_orig", "_mask")) for name in dense.state_dict())
    return dense


def resolve(model: nn.Module, qualified: str) -> tuple[nn.Module, str]:
    prefix, _, name = qualified.rpartition(".")
    return model.get_submodule(prefix), name


def orig_of(model: nn.Module, qualified: str) -> torch.Tensor:
    module, name = resolve(model, qualified)
    return getattr(module, name + "_orig")


def mask_of(model: nn.Module, qualified: str) -> torch.Tensor:
    module, name = resolve(model, qualified)
    return getattr(module, name + "_mask")


def weight_of(model: nn.Module, qualified: str) -> torch.Tensor:
    module, name = resolve(model, qualified)
    return getattr(module, name)


def assert_same(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


# --------------------------------------------------------------------------- layer cases
@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[], nn.Module]
    names: tuple[str, ...]  # qualified names of the tensors pruned
    inputs: Callable[[torch.Generator], tuple]
    run: Callable[[nn.Module, tuple], torch.Tensor]


def _call(module, inputs):
    return module(*inputs)


def _rnn(module, inputs):
    return module(*inputs)[0]


def _attention(module, inputs):
    (x,) = inputs
    return module(x, x, x)[0]


def _randn(*shape):
    return lambda g: (torch.randn(*shape, generator=g),)


def _rnn_names(layers: int, bidirectional: bool) -> tuple[str, ...]:
    names = []
    for layer in range(layers):
        for suffix in ("", "_reverse") if bidirectional else ("",):
            names += [f"weight_ih_l{layer}{suffix}", f"weight_hh_l{layer}{suffix}"]
    return tuple(names)


CASES = [
    Case("linear", lambda: nn.Linear(6, 4), ("weight",), _randn(3, 6), _call),
    Case("conv1d", lambda: nn.Conv1d(3, 4, 3), ("weight",), _randn(2, 3, 8), _call),
    Case("conv2d", lambda: nn.Conv2d(2, 3, 3), ("weight",), _randn(2, 2, 6, 6), _call),
    Case("conv3d", lambda: nn.Conv3d(2, 3, 2), ("weight",), _randn(1, 2, 4, 4, 4), _call),
    Case(
        "embedding",
        lambda: nn.Embedding(12, 5),
        ("weight",),
        lambda g: (torch.randint(0, 12, (4, 6), generator=g),),
        _call,
    ),
    Case("lstm", lambda: nn.LSTM(5, 4), ("weight_ih_l0", "weight_hh_l0"), _randn(6, 2, 5), _rnn),
    Case(
        "lstm-2layer-bidirectional",
        lambda: nn.LSTM(5, 4, num_layers=2, bidirectional=True),
        _rnn_names(2, True),
        _randn(6, 2, 5),
        _rnn,
    ),
    Case("gru", lambda: nn.GRU(5, 4), ("weight_ih_l0", "weight_hh_l0"), _randn(6, 2, 5), _rnn),
    Case(
        "gru-2layer-bidirectional",
        lambda: nn.GRU(5, 4, num_layers=2, bidirectional=True),
        _rnn_names(2, True),
        _randn(6, 2, 5),
        _rnn,
    ),
    # Also documented as supported (docs/layers.md):
    Case("rnn", lambda: nn.RNN(5, 4), ("weight_ih_l0", "weight_hh_l0"), _randn(6, 2, 5), _rnn),
    Case(
        "lstm-proj_size",
        lambda: nn.LSTM(5, 4, proj_size=2),
        ("weight_ih_l0", "weight_hh_l0", "weight_hr_l0"),
        _randn(6, 2, 5),
        _rnn,
    ),
    Case("conv_transpose2d", lambda: nn.ConvTranspose2d(2, 3, 3), ("weight",), _randn(2, 2, 5, 5), _call),
    Case(
        "embedding_bag",
        lambda: nn.EmbeddingBag(12, 5),
        ("weight",),
        lambda g: (torch.randint(0, 12, (4, 6), generator=g),),
        _call,
    ),
    Case(
        "bilinear",
        lambda: nn.Bilinear(4, 3, 2),
        ("weight",),
        lambda g: (torch.randn(5, 4, generator=g), torch.randn(5, 3, generator=g)),
        _call,
    ),
    Case(
        "mha-in_proj_weight",
        lambda: nn.MultiheadAttention(8, 2, batch_first=True),
        ("in_proj_weight",),
        _randn(3, 5, 8),
        _attention,
    ),
    Case(
        "mha-out_proj.weight",
        lambda: nn.MultiheadAttention(8, 2, batch_first=True),
        ("out_proj.weight",),
        _randn(3, 5, 8),
        _attention,
    ),
    Case(
        "mha-both",
        lambda: nn.MultiheadAttention(8, 2, batch_first=True),
        ("in_proj_weight", "out_proj.weight"),
        _randn(3, 5, 8),
        _attention,
    ),
    Case(
        "mha-separate-qkv",
        lambda: nn.MultiheadAttention(8, 2, kdim=6, vdim=4, batch_first=True),
        ("q_proj_weight", "k_proj_weight", "v_proj_weight", "out_proj.weight"),
        lambda g: tuple(torch.randn(3, 5, d, generator=g) for d in (8, 6, 4)),
        lambda m, inputs: m(*inputs)[0],
    ),
]


def build(case: Case, seed: int = 0):
    """Return (template, module, inputs): ``template`` is an unpruned copy of ``module``."""
    torch.manual_seed(seed)
    module = case.make()
    template = copy.deepcopy(module)
    inputs = case.inputs(torch.Generator().manual_seed(seed + 1))
    return template, module, inputs


def prune_case(case: Case, module: nn.Module) -> None:
    for qualified in case.names:
        sub, name = resolve(module, qualified)
        returned = lottery_magnitude(sub, name, amount=AMOUNT)
        assert returned is sub


def loss_of(output: torch.Tensor) -> torch.Tensor:
    target = torch.linspace(-1, 1, output.numel()).view_as(output)
    return (output - target).square().mean()


def train_steps(module, run, inputs, steps: int, lr: float = 0.1, params=None) -> None:
    optimizer = torch.optim.SGD(module.parameters() if params is None else params, lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        loss_of(run(module, inputs)).backward()
        optimizer.step()


@pytest.fixture(params=CASES, ids=lambda c: c.id)
def case(request) -> Case:
    return request.param


# --------------------------------------------------------------------------- per layer
def test_prunable_parameters_lists_the_layer_weights(case):
    _, module, _ = build(case)
    listed = [q for q, _, _ in named_prunable_parameters(module)]
    for qualified in case.names:
        assert qualified in listed


def test_pruning_installs_the_stock_layout(case):
    _, module, _ = build(case)
    before = {q: weight_of(module, q).detach().clone() for q in case.names}
    prune_case(case, module)
    for qualified in case.names:
        sub, name = resolve(module, qualified)
        assert name + "_orig" in sub._parameters and name not in sub._parameters
        assert name + "_mask" in sub._buffers
        mask = mask_of(module, qualified)
        numel = mask.numel()
        assert int(mask.sum()) == numel - round(AMOUNT * numel)
        # The survivors are the largest magnitudes, and the tensor itself is unchanged.
        assert_same(orig_of(module, qualified).detach(), before[qualified])
        kept = before[qualified].abs()[mask.bool()]
        dropped = before[qualified].abs()[~mask.bool()]
        assert kept.min() >= dropped.max()


def test_forward_equals_dense_reference(case):
    template, module, inputs = build(case)
    prune_case(case, module)
    dense = dense_reference(template, module)
    assert_same(case.run(module, inputs), case.run(dense, inputs))
    for qualified in case.names:
        assert_same(
            weight_of(module, qualified).detach(), mask_of(module, qualified) * orig_of(module, qualified).detach()
        )


def test_forward_differs_from_unpruned(case):
    """Guards the reference test: pruning half of the tensor changes the output."""
    template, module, inputs = build(case)
    prune_case(case, module)
    assert not torch.equal(case.run(module, inputs), case.run(template, inputs))


def test_gradients_reach_orig_and_only_at_survivors(case):
    _, module, inputs = build(case)
    prune_case(case, module)
    loss_of(case.run(module, inputs)).backward()
    for qualified in case.names:
        orig = orig_of(module, qualified)
        mask = mask_of(module, qualified).bool()
        assert orig.grad is not None, qualified
        assert torch.count_nonzero(orig.grad[mask]) > 0, qualified
        assert torch.count_nonzero(orig.grad[~mask]) == 0, qualified
        assert mask_of(module, qualified).grad is None


def test_training_updates_survivors_and_keeps_pruned_entries_zero(case):
    template, module, inputs = build(case)
    prune_case(case, module)
    first = {q: orig_of(module, q).detach().clone() for q in case.names}
    masks = {q: mask_of(module, q).clone() for q in case.names}
    train_steps(module, case.run, inputs, steps=4)
    output = case.run(module, inputs)
    for qualified in case.names:
        mask = masks[qualified].bool()
        orig = orig_of(module, qualified).detach()
        assert torch.equal(mask_of(module, qualified), masks[qualified]), "training changed the mask"
        assert torch.equal(orig[~mask], first[qualified][~mask]), "pruned entries of _orig moved"
        assert not torch.equal(orig[mask], first[qualified][mask]), "survivors did not train"
        weight = weight_of(module, qualified).detach()
        assert torch.count_nonzero(weight[~mask]) == 0
        assert_same(weight, masks[qualified] * orig)
    assert_same(output, case.run(dense_reference(template, module), inputs))


def test_forward_uses_new_weights_after_each_step(case):
    """No stale weights: after every optimizer step the next forward sees ``mask * new orig``."""
    template, module, inputs = build(case)
    prune_case(case, module)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        output = case.run(module, inputs)
        used = {q: weight_of(module, q).detach().clone() for q in case.names}
        loss_of(output).backward()
        optimizer.step()
        after = case.run(module, inputs)
        assert not torch.equal(after, output)
        assert_same(after, case.run(dense_reference(template, module), inputs))
        for qualified in case.names:
            now = weight_of(module, qualified).detach()
            assert not torch.equal(now, used[qualified]), f"{qualified} is stale after the step"
            assert_same(now, mask_of(module, qualified) * orig_of(module, qualified).detach())


def test_deepcopy_after_training(case):
    _, module, inputs = build(case)
    prune_case(case, module)
    train_steps(module, case.run, inputs, steps=2)
    output = case.run(module, inputs)  # leaves a graph on the computed weights
    assert weight_of(module, case.names[0]).grad_fn is not None

    clone = copy.deepcopy(module)
    assert_same(case.run(clone, inputs), output)
    for qualified in case.names:
        assert torch.equal(mask_of(clone, qualified), mask_of(module, qualified))
        assert torch.equal(orig_of(clone, qualified), orig_of(module, qualified))
        assert orig_of(clone, qualified).data_ptr() != orig_of(module, qualified).data_ptr()

    # The copy trains on its own: the original does not move, and the copy keeps its mask.
    snapshot = {q: orig_of(module, q).detach().clone() for q in case.names}
    train_steps(clone, case.run, inputs, steps=1)
    for qualified in case.names:
        assert torch.equal(orig_of(module, qualified), snapshot[qualified])
        mask = mask_of(clone, qualified).bool()
        assert torch.count_nonzero(weight_of(clone, qualified).detach()[~mask]) == 0
    assert_same(case.run(module, inputs), output)


def test_rewind_point_capture_restore_round_trip(case):
    template, module, inputs = build(case)
    init = RewindPoint.capture(module)
    for qualified in case.names:
        assert qualified in init
    prune_case(case, module)
    masks = {q: mask_of(module, q).clone() for q in case.names}
    train_steps(module, case.run, inputs, steps=2)
    assert not torch.equal(orig_of(module, case.names[0]), init[case.names[0]])

    assert init.restore() is module
    for qualified in case.names:
        assert torch.equal(orig_of(module, qualified), init[qualified])
        assert torch.equal(mask_of(module, qualified), masks[qualified])
        assert_same(weight_of(module, qualified).detach(), masks[qualified] * init[qualified])
    # The rewound ticket computes what the initial weights under the mask compute.
    template.load_state_dict(effective_state_dict(module))
    assert_same(case.run(module, inputs), case.run(template, inputs))


def test_lottery_magnitude_rewinds_each_layer_type(case):
    """One IMP round: prune the trained tensor and reset it to the rewind point in the same call."""
    _, module, inputs = build(case)
    init = RewindPoint.capture(module)
    train_steps(module, case.run, inputs, steps=2)
    trained = {q: weight_of(module, q).detach().clone() for q in case.names}
    for qualified in case.names:
        sub, name = resolve(module, qualified)
        lottery_magnitude(sub, name, amount=AMOUNT, rewind_point=init)
    for qualified in case.names:
        mask = mask_of(module, qualified).bool()
        assert torch.equal(orig_of(module, qualified), init[qualified])
        # The mask comes from the trained weights, not the rewound ones.
        assert trained[qualified].abs()[mask].min() >= trained[qualified].abs()[~mask].max()
    case.run(module, inputs)
    for qualified in case.names:
        assert_same(weight_of(module, qualified).detach(), mask_of(module, qualified) * init[qualified])


# --------------------------------------------------------------------------- one model, one pool
class AllLayers(nn.Module):
    """A small model holding every layer type above; each layer reads its own input."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, 4)
        self.conv1d = nn.Conv1d(3, 4, 3)
        self.conv2d = nn.Conv2d(2, 3, 3)
        self.conv3d = nn.Conv3d(2, 3, 2)
        self.embedding = nn.Embedding(12, 5)
        self.lstm = nn.LSTM(5, 4)
        self.lstm2 = nn.LSTM(5, 4, num_layers=2, bidirectional=True)
        self.gru = nn.GRU(5, 4)
        self.gru2 = nn.GRU(5, 4, num_layers=2, bidirectional=True)
        self.attention = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x):
        seq = self.embedding(x["tokens"])  # (4, 6, 5), used as (time, batch, feature)
        a, _ = self.attention(x["att"], x["att"], x["att"])
        outs = [
            self.linear(x["linear"]),
            self.conv1d(x["conv1d"]),
            self.conv2d(x["conv2d"]),
            self.conv3d(x["conv3d"]),
            self.lstm(seq)[0],
            self.lstm2(seq)[0],
            self.gru(seq)[0],
            self.gru2(seq)[0],
            a,
        ]
        return torch.cat([o.reshape(-1) for o in outs])


ALL_NAMES = [
    "linear.weight",
    "conv1d.weight",
    "conv2d.weight",
    "conv3d.weight",
    "embedding.weight",
    "lstm.weight_ih_l0",
    "lstm.weight_hh_l0",
    *(f"lstm2.{n}" for n in _rnn_names(2, True)),
    "gru.weight_ih_l0",
    "gru.weight_hh_l0",
    *(f"gru2.{n}" for n in _rnn_names(2, True)),
    "attention.in_proj_weight",
    "attention.out_proj.weight",
]


def all_layers(seed: int = 0):
    torch.manual_seed(seed)
    model = AllLayers()
    template = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed + 1)
    inputs = {
        "linear": torch.randn(3, 6, generator=g),
        "conv1d": torch.randn(2, 3, 8, generator=g),
        "conv2d": torch.randn(2, 2, 6, 6, generator=g),
        "conv3d": torch.randn(1, 2, 4, 4, 4, generator=g),
        "tokens": torch.randint(0, 12, (4, 6), generator=g),
        "att": torch.randn(3, 5, 8, generator=g),
    }
    return template, model, inputs


def _model_run(model, inputs):
    return model(inputs)


def test_all_layers_model_lists_every_prunable_weight():
    _, model, _ = all_layers()
    assert [q for q, _, _ in named_prunable_parameters(model)] == ALL_NAMES
    assert len(prunable_parameters(model)) == len(ALL_NAMES)


def test_global_magnitude_over_all_layer_types():
    template, model, inputs = all_layers()
    before = {q: weight_of(model, q).detach().clone() for q in ALL_NAMES}
    assert global_magnitude(prunable_parameters(model), amount=AMOUNT) is None

    total = sum(t.numel() for t in before.values())
    alive = sum(int(mask_of(model, q).sum()) for q in ALL_NAMES)
    assert alive == total - round(AMOUNT * total)
    # One threshold over the pool: every survivor is at least as large as every pruned entry.
    kept = torch.cat([before[q].abs()[mask_of(model, q).bool()] for q in ALL_NAMES])
    dropped = torch.cat([before[q].abs()[~mask_of(model, q).bool()] for q in ALL_NAMES])
    assert kept.min() >= dropped.max()
    for qualified in ALL_NAMES:
        assert int(mask_of(model, qualified).sum()) > 0, qualified  # min_remaining=1
        assert_same(orig_of(model, qualified).detach(), before[qualified])

    assert_same(model(inputs), dense_reference(template, model)(inputs))


def test_global_magnitude_model_trains_without_stale_weights():
    template, model, inputs = all_layers()
    global_magnitude(prunable_parameters(model), amount=AMOUNT)
    masks = {q: mask_of(model, q).clone() for q in ALL_NAMES}
    first = {q: orig_of(model, q).detach().clone() for q in ALL_NAMES}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        output = model(inputs)
        used = {q: weight_of(model, q).detach().clone() for q in ALL_NAMES}
        loss_of(output).backward()
        for qualified in ALL_NAMES:
            grad = orig_of(model, qualified).grad
            assert grad is not None, qualified
            assert torch.count_nonzero(grad[~masks[qualified].bool()]) == 0, qualified
        optimizer.step()
        after = model(inputs)
        assert_same(after, dense_reference(template, model)(inputs))
        for qualified in ALL_NAMES:
            now = weight_of(model, qualified).detach()
            assert not torch.equal(now, used[qualified]), f"{qualified} is stale"
            assert torch.count_nonzero(now[~masks[qualified].bool()]) == 0
    for qualified in ALL_NAMES:
        mask = masks[qualified].bool()
        assert torch.equal(mask_of(model, qualified), masks[qualified])
        assert not torch.equal(orig_of(model, qualified)[mask], first[qualified][mask]), qualified


def test_global_magnitude_model_deepcopy_after_training():
    _, model, inputs = all_layers()
    global_magnitude(prunable_parameters(model), amount=AMOUNT)
    train_steps(model, _model_run, inputs, steps=2)
    output = model(inputs)
    clone = copy.deepcopy(model)
    assert_same(clone(inputs), output)
    for qualified in ALL_NAMES:
        assert torch.equal(mask_of(clone, qualified), mask_of(model, qualified))
        assert torch.equal(orig_of(clone, qualified), orig_of(model, qualified))
    train_steps(clone, _model_run, inputs, steps=1)
    assert_same(model(inputs), output)
    assert not torch.equal(clone(inputs), output)


def test_global_magnitude_model_rewind_round_trip():
    template, model, inputs = all_layers()
    init = RewindPoint.capture(model)
    assert set(ALL_NAMES) <= set(init)  # every parameter: the prunable weights, biases, ...
    global_magnitude(prunable_parameters(model), amount=AMOUNT)
    masks = {q: mask_of(model, q).clone() for q in ALL_NAMES}
    train_steps(model, _model_run, inputs, steps=2)
    init.restore(model)
    for qualified in ALL_NAMES:
        assert torch.equal(orig_of(model, qualified), init[qualified])
        assert torch.equal(mask_of(model, qualified), masks[qualified])
    template.load_state_dict(effective_state_dict(model))
    assert_same(model(inputs), template(inputs))


def test_global_magnitude_with_rewind_point_over_all_layer_types():
    _, model, inputs = all_layers()
    init = RewindPoint.capture(model)
    train_steps(model, _model_run, inputs, steps=2)
    trained = {q: weight_of(model, q).detach().clone() for q in ALL_NAMES}
    global_magnitude(prunable_parameters(model), amount=AMOUNT, rewind_point=init)
    kept = torch.cat([trained[q].abs()[mask_of(model, q).bool()] for q in ALL_NAMES])
    dropped = torch.cat([trained[q].abs()[~mask_of(model, q).bool()] for q in ALL_NAMES])
    assert kept.min() >= dropped.max()
    model(inputs)
    for qualified in ALL_NAMES:
        assert torch.equal(orig_of(model, qualified), init[qualified])
        assert_same(weight_of(model, qualified).detach(), mask_of(model, qualified) * init[qualified])


# --------------------------------------------------------------------------- MultiheadAttention
def pruned_attention(seed: int = 0):
    """A pruned self-attention module, its unpruned template and a batch-first input."""
    torch.manual_seed(seed)
    mha = nn.MultiheadAttention(8, 2, batch_first=True)
    template = copy.deepcopy(mha)
    lottery_magnitude(mha, "in_proj_weight", amount=AMOUNT)
    lottery_magnitude(mha.out_proj, "weight", amount=AMOUNT)
    x = torch.randn(3, 5, 8, generator=torch.Generator().manual_seed(seed + 1))
    return template, mha, x


@pytest.fixture
def fast_path_calls(monkeypatch):
    """Record every call of the fused attention kernel, ``torch._native_multi_head_attention``."""
    calls = []
    native = torch._native_multi_head_attention

    def recording(*args, **kwargs):
        calls.append(args)
        return native(*args, **kwargs)

    monkeypatch.setattr(torch, "_native_multi_head_attention", recording)
    return calls


def _masked(module: nn.Module, name: str) -> torch.Tensor:
    return getattr(module, name + "_mask") * getattr(module, name + "_orig").detach()


MODES = {
    "train": (True, torch.enable_grad, False),
    "eval-with-grad": (False, torch.enable_grad, False),
    "eval-no_grad-fast-path": (False, torch.no_grad, True),
    "eval-inference_mode-fast-path": (False, torch.inference_mode, True),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_attention_sees_masked_weights(mode, fast_path_calls):
    training, context, fast = MODES[mode]
    template, mha, x = pruned_attention()
    dense = dense_reference(template, mha)
    mha.train(training)
    dense.train(training)
    with context():
        out, weights = mha(x, x, x)
    assert len(fast_path_calls) == (1 if fast else 0)
    if fast:
        # The kernel got the masked projections, not the dense ones.
        args = fast_path_calls[0]
        assert_same(args[5], _masked(mha, "in_proj_weight"))
        assert_same(args[7], _masked(mha.out_proj, "weight"))
    with context():
        ref_out, ref_weights = dense(x, x, x)
    assert_same(out, ref_out)
    assert_same(weights, ref_weights)
    with context():
        unpruned = template(x, x, x)[0]
    assert not torch.equal(out, unpruned)


def test_attention_fast_path_after_training_uses_new_weights(fast_path_calls):
    template, mha, x = pruned_attention()
    train_steps(mha, _attention, (x,), steps=2)
    mha.eval()
    with torch.inference_mode():
        out = mha(x, x, x)[0]
    assert len(fast_path_calls) == 1
    args = fast_path_calls[0]
    assert_same(args[5], _masked(mha, "in_proj_weight"))
    assert_same(args[7], _masked(mha.out_proj, "weight"))
    dense = dense_reference(template, mha).eval()
    with torch.inference_mode():
        assert_same(out, dense(x, x, x)[0])
    # Back to training after inference mode: the graph reaches _orig again.
    mha.train()
    loss_of(mha(x, x, x)[0]).backward()
    assert mha.out_proj.weight_orig.grad is not None
    assert mha.in_proj_weight_orig.grad is not None


def test_out_proj_masked_weight_follows_training():
    template, mha, x = pruned_attention()
    out_proj = mha.out_proj
    mask = out_proj.weight_mask.clone()
    optimizer = torch.optim.SGD([out_proj.weight_orig], lr=0.5)

    loss_of(mha(x, x, x)[0]).backward()
    assert out_proj.weight_orig.grad is not None
    assert torch.count_nonzero(out_proj.weight_orig.grad[~mask.bool()]) == 0
    used = out_proj.weight.detach().clone()
    optimizer.step()
    optimizer.zero_grad()

    out = mha(x, x, x)[0]
    new = mask * out_proj.weight_orig.detach()
    assert not torch.equal(new, used)
    assert_same(out_proj.weight.detach(), new)
    dense = copy.deepcopy(template)
    with torch.no_grad():  # the reference, updated by hand
        dense.in_proj_weight.copy_(_masked(mha, "in_proj_weight"))
        dense.out_proj.weight.copy_(new)
    assert_same(out, dense(x, x, x)[0])

    # A second backward goes through a fresh graph (a stale weight would raise here).
    loss_of(out).backward()
    assert torch.count_nonzero(out_proj.weight_orig.grad) > 0
    optimizer.step()
    assert_same(mha(x, x, x)[0], dense_reference(template, mha)(x, x, x)[0])


def test_out_proj_pruned_alone_is_refreshed_in_every_mode(fast_path_calls):
    """Pruning only ``out_proj`` (no hook on the attention module itself) still takes effect."""
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=True)
    template = copy.deepcopy(mha)
    lottery_magnitude(mha.out_proj, "weight", amount=AMOUNT)
    x = torch.randn(3, 5, 8, generator=torch.Generator().manual_seed(1))
    train_steps(mha, _attention, (x,), steps=1, params=[mha.out_proj.weight_orig])
    dense = dense_reference(template, mha)
    assert_same(mha(x, x, x)[0], dense(x, x, x)[0])
    train_steps(mha, _attention, (x,), steps=1, params=[mha.out_proj.weight_orig])
    mha.eval()
    dense = dense_reference(template, mha).eval()
    with torch.no_grad():
        out = mha(x, x, x)[0]
        assert len(fast_path_calls) == 1
        assert_same(fast_path_calls[0][7], _masked(mha.out_proj, "weight"))
        assert_same(out, dense(x, x, x)[0])
