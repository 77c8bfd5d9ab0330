"""RewindPoint: capture, restore (``_orig`` only, never the mask), late resetting, files, binding."""

from __future__ import annotations

import copy
import gc

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from torch_lottery import RewindPoint, lottery_magnitude, prunable_parameters

from helpers import assert_state_equal, state_of


# --------------------------------------------------------------------------- helpers
class Net(nn.Module):
    def __init__(self, out: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten())
        self.fc1 = nn.Linear(12, 6)
        self.fc2 = nn.Linear(6, out)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(self.features(x))))


NAMES = ["features.0.weight", "fc1.weight", "fc2.weight"]
EVERY = ["features.0.weight", "features.0.bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]


def make_net(seed: int = 0, out: int = 2) -> Net:
    torch.manual_seed(seed)
    return Net(out)


def batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 1, 4, 4, generator=g), torch.randn(8, 2, generator=g)


def sgd_steps(model: nn.Module, steps: int, lr: float = 0.1) -> None:
    x, y = batch()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        (model(x) - y).square().mean().backward()
        optimizer.step()


def tensor_of(model: nn.Module, qualified: str) -> torch.Tensor:
    prefix, _, name = qualified.rpartition(".")
    module = model.get_submodule(prefix)
    orig = module._parameters.get(name + "_orig")
    return orig if orig is not None else module._parameters[name]


def prune_all(model: nn.Module, amount: float = 0.5) -> None:
    for module, name in prunable_parameters(model):
        lottery_magnitude(module, name, amount=amount)


# --------------------------------------------------------------------------- capture
def test_capture_defaults_to_every_parameter_in_order():
    net = make_net()
    point = RewindPoint.capture(net)
    assert list(point) == EVERY
    assert list(point.keys()) == EVERY
    assert [k for k, _ in point.items()] == EVERY
    assert len(point) == 6
    assert "fc1.weight" in point and "fc1.bias" in point and "fc1.running_mean" not in point
    assert point.iteration == 0
    assert point.model is net
    assert repr(point) == "RewindPoint(iteration=0, tensors=6, bound)"
    for qualified in EVERY:
        assert torch.equal(point[qualified], tensor_of(net, qualified))
        assert not point[qualified].requires_grad


def test_restore_rewinds_biases_too_in_a_hand_written_loop():
    net = make_net()
    init = RewindPoint.capture(net)
    sgd_steps(net, 3)
    prune_all(net)
    assert not torch.equal(net.fc1.bias, init["fc1.bias"])  # training moved them
    init.restore(net)
    for qualified in EVERY:
        assert torch.equal(tensor_of(net, qualified), init[qualified]), qualified


def test_capture_with_buffers_rewinds_batchnorm_statistics_but_never_masks():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2))
    init = RewindPoint.capture(net, buffers=True)
    assert {"1.running_mean", "1.running_var", "1.num_batches_tracked"} <= set(init)
    net(torch.randn(16, 4))  # training mode: the running statistics move
    lottery_magnitude(net[0], "weight", amount=0.5)
    mask = net[0].weight_mask.clone()
    assert not torch.equal(net[1].running_mean, init["1.running_mean"])
    assert "0.weight_mask" not in RewindPoint.capture(net, buffers=True)
    init.restore(net)
    for key in ("1.running_mean", "1.running_var", "1.num_batches_tracked", "0.weight", "1.weight"):
        assert torch.equal(
            tensor_of(net, key)
            if not key.startswith("1.r") and "num" not in key
            else net.get_submodule("1")._buffers[key.split(".")[1]],
            init[key],
        ), key
    assert torch.equal(net[0].weight_mask, mask)


def test_capture_of_a_pruned_model_uses_plain_names_and_orig_values():
    net = make_net()
    prune_all(net)
    with torch.no_grad():
        net.fc1.weight_orig.add_(1.0)  # differs from the masked net.fc1.weight
    point = RewindPoint.capture(net)
    assert sorted(point) == sorted(EVERY)
    assert torch.equal(point["fc1.weight"], net.fc1.weight_orig)
    assert not torch.equal(point["fc1.weight"], net.fc1.weight_mask * net.fc1.weight_orig)


def test_capture_of_chosen_parameters_keeps_their_order():
    net = make_net()
    params = [(net.fc2, "weight"), (net.fc1, "bias"), (net.features[0], "weight")]
    point = RewindPoint.capture(net, params, iteration=4)
    assert list(point) == ["fc2.weight", "fc1.bias", "features.0.weight"]
    assert point.iteration == 4
    assert torch.equal(point["fc1.bias"], net.fc1.bias)
    assert point.pairs() == params


def test_capture_of_the_model_itself_uses_bare_names():
    layer = nn.Linear(3, 2)
    point = RewindPoint.capture(layer)
    assert list(point) == ["weight", "bias"]
    assert RewindPoint.capture(layer, [(layer, "bias")]).pairs() == [(layer, "bias")]


def test_captured_values_are_copies():
    net = make_net()
    point = RewindPoint.capture(net)
    kept = {k: v.clone() for k, v in point.items()}
    for qualified in NAMES:
        assert point[qualified].data_ptr() != tensor_of(net, qualified).data_ptr()
    sgd_steps(net, 3)
    with torch.no_grad():
        net.fc2.weight.mul_(-2.0)
    for qualified in NAMES:
        assert not torch.equal(tensor_of(net, qualified), kept[qualified])
        assert torch.equal(point[qualified], kept[qualified])


def test_capture_device_argument_keeps_copies_there():
    net = make_net()
    point = RewindPoint.capture(net, device="cpu")
    assert all(t.device.type == "cpu" for _, t in point.items())
    assert point["fc1.weight"].data_ptr() != net.fc1.weight.data_ptr()


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda net: RewindPoint.capture("net"), TypeError, "model"),
        (lambda net: RewindPoint.capture(net, iteration=-1), ValueError, "iteration"),
        (lambda net: RewindPoint.capture(net, iteration=2.0), TypeError, "iteration"),
        (lambda net: RewindPoint.capture(net, ["fc1"]), TypeError, "parameters"),
        (lambda net: RewindPoint.capture(net, [(net.fc1, "nope")]), ValueError, "fc1.nope"),
        (lambda net: RewindPoint.capture(net, [(net.features[1], "weight")]), ValueError, "features.1.weight"),
        (lambda net: RewindPoint.capture(net, [(nn.Linear(2, 2), "weight")]), ValueError, "not part of model"),
    ],
)
def test_capture_bad_arguments(call, error, words):
    net = make_net()
    before = state_of(net)
    with pytest.raises(error, match=words):
        call(net)
    assert_state_equal(net, before)


# --------------------------------------------------------------------------- constructor
@pytest.mark.parametrize(
    "args, error, words",
    [
        (([("w", torch.ones(2))],), TypeError, "tensors"),
        (("w",), TypeError, "tensors"),
        (({1: torch.ones(2)},), TypeError, "tensors"),
        (({"w": [1.0, 2.0]},), TypeError, "tensors"),
        (({"w": torch.ones(2)}, -1), ValueError, "iteration"),
        (({"w": torch.ones(2)}, 1.5), TypeError, "iteration"),
        (({"w": torch.ones(2)}, True), TypeError, "iteration"),
        (({"w": torch.ones(2)}, "3"), TypeError, "iteration"),
    ],
)
def test_constructor_bad_arguments(args, error, words):
    with pytest.raises(error, match=words):
        RewindPoint(*args)


def test_constructor_with_model_binds_and_checks_it():
    net = make_net()
    tensors = {q: tensor_of(net, q).detach().clone() for q in NAMES}
    point = RewindPoint(tensors, iteration=2, model=net)
    assert point.model is net and point.iteration == 2
    with pytest.raises(ValueError, match="fc2.weight"):
        RewindPoint(tensors, model=make_net(out=3))
    unbound = RewindPoint(tensors)
    assert unbound.model is None
    assert repr(unbound) == "RewindPoint(iteration=0, tensors=3, unbound)"


# --------------------------------------------------------------------------- restore
def test_restore_writes_orig_and_never_the_mask():
    net = make_net()
    init = RewindPoint.capture(net)
    prune_all(net)
    masks = {q: net.get_submodule(q.rpartition(".")[0]).get_buffer(q.rpartition(".")[2] + "_mask") for q in NAMES}
    mask_values = {q: m.clone() for q, m in masks.items()}
    versions = {q: m._version for q, m in masks.items()}
    sgd_steps(net, 3)
    assert not torch.equal(net.fc1.weight_orig, init["fc1.weight"])

    assert init.restore() is net
    for qualified in NAMES:
        prefix, _, name = qualified.rpartition(".")
        module = net.get_submodule(prefix)
        mask = getattr(module, name + "_mask")
        assert mask is masks[qualified], "restore replaced the mask buffer"
        assert mask._version == versions[qualified], "restore wrote into the mask"
        assert torch.equal(mask, mask_values[qualified])
        orig = getattr(module, name + "_orig")
        assert torch.equal(orig, init[qualified])
        survivors = mask.bool()
        assert torch.equal(getattr(module, name)[survivors], init[qualified][survivors])
        # module.<name> is recomputed at once, before any forward pass.
        assert torch.equal(getattr(module, name), mask * init[qualified])
        assert torch.count_nonzero(getattr(module, name)[~survivors]) == 0


def test_restore_keeps_parameter_objects_so_optimizers_still_work():
    net = make_net()
    init = RewindPoint.capture(net)
    prune_all(net)
    params = {n: p for n, p in net.named_parameters()}
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    sgd_steps(net, 2)
    init.restore()
    assert {n: p for n, p in net.named_parameters()} == params
    x, y = batch()
    optimizer.zero_grad()
    (net(x) - y).square().mean().backward()
    optimizer.step()
    assert not torch.equal(net.fc1.weight_orig, init["fc1.weight"])  # the optimizer sees the tensor


def test_restore_on_tensors_pruned_by_stock_methods():
    net = make_net()
    init = RewindPoint.capture(net)
    prune.l1_unstructured(net.features[0], "weight", amount=0.4)
    params = [(net.fc1, "weight"), (net.fc2, "weight")]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=0.5)
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=0.2)
    masks = {q: getattr(net.get_submodule(q.rpartition(".")[0]), q.rpartition(".")[2] + "_mask").clone() for q in NAMES}
    sgd_steps(net, 3)

    init.restore()
    x, _ = batch()
    out = net(x)
    for qualified in NAMES:
        prefix, _, name = qualified.rpartition(".")
        module = net.get_submodule(prefix)
        assert torch.equal(getattr(module, name + "_orig"), init[qualified])
        assert torch.equal(getattr(module, name + "_mask"), masks[qualified])
        assert torch.equal(getattr(module, name), masks[qualified] * init[qualified])
    # The stock hooks still work after restore: the forward pass uses the rewound ticket.
    dense = make_net()
    dense.load_state_dict({k: v for k, v in _folded(net).items()})
    torch.testing.assert_close(out, dense(x), rtol=0, atol=0)


def _folded(model: nn.Module) -> dict[str, torch.Tensor]:
    state = model.state_dict()
    out = {}
    for key, value in state.items():
        if key.endswith("_mask"):
            continue
        if key.endswith("_orig"):
            out[key[:-5]] = value * state[key[:-5] + "_mask"]
        else:
            out[key] = value
    return out


def test_restore_on_unpruned_tensors():
    net = make_net()
    init = RewindPoint.capture(net)
    weight = net.fc1.weight
    sgd_steps(net, 3)
    init.restore()
    assert net.fc1.weight is weight
    assert isinstance(net.fc1.weight, nn.Parameter)
    for qualified in NAMES:
        assert torch.equal(tensor_of(net, qualified), init[qualified])
    assert not hasattr(net.fc1, "weight_mask")


def test_restore_into_another_model_of_the_same_architecture():
    source, target = make_net(0), make_net(1)
    init = RewindPoint.capture(source)
    prune_all(target)
    init.restore(target)
    for qualified in NAMES:
        assert torch.equal(tensor_of(target, qualified), init[qualified])
    assert init.model is source  # restoring elsewhere does not rebind


def test_restore_only_touches_the_captured_tensors():
    net = make_net()
    init = RewindPoint.capture(net, [(net.fc1, "weight")])
    sgd_steps(net, 2)
    before = state_of(net)
    init.restore()
    after = net.state_dict()
    for key in before:
        if key == "fc1.weight":
            assert torch.equal(after[key], init["fc1.weight"])
            assert not torch.equal(after[key], before[key])
        else:
            assert torch.equal(after[key], before[key]), key


@pytest.mark.parametrize(
    "other, words",
    [
        (lambda: make_net(out=3), r"fc2\.weight.*shape"),
        (lambda: nn.Sequential(nn.Linear(12, 6)), "features.0.weight"),
        (lambda: _renamed(), "fc1.weight"),
    ],
    ids=["different-shape", "missing-tensors", "renamed-layer"],
)
def test_restore_into_another_architecture_fails_and_changes_nothing(other, words):
    init = RewindPoint.capture(make_net())
    target = other()
    prune_all(target)
    before = state_of(target)
    with pytest.raises(ValueError, match=words):
        init.restore(target)
    assert_state_equal(target, before)


class _Renamed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 3, 3))
        self.hidden = nn.Linear(12, 6)
        self.fc2 = nn.Linear(6, 2)


def _renamed() -> nn.Module:
    torch.manual_seed(5)
    return _Renamed()


def test_restore_writes_a_buffer_of_the_same_name():
    init = RewindPoint({"scale": torch.ones(3)})
    target = nn.Module()
    target.register_buffer("scale", torch.zeros(3))
    init.restore(target)
    assert torch.equal(target.scale, torch.ones(3))


def test_restore_of_a_tensor_the_model_lacks_changes_nothing():
    init = RewindPoint({"scale": torch.ones(3), "shift": torch.ones(2)})
    target = nn.Module()
    target.register_buffer("scale", torch.zeros(3))
    with pytest.raises(ValueError, match="'shift'"):
        init.restore(target)
    assert torch.equal(target.scale, torch.zeros(3))


def test_restore_converts_dtype():
    net = make_net()
    init = RewindPoint.capture(net)
    twin = copy.deepcopy(net).double()
    with torch.no_grad():
        twin.fc1.weight.zero_()
    init.restore(twin)
    assert twin.fc1.weight.dtype == torch.float64
    assert torch.equal(twin.fc1.weight, init["fc1.weight"].double())


def test_restore_of_an_unbound_point_without_a_model_asks_to_bind():
    net = make_net()
    unbound = RewindPoint(RewindPoint.capture(net).state_dict()["tensors"])
    with pytest.raises(ValueError, match="bind"):
        unbound.restore()
    assert unbound.restore(net) is net


def test_point_does_not_keep_its_model_alive():
    net = make_net()
    point = RewindPoint.capture(net)
    del net
    gc.collect()
    assert point.model is None
    with pytest.raises(ValueError, match="bind"):
        point.restore()


# --------------------------------------------------------------------------- late resetting
@pytest.mark.parametrize("k", [1, 3])
def test_late_resetting_restores_iteration_k(k):
    net = make_net()
    sgd_steps(net, k)
    expected = {q: tensor_of(net, q).detach().clone() for q in NAMES}
    assert not torch.equal(expected["fc1.weight"], make_net().fc1.weight)
    point = RewindPoint.capture(net, iteration=k)
    sgd_steps(net, 5)
    prune_all(net)
    sgd_steps(net, 2)

    point.restore()
    assert point.iteration == k
    for qualified in NAMES:
        assert torch.equal(tensor_of(net, qualified), expected[qualified])


def test_late_resetting_through_lottery_magnitude():
    net = make_net()
    sgd_steps(net, 2)
    point = RewindPoint.capture(net, iteration=2)
    at_k = {q: tensor_of(net, q).detach().clone() for q in NAMES}
    sgd_steps(net, 4)
    for module, name in prunable_parameters(net):
        lottery_magnitude(module, name, amount=0.5, rewind_point=point)
    for qualified in NAMES:
        assert torch.equal(tensor_of(net, qualified), at_k[qualified])


# --------------------------------------------------------------------------- files
def test_save_load_round_trip(tmp_path):
    net = make_net()
    sgd_steps(net, 3)
    point = RewindPoint.capture(net, iteration=3)
    path = tmp_path / "point.pt"
    assert point.save(path) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["point.pt"]  # no temporary file left

    loaded = RewindPoint.load(path)
    assert loaded.iteration == 3
    assert list(loaded) == list(point)
    for qualified in point:
        assert torch.equal(loaded[qualified], point[qualified])
        assert loaded[qualified].dtype == point[qualified].dtype
    assert loaded.model is None

    bound = RewindPoint.load(str(path), model=net)
    assert bound.model is net
    prune_all(net)
    sgd_steps(net, 1)
    bound.restore()
    for qualified in NAMES:
        assert torch.equal(tensor_of(net, qualified), point[qualified])


def test_save_overwrites_an_existing_file(tmp_path):
    path = tmp_path / "point.pt"
    RewindPoint.capture(make_net(0), iteration=1).save(path)
    second = RewindPoint.capture(make_net(1), iteration=7)
    second.save(path)
    loaded = RewindPoint.load(path)
    assert loaded.iteration == 7
    assert torch.equal(loaded["fc1.weight"], second["fc1.weight"])


def test_state_dict_round_trip_is_plain_data():
    point = RewindPoint.capture(make_net(), iteration=5)
    state = point.state_dict()
    assert set(state) == {"format", "version", "iteration", "tensors"}
    assert state["iteration"] == 5
    copy_ = RewindPoint.from_state_dict(state)
    assert list(copy_) == list(point)
    assert all(torch.equal(copy_[q], point[q]) for q in point)


def test_load_binding_to_another_architecture_fails(tmp_path):
    path = tmp_path / "point.pt"
    RewindPoint.capture(make_net()).save(path)
    with pytest.raises(ValueError, match="fc2.weight"):
        RewindPoint.load(path, model=make_net(out=3))


class _Payload:
    """Unpickling this runs ``open(marker, "w")``, which creates the marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("wrapped", [False, True], ids=["bare-object", "inside-a-rewind-point"])
def test_load_refuses_pickled_code(tmp_path, wrapped):
    marker = tmp_path / "marker"
    payload = _Payload(str(marker))
    obj = payload
    if wrapped:
        obj = RewindPoint.capture(make_net()).state_dict()
        obj["tensors"]["fc1.weight"] = payload
    path = tmp_path / "evil.pt"
    torch.save(obj, path)
    assert not marker.exists()

    with pytest.raises(ValueError, match="evil.pt"):
        RewindPoint.load(path)
    assert not marker.exists(), "RewindPoint.load ran code from the file"

    # The payload is live: a plain unpickling does create the marker.
    handle = torch.load(path, weights_only=False)
    if wrapped:
        handle = handle["tensors"]["fc1.weight"]
    handle.close()
    assert marker.exists()


@pytest.mark.parametrize(
    "content",
    [{"a": 1}, [torch.ones(2)], torch.ones(3), {"format": "something.else", "tensors": {}}],
    ids=["dict", "list", "tensor", "other-format"],
)
def test_load_refuses_files_that_are_not_rewind_points(tmp_path, content):
    path = tmp_path / "other.pt"
    torch.save(content, path)
    with pytest.raises(ValueError, match="not a torch-lottery rewind point"):
        RewindPoint.load(path)


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda s: s.update(version=99), "version"),
        (lambda s: s.pop("tensors"), "damaged"),
        (lambda s: s.update(iteration=-2), "damaged"),
        (lambda s: s.update(tensors={"w": 1.0}), "damaged"),
        (lambda s: s.update(tensors=[torch.ones(2)]), "damaged"),
    ],
    ids=["version", "no-tensors", "bad-iteration", "non-tensor-value", "tensors-not-a-mapping"],
)
def test_load_refuses_damaged_rewind_points(tmp_path, edit, words):
    state = RewindPoint.capture(make_net()).state_dict()
    edit(state)
    path = tmp_path / "damaged.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match=words):
        RewindPoint.load(path)


@pytest.mark.parametrize("keep", [0.0, 0.5, 0.9])
def test_load_refuses_truncated_files(tmp_path, keep):
    path = tmp_path / "point.pt"
    RewindPoint.capture(make_net()).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ValueError, match="point.pt"):
        RewindPoint.load(path)


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        RewindPoint.load(tmp_path / "missing.pt")


# --------------------------------------------------------------------------- select
def test_select_keeps_the_given_order():
    net = make_net()
    point = RewindPoint.capture(net, iteration=6)
    params = [(net.fc2, "weight"), (net.features[0], "weight")]
    chosen = point.select(params)
    assert list(chosen) == ["fc2.weight", "features.0.weight"]
    assert chosen.iteration == 6
    assert chosen.model is net
    assert chosen.pairs() == params
    assert torch.equal(chosen["fc2.weight"], point["fc2.weight"])
    assert list(point) == EVERY  # the original point is untouched


@pytest.mark.parametrize(
    "params, error, words",
    [
        (lambda net: [(net.fc1, "bias")], ValueError, "fc1.bias"),
        (lambda net: [(nn.Linear(12, 6), "weight")], ValueError, "not part of the model"),
        (lambda net: [net.fc1], TypeError, "parameters"),
        (lambda net: [(net.fc1, "weight", 1)], TypeError, "parameters"),
    ],
)
def test_select_errors(params, error, words):
    net = make_net()
    point = RewindPoint.capture(net, prunable_parameters(net))
    with pytest.raises(error, match=words):
        point.select(params(net))


def test_select_on_an_unbound_point_asks_to_bind():
    net = make_net()
    unbound = RewindPoint.from_state_dict(RewindPoint.capture(net).state_dict())
    with pytest.raises(ValueError, match="bind"):
        unbound.select([(net.fc1, "weight")])


# --------------------------------------------------------------------------- binding
def test_bind_to_a_same_architecture_model():
    source, target = make_net(0), make_net(1)
    point = RewindPoint.capture(source)
    assert point.bind(target) is point
    assert point.model is target
    assert point.key_for(target.fc1, "weight") == "fc1.weight"
    assert torch.equal(point.tensor_for(target.fc1, "weight"), point["fc1.weight"])
    assert point.pairs() == [(m, n) for m in (target.features[0], target.fc1, target.fc2) for n in ("weight", "bias")]
    with pytest.raises(ValueError, match="bind"):
        point.key_for(source.fc1, "weight")  # the old model is no longer the bound one


def test_bound_point_drives_lottery_magnitude_on_the_new_model():
    source, target = make_net(0), make_net(1)
    point = RewindPoint.capture(source)
    point.bind(target)
    lottery_magnitude(target.fc1, "weight", amount=0.5, rewind_point=point)
    assert torch.equal(target.fc1.weight_orig, point["fc1.weight"])


@pytest.mark.parametrize(
    "other, words",
    [
        (lambda: make_net(out=3), r"'fc2\.weight'.*shape \(2, 6\).*\(3, 6\)"),
        (lambda: nn.Sequential(nn.Linear(12, 6)), "'features.0.weight'"),
        (lambda: _renamed(), "'fc1.weight'"),
    ],
    ids=["different-shape", "missing-tensors", "renamed-layer"],
)
def test_bind_to_another_architecture_names_the_tensor(other, words):
    source = make_net()
    point = RewindPoint.capture(source)
    with pytest.raises(ValueError, match=words):
        point.bind(other())
    assert point.model is source  # a failed bind keeps the old binding


def test_bind_rejects_non_modules():
    point = RewindPoint.capture(make_net())
    with pytest.raises(TypeError, match="model"):
        point.bind({"fc1.weight": torch.ones(6, 12)})


def test_key_for_a_module_outside_the_bound_model():
    net = make_net()
    point = RewindPoint.capture(net)
    assert point.key_for(net.features[0], "weight") == "features.0.weight"
    with pytest.raises(ValueError, match="not part of the model"):
        point.key_for(nn.Linear(12, 6), "weight")
    with pytest.raises(ValueError, match="not part of the model"):
        point.tensor_for(make_net(1).fc1, "weight")


def test_tensor_for_a_tensor_not_captured():
    net = make_net()
    point = RewindPoint.capture(net, prunable_parameters(net))
    with pytest.raises(ValueError, match="fc1.bias"):
        point.tensor_for(net.fc1, "bias")


def test_key_for_follows_modules_added_after_capture():
    net = make_net()
    point = RewindPoint.capture(net)
    point.key_for(net.fc1, "weight")  # fills the cache of prefixes
    net.head = nn.Linear(2, 2)
    assert point.key_for(net.head, "weight") == "head.weight"


def test_unbound_point_in_lottery_magnitude_asks_to_bind(tmp_path):
    net = make_net()
    path = tmp_path / "init.pt"
    RewindPoint.capture(net).save(path)
    unbound = RewindPoint.load(path)
    before = state_of(net)
    with pytest.raises(ValueError, match=r"bind\(model\)"):
        lottery_magnitude(net.fc1, "weight", amount=0.5, rewind_point=unbound)
    assert_state_equal(net, before)
    assert not hasattr(net.fc1, "weight_mask")

    unbound.bind(net)
    lottery_magnitude(net.fc1, "weight", amount=0.5, rewind_point=unbound)
    assert int(net.fc1.weight_mask.sum()) == 36


def test_point_of_another_model_in_lottery_magnitude_fails_and_changes_nothing():
    net = make_net()
    foreign = RewindPoint.capture(make_net(1))
    before = state_of(net)
    with pytest.raises(ValueError, match="bind"):
        lottery_magnitude(net.fc1, "weight", amount=0.5, rewind_point=foreign)
    assert_state_equal(net, before)
