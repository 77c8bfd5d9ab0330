"""Ticket: files (safe loading), applying to fresh and differing models, validation, figures."""

from __future__ import annotations

import copy
import os

import pytest
import torch
from torch import nn

from torch_lottery import FixedMask, RewindPoint, Ticket, find_ticket
from torch_lottery.driver import ApplyReport

from helpers import assert_state_equal, state_of

NAMES = ["0.weight", "2.weight"]
ALL_PARAMS = ["0.weight", "0.bias", "2.weight", "2.bias"]


# --------------------------------------------------------------------------- helpers
def make_model(seed: int = 0, out: int = 2, extra: bool = False) -> nn.Sequential:
    torch.manual_seed(seed)
    layers = [nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, out)]
    if extra:
        layers.append(nn.Linear(out, 4))
    return nn.Sequential(*layers)


def train(model: nn.Module, context) -> dict:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(20):
        x, y = torch.randn(16, 8), torch.randint(0, 2, (16,))
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        context.step()
    return {"loss": loss.item()}


def evaluate(model: nn.Module) -> dict:
    with torch.no_grad():
        return {"out_mean": model(torch.ones(4, 8)).mean().item()}


@pytest.fixture(scope="module")
def found():
    """(model left by find_ticket, ticket) with late resetting, so rewind values differ from init."""
    model = make_model(seed=0)
    ticket = find_ticket(
        model, train, evaluate, strategy="imp", strategy_options={"rate": 0.3, "rewind_iteration": 3}, rounds=2, seed=4
    )
    return model, ticket


def tensor_of(model: nn.Module, qualified: str) -> torch.Tensor:
    prefix, _, name = qualified.rpartition(".")
    module = model.get_submodule(prefix)
    orig = module._parameters.get(name + "_orig")
    return orig if orig is not None else module._parameters[name]


def mask_of(model: nn.Module, qualified: str) -> torch.Tensor | None:
    prefix, _, name = qualified.rpartition(".")
    return model.get_submodule(prefix)._buffers.get(name + "_mask")


def hook_counts(model: nn.Module) -> dict[str, int]:
    return {name: len(m._forward_pre_hooks) + len(m._forward_hooks) for name, m in model.named_modules()}


def assert_same_ticket(a: Ticket, b: Ticket) -> None:
    assert list(a.masks) == list(b.masks)
    for k in a.masks:
        assert a.masks[k].dtype == b.masks[k].dtype == torch.bool
        assert torch.equal(a.masks[k], b.masks[k]), k
    assert list(a.rewind.keys()) == list(b.rewind.keys())
    for k in a.rewind:
        assert torch.equal(a.rewind[k], b.rewind[k]), k
    assert a.rewind.iteration == b.rewind.iteration
    assert a.history == b.history
    assert a.config == b.config


# --------------------------------------------------------------------------- files
def test_save_load_round_trip(found, tmp_path):
    _, ticket = found
    path = tmp_path / "ticket.pt"
    ticket.save(path)
    loaded = Ticket.load(path)
    assert_same_ticket(ticket, loaded)
    assert loaded.rewind.iteration == 3
    assert loaded.config["strategy"] == "imp"
    assert loaded.config["strategy_options"]["rate"] == 0.3
    assert loaded.config["seed"] == 4
    assert len(loaded.history) == 3
    assert loaded.remaining == ticket.remaining
    # a string path works as well, and no temporary file is left behind
    loaded = Ticket.load(str(path))
    assert_same_ticket(ticket, loaded)
    assert os.listdir(tmp_path) == ["ticket.pt"]


def test_save_overwrites_atomically(found, tmp_path):
    _, ticket = found
    path = tmp_path / "ticket.pt"
    Ticket({"w": torch.ones(2, dtype=torch.bool)}, {"w": torch.zeros(2)}).save(path)
    ticket.save(path)
    assert_same_ticket(ticket, Ticket.load(path))
    assert sorted(os.listdir(tmp_path)) == ["ticket.pt"]


class Payload:
    """Unpickling an instance calls open(marker, "w"), i.e. runs code: weights_only must refuse it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_load_refuses_pickled_code(found, tmp_path):
    _, ticket = found
    marker = tmp_path / "pwned"
    state = ticket.state_dict()
    state["config"] = {"evil": Payload(str(marker))}
    path = tmp_path / "evil.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match="evil.pt"):
        Ticket.load(path)
    assert not marker.exists()
    # the payload is real: a plain torch.load without weights_only would have run it
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_load_refuses_a_bare_pickled_object(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save(Payload(str(marker)), path)
    with pytest.raises(ValueError):
        Ticket.load(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "content",
    [
        {"a": torch.ones(2)},
        {"format": "torch_lottery.rewind_point", "version": 1, "iteration": 0, "tensors": {}},
        [1, 2, 3],
        torch.ones(3),
    ],
)
def test_load_refuses_a_non_ticket_file(tmp_path, content):
    path = tmp_path / "other.pt"
    torch.save(content, path)
    with pytest.raises(ValueError, match="ticket"):
        Ticket.load(path)


def test_load_refuses_another_version(found, tmp_path):
    _, ticket = found
    state = ticket.state_dict()
    state["version"] = 99
    path = tmp_path / "future.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match="version"):
        Ticket.load(path)


@pytest.mark.parametrize("drop", ["masks", "rewind", "history", "config"])
def test_load_refuses_a_damaged_ticket(found, tmp_path, drop):
    _, ticket = found
    state = ticket.state_dict()
    del state[drop]
    path = tmp_path / "damaged.pt"
    torch.save(state, path)
    with pytest.raises(ValueError):
        Ticket.load(path)


def test_load_refuses_a_ticket_with_bad_masks(found, tmp_path):
    _, ticket = found
    state = ticket.state_dict()
    state["masks"]["0.weight"] = state["masks"]["0.weight"].float() * 2
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(ValueError):
        Ticket.load(path)


def test_load_refuses_a_truncated_file(found, tmp_path):
    _, ticket = found
    path = tmp_path / "ticket.pt"
    ticket.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="ticket.pt"):
        Ticket.load(path)


def test_load_refuses_garbage_and_empty_files(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"\x00not a torch file at all" * 10)
    with pytest.raises(ValueError):
        Ticket.load(path)
    path.write_bytes(b"")
    with pytest.raises(ValueError):
        Ticket.load(path)


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        Ticket.load(tmp_path / "nowhere.pt")


# --------------------------------------------------------------------------- applying
def test_apply_to_fresh_model_prunes_rewinds_and_matches_the_found_model(found):
    model, ticket = found
    fresh = make_model(seed=123)
    report = ticket.apply(fresh)
    assert isinstance(report, ApplyReport)
    assert report.masked == NAMES
    assert sorted(report.rewound) == sorted(ALL_PARAMS)
    assert report.missing == report.mismatched == report.unexpected == []
    assert report.complete
    for q in NAMES:
        assert torch.equal(mask_of(fresh, q).bool(), ticket.masks[q])
        assert torch.equal(mask_of(fresh, q), ticket.masks[q].float())
    for q in ALL_PARAMS:
        assert torch.equal(tensor_of(fresh, q), ticket.rewind[q]), q
    # the effective weights are rewind * mask
    assert torch.equal(fresh[0].weight, ticket.rewind["0.weight"] * ticket.masks["0.weight"])

    # the found model (pruned, trained) rewound to the ticket computes exactly what the fresh one does
    found_copy = copy.deepcopy(model)  # keep the module fixture intact
    ticket.rewind.restore(found_copy)
    for q in NAMES:
        assert torch.equal(mask_of(found_copy, q), mask_of(fresh, q))
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.equal(fresh(x), found_copy(x))


def test_apply_is_a_reparametrization_that_trains(found):
    _, ticket = found
    fresh = make_model(seed=1)
    ticket.apply(fresh)
    optimizer = torch.optim.SGD(fresh.parameters(), lr=0.5)
    for _ in range(3):
        optimizer.zero_grad()
        fresh(torch.randn(8, 8)).square().mean().backward()
        optimizer.step()
    # pruned entries stay zero in the effective weight
    for q, module in (("0.weight", fresh[0]), ("2.weight", fresh[2])):
        assert bool((module.weight[~ticket.masks[q]] == 0).all())
        assert not torch.equal(tensor_of(fresh, q), ticket.rewind[q])  # trained away from the rewind values
    # applying copied the values: the ticket itself is unchanged, so a second model gets the same start
    second = make_model(seed=2)
    ticket.apply(second)
    for q in ALL_PARAMS:
        assert torch.equal(tensor_of(second, q), ticket.rewind[q])
    for q in NAMES:
        assert torch.equal(mask_of(second, q).bool(), ticket.masks[q])


def test_apply_after_load(found, tmp_path):
    _, ticket = found
    ticket.save(tmp_path / "t.pt")
    a, b = make_model(seed=7), make_model(seed=8)
    ticket.apply(a)
    Ticket.load(tmp_path / "t.pt").apply(b)
    assert_state_equal(b, state_of(a))


def test_apply_to_an_already_pruned_model_replaces_its_masks(found):
    _, ticket = found
    other = make_model(seed=2)
    find_ticket(other, train, strategy="random", strategy_options={"rate": 0.5}, rounds=1)
    ticket.apply(other)
    for q in NAMES:
        assert torch.equal(mask_of(other, q).bool(), ticket.masks[q])
        assert torch.equal(tensor_of(other, q), ticket.rewind[q])


def test_apply_strict_refuses_a_different_head_and_leaves_the_model_unchanged(found):
    _, ticket = found
    model = make_model(seed=9, out=3)
    before, hooks = state_of(model), hook_counts(model)
    with pytest.raises(ValueError, match=r"2\.weight"):
        ticket.apply(model)
    assert_state_equal(model, before)
    assert hook_counts(model) == hooks
    assert all(n == 0 for n in hooks.values())
    assert not any(name.endswith(("_orig", "_mask")) for name in model.state_dict())
    assert isinstance(model[0]._parameters["weight"], nn.Parameter)


def test_apply_non_strict_transfers_the_body_and_reports_the_head(found):
    _, ticket = found
    model = make_model(seed=9, out=3)
    head_weight, head_bias = model[2].weight.detach().clone(), model[2].bias.detach().clone()
    report = ticket.apply(model, strict=False)
    assert report.masked == ["0.weight"]
    assert sorted(report.rewound) == ["0.bias", "0.weight"]
    assert len(report.mismatched) == 2
    assert any(m.startswith("2.weight") and "(2, 32)" in m and "(3, 32)" in m for m in report.mismatched)
    assert any(m.startswith("2.bias") for m in report.mismatched)
    assert report.missing == []
    assert report.unexpected == []  # the ticket names 2.weight (with another shape): mismatched, not unexpected
    assert report.complete is False
    assert torch.equal(mask_of(model, "0.weight").bool(), ticket.masks["0.weight"])
    assert torch.equal(tensor_of(model, "0.weight"), ticket.rewind["0.weight"])
    assert torch.equal(model[0].bias, ticket.rewind["0.bias"])
    # the head is untouched
    assert mask_of(model, "2.weight") is None
    assert torch.equal(model[2].weight, head_weight)
    assert torch.equal(model[2].bias, head_bias)
    assert len(model[2]._forward_pre_hooks) == 0


def test_apply_reports_an_extra_layer_as_unexpected(found):
    _, ticket = found
    model = make_model(seed=3, extra=True)
    extra_weight = model[3].weight.detach().clone()
    report = ticket.apply(model)  # strict: an extra layer is not an error
    assert report.unexpected == ["3.weight"]
    assert report.missing == report.mismatched == []
    assert not report.complete
    assert report.masked == NAMES
    assert mask_of(model, "3.weight") is None
    assert torch.equal(model[3].weight, extra_weight)


def test_apply_missing_layer(found):
    _, ticket = found
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU())
    before, hooks = state_of(model), hook_counts(model)
    with pytest.raises(ValueError, match=r"missing.*2\.weight"):
        ticket.apply(model)
    assert_state_equal(model, before)
    assert hook_counts(model) == hooks
    report = ticket.apply(model, strict=False)
    assert sorted(report.missing) == ["2.bias", "2.weight"]
    assert report.masked == ["0.weight"]
    assert report.mismatched == report.unexpected == []
    assert not report.complete


def test_rewind_value_shaped_unlike_its_mask_is_not_silently_skipped():
    # A ticket whose rewind value for a masked tensor has another shape than the mask (a damaged or
    # hand-edited ticket) must be refused: by the constructor, or by a strict apply that names the
    # tensor and leaves the model unchanged. It must not mask the tensor and quietly skip its rewind.
    try:
        ticket = Ticket({"0.weight": torch.ones(32, 8)}, {"0.weight": torch.zeros(5), "0.bias": torch.zeros(32)})
    except ValueError:
        return
    model = make_model(seed=3)
    before, hooks = state_of(model), hook_counts(model)
    with pytest.raises(ValueError, match=r"0\.weight"):
        ticket.apply(model)
    assert_state_equal(model, before)
    assert hook_counts(model) == hooks


def test_plan_does_not_change_the_model(found):
    _, ticket = found
    model = make_model(seed=9, out=3)
    before = state_of(model)
    report, mask_jobs, rewind_jobs = ticket._plan(model)
    assert [q for q, _, _ in mask_jobs] == ["0.weight"]
    assert report.mismatched and report.masked == []
    assert_state_equal(model, before)


def test_apply_argument_checks(found):
    _, ticket = found
    with pytest.raises(TypeError, match="model"):
        ticket.apply("model")
    model = make_model()
    before = state_of(model)
    with pytest.raises(TypeError, match="strict"):
        ticket.apply(model, strict="yes")
    assert_state_equal(model, before)


# --------------------------------------------------------------------------- applying with exclude
def test_exclude_a_module_prefix_transfers_to_a_new_head_with_strict(found):
    _, ticket = found
    model = make_model(seed=9, out=3)  # head 2 is (3, 32): strict alone refuses it
    head = {k: v.detach().clone() for k, v in model[2].state_dict().items()}
    report = ticket.apply(model, exclude=["2"])
    assert report.excluded == ["2.weight", "2.bias"]
    assert report.masked == ["0.weight"]
    assert report.rewound == ["0.weight", "0.bias"]
    assert report.missing == report.mismatched == report.unexpected == []
    assert report.complete  # what was left out was asked to be left out
    assert torch.equal(mask_of(model, "0.weight").bool(), ticket.masks["0.weight"])
    assert torch.equal(tensor_of(model, "0.weight"), ticket.rewind["0.weight"])
    # the head: no mask, no hook, its own values
    assert mask_of(model, "2.weight") is None and len(model[2]._forward_pre_hooks) == 0
    assert_state_equal(model[2], head)


def test_exclude_a_qualified_name_leaves_that_tensor_alone_on_a_same_shape_head(found):
    _, ticket = found
    model = make_model(seed=9)  # same shapes
    weight = model[2].weight.detach().clone()
    report = ticket.apply(model, exclude=["2.weight"])
    assert report.excluded == ["2.weight"]
    assert report.masked == ["0.weight"]
    assert sorted(report.rewound) == ["0.bias", "0.weight", "2.bias"]
    assert mask_of(model, "2.weight") is None
    assert torch.equal(model[2].weight, weight)  # not rewound
    assert torch.equal(model[2].bias, ticket.rewind["2.bias"])  # its neighbour is


def test_exclude_leaves_an_already_pruned_tensor_as_it_was(found):
    _, ticket = found
    model = make_model(seed=2)
    own = torch.zeros(2, 32)
    own[:, :4] = 1
    FixedMask.apply(model[2], "weight", own)
    weight_orig = model[2].weight_orig.detach().clone()
    ticket.apply(model, exclude=["2"])
    assert torch.equal(mask_of(model, "2.weight"), own)  # its own mask, not the ticket's
    assert torch.equal(model[2].weight_orig, weight_orig)
    assert torch.equal(mask_of(model, "0.weight").bool(), ticket.masks["0.weight"])


def test_exclude_does_not_excuse_other_mismatches(found):
    _, ticket = found
    model = make_model(seed=9, out=3)
    before, hooks = state_of(model), hook_counts(model)
    with pytest.raises(ValueError, match=r"mismatched: 2\.weight"):
        ticket.apply(model, exclude=["0"])
    assert_state_equal(model, before)
    assert hook_counts(model) == hooks
    report = ticket.apply(model, strict=False, exclude=["0.weight"])
    assert report.excluded == ["0.weight"] and report.masked == [] and report.rewound == ["0.bias"]
    assert len(report.mismatched) == 2


@pytest.mark.parametrize("entry", ["9", "2.w", "", "2.weight_orig", "0.weight.x"])
def test_an_exclude_entry_that_names_nothing_in_the_ticket_is_refused(found, entry):
    _, ticket = found
    model = make_model(seed=9, out=3)
    before, hooks = state_of(model), hook_counts(model)
    with pytest.raises(ValueError, match=f"exclude names {entry!r}") as info:
        ticket.apply(model, exclude=["2", entry])
    assert "0.weight" in str(info.value)  # it lists what the ticket holds
    assert_state_equal(model, before)
    assert hook_counts(model) == hooks


@pytest.mark.parametrize("exclude", ["2", [2], None, 3])
def test_exclude_must_be_a_list_of_names(found, exclude):
    _, ticket = found
    model = make_model(seed=9, out=3)
    before = state_of(model)
    with pytest.raises(TypeError, match="exclude"):
        ticket.apply(model, exclude=exclude)
    assert_state_equal(model, before)


def test_exclude_accepts_any_iterable_of_names(found):
    _, ticket = found
    model = make_model(seed=9, out=3)
    report = ticket.apply(model, exclude=(name for name in ["2.weight", "2.bias"]))
    assert report.excluded == ["2.weight", "2.bias"]


# --------------------------------------------------------------------------- constructor and figures
def test_constructor_accepts_bool_and_01_masks_and_mappings():
    ticket = Ticket(
        {"a": torch.tensor([1, 0, 1]), "b": torch.tensor([[True, False]])},
        {"a": torch.zeros(3)},
        [{"round": 0}],
        {"strategy": "imp"},
    )
    assert ticket.masks["a"].dtype == torch.bool
    assert torch.equal(ticket.masks["a"], torch.tensor([True, False, True]))
    assert isinstance(ticket.rewind, RewindPoint)
    assert ticket.history == [{"round": 0}]
    assert ticket.config == {"strategy": "imp"}
    assert "remaining=0.6000" in repr(ticket)


def test_constructor_copies_its_inputs():
    history = [{"round": 0, "metrics": {"x": 1}}]
    config = {"strategy_options": {"rate": 0.2}}
    ticket = Ticket({"a": torch.ones(2)}, {"a": torch.zeros(2)}, history, config)
    history[0]["metrics"]["x"] = 2
    config["strategy_options"]["rate"] = 0.9
    assert ticket.history[0]["metrics"]["x"] == 1
    assert ticket.config["strategy_options"]["rate"] == 0.2


@pytest.mark.parametrize("mask", [torch.tensor([0.0, 2.0]), torch.tensor([0.5, 1.0]), torch.tensor([-1, 1])])
def test_constructor_refuses_non_binary_masks(mask):
    with pytest.raises(ValueError, match="masks"):
        Ticket({"a": mask}, {"a": torch.zeros(2)})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"masks": [torch.ones(2)]},
        {"masks": {"a": [1, 0]}},
        {"masks": {1: torch.ones(2)}},
        {"rewind": [torch.zeros(2)]},
        {"rewind": {"a": [0.0, 0.0]}},
        {"history": {"round": 0}},
        {"history": [1, 2]},
        {"config": "imp"},
    ],
)
def test_constructor_refuses_wrong_types(kwargs):
    arguments = {"masks": {"a": torch.ones(2)}, "rewind": {"a": torch.zeros(2)}, "history": (), "config": None}
    arguments.update(kwargs)
    with pytest.raises(TypeError):
        Ticket(**arguments)


def test_figures():
    ticket = Ticket({"a": torch.tensor([1, 0, 1, 0]), "b": torch.zeros(2, 3), "c": torch.ones(2, dtype=torch.bool)}, {})
    assert ticket.total_weights == 12
    assert ticket.remaining_weights == 4
    assert ticket.remaining == pytest.approx(4 / 12)
    empty = Ticket({}, {})
    assert empty.total_weights == empty.remaining_weights == 0
    assert empty.remaining == 1.0


def test_figures_agree_with_the_history(found):
    _, ticket = found
    last = ticket.history[-1]
    assert ticket.remaining_weights == last["remaining_weights"]
    assert ticket.total_weights == last["total_weights"] == 320
    assert ticket.remaining == pytest.approx(last["remaining"])
    # imp local 0.3, two rounds: 256 -> 179 -> 125, 64 -> 45 -> 31
    assert ticket.remaining_weights == 125 + 31


def test_state_dict_is_plain(found):
    _, ticket = found
    state = ticket.state_dict()
    assert state["format"] == "torch_lottery.ticket"
    assert state["version"] == 2  # 2: saved files carry a SHA-256 digest
    assert set(state) == {"format", "version", "masks", "rewind", "history", "config"}
    assert_same_ticket(ticket, Ticket.from_state_dict(state))
