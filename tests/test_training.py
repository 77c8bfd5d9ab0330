"""sparse_training: the same weights as the masked dense path, refusals and fallbacks, stock's layout kept.

Every equality test trains two copies of one pruned network on the same batches:
one on stock's masked dense path, one inside ``sparse_training``; after the same
steps both must hold the same weights (exactly for the scatter kernel, whose
arithmetic is the dense path's; to float64 tolerance for the CSR kernel, whose
sums run in another order).
"""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import torch_lottery as tl
from torch_lottery import training


def mlp(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 40), nn.ReLU(), nn.Linear(40, 20), nn.ReLU(), nn.Linear(20, 3)).to(dtype)


def convnet(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(2, 6, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 5 * 5, 16), nn.ReLU(), nn.Linear(16, 3)
    )
    return net.double()


def pruned(net, amount=0.8, how="l1"):
    for module in net.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            if how == "l1":
                prune.l1_unstructured(module, "weight", amount=amount)
            else:
                tl.lottery_magnitude(module, "weight", amount=amount)
    return net


def batches(steps, shape=(8, 12), dtype=torch.float64):
    g = torch.Generator().manual_seed(7)
    return [
        (torch.randn(*shape, generator=g, dtype=dtype), torch.randint(0, 3, (shape[0],), generator=g))
        for _ in range(steps)
    ]


def train(net, data, make_optimizer):
    optimizer = make_optimizer(net.parameters())
    for x, y in data:
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()
    return optimizer


def effective(net):
    """Every parameter as the next forward computes with it: ``mask * orig`` of pruned tensors, the rest as is."""
    out = {}
    for prefix, module in net.named_modules():
        for key, value in list(module._parameters.items()):
            if key.endswith("_orig"):
                name = key[: -len("_orig")]
                out[f"{prefix}.{name}"] = (getattr(module, name + "_mask") * value).detach().clone()
            else:
                out[f"{prefix}.{key}"] = value.detach().clone()
    return out


OPTIMIZERS = {
    "adam": lambda p: torch.optim.Adam(p, lr=0.05),
    "adam_wd_amsgrad": lambda p: torch.optim.Adam(p, lr=0.05, weight_decay=0.1, amsgrad=True),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.05),
    "sgd_momentum_wd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=0.01),
    "adam_fused": lambda p: torch.optim.Adam(p, lr=0.05, fused=True),
}


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("kernel", ["scatter", "csr"])
def test_same_weights_as_the_masked_dense_path(kernel, optimizer):
    data = batches(6)
    masked, fast = pruned(mlp()), pruned(mlp())
    train(masked, data, OPTIMIZERS[optimizer])
    with tl.sparse_training(fast, kernel=kernel) as report:
        train(fast, data, OPTIMIZERS[optimizer])
    assert set(report.kernels.values()) == {kernel}
    want, got = effective(masked), effective(fast)
    assert want.keys() == got.keys()
    for key in want:
        if kernel == "scatter":
            assert torch.equal(got[key], want[key]), key
        else:
            torch.testing.assert_close(got[key], want[key], rtol=1e-10, atol=1e-12, msg=key)
    for i in (0, 2, 4):  # the survivors of <name>_orig are the trained values; the pruned entries stay zero
        keep = masked[i].weight_mask.bool()
        torch.testing.assert_close(fast[i].weight_orig[keep], masked[i].weight_orig[keep], rtol=1e-10, atol=1e-12)
        assert torch.equal(fast[i].weight_mask, masked[i].weight_mask)
        assert (fast[i].weight[~keep] == 0).all()


def test_conv_in_float32_matches_within_tolerance():
    data = [(x.float(), y) for x, y in batches(5, shape=(4, 2, 5, 5))]
    masked, fast = pruned(convnet().float(), amount=0.9), pruned(convnet().float(), amount=0.9)
    train(masked, data, OPTIMIZERS["adam"])
    with tl.sparse_training(fast, kernel="scatter") as report:
        assert report.kernels["0.weight"] == "scatter"
        train(fast, data, OPTIMIZERS["adam"])
    for key, value in effective(masked).items():
        torch.testing.assert_close(effective(fast)[key], value, rtol=1e-5, atol=1e-6, msg=key)


def test_csr_kernel_on_three_dimensional_inputs_and_large_batches():
    """Inputs with extra leading dimensions, and more rows than CSR_MAX_ROWS (the scatter path for that call)."""
    net, fast = pruned(mlp(), amount=0.95), pruned(mlp(), amount=0.95)
    x = torch.randn(3, 5, 12, dtype=torch.float64)
    big = torch.randn(training.CSR_MAX_ROWS + 1, 12, dtype=torch.float64)
    with tl.sparse_training(fast, kernel="csr"):
        for inputs in (x, big):
            inputs = inputs.clone().requires_grad_()
            reference = inputs.detach().clone().requires_grad_()
            fast(inputs).square().sum().backward()
            net(reference).square().sum().backward()
            torch.testing.assert_close(inputs.grad, reference.grad)
        torch.testing.assert_close(
            fast[0].weight_values.grad, net[0].weight_orig.grad.reshape(-1)[net[0].weight_mask.reshape(-1).bool()]
        )


def test_optimizer_steps_only_the_survivors():
    net = pruned(mlp(), amount=0.9)
    with tl.sparse_training(net, kernel="scatter") as report:
        shapes = {name: tuple(p.shape) for name, p in net.named_parameters()}
        assert shapes["0.weight_values"] == (48,)  # 10% of 12 * 40
        assert "0.weight_orig" not in shapes
        assert report.parameters == sum(p.numel() for p in net.parameters())
        assert report.dense_parameters == sum(p.numel() for p in mlp().parameters())


def test_the_stock_layout_comes_back_exactly():
    net = pruned(mlp(), amount=0.7)
    before_keys = list(net.state_dict())
    hooks = [dict(m._forward_pre_hooks) for m in net]
    params = [dict(m._parameters) for m in net]
    classes = [type(m) for m in net]
    with tl.sparse_training(net, kernel="scatter"):
        train(net, batches(2), OPTIMIZERS["adam"])
    assert list(net.state_dict()) == before_keys
    assert [dict(m._forward_pre_hooks) for m in net] == hooks
    assert [dict(m._parameters) for m in net] == params  # the same Parameter objects, in the same order
    assert [type(m) for m in net] == classes
    for i in (0, 2, 4):
        assert torch.equal(net[i].weight, net[i].weight_mask * net[i].weight_orig)
        assert net[i].weight_orig.grad is not None and (net[i].weight_orig.grad[net[i].weight_mask == 0] == 0).all()
        prune.remove(net[i], "weight")  # stock still finds its hooks


def test_layout_comes_back_after_an_error_with_the_trained_values():
    net = pruned(mlp(), amount=0.7)
    with pytest.raises(RuntimeError, match="boom"), tl.sparse_training(net):
        train(net, batches(1), OPTIMIZERS["adam"])
        trained = net[0].weight.detach().clone()
        raise RuntimeError("boom")
    assert type(net[0]) is nn.Linear
    assert torch.equal(net[0].weight, trained)


def test_state_dict_inside_the_block_is_stock_layout_both_ways():
    net = pruned(mlp(), amount=0.7)
    stock = pruned(mlp(seed=1), amount=0.7)
    with tl.sparse_training(net, kernel="scatter"):
        train(net, batches(2), OPTIMIZERS["adam"])
        state = net.state_dict()
        assert sorted(state) == sorted(stock.state_dict())
        buffer = io.BytesIO()
        torch.save(state, buffer)
    buffer.seek(0)
    stock.load_state_dict(torch.load(buffer, weights_only=True))  # ours into stock's
    for i in (0, 2, 4):
        assert torch.equal(stock[i].weight_mask, net[i].weight_mask)
        assert torch.equal(stock[i].weight_orig, net[i].weight_orig)  # what leaving the block wrote
    other = pruned(mlp(seed=2), amount=0.7)
    for i in (0, 2, 4):  # the same masks as net's, other values: loads inside the block
        other[i].weight_mask.copy_(net[i].weight_mask)
    with tl.sparse_training(net, kernel="csr"):
        net.load_state_dict(other.state_dict())
        assert torch.equal(net[2].weight, other[2].weight_mask * other[2].weight_orig)
    assert torch.equal(net[0].weight_orig, other[0].weight_orig)


def test_loading_another_mask_inside_the_block_is_refused():
    net = pruned(mlp(), amount=0.7)
    other = pruned(mlp(seed=3), amount=0.5)
    with tl.sparse_training(net, kernel="scatter"):
        before = {k: v.clone() for k, v in net.state_dict().items()}
        with pytest.raises(RuntimeError, match="another mask"):
            net.load_state_dict(other.state_dict())
        after = net.state_dict()
        for i in (0, 2, 4):  # neither the mask nor the values of a refused tensor were loaded
            for key in (f"{i}.weight_mask", f"{i}.weight_orig"):
                assert torch.equal(after[key], before[key]), key


def test_optimizer_that_is_not_elementwise_is_refused_before_it_steps():
    net = pruned(mlp(), amount=0.8)
    with tl.sparse_training(net, kernel="scatter"):
        optimizer = torch.optim.Adafactor(net.parameters(), lr=0.01)
        nn.functional.cross_entropy(net(batches(1)[0][0]), batches(1)[0][1]).backward()
        before = {k: v.detach().clone() for k, v in net.named_parameters()}
        with pytest.raises(TypeError, match="Adafactor is not known to update each entry"):
            optimizer.step()
        assert all(torch.equal(before[k], v) for k, v in net.named_parameters())


def test_an_elementwise_optimizer_of_the_users_can_be_allowed():
    class Mine(torch.optim.Optimizer):
        def __init__(self, params):
            super().__init__(params, {"lr": 0.1})

        def step(self, closure=None):
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.data.add_(p.grad.sign(), alpha=-group["lr"])

    data = batches(3)
    masked, fast, refused = pruned(mlp()), pruned(mlp()), pruned(mlp())
    train(masked, data, Mine)
    with tl.sparse_training(refused, kernel="scatter"), pytest.raises(TypeError, match="optimizer Mine is not known"):
        train(refused, data, Mine)
    with tl.sparse_training(fast, kernel="scatter", optimizers=training.ELEMENTWISE_OPTIMIZERS + (Mine,)):
        train(fast, data, Mine)
    for key, value in effective(masked).items():
        assert torch.equal(effective(fast)[key], value), key


def test_optimizer_built_before_the_block_is_refused():
    net = pruned(mlp(), amount=0.8)
    optimizer = torch.optim.Adam(net.parameters())
    with tl.sparse_training(net, kernel="scatter"):
        x, y = batches(1)[0]
        nn.functional.cross_entropy(net(x), y).backward()
        with pytest.raises(RuntimeError, match="build the optimizer inside"):
            optimizer.step()


def test_auto_chooses_per_tensor_and_falls_back_where_it_cannot_gain():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(400, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))
    prune.l1_unstructured(net[0], "weight", amount=0.95)  # 120000 entries, 5% dense: CSR
    prune.l1_unstructured(net[2], "weight", amount=0.95)  # 30000 entries: scatter
    prune.l1_unstructured(net[4], "weight", amount=0.95)  # 1000 entries: too small to gain
    with tl.sparse_training(net) as report:
        assert report.kernels == {"0.weight": "csr", "2.weight": "scatter", "4.weight": "masked"}
        assert report.reasons == {"4.weight": "1000 entries < 4096"}
    prune.l1_unstructured(net[2], "bias", amount=0.05)
    dense = nn.Linear(100, 100)
    prune.l1_unstructured(dense, "weight", amount=0.05)  # 95% dense
    with tl.sparse_training(dense) as report:
        assert report.kernels == {"weight": "masked"} and "density 0.950" in report.reasons["weight"]
    with tl.sparse_training(net, kernel="masked") as report:
        assert set(report.kernels.values()) == {"masked"}
        assert type(net[0]) is nn.Linear and "weight_orig" in net[0]._parameters


def test_modules_with_other_pre_hooks_stay_masked():
    net = pruned(mlp(), amount=0.5)
    tl.targeted_dropout(net[0], "weight", drop_rate=0.5, targ_rate=0.5)
    with tl.sparse_training(net, kernel="scatter") as report:
        assert report.kernels["0.weight"] == "masked"
        assert "pre-hooks" in report.reasons["0.weight"]
        assert report.kernels["2.weight"] == "scatter"


def test_tied_parameters_stay_masked():
    torch.manual_seed(0)
    a, b = nn.Linear(64, 64), nn.Linear(64, 64)
    b.weight = a.weight
    net = nn.Sequential(a, b)
    tl.global_magnitude([(a, "weight"), (b, "weight")], amount=0.5)
    with tl.sparse_training(net, kernel="scatter") as report:
        assert report.kernels == {"0.weight": "masked", "1.weight": "masked"}
        assert report.reasons["0.weight"] == "tied to another tensor"


def test_eval_and_no_grad_inside_the_block():
    net = pruned(mlp(), amount=0.95)
    x = torch.randn(4, 12, dtype=torch.float64)
    want = net(x)
    with tl.sparse_training(net, kernel="csr"):
        net.eval()
        with torch.no_grad():
            torch.testing.assert_close(net(x), want)
        torch.testing.assert_close(net[0].weight, net[0].weight_mask * net[0].weight_orig)  # a read-only copy


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"kernel": "fast"}, ValueError, "kernel"),
        ({"kernel": 3}, (TypeError, ValueError), "kernel"),
        ({"optimizers": [torch.optim.Adam]}, TypeError, "optimizers"),
        ({"optimizers": (int,)}, TypeError, "optimizers"),
    ],
)
def test_bad_arguments_are_refused_by_name_and_change_nothing(kwargs, error, match):
    net = pruned(mlp(), amount=0.5)
    before = copy.deepcopy(net.state_dict())
    with pytest.raises(error, match=match), tl.sparse_training(net, **kwargs):
        pass
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert type(net[0]) is nn.Linear


def test_model_must_be_a_module_and_blocks_do_not_nest():
    with pytest.raises(TypeError, match="model"), tl.sparse_training("net"):
        pass
    net = pruned(mlp(), amount=0.5)
    with (
        tl.sparse_training(net, kernel="masked"),
        pytest.raises(ValueError, match="already inside a sparse_training block"),
        tl.sparse_training(net),
    ):
        pass
    assert type(net[0]) is nn.Linear


def test_an_unpruned_model_is_left_alone():
    net = mlp()
    params = list(net.parameters())
    with tl.sparse_training(net) as report:
        assert report.kernels == {} and list(net.parameters()) == params


@pytest.mark.parametrize("kernel", ["auto", "csr"])
def test_half_precision_takes_the_scatter_kernel(kernel):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(400, 300), nn.ReLU(), nn.Linear(300, 10)).to(torch.bfloat16)
    prune.l1_unstructured(net[0], "weight", amount=0.95)
    with tl.sparse_training(net, kernel=kernel) as report:
        assert report.kernels["0.weight"] == "scatter"
        train(net, batches(2, shape=(4, 400), dtype=torch.bfloat16), OPTIMIZERS["adam"])
    assert (net[0].weight[net[0].weight_mask == 0] == 0).all()


def test_bool_masks_of_torch_lottery_train_alike():
    """Masks installed by torch-lottery (bool) and by stock (float) give the same fast training."""
    data = batches(4)
    stock, ours = pruned(mlp(), amount=0.8), pruned(mlp(), amount=0.8, how="lottery")
    assert ours[0].weight_mask.dtype == torch.bool
    for net in (stock, ours):
        with tl.sparse_training(net, kernel="scatter"):
            train(net, data, OPTIMIZERS["adam"])
    for key, value in effective(stock).items():
        assert torch.equal(effective(ours)[key], value), key
