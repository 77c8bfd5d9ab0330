"""The bool masks torch-lottery installs interchange with stock's float ones, both ways.

Stock ``torch.nn.utils.prune`` installs float 0/1 masks; torch-lottery installs the
same layout with ``torch.bool`` masks (1 byte an entry). State dicts load across,
stock methods run on top of bool masks, and the masked weights are bit for bit
stock's (``0.0 * -x`` is ``-0.0`` in both).
"""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import torch_lottery as tl
from torch_lottery import _layout


def net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(), nn.Linear(4 * 4 * 4, 6), nn.ReLU(), nn.Linear(6, 3))


def prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(model[0], "weight"), (model[2], "weight"), (model[4], "weight")]


def ours(seed: int = 0) -> nn.Sequential:
    model = net(seed)
    tl.global_magnitude(prunable(model), amount=0.4)
    return model


def stocks(seed: int = 0) -> nn.Sequential:
    model = net(seed)
    for module, name in prunable(model):
        prune.l1_unstructured(module, name, amount=0.3)
    return model


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().contiguous().view(torch.int32)


def test_our_methods_install_bool_masks():
    model = net()
    tl.lottery_magnitude(model[0], "weight", amount=0.2)
    tl.fixed_mask(model[2], "weight", torch.ones_like(model[2].weight))
    tl.global_magnitude([(model[4], "weight")], amount=0.2)
    prune.global_unstructured([(model[4], "bias")], pruning_method=tl.LotteryMagnitude, amount=0.5)
    for module, name in [(model[0], "weight"), (model[2], "weight"), (model[4], "weight"), (model[4], "bias")]:
        assert _layout.mask_of(module, name).dtype == torch.bool
    tl.lottery_magnitude(model[0], "weight", amount=0.2)  # a later round keeps it bool
    assert model[0].weight_mask.dtype == torch.bool


def test_a_stock_float_mask_becomes_bool_when_we_prune_it_again():
    model = stocks()
    assert model[2].weight_mask.dtype == torch.float32
    before = model[2].weight_mask.clone()
    tl.global_magnitude(prunable(model), amount=0.2)
    assert model[2].weight_mask.dtype == torch.bool
    assert not bool((model[2].weight_mask & (before == 0)).any())  # pruned entries stay pruned
    assert int(model[2].weight_mask.sum()) < int(before.sum())


def test_masked_weight_is_bit_for_bit_stocks_with_negative_zeros():
    model = ours()
    for module, name in prunable(model):
        orig, mask = _layout.original(module, name), _layout.mask_of(module, name)
        stock = mask.to(orig.dtype) * orig  # stock's apply_mask
        assert torch.equal(bits(getattr(module, name)), bits(stock))
        pruned_negative = (~mask) & (orig < 0)
        assert bool(pruned_negative.any())
        assert bool(torch.signbit(getattr(module, name))[pruned_negative].all())  # -0.0, as stock gives
    model(torch.randn(2, 2, 6, 6))  # the forward pre-hook: the same product
    for module, name in prunable(model):
        stock = _layout.mask_of(module, name).to(torch.float32) * _layout.original(module, name)
        assert torch.equal(bits(getattr(module, name)), bits(stock))


def test_gradients_match_a_float_mask():
    a, b = ours(), ours()
    for module, name in prunable(b):  # the same masks, as stock's floats
        module._buffers[_layout.mask_name(name)] = _layout.mask_of(module, name).float()
    x = torch.randn(3, 2, 6, 6)
    for model in (a, b):
        model(x).pow(2).sum().backward()
    for (ma, n), (mb, _) in zip(prunable(a), prunable(b), strict=True):
        assert torch.equal(bits(_layout.original(ma, n).grad), bits(_layout.original(mb, n).grad))


def load(into: nn.Module, state: dict, through_file: bool) -> None:
    if through_file:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        buffer.seek(0)
        state = torch.load(buffer, weights_only=True)
    into.load_state_dict(state)


def effective(model: nn.Module) -> list[torch.Tensor]:
    model(torch.zeros(1, 2, 6, 6))  # recompute module.<name> from what was loaded
    return [getattr(m, n).detach().clone() for m, n in prunable(model)]


@pytest.mark.parametrize("through_file", [False, True])
def test_stock_state_dict_loads_into_ours(through_file):
    source, target = stocks(1), ours(2)
    load(target, source.state_dict(), through_file)
    for a, b in zip(effective(target), effective(source), strict=True):
        assert torch.equal(bits(a), bits(b))
    for (mt, n), (ms, _) in zip(prunable(target), prunable(source), strict=True):
        assert torch.equal(_layout.mask_of(mt, n).float(), _layout.mask_of(ms, n))  # copied into our bool buffer
        assert _layout.mask_of(mt, n).dtype == torch.bool


@pytest.mark.parametrize("through_file", [False, True])
def test_our_state_dict_loads_into_stocks(through_file):
    source, target = ours(3), stocks(4)
    load(target, source.state_dict(), through_file)
    for a, b in zip(effective(target), effective(source), strict=True):
        assert torch.equal(bits(a), bits(b))
    for (mt, n), (ms, _) in zip(prunable(target), prunable(source), strict=True):
        assert _layout.mask_of(mt, n).dtype == torch.float32  # stock's buffer keeps its dtype
        assert torch.equal(_layout.mask_of(mt, n), _layout.mask_of(ms, n).float())


def stock_round(model: nn.Module, how: str) -> None:
    pairs = prunable(model)
    if how == "l1_unstructured":
        for module, name in pairs:
            prune.l1_unstructured(module, name, amount=0.3)
    elif how == "random_unstructured":
        torch.manual_seed(7)
        for module, name in pairs:
            prune.random_unstructured(module, name, amount=0.3)
    elif how == "ln_structured":
        for module, name in pairs:
            prune.ln_structured(module, name, amount=0.34, n=2, dim=0)
    elif how == "global_unstructured":
        prune.global_unstructured(pairs, pruning_method=prune.L1Unstructured, amount=0.3)
    else:
        raise ValueError(how)


@pytest.mark.parametrize("how", ["l1_unstructured", "random_unstructured", "ln_structured", "global_unstructured"])
def test_stock_methods_on_bool_masks_keep_the_survivors_of_float_masks(how):
    a, b = ours(), ours()
    for module, name in prunable(b):  # the same masks and weights, as stock's float masks
        module._buffers[_layout.mask_name(name)] = _layout.mask_of(module, name).float()
    stock_round(a, how)
    stock_round(b, how)
    for (ma, n), (mb, _) in zip(prunable(a), prunable(b), strict=True):
        mask_a, mask_b = _layout.mask_of(ma, n), _layout.mask_of(mb, n)
        assert mask_a.dtype == torch.bool  # a bool mask stays bool under stock methods; a float one float
        assert mask_b.dtype == torch.float32
        assert torch.equal(mask_a, mask_b.bool())
        assert torch.equal(bits(getattr(ma, n)), bits(getattr(mb, n)))
    assert sum(int(_layout.mask_of(m, n).sum()) for m, n in prunable(a)) < sum(
        int(_layout.mask_of(m, n).sum()) for m, n in prunable(ours())
    )


def test_stock_remove_on_bool_masks():
    a = ours()
    expected = [getattr(m, n).detach().clone() for m, n in prunable(a)]
    for module, name in prunable(a):
        prune.remove(module, name)
        assert not prune.is_pruned(module) or not _layout.is_pruned(module, name)
    for (module, name), w in zip(prunable(a), expected, strict=True):
        assert isinstance(module._parameters[name], nn.Parameter)
        assert torch.equal(bits(module._parameters[name]), bits(w))


def test_readers_accept_float_and_bool_masks():
    a, b = ours(), ours()
    for module, name in prunable(b):
        module._buffers[_layout.mask_name(name)] = _layout.mask_of(module, name).float()
    assert tl.remaining(prunable(a)) == tl.remaining(prunable(b))
    assert tl.get_mask(a[0], "weight").sum() == tl.get_mask(b[0], "weight").sum()
    tl.global_magnitude(prunable(a), amount=0.25)
    tl.global_magnitude(prunable(b), amount=0.25)
    for (ma, n), (mb, _) in zip(prunable(a), prunable(b), strict=True):
        assert torch.equal(_layout.mask_of(ma, n), _layout.mask_of(mb, n))  # both bool now, the same survivors
