"""Property-based tests: rewinding is exact, save/load is the identity, damage never loads silently.

* After pruning with a rewind point (local, global, stock ``global_unstructured``) or
  ``RewindPoint.restore``, every ``<name>_orig`` is bit-identical to the rewind point
  and the computed weight is ``mask * rewind values``, in float16, bfloat16, float32 and float64.
* Saving and loading a ticket, a rewind point and a sparse export gives back exactly
  what was saved: masks, tensors bit for bit (NaN, infinities and -0.0 included),
  dtypes, iteration, history and configuration.
* Any single flipped bit anywhere in such a file either makes loading fail with a
  ``ValueError`` naming the file, or changes nothing that is loaded; any truncation fails.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import prune

import torch_lottery as tl
from torch_lottery.export import SparseState, export

#: Examples per property (docs/reliability.md quotes it; tests/test_bad_input.py keeps them in sync).
EXAMPLES = 40
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
dtypes = st.sampled_from(DTYPES)
widths = st.lists(st.integers(1, 7), min_size=2, max_size=4)


def bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bytes of a tensor: equal bits, not just equal values (NaN == NaN, -0.0 != 0.0)."""
    return t.detach().contiguous().view(-1).view(torch.uint8)


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(bits(a), bits(b))


def mlp(widths_, dtype, seed) -> nn.Sequential:
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(widths_, widths_[1:], strict=False)):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(widths_) - 2 else [])
    return nn.Sequential(*layers).to(dtype)


def train_a_bit(model, seed):
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_((torch.randn(p.shape, generator=g) * 0.1).to(p.dtype))


def check_rewound(model, point):
    for qualified, module, name in tl.named_prunable_parameters(model):
        orig = getattr(module, name + "_orig", None)
        orig = orig if orig is not None else getattr(module, name)
        assert same_bits(orig, point[qualified]), qualified
        mask = tl.get_mask(module, name)
        assert same_bits(getattr(module, name), mask * point[qualified]), qualified


@PROPERTY
@given(
    widths_=widths,
    dtype=dtypes,
    seed=st.integers(0, 2**16),
    rounds=st.integers(1, 4),
    way=st.sampled_from(["local", "global", "stock-global", "restore"]),
    amount=st.floats(0.0, 0.9),
)
def test_rewinding_is_bit_exact(widths_, dtype, seed, rounds, way, amount):
    model = mlp(widths_, dtype, seed)
    point = tl.RewindPoint.capture(model)
    params = tl.prunable_parameters(model)
    for _ in range(rounds):
        train_a_bit(model, seed)
        if way == "local":
            for module, name in params:
                tl.lottery_magnitude(module, name, amount, rewind_point=point)
        elif way == "global":
            tl.global_magnitude(params, amount, rewind_point=point, min_remaining=0)
        elif way == "stock-global":
            prune.global_unstructured(
                params, pruning_method=tl.LotteryMagnitude, amount=amount, rewind_point=point.select(params)
            )
        else:
            for module, name in params:
                prune.l1_unstructured(module, name, amount)
            point.restore(model)
        check_rewound(model, point)


special = st.sampled_from([0.0, -0.0, 1.5, -2.25, 1e-30, 65504.0])
nonfinite = st.sampled_from([float("inf"), float("-inf"), float("nan")])


@st.composite
def tensors(draw, values=special):
    shape = tuple(draw(st.lists(st.integers(0 if values is special else 1, 4), min_size=0, max_size=3)))
    dtype = draw(dtypes)
    seed = draw(st.integers(0, 2**16))
    t = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)
    if t.numel():
        t.view(-1)[draw(st.integers(0, t.numel() - 1))] = draw(values)
    return t


names = st.text(alphabet="abcdefghij._0123456789", min_size=1, max_size=12)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.text(max_size=8),
    st.floats(allow_nan=False, allow_infinity=False),
)
records = st.dictionaries(st.text(min_size=1, max_size=6), scalars, max_size=4)


@PROPERTY
@given(values=st.dictionaries(names, tensors(), max_size=4), iteration=st.integers(0, 10**6), data=st.data())
def test_rewind_point_save_load_is_the_identity(tmp_path_factory, values, iteration, data):
    path = tmp_path_factory.mktemp("point") / "point.pt"
    point = tl.RewindPoint(values, iteration=iteration)
    point.save(path)
    loaded = tl.RewindPoint.load(path)
    assert loaded.iteration == iteration and list(loaded.keys()) == list(point.keys())
    assert all(same_bits(loaded[k], point[k]) for k in point)
    check_damage(
        path,
        data,
        lambda p: tl.RewindPoint.load(p),
        lambda got: (
            got.iteration == iteration
            and list(got.keys()) == list(point.keys())
            and all(same_bits(got[k], point[k]) for k in point)
        ),
    )


@PROPERTY
@given(good=st.dictionaries(names, tensors(), max_size=3), bad=tensors(nonfinite), key=names)
def test_rewind_values_that_are_not_finite_are_refused(good, bad, key):
    values = {**good, key: bad}
    with pytest.raises(ValueError, match=rf"rewind_point\[{re.escape(repr(key))}\] contains (NaN|infinite)"):
        tl.RewindPoint(values)
    with pytest.raises(ValueError, match=r"(NaN|infinite)"):
        tl.Ticket({}, values)


@PROPERTY
@given(
    masks=st.dictionaries(names, st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple), max_size=3),
    seed=st.integers(0, 2**16),
    history=st.lists(records, max_size=3),
    config=records,
    data=st.data(),
)
def test_ticket_save_load_is_the_identity(tmp_path_factory, masks, seed, history, config, data):
    g = torch.Generator().manual_seed(seed)
    mask_tensors = {k: torch.rand(s, generator=g) > 0.5 for k, s in masks.items()}
    rewind = {k: torch.randn(s, generator=g) for k, s in masks.items()}
    ticket = tl.Ticket(mask_tensors, tl.RewindPoint(rewind, iteration=seed % 7), history, config)
    path = tmp_path_factory.mktemp("ticket") / "ticket.pt"
    ticket.save(path)

    def same(got):
        return (
            list(got.masks) == list(ticket.masks)
            and all(same_bits(got.masks[k], ticket.masks[k]) for k in ticket.masks)
            and list(got.rewind.keys()) == list(ticket.rewind.keys())
            and all(same_bits(got.rewind[k], ticket.rewind[k]) for k in ticket.rewind)
            and got.rewind.iteration == ticket.rewind.iteration
            and got.history == ticket.history
            and got.config == ticket.config
        )

    assert same(tl.Ticket.load(path))
    check_damage(path, data, tl.Ticket.load, same)


@PROPERTY
@given(widths_=widths, dtype=dtypes, seed=st.integers(0, 2**16), amount=st.floats(0.0, 1.0), data=st.data())
def test_sparse_export_save_load_is_the_identity(tmp_path_factory, widths_, dtype, seed, amount, data):
    model = mlp(widths_, dtype, seed)
    for module, name in tl.prunable_parameters(model):
        prune.l1_unstructured(module, name, amount)
    state = export(model)
    path = tmp_path_factory.mktemp("export") / "sparse.pt"
    state.save(path)
    expected = state.state_dict()

    def same(got):
        got_dense = got.state_dict()
        return (
            list(got_dense) == list(expected)
            and all(same_bits(got_dense[k], expected[k]) for k in expected)
            and got.pruned == state.pruned
        )

    assert same(SparseState.load(path))
    own = model.state_dict()
    for key, value in own.items():  # the dense view holds the model's values after prune.remove
        if key.endswith("_mask"):
            base = key[: -len("_mask")]
            assert torch.equal(expected[base], own[base + "_orig"] * value)  # (pruned entries: +0.0)
    check_damage(path, data, SparseState.load, same)


def check_damage(path: Path, data, load, same) -> None:
    """A flipped bit is refused (ValueError naming the file) or harmless; a truncation is refused."""
    original = path.read_bytes()
    position = data.draw(st.integers(0, len(original) - 1), label="flipped byte")
    bit = data.draw(st.sampled_from([1, 2, 4, 8, 16, 32, 64, 128]), label="bit")
    damaged = bytearray(original)
    damaged[position] ^= bit
    path.write_bytes(bytes(damaged))
    try:
        got = load(path)
    except ValueError as error:
        assert path.name in str(error)
    else:
        assert same(got), f"byte {position} bit {bit}: loaded silently with different content"
    cut = data.draw(st.integers(0, len(original) - 1), label="truncated at")
    path.write_bytes(original[:cut])
    with pytest.raises(ValueError, match=path.name):
        load(path)
    path.write_bytes(original)
