"""Training through torch-lottery's masks: exactly stock prune's arithmetic, at no more cost.

The forward pre-hook of a tensor pruned by torch-lottery (``LotteryContainer``,
what ``FixedMask``, ``find_ticket`` and the experiment runner install) computes
``mask * orig`` like stock prune; these tests pin down that training through it
is bit-identical to training through stock hooks, that pruned entries stay
exactly zero and receive no gradient, and that the autograd graph it builds is
stock's (no extra node per forward).
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from torch_lottery import fixed_mask
from torch_lottery._layout import _PrunedWeight as MaskedTensor
from torch_lottery.pruning import LotteryContainer


def make_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 16), nn.ReLU(), nn.Linear(16, 3)
    )


PRUNED = (0, 3, 5)


def stock_and_lottery(sparsity=0.8, seed=0):
    """Two copies of one network: stock L1 hooks, and the same masks installed by fixed_mask."""
    stock, lottery = make_net(seed), make_net(seed)
    for i in PRUNED:
        prune.l1_unstructured(stock[i], "weight", amount=sparsity)
        fixed_mask(lottery[i], "weight", stock[i].weight_mask.clone())
    return stock, lottery


def batch(step, n=8):
    g = torch.Generator().manual_seed(100 + step)
    return torch.randn(n, 2, 5, 5, generator=g), torch.randint(0, 3, (n,), generator=g)


def train(net, steps, **adam):
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05, **adam)
    seen = []  # module.weight of the last layer as each forward used it
    handle = net[5].register_forward_hook(lambda m, i, o: seen.append(m.weight.detach().clone()))
    for step in range(steps):
        x, y = batch(step)
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()
    handle.remove()
    return seen


def bits(t):
    """The raw bit patterns of a float32 tensor (tells -0.0 from 0.0)."""
    return t.detach().contiguous().view(torch.int32)


@pytest.mark.parametrize("adam", [{}, {"weight_decay": 0.1}, {"amsgrad": True}])
def test_training_is_bit_identical_to_stock_prune(adam):
    stock, lottery = stock_and_lottery()
    train(stock, 6, **adam)
    train(lottery, 6, **adam)
    x, _ = batch(99)
    assert torch.equal(bits(stock(x)), bits(lottery(x)))
    for i in PRUNED:
        assert torch.equal(bits(stock[i].weight_orig), bits(lottery[i].weight_orig))
        assert torch.equal(bits(stock[i].weight), bits(lottery[i].weight))  # same signed zeros too
        assert torch.equal(stock[i].weight_mask, lottery[i].weight_mask)
        assert torch.equal(bits(stock[i].bias), bits(lottery[i].bias))


def test_pruned_entries_are_zero_in_every_forward_and_get_no_gradient():
    _, net = stock_and_lottery()
    mask = net[5].weight_mask.bool()
    before = {i: net[i].weight_orig.detach().clone() for i in PRUNED}
    seen = train(net, 5)
    assert len(seen) == 5
    for weight in seen:
        assert torch.all(weight[~mask] == 0) and torch.all(weight[mask] != 0)
    x, y = batch(0)
    net.zero_grad()
    nn.functional.cross_entropy(net(x), y).backward()
    for i in PRUNED:
        dead = ~net[i].weight_mask.bool()
        assert dead.any()
        assert torch.all(net[i].weight_orig.grad[dead] == 0)
        assert net[i].weight_orig.grad[~dead].abs().sum() > 0
        # Adam moved the survivors but not one pruned entry of weight_orig
        assert torch.equal(net[i].weight_orig.detach()[dead], before[i][dead])
        assert not torch.equal(net[i].weight_orig.detach()[~dead], before[i][~dead])


def test_pruned_entries_stay_zero_with_weight_decay():
    _, net = stock_and_lottery()
    seen = train(net, 4, weight_decay=0.5)  # decay changes weight_orig's pruned entries (as in stock)
    mask = net[5].weight_mask.bool()
    for weight in seen + [net[5].weight]:
        assert torch.all(weight[~mask] == 0)


def graph_nodes(tensor):
    """Names of every autograd node reachable from ``tensor``."""
    names, stack, seen = [], [tensor.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.append(node.name())
        stack.extend(next_node for next_node, _ in node.next_functions)
    return sorted(names)


def test_autograd_graph_is_stocks_with_no_extra_node():
    stock, lottery = stock_and_lottery()
    x, y = batch(0)
    loss_stock = nn.functional.cross_entropy(stock(x), y)
    loss_lottery = nn.functional.cross_entropy(lottery(x), y)
    assert graph_nodes(loss_lottery) == graph_nodes(loss_stock)
    weight = lottery[3].weight
    assert type(weight) is MaskedTensor
    assert weight.grad_fn.name() == "MulBackward0"  # the product itself, no alias on top
    assert {type(out) for out in (lottery(x), lottery[3].weight * 2)} == {torch.Tensor}


def test_deepcopy_right_after_a_training_step():
    _, net = stock_and_lottery()
    train(net, 1)
    x, _ = batch(0)
    net(x)  # module.weight now carries a graph
    twin = copy.deepcopy(net)
    assert type(twin[3].weight) is torch.Tensor and not twin[3].weight.requires_grad
    assert torch.equal(twin(x), net(x))


class Slotted(torch.Tensor):
    """A tensor subclass whose instances cannot switch class (``__slots__`` change the layout)."""

    __slots__ = ("tag",)


def test_weights_that_are_tensor_subclasses_are_wrapped_not_switched():
    layer = nn.Linear(4, 3)
    layer.weight = nn.Parameter(layer.weight.detach().as_subclass(Slotted))
    mask = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, 0]])
    fixed_mask(layer, "weight", mask)
    x = torch.randn(2, 4)
    out = layer(x)
    assert type(layer.weight) is MaskedTensor
    expected = x @ (layer.weight_orig.detach().as_subclass(torch.Tensor) * mask).T + layer.bias.detach()
    assert torch.allclose(out.as_subclass(torch.Tensor), expected)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Using `torch.compile\\(module\\)` when there are global hooks")
def test_torch_compile_traces_the_pre_hook_in_one_graph():
    torch._dynamo.reset()
    stock, lottery = stock_and_lottery()
    x, y = batch(0)
    compiled = torch.compile(lottery, backend="eager", fullgraph=True)  # a graph break would raise
    out = compiled(x)
    assert torch.equal(out, stock(x))
    nn.functional.cross_entropy(out, y).backward()
    dead = ~lottery[3].weight_mask.bool()
    assert torch.all(lottery[3].weight_orig.grad[dead] == 0)
    assert lottery[3].weight_orig.grad[~dead].abs().sum() > 0


def test_a_container_attached_to_no_tensor_says_so():
    with pytest.raises(ValueError, match="_tensor_name"):
        LotteryContainer().apply_mask(nn.Linear(2, 2))
