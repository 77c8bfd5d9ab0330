"""Sparse export: compact files that round-trip exactly, and CSR inference models."""

from __future__ import annotations

import copy
import os

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import torch_lottery as tl
from torch_lottery.export import (
    FORMAT,
    SparseLinear,
    SparseState,
    export,
    pack_mask,
    to_sparse_inference,
    unpack_mask,
)

from helpers import assert_unchanged, snapshot

pytestmark = pytest.mark.filterwarnings("ignore:.*[Ss]parse.*:UserWarning")


def lenet(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10)
    )


def pruned_lenet(amount: float = 0.98, stock: bool = False) -> nn.Sequential:
    net = lenet()
    params = [(m, "weight") for m in net if isinstance(m, nn.Linear)]
    if stock:
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
    else:
        tl.global_magnitude(params, amount=amount)
    return net


# -- bit packing ----------------------------------------------------------------
@pytest.mark.parametrize("numel", [0, 1, 7, 8, 9, 100])
def test_pack_unpack_round_trip(numel):
    mask = torch.rand(numel) > 0.5
    packed = pack_mask(mask)
    assert packed.dtype == torch.uint8 and packed.numel() == (numel + 7) // 8
    assert torch.equal(unpack_mask(packed, (numel,)), mask)


def test_pack_is_msb_first():
    assert pack_mask(torch.tensor([True] + [False] * 7)).tolist() == [128]
    assert pack_mask(torch.tensor([False] * 7 + [True, True])).tolist() == [1, 128]


# -- export ---------------------------------------------------------------------
@pytest.mark.parametrize("stock", [False, True])
def test_round_trip_gives_identical_outputs(tmp_path, stock):
    net = pruned_lenet(stock=stock)
    before = snapshot(net)
    path = tmp_path / "ticket.pt"
    state = export(net, path)
    assert sorted(state.pruned) == ["1.weight", "3.weight", "5.weight"]
    loaded = SparseState.load(path)
    fresh = lenet(seed=123)
    fresh.load_state_dict(loaded.state_dict(), strict=True)
    x = torch.randn(32, 1, 28, 28)
    assert torch.equal(fresh(x), net(x))
    assert_unchanged(net, before)
    kept, total = loaded.remaining()
    assert total == 784 * 300 + 300 * 100 + 100 * 10 and kept == round(0.02 * total)


def test_keys_match_state_dict_after_remove():
    net = pruned_lenet()
    state = export(net)
    reference = lenet()
    assert set(state.keys()) == set(reference.state_dict())
    assert "1.weight_orig" not in state and "1.weight_mask" not in state


def test_file_is_small(tmp_path):
    net = pruned_lenet(0.98)
    export(net, tmp_path / "sparse.pt")
    torch.save(export(net).state_dict(), tmp_path / "dense.pt")
    ratio = os.path.getsize(tmp_path / "sparse.pt") / os.path.getsize(tmp_path / "dense.pt")
    assert ratio <= 0.15, ratio


def test_unpruned_model_exports(tmp_path):
    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    state = export(net, tmp_path / "a.pt")
    assert state.pruned == []
    fresh = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    fresh.load_state_dict(SparseState.load(tmp_path / "a.pt").state_dict(), strict=True)
    for key, value in net.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value)


def test_mixed_rounds_buffers_and_bias(tmp_path):
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 36, 5))
    net(torch.randn(2, 1, 8, 8))  # running stats move
    tl.global_magnitude([(net[0], "weight"), (net[3], "weight")], amount=0.5)
    prune.random_unstructured(net[3], "weight", amount=0.3)  # a stock round on top
    prune.l1_unstructured(net[3], "bias", amount=2)
    net.eval()
    before = snapshot(net)
    state = SparseState.load(_saved(export(net), tmp_path))
    fresh = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 36, 5)).eval()
    fresh.load_state_dict(state.state_dict(), strict=True)
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(fresh(x), net(x))
    assert sorted(state.pruned) == ["0.weight", "3.bias", "3.weight"]
    assert_unchanged(net, before)


def _saved(state, tmp_path):
    path = tmp_path / "s.pt"
    state.save(path)
    return path


def test_save_leaves_no_temporary_files(tmp_path):
    export(pruned_lenet(), tmp_path / "x.pt")
    assert os.listdir(tmp_path) == ["x.pt"]


def test_state_dict_returns_new_tensors():
    state = export(pruned_lenet())
    first = state.state_dict()
    first["1.bias"].zero_()
    assert not torch.equal(state.state_dict()["1.bias"], first["1.bias"])


# -- export with a ticket -------------------------------------------------------
def tiny(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 2))


W = torch.tensor([[1.0, -2.0, 3.0], [-4.0, 5.0, -6.0]])
MASK = torch.tensor([[1, 0, 1], [0, 0, 1]])  # keeps 1, 3 and -6, in row-major order


def test_a_dense_model_exports_with_the_tickets_masks_and_its_current_weights():
    net = tiny()
    with torch.no_grad():
        net[0].weight.copy_(W)
    before = snapshot(net)
    ticket = tl.Ticket({"0.weight": MASK}, {"0.weight": torch.zeros(2, 3)})  # rewind values are not used
    state = export(net, ticket=ticket)
    assert state.pruned == ["0.weight"]
    assert state.remaining() == (3, 6)
    assert state.to_dict()["tensors"]["0.weight"]["values"].tolist() == [1.0, 3.0, -6.0]
    assert torch.equal(state.state_dict()["0.weight"], torch.tensor([[1.0, 0.0, 3.0], [0.0, 0.0, -6.0]]))
    assert torch.equal(state.state_dict()["2.weight"], net[2].weight)  # not in the ticket: dense, as it is
    assert_unchanged(net, before)
    assert not prune.is_pruned(net)


def test_the_tickets_mask_replaces_the_models_own_and_reads_the_values_behind_it():
    net = tiny()
    with torch.no_grad():
        net[0].weight.copy_(W)
    tl.fixed_mask(net[0], "weight", torch.tensor([[0, 1, 1], [1, 1, 1]]))  # prunes the 1.0 the ticket keeps
    tl.fixed_mask(net[2], "weight", torch.tensor([[1, 0], [0, 1]]))  # the ticket does not cover 2.weight
    before = snapshot(net)
    state = export(net, ticket=tl.Ticket({"0.weight": MASK}, {}))
    assert state.to_dict()["tensors"]["0.weight"]["values"].tolist() == [1.0, 3.0, -6.0]  # from weight_orig
    assert sorted(state.pruned) == ["0.weight", "2.weight"]
    assert state.remaining() == (3 + 2, 6 + 4)
    assert torch.equal(state.state_dict()["2.weight"], net[2].weight)  # its own mask
    assert "0.weight_orig" not in state and "0.weight_mask" not in state
    assert_unchanged(net, before)


def test_export_with_a_ticket_round_trips_like_the_masked_model(tmp_path):
    net = tiny(seed=3)
    masks = {"0.weight": torch.rand(2, 3, generator=torch.Generator().manual_seed(0)) > 0.5, "2.weight": torch.eye(2)}
    ticket = tl.Ticket(masks, {})
    path = tmp_path / "s.pt"
    export(net, path, ticket)
    reference = copy.deepcopy(net)
    for index, name in ((0, "0.weight"), (2, "2.weight")):
        tl.fixed_mask(reference[index], "weight", masks[name])
    fresh = tiny(seed=9)
    fresh.load_state_dict(SparseState.load(path).state_dict(), strict=True)
    x = torch.randn(5, 3)
    with torch.no_grad():
        assert torch.equal(fresh(x), reference(x))
    assert sorted(SparseState.load(path).pruned) == sorted(export(reference).pruned) == ["0.weight", "2.weight"]


def test_a_shared_module_gets_the_tickets_mask_at_each_of_its_names():
    layer = nn.Linear(2, 2, bias=False)
    net = nn.Sequential(layer, layer)
    state = export(net, ticket=tl.Ticket({"0.weight": torch.eye(2)}, {}))
    assert state.pruned == ["0.weight", "1.weight"]
    for key in state.pruned:
        assert torch.equal(state.state_dict()[key], layer.weight.detach() * torch.eye(2))


def test_a_wrapped_model_matches_the_ticket_by_its_modules_names():
    net = tiny()
    state = export(nn.DataParallel(net), ticket=tl.Ticket({"0.weight": MASK}, {}))
    assert state.pruned == ["module.0.weight"]
    assert torch.equal(state.state_dict()["module.0.weight"], net[0].weight.detach() * MASK)


@pytest.mark.parametrize(
    "masks, words",
    [
        ({"0.weight": torch.ones(2, 4)}, ["mismatched", "0.weight: ticket (2, 4) vs model (2, 3)"]),
        ({"0.weight": torch.ones(2, 3), "9.weight": torch.ones(2, 2)}, ["missing: 9.weight"]),
    ],
)
def test_a_ticket_that_does_not_fit_is_refused_naming_the_tensor(tmp_path, masks, words):
    net = tiny()
    before = snapshot(net)
    with pytest.raises(ValueError, match="does not fit") as info:
        export(net, tmp_path / "s.pt", ticket=tl.Ticket(masks, {}))
    for word in words:
        assert word in str(info.value)
    assert_unchanged(net, before)
    assert os.listdir(tmp_path) == []


def test_ticket_must_be_a_ticket():
    with pytest.raises(TypeError, match=r"ticket must be a torch_lottery.Ticket, got \{'0.weight'"):
        export(tiny(), ticket={"0.weight": MASK})


# -- bad files ------------------------------------------------------------------
def test_garbage_file(tmp_path):
    path = tmp_path / "g.pt"
    path.write_bytes(b"not a torch file at all")
    with pytest.raises(ValueError, match="not a readable sparse state"):
        SparseState.load(path)


def test_truncated_file(tmp_path):
    path = _saved(export(pruned_lenet()), tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError):
        SparseState.load(path)


def test_other_format(tmp_path):
    torch.save({"format": "torch_lottery.rewind_point", "version": 1}, tmp_path / "o.pt")
    with pytest.raises(ValueError, match="not a sparse state"):
        SparseState.load(tmp_path / "o.pt")
    torch.save(lenet().state_dict(), tmp_path / "sd.pt")
    with pytest.raises(ValueError, match="not a sparse state"):
        SparseState.load(tmp_path / "sd.pt")
    torch.save({"format": FORMAT, "version": 99, "tensors": {}}, tmp_path / "v.pt")
    with pytest.raises(ValueError, match="version"):
        SparseState.load(tmp_path / "v.pt")


def test_inconsistent_entry(tmp_path):
    data = export(pruned_lenet()).to_dict()
    data["tensors"]["1.weight"]["values"] = data["tensors"]["1.weight"]["values"][:-1]
    torch.save(data, tmp_path / "d.pt")
    with pytest.raises(ValueError, match="damaged"):
        SparseState.load(tmp_path / "d.pt")


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_pickled_object_refused_without_running_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"format": FORMAT, "version": 1, "tensors": {}, "x": _Boom()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="not a readable"):
        SparseState.load(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        SparseState.load(tmp_path / "nope.pt")


# -- bad arguments --------------------------------------------------------------
def test_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="model"):
        export("net")
    with pytest.raises(TypeError, match="path"):
        export(lenet(), path=3)
    with pytest.raises(TypeError, match="path"):
        SparseState.load(3)
    with pytest.raises(TypeError, match="model"):
        to_sparse_inference(None)
    with pytest.raises(TypeError, match="min_sparsity"):
        to_sparse_inference(lenet(), min_sparsity="0.9")
    with pytest.raises(ValueError, match="min_sparsity"):
        to_sparse_inference(lenet(), min_sparsity=1.5)
    with pytest.raises(TypeError, match="min_batch"):
        to_sparse_inference(lenet(), min_batch=2.0)
    with pytest.raises(ValueError, match="min_batch"):
        to_sparse_inference(lenet(), min_batch=0)


def test_non_binary_mask_refused():
    net = nn.Linear(4, 4)
    prune.custom_from_mask(net, "weight", torch.ones(4, 4))
    net.weight_mask.fill_(0.5)
    with pytest.raises(ValueError, match="0 and 1"):
        export(net)


# -- sparse inference -----------------------------------------------------------
@pytest.mark.parametrize("stock", [False, True])
def test_sparse_inference_matches(stock):
    net = pruned_lenet(stock=stock)
    before = snapshot(net)
    fast = to_sparse_inference(net, min_sparsity=0.9)
    for module, name in [(net[1], "1"), (net[3], "3"), (net[5], "5")]:
        sparsity = float((module.weight == 0).float().mean())
        kind = SparseLinear if sparsity >= 0.9 else nn.Linear
        assert type(fast.get_submodule(name)) is kind
    assert isinstance(fast[1], SparseLinear)
    assert fast[1].weight_csr.layout == torch.sparse_csr
    assert fast[1].weight_csr.crow_indices().dtype == torch.int32
    with torch.no_grad():
        for batch in (1, 64, 1024):
            x = torch.randn(batch, 1, 28, 28)
            assert torch.allclose(fast(x), net(x), atol=1e-5)
    assert_unchanged(net, before)
    assert any(isinstance(h, prune.BasePruningMethod) for h in net[1]._forward_pre_hooks.values())


def test_dense_fallback_and_forced_sparse():
    net = pruned_lenet()
    fast = to_sparse_inference(net, min_sparsity=0.0, min_batch=1)
    assert all(isinstance(fast[i], SparseLinear) for i in (1, 3, 5))
    x = torch.randn(1, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(fast(x), net(x), atol=1e-5)
        # N-D input: leading dims flattened
        y = torch.randn(2, 3, 784)
        assert torch.allclose(fast[1](y), net[1](y), atol=1e-5)
        assert fast[1](y).shape == (2, 3, 300)
    none = to_sparse_inference(net, min_sparsity=1.0)
    assert not any(isinstance(m, SparseLinear) for m in none.modules())


def test_conv_model_keeps_convs_dense():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    tl.global_magnitude([(net[0], "weight"), (net[3], "weight")], amount=0.95)
    fast = to_sparse_inference(net, min_sparsity=0.5)
    assert type(fast[0]) is nn.Conv2d and isinstance(fast[3], SparseLinear)
    assert not any(isinstance(h, prune.BasePruningMethod) for h in fast[0]._forward_pre_hooks.values())
    x = torch.randn(20, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(fast(x), net(x), atol=1e-5)


def test_unpruned_model_to_sparse_inference():
    net = lenet()
    fast = to_sparse_inference(net)
    assert not any(isinstance(m, SparseLinear) for m in fast.modules())
    x = torch.randn(3, 784)
    assert torch.equal(fast(x), net(x))


def test_sparse_linear_follows_load_state_dict_and_dtype():
    """The CSR copy is derived from the weight buffer: loading or casting rebuilds it."""
    net, other = pruned_lenet(), pruned_lenet()
    with torch.no_grad():
        for module in other:
            if isinstance(module, nn.Linear):
                module.weight_orig.mul_(-2.0)  # same masks, other values
    fast = to_sparse_inference(net, min_sparsity=0.0, min_batch=1)
    target = to_sparse_inference(other, min_sparsity=0.0, min_batch=1)
    x = torch.randn(64, 1, 28, 28)
    with torch.no_grad():
        assert not torch.allclose(fast(x), target(x), atol=1e-3)
        fast.load_state_dict(target.state_dict())
        assert torch.allclose(fast(x), other(x), atol=1e-5)  # sparse kernel (64 rows >= min_batch)
        double = fast.double()
        assert double[1].weight_csr.dtype == torch.float64
        assert torch.allclose(double(x.double()), other.double()(x.double()), atol=1e-10)


def test_sparse_linear_dense_path_below_min_batch_is_exact():
    """Below min_batch the layer runs the same F.linear as nn.Linear: bitwise equal outputs."""
    net = pruned_lenet()
    fast = to_sparse_inference(net, min_sparsity=0.0, min_batch=16)
    dense = copy.deepcopy(net)
    for module in dense:
        if isinstance(module, nn.Linear):
            prune.remove(module, "weight")
    with torch.no_grad():
        for batch in (1, 15):
            x = torch.randn(batch, 1, 28, 28)
            assert torch.equal(fast(x), dense(x))
    with pytest.raises(TypeError, match="linear"):
        SparseLinear(nn.Conv2d(1, 1, 1))
